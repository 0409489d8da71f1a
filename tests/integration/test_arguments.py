"""Spider arguments and settings reach a real Scrapy spider, and wait=SECONDS waits on real
jobs: a now job and a template's run, through the zygote and through a direct spawn."""
from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.conftest import DaemonProcess, zygote_pid

#: Reports what it received: its keyword arguments (the -a pairs), the settings set on
#: the command line (-s), and which process started its keeper (zygote or daemon).
ECHO = r'''
import asyncio, json, os
import scrapy
from scrapy.settings import SETTINGS_PRIORITIES


class Echo(scrapy.Spider):
    name = "echo"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = dict(kwargs)

    async def start(self):
        s = self.crawler.settings
        cmdline = {k: str(s[k]) for k in s
                   if s.getpriority(k) == SETTINGS_PRIORITIES["cmdline"]}
        with open(f"/proc/{os.getppid()}/stat") as fh:
            keeper_parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        print("CRAWLD-TEST " + json.dumps({
            "args": self.received, "cmdline": cmdline,
            "delay": s.getfloat("DOWNLOAD_DELAY"), "keeper_parent": keeper_parent}),
            flush=True)
        await asyncio.sleep(float(self.received.get("linger", 0)))
        return
        yield
'''

#: Values that a command line or JSON could mangle: spaces, '=', quotes, a newline,
#: non-ASCII text, a leading dash, the empty string.
ARGS = [("category", "books & more"), ("query", "a=b c=\"d\""), ("note", "line 1\nline 2"),
        ("city", "Zürich ☃"), ("flag", "-s X=1"), ("empty", "")]
SETTINGS = [("DOWNLOAD_DELAY", "2.5"), ("ECHO_NOTE", 'json={"a": [1, 2]}')]


def echo_project() -> bytes:
    return project.build("demo", extra={"demo/spiders/echo.py": ECHO})


def post_pairs(d: DaemonProcess, path: str, pairs: list[tuple[str, str]],
               timeout: float = 60) -> Any:
    """POST a form with repeated names in order (requests' dict would lose repeats)."""
    return d.session.post(d.url + path, data=urlencode(pairs), timeout=timeout,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})


def check_received(said: dict, daemon: DaemonProcess, zygote: bool) -> None:
    assert said["args"] == {**dict(ARGS), "payload": '{"n": 1}'}
    cmdline = said["cmdline"]
    assert {k: cmdline.get(k) for k, _ in SETTINGS} == dict(SETTINGS)
    assert cmdline["TELNETCONSOLE_ENABLED"] == "0" and cmdline["REMOTE_CONTROL_ENABLED"] == "0"
    assert said["delay"] == 2.5
    expected_parent = zygote_pid(daemon) if zygote else daemon.proc.pid
    assert said["keeper_parent"] == expected_parent, "the path under test was taken"


@pytest.mark.parametrize("preload", ["yes", "no"], ids=["zygote", "spawn"])
def test_arguments_and_settings_reach_the_spider_of_a_now_job_and_of_a_templates_run(
        make_daemon: Any, preload: str) -> None:
    d = make_daemon(f"preload = {preload}\n").start()
    d.push(echo_project())
    if preload == "yes":
        zygote_pid(d)  # ready: the job is forked, not spawned as a fallback
    given = ([(f"arg-{n}", v) for n, v in ARGS] + [("setting", f"{n}={v}") for n, v in SETTINGS]
             + [("payload", '{"n": 1}')])
    # a now job, answered once it has ended (wait)
    body = d.ok(post_pairs(d, "/schedule-job.json",
                           [("project", "demo"), ("spider", "echo"), ("when", "now"),
                            ("wait", "60")] + given))
    job = body["job"]
    assert job["identifier"] == body["identifier"] and job["status"] == "SUCCESSFUL", job
    assert job["args"] == dict(ARGS) and job["settings"] == dict(SETTINGS)
    check_received(d.said(body["identifier"]), d, preload == "yes")
    # a template's run inherits them
    template = d.ok(post_pairs(d, "/schedule-job.json",
                               [("project", "demo"), ("spider", "echo"),
                                ("when", "every day at 03:00")] + given))["identifier"]
    run = d.ok(d.post("/run-job.json", id=template))["identifier"]
    [child] = d.ok(d.get("/list-jobs.json", id=run, wait=60))["jobs"]
    assert child["status"] == "SUCCESSFUL" and child["parent"] == template, child
    assert child["args"] == dict(ARGS) and child["settings"] == dict(SETTINGS)
    check_received(d.said(run), d, preload == "yes")
    d.ok(d.post("/cancel-job.json", id=template))


def test_refused_settings_and_bad_arguments_are_400s_that_create_nothing(daemon) -> None:
    daemon.push(echo_project())
    for pairs, words in (
            ([("setting", "TELNETCONSOLE_ENABLED=1")], "telnet console"),
            ([("setting", "REMOTE_CONTROL_ENABLED=1")], "RemoteControl"),
            ([("setting", "EXTENSIONS={}")], "EXTENSIONS may not be set"),
            ([("setting", "DOWNLOAD_DELAY")], "has no '='"),
            ([("arg-", "x")], "has no argument name")):
        r = post_pairs(daemon, "/schedule-job.json",
                       [("project", "demo"), ("spider", "echo"), ("when", "now")] + pairs)
        assert r.status_code == 400 and words in r.json()["msg"], r.text
    assert daemon.jobs("ACTIVE") == [] and daemon.jobs("COMPLETED") == []


def test_wait_answers_when_a_real_job_ends_and_when_the_wait_runs_out(daemon) -> None:
    daemon.push(echo_project())
    lingering = daemon.schedule("echo", **{"arg-linger": "1.5"})
    started = time.monotonic()
    [job] = daemon.ok(daemon.get("/list-jobs.json", id=lingering, wait=60))["jobs"]
    assert job["status"] == "SUCCESSFUL" and job["finished"] is not None
    assert time.monotonic() - started < 30
    sleeper = daemon.schedule("sleep")  # runs for 300 s
    started = time.monotonic()
    [job] = daemon.ok(daemon.get("/list-jobs.json", id=sleeper, wait=1.5))["jobs"]
    took = time.monotonic() - started
    assert job["status"] in ("PENDING", "RUNNING") and 1.5 <= took < 10, (job, took)
    ended = daemon.ok(daemon.post("/cancel-job.json", id=sleeper))
    assert ended["job-status"] == "CANCELED"
    # the end of an already ended job is answered at once
    [job] = daemon.ok(daemon.get("/list-jobs.json", id=sleeper, wait=300))["jobs"]
    assert job["status"] == "CANCELED"


def raw_wait(d: DaemonProcess, job_id: str) -> socket.socket:
    """A client waiting on ``job_id`` (wait=300) over a socket the test can close."""
    parts = urlsplit(d.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(f"GET /list-jobs.json?id={job_id}&wait=300 HTTP/1.1\r\n"
                 f"Host: {parts.netloc}\r\n\r\n".encode())
    return sock


def test_waits_past_max_waits_get_429_and_a_client_that_leaves_frees_its_place(
        make_daemon: Any) -> None:
    d = make_daemon("[web]\nmax-waits = 1\n").start()
    d.push()
    sleeper = d.schedule("sleep")

    def holder() -> socket.socket | None:
        """A raw client holding the only place: a second wait is then refused (had
        the second come first, both are let go and it is tried again)."""
        sock = raw_wait(d, sleeper)
        r = d.get("/list-jobs.json", id=sleeper, wait=0.1)
        if r.status_code == 429 and "max-waits" in r.json()["msg"]:
            return sock
        sock.close()
        return None
    first = wait_for(holder, 30, what="a client to hold the only place")
    r = d.post("/schedule-job.json", project="demo", spider="ok", when="now", wait=5)
    assert r.status_code == 429
    assert [j["identifier"] for j in d.jobs("ACTIVE")] == [sleeper], "nothing was created"
    first.close()  # the waiting client goes away: its place is given back at once

    def accepted() -> bool:
        r = d.get("/list-jobs.json", id=sleeper, wait=0.2)
        return r.status_code == 200 and r.json()["jobs"][0]["status"] == "RUNNING"
    wait_for(accepted, 30, what="the place of the client that left to be free")
    assert d.ok(d.post("/cancel-job.json", id=sleeper))["job-status"] == "CANCELED"
