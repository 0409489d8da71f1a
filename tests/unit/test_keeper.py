"""A spider job's keeper (runner/keeper.py), on real processes: a fake ``scrapy`` package
in the job's directory stands in for Scrapy, so each run costs a bare interpreter."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import psutil
import pytest

from crawld import runner
from tests.conftest import wait_for

#: ``scrapy.cmdline`` as the keeper's child imports it from the job's directory:
#: records what it sees, then does what FAKE_THEN says.
FAKE_CMDLINE = r'''
import json, os, resource, signal, sys, time

SLEEPER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"


def title(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as fh:
        return fh.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def escape():
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        pid = os.fork()
        if pid == 0:
            os.execve(sys.executable, [sys.executable, "-c", SLEEPER], dict())
        os.write(w, str(pid).encode())
        os._exit(0)
    os.close(w)
    return int(os.read(r, 64))


def say(**kw):
    with open(os.environ["FAKE_OUT"], "a") as fh:
        fh.write(json.dumps(kw) + "\n")


def execute(argv):
    say(argv=argv, pid=os.getpid(), ppid=os.getppid(), sid=os.getsid(0),
        title=title(os.getpid()), keeper_title=title(os.getppid()))
    how, _, arg = os.environ.get("FAKE_THEN", "exit:0").partition(":")
    if how == "exit":
        sys.exit(int(arg))
    if how == "signal":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), int(arg))
    if how == "escape":
        say(escapee=escape())
        return
    if how == "signals":
        got = []
        signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
        signal.signal(signal.SIGUSR1, lambda s, f: (say(got=got + [s]), os._exit(0)))
        say(ready=True)
        while True:
            time.sleep(1)
    if how == "sleep":
        say(ready=True)
        time.sleep(300)
'''

ENV = {"CRAWLD_JOB_ID": "6c3e-job", "CRAWLD_PROJECT": "books", "CRAWLD_SPIDER": "quotes"}


@pytest.fixture
def job(tmp_path: Any):
    """Start ``spider crawl quotes`` (the direct spawn's runner) over the fake Scrapy;
    returns (start(then) -> Popen, said() -> list of records)."""
    (tmp_path / "scrapy").mkdir()
    (tmp_path / "scrapy" / "__init__.py").write_text("")
    (tmp_path / "scrapy" / "cmdline.py").write_text(FAKE_CMDLINE)
    out = tmp_path / "said"
    started: list[subprocess.Popen] = []

    def start(then: str) -> subprocess.Popen:
        env = {"PATH": os.environ.get("PATH", "/bin"), "FAKE_OUT": str(out),
               "FAKE_THEN": then, **ENV}
        p = subprocess.Popen(list(runner.argv(sys.executable, "spider", "crawl", "quotes")),
                             cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
        started.append(p)
        return p

    def said() -> list[dict]:
        try:
            return [json.loads(line) for line in out.read_text().splitlines()]
        except FileNotFoundError:
            return []

    yield start, said
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_the_keeper_leads_the_session_and_runs_scrapy_below_it_with_the_rest(job):
    start, said = job
    p = start("exit:0")
    assert p.wait(60) == 0
    first = said()[0]
    assert first["argv"] == ["scrapy", "crawl", "quotes"]
    assert first["ppid"] == p.pid and first["sid"] == p.pid, "the keeper leads the session"
    assert first["keeper_title"] == "crawld: job 6c3e-job books/quotes"
    assert first["title"] == "crawld: job 6c3e-job books/quotes (scrapy)"


@pytest.mark.parametrize("then, returncode", [
    ("exit:3", 3), ("exit:0", 0), (f"signal:{int(signal.SIGSEGV)}", -signal.SIGSEGV),
    (f"signal:{int(signal.SIGTERM)}", -signal.SIGTERM),
])
def test_the_keeper_ends_as_scrapy_ended(job, then, returncode):
    start, _ = job
    assert start(then).wait(60) == returncode


def test_what_scrapy_double_forks_into_its_own_session_dies_with_the_job(job):
    start, said = job
    p = start("escape")
    assert p.wait(60) == 0
    escapee = [s["escapee"] for s in said() if "escapee" in s][0]
    assert not psutil.pid_exists(escapee), "swept (and reaped) before the keeper exited"


def test_the_keeper_forwards_signals_from_outside_but_not_from_its_parent(job):
    """The daemon (the keeper's parent here) signals the whole tree itself; a second
    SIGTERM would make Scrapy stop uncleanly. Someone else's signal is passed on."""
    start, said = job
    p = start("signals")
    wait_for(lambda: any(s.get("ready") for s in said()), 30, what="the fake to be ready")
    os.kill(p.pid, signal.SIGTERM)  # from the parent: not forwarded

    def pending() -> bool:  # the keeper has not collected it yet
        with open(f"/proc/{p.pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh)
        return int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16) != 0
    wait_for(lambda: not pending(), 10, what="the keeper to take the signal")
    subprocess.run(["kill", "-USR1", str(p.pid)], check=True)  # from outside: forwarded
    assert p.wait(30) == 0
    assert [s["got"] for s in said() if "got" in s] == [[signal.SIGUSR1]]


def test_scrapy_follows_a_sigkilled_keeper(job):
    start, said = job
    p = start("sleep")
    wait_for(lambda: any(s.get("ready") for s in said()), 30, what="the fake to be ready")
    scrapy = said()[0]["pid"]
    p.kill()
    p.wait(10)
    wait_for(lambda: not psutil.pid_exists(scrapy) or
             psutil.Process(scrapy).status() == psutil.STATUS_ZOMBIE, 10,
             what="Scrapy to get the keeper's death signal")
