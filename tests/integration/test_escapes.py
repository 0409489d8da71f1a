"""Processes that try to outlive their job or push: a double fork into a session of its
own (issue 10, items 6 and 7).

Every escapee here is a Python sleeper that ignores SIGTERM and SIGHUP, in a session of
its own, whose parent has exited (so it is nobody's descendant but a subreaper's). With
``scrub``, it also runs with an empty environment and no crawld title: nothing but the
job's own subreaper can tell whose it is.
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest
import requests

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.conftest import gone

ESCAPE = r'''
import os, sys

SLEEPER = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
           "signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(600)")


def escape(scrub=False, note=None):
    """Double fork + setsid: start a sleeper in a session of its own whose parent has
    exited, and return its pid (also appended to the file ``note``, if given)."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                os.close(w)
                args = [sys.executable, "-c", SLEEPER]
                if scrub:
                    os.execve(sys.executable, args, dict())
                os.execv(sys.executable, args)
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(middle, 0)
    pid = int(os.read(r, 64))
    os.close(r)
    if note:
        with open(note, "a") as fh:
            fh.write("escapee %d\n" % pid)
    return pid
'''

SPIDERS = r'''
import asyncio, json, os, resource, signal
import scrapy
from ..escape import escape


class Escape(scrapy.Spider):
    """Starts an escapee, reports it, then returns, sleeps, exits 3 or dies of SIGSEGV
    (``payload``: {"then": ..., "scrub": ...})."""

    name = "escape"

    async def start(self):
        how = json.loads(getattr(self, "payload", "{}"))
        pid = escape(how.get("scrub", True))
        print("CRAWLD-TEST " + json.dumps(dict(
            escapee=pid, pid=os.getpid(), sid=os.getsid(0), escapee_sid=os.getsid(pid))),
              flush=True)
        then = how.get("then", "return")
        if then == "sleep":
            await asyncio.sleep(600)
        elif then == "exit":
            os._exit(3)
        elif then == "segv":
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
        return
        yield
'''

#: settings.py that starts an escapee whenever it is imported (``scrapy list`` at push
#: imports it), noting the pids in $CRAWLD_TEST_ESCAPEES; with HANG, it then sleeps.
SETTINGS = project.SETTINGS + r'''
import os, time
from .escape import escape
if os.environ.get("CRAWLD_TEST_ESCAPEES"):
    with open(os.environ["CRAWLD_TEST_ESCAPEES"], "a") as fh:
        fh.write("list %d\n" % os.getpid())
    escape(scrub=True, note=os.environ["CRAWLD_TEST_ESCAPEES"])
    if os.environ.get("CRAWLD_TEST_HANG"):
        time.sleep(100000)
'''

MODES = {"zygote": "preload = yes\n", "direct": "preload = no\n"}


def build(name: str = "demo", settings: str = project.SETTINGS) -> bytes:
    return project.build(name, spiders=SPIDERS, settings=settings,
                         extra={f"{name}/escape.py": ESCAPE})


def escapees(path: str) -> dict[str, list[int]]:
    """What settings.py noted: {"list": [pids], "escapee": [pids]}."""
    found: dict[str, list[int]] = {"list": [], "escapee": []}
    try:
        with open(path) as fh:
            for line in fh:
                kind, pid = line.split()
                found[kind].append(int(pid))
    except FileNotFoundError:
        pass
    return found


def all_gone(pids: list[int], timeout: float = 15) -> None:
    for pid in pids:
        wait_for(lambda: gone(pid), timeout, what=f"escaped pid {pid} to be gone")


@pytest.mark.parametrize("mode", MODES)
def test_an_escaped_process_ends_with_its_job_however_the_job_ends(make_daemon: Any,
                                                                  mode: str) -> None:
    daemon = make_daemon(MODES[mode] + "job-slots = 8\n").start()
    daemon.push(build())
    ends = {
        "return": daemon.schedule("escape", payload='{"then": "return"}'),
        "exit": daemon.schedule("escape", payload='{"then": "exit"}'),
        "segv": daemon.schedule("escape", payload='{"then": "segv"}'),
        "cancel": daemon.schedule("escape", payload='{"then": "sleep"}'),
        # the job's process SIGKILLed from outside: nothing in it can sweep; an escapee
        # that kept the job's environment is still found
        "killed": daemon.schedule("escape", payload='{"then": "sleep", "scrub": false}'),
    }
    said = {end: daemon.said(job_id) for end, job_id in ends.items()}
    # alone, so that it reports long before its limit even when starts are slow
    ends["timeout"] = daemon.schedule("escape", payload='{"then": "sleep"}', timeout="10")
    said["timeout"] = daemon.said(ends["timeout"])
    for end, s in said.items():
        assert s["escapee_sid"] != s["sid"], "in a session of its own"
        if end in ("cancel", "timeout", "killed"):
            assert not gone(s["escapee"]), "the escapee runs while its job does"
    daemon.ok(daemon.post("/cancel-job.json", id=ends["cancel"]))
    os.kill(daemon.job(ends["killed"])["pid"], signal.SIGKILL)
    expected = {"return": ("SUCCESSFUL", None), "exit": ("FAILED", "exit code 3"),
                "segv": ("FAILED", "killed by signal SIGSEGV"),
                "cancel": ("CANCELED", "canceled by user"),
                "timeout": ("FAILED", "timed out after 10 s (timeout)"),
                "killed": ("FAILED", "killed by signal SIGKILL")}
    for end, job_id in ends.items():
        job = daemon.wait_status(job_id, "SUCCESSFUL", "FAILED", "CANCELED", timeout=60)
        assert (job["status"], job["reason"]) == expected[end], (end, job)
        all_gone([said[end]["escapee"]])
    assert daemon.job(ends["segv"])["signal"] == "SIGSEGV", "the job's own death is reported"


@pytest.mark.parametrize("mode", MODES)
def test_escaped_processes_end_when_the_daemon_shuts_down(make_daemon: Any, mode: str) -> None:
    daemon = make_daemon(MODES[mode]).start()
    daemon.push(build())
    job_id = daemon.schedule("escape", payload='{"then": "sleep"}')
    escapee = daemon.said(job_id)["escapee"]
    assert daemon.stop() == 0
    all_gone([escapee])
    daemon.start()
    assert daemon.job(job_id)["status"] == "CANCELED"


@pytest.mark.parametrize("mode", MODES)
def test_a_push_leaves_nothing_running(make_daemon: Any, tmp_path: Any, mode: str) -> None:
    notes = str(tmp_path / "escapees")
    daemon = make_daemon(MODES[mode], env={"CRAWLD_TEST_ESCAPEES": notes}).start()
    assert daemon.push(build(settings=SETTINGS))["spiders"] == ["escape"]
    found = escapees(notes)
    assert found["list"] and found["escapee"], "settings.py ran and started its escapee"
    all_gone(found["escapee"] + found["list"])


def test_a_scrapy_list_orphaned_by_a_crash_is_killed_at_restart(make_daemon: Any,
                                                                tmp_path: Any) -> None:
    notes = str(tmp_path / "escapees")
    daemon = make_daemon(env={"CRAWLD_TEST_ESCAPEES": notes, "CRAWLD_TEST_HANG": "1"}).start()
    data = build(settings=SETTINGS)
    failures: list[Any] = []

    def push() -> None:  # hangs until the daemon dies
        try:
            daemon.session.post(daemon.url + "/push-project.json", timeout=120,
                                files={"archive": ("p.zip", data)})
        except requests.RequestException as exc:
            failures.append(exc)
    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    found = wait_for(lambda: (lambda f: f if f["list"] and f["escapee"] else None)(
        escapees(notes)), 60, what="scrapy list to hang")
    staging = os.path.join(daemon.data_dir, "projects", ".staging")
    assert os.listdir(staging), "the push is staged"
    daemon.kill()
    pusher.join(30)
    assert failures, "the push never answered"
    orphans = found["list"] + found["escapee"]
    assert not any(gone(pid) for pid in orphans), "scrapy list outlives a SIGKILLed daemon"
    daemon.start()
    all_gone(orphans, timeout=10)
    assert not os.path.exists(staging) or not os.listdir(staging)
    assert "killed" in daemon.log() and "scrapy list" in daemon.log()
