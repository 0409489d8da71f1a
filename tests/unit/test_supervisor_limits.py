"""The supervisor's limits on a fake process reactor: ``timeout`` and ``no-output-timeout``.

Past either limit a job gets SIGTERM (SIGKILL after the grace period, as a cancel does)
and ends FAILED with the reason; a job that ends on its own leaves no timer behind.
"""
from __future__ import annotations

import json
import signal
import uuid

import pytest
from twisted.internet.defer import succeed

from crawld.browser import Browsers, Settings
from crawld.events import JobEvents
from crawld.launch.local import LocalLauncher, LocalSettings
from crawld.limits import Defaults
from crawld.launch.spawner import DirectSpawner
from crawld.model import Actor, Job, JobStatus
from crawld.store import InlineExecutor, Store
from crawld.supervisor import Supervisor
from tests.unit.fakes import FakeProcessReactor, result
from tests.unit.test_supervisor import signals  # noqa: F401  (fixture: records signals)

T0 = 1_700_000_000
GRACE = 10


@pytest.fixture
def make(tmp_path, signals):  # noqa: F811
    """make(job_timeout=, browser_timeout=, max_log_size=, to_thread=)
    -> (reactor, store, supervisor)."""
    def build(job_timeout: float = 0.0, browser_timeout: float = 0.0, max_log_size: int = 0,
              to_thread=lambda f, *a: succeed(f(*a))):
        reactor = FakeProcessReactor()
        reactor.advance(T0)
        store = Store(":memory:", InlineExecutor())
        (tmp_path / "proj").mkdir(exist_ok=True)
        browsers = Browsers(reactor, str(tmp_path / "data"), str(tmp_path),
                            Settings("/usr/bin/chromium", GRACE), "/py",
                            to_thread=lambda f, *a: succeed(f(*a)))
        settings = LocalSettings("/py", str(tmp_path), lambda name: str(tmp_path / "proj"),
                                 lambda project, script: f"/scripts/{script}.py",
                                 base_env={})
        launcher = LocalLauncher(settings, DirectSpawner(reactor), browsers,
                                 to_thread=to_thread)
        sup = Supervisor(reactor, store, launcher, JobEvents(), str(tmp_path), slots=4,
                         kill_grace=GRACE,
                         limits=Defaults(job_timeout=job_timeout,
                                         browser_timeout=browser_timeout,
                                         max_log_size=max_log_size))
        return reactor, store, sup
    return build


def start(reactor, store: Store, sup: Supervisor, **fields) -> tuple[Job, int]:
    """Add a PENDING job, let the supervisor start it; returns it and its pid."""
    if fields.get("kind") == "browse":
        fields.setdefault("payload", json.dumps({"url": "https://example.com/"}))
    job = Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER,
              schedule="now", project="p", spider="s", created=1, updated=1, **fields)
    result(store.add_job(job))
    sup.enqueue(job.id)
    assert sup.is_running(job.id)
    return job, reactor.spawned[-1]["pid"]


def tick(reactor, seconds: float, step: float = 0.25) -> None:
    """Let ``seconds`` pass in small steps, as real time does (a single Clock.advance
    would run every due check late, all at the end)."""
    for _ in range(round(seconds / step)):
        reactor.advance(step)


def limit_timers(reactor) -> list:
    """Pending timers of the limits (and the SIGKILL after a TERM), not other timers."""
    return [c for c in reactor.getDelayedCalls()
            if getattr(c.func, "__name__", "") in ("expire", "_check", "_signal")]


def status(store: Store, job: Job) -> Job:
    return result(store.get_job(job.id))


def terms(signals, pid):  # noqa: F811
    return [s for p, s in signals if p == pid and s == signal.SIGTERM]


def kills(signals, pid):  # noqa: F811
    return [s for p, s in signals if p == pid and s == signal.SIGKILL]


# ---------------------------------------------------------------------------- timeout


def test_timeout_terms_the_job_and_it_ends_failed_with_the_reason(make, signals):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, timeout=5)
    reactor.advance(4.9)
    assert signals == []
    reactor.advance(0.1)
    assert signals == [(pid, signal.SIGTERM)]
    reactor.end(0, signal=signal.SIGTERM)
    done = status(store, job)
    assert done.status is JobStatus.FAILED
    assert done.reason == "timed out after 5 s (timeout)"
    assert done.signal == signal.SIGTERM and done.finished == T0 + 5
    assert not sup.is_running(job.id)
    reactor.advance(GRACE + 1)
    assert kills(signals, pid) == [], "it ended within the grace period: no SIGKILL"


def test_a_job_that_ignores_term_is_killed_after_the_grace_period(make, signals):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, timeout=2.5)
    reactor.advance(2.5)
    assert terms(signals, pid) == [signal.SIGTERM]
    reactor.advance(GRACE - 0.1)
    assert kills(signals, pid) == []
    reactor.advance(0.1)
    assert kills(signals, pid) == [signal.SIGKILL]
    reactor.end(0, signal=signal.SIGKILL)
    done = status(store, job)
    assert (done.status, done.reason) == (JobStatus.FAILED, "timed out after 2.5 s (timeout)")
    assert done.signal == signal.SIGKILL


def test_a_timed_out_job_that_exits_zero_is_still_failed(make):
    reactor, store, sup = make()
    job, _ = start(reactor, store, sup, timeout=1)
    reactor.advance(1)
    reactor.end(0, code=0)  # it caught SIGTERM and exited cleanly
    done = status(store, job)
    assert (done.status, done.reason) == (JobStatus.FAILED, "timed out after 1 s (timeout)")


@pytest.mark.parametrize("kind,expected", [("spider", 7), ("script", 3), ("browse", 3)])
def test_default_timeout_by_kind(make, signals, kind, expected):  # noqa: F811
    reactor, store, sup = make(job_timeout=7, browser_timeout=3)
    job, pid = start(reactor, store, sup, kind=kind)
    reactor.advance(expected - 0.5)
    assert terms(signals, pid) == []
    reactor.advance(0.5)
    assert terms(signals, pid) == [signal.SIGTERM]
    reactor.end(0, signal=signal.SIGTERM)
    assert status(store, job).reason == f"timed out after {expected} s (timeout)"


@pytest.mark.parametrize("kind", ["spider", "script", "browse"])
def test_the_jobs_own_timeout_overrides_the_default(make, signals, kind):  # noqa: F811
    reactor, store, sup = make(job_timeout=7, browser_timeout=3)
    job, pid = start(reactor, store, sup, kind=kind, timeout=20)
    reactor.advance(19)
    assert terms(signals, pid) == []
    reactor.advance(1)
    assert terms(signals, pid) == [signal.SIGTERM]


@pytest.mark.parametrize("defaults,own", [((0, 0), None), ((7, 3), 0)])
@pytest.mark.parametrize("kind", ["spider", "script"])
def test_zero_means_no_timeout(make, signals, defaults, own, kind):  # noqa: F811
    reactor, store, sup = make(*defaults)
    job, pid = start(reactor, store, sup, kind=kind, timeout=own)
    assert limit_timers(reactor) == [], "no timer armed"
    reactor.advance(10 * 86400)
    assert signals == []
    reactor.end(0)
    assert status(store, job).status is JobStatus.SUCCESSFUL


# ------------------------------------------------------------------ no-output-timeout


def test_a_log_that_keeps_growing_keeps_the_job_alive(make, signals, tmp_path):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, no_output_timeout=4)
    out = tmp_path / f"{job.id}.out"
    err = tmp_path / f"{job.id}.err"
    for n in range(40):
        (out if n % 2 else err).open("ab").write(b"line\n")  # either log counts
        tick(reactor, 3.5)  # less than the limit between two writes
    assert signals == [] and sup.is_running(job.id)
    reactor.end(0)
    assert status(store, job).status is JobStatus.SUCCESSFUL


def test_silence_ends_the_job_failed(make, signals, tmp_path):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, no_output_timeout=4)  # checks every 1 s
    tick(reactor, 2.5)
    (tmp_path / f"{job.id}.out").open("ab").write(b"started\n")  # seen at T0 + 3
    tick(reactor, 4.25)
    assert signals == [], "silent for less than 4 s since the check that saw output"
    tick(reactor, 0.25)
    assert signals == [(pid, signal.SIGTERM)] and reactor.seconds() == T0 + 7
    reactor.end(0, signal=signal.SIGTERM)
    done = status(store, job)
    assert done.status is JobStatus.FAILED
    assert done.reason == "no output for 4 s (no-output-timeout)"


def test_a_job_silent_from_the_start_ends_within_a_period_of_the_limit(make, signals):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, no_output_timeout=2)  # checks every 0.5 s
    tick(reactor, 2.25)
    assert signals == []
    tick(reactor, 0.25)
    assert signals == [(pid, signal.SIGTERM)], "the limit plus one check period"
    reactor.advance(GRACE)
    assert kills(signals, pid) == [signal.SIGKILL], "TERM, then KILL after the grace period"
    reactor.end(0, signal=signal.SIGKILL)
    assert status(store, job).reason == "no output for 2 s (no-output-timeout)"


def test_browser_events_count_as_output(make, signals):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, kind="script", no_output_timeout=4)
    channel = sup.launcher.browsers.channels[job.id]
    for n in range(20):
        channel.data_received(b'{"type": "progress", "value": %d}\n' % n)
        tick(reactor, 3)
    assert signals == [], "the logs are silent but the events are not"
    tick(reactor, 1.75)  # the last event was seen at T0 + 58
    assert signals == []
    tick(reactor, 0.25)
    assert signals == [(pid, signal.SIGTERM)]


def test_the_earlier_limit_wins(make, signals, tmp_path):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, timeout=10, no_output_timeout=100)
    for _ in range(5):
        (tmp_path / f"{job.id}.out").open("ab").write(b"x\n")
        tick(reactor, 2)
    assert signals == [(pid, signal.SIGTERM)] and reactor.seconds() == T0 + 10
    tick(reactor, 120, step=1)
    assert terms(signals, pid) == [signal.SIGTERM], "one TERM, whatever limit passes later"
    reactor.end(0, signal=signal.SIGKILL)
    assert status(store, job).reason == "timed out after 10 s (timeout)"


def test_output_checks_do_not_pile_up(make, tmp_path):
    reactor, store, sup = make()
    job, _ = start(reactor, store, sup, no_output_timeout=60)
    for _ in range(300):
        (tmp_path / f"{job.id}.out").open("ab").write(b"x\n")
        reactor.advance(1)
    checks = [c for c in limit_timers(reactor) if c.func.__name__ == "_check"]
    assert len(checks) <= 1, "one pending check per job, however long it runs"


# ------------------------------------------------------------------ ends, and cancels


def test_a_job_that_ends_on_its_own_cancels_its_timers(make, signals):  # noqa: F811
    reactor, store, sup = make(job_timeout=30)
    job, pid = start(reactor, store, sup, no_output_timeout=8)
    assert len(limit_timers(reactor)) == 2
    reactor.advance(3)
    reactor.end(0)
    assert limit_timers(reactor) == []
    reactor.advance(3600)
    assert signals == [(pid, "sweep")], "only the sweep of the group at its end"
    assert status(store, job).status is JobStatus.SUCCESSFUL


def test_a_failing_job_is_failed_with_its_own_reason_not_a_limit(make):
    reactor, store, sup = make()
    job, _ = start(reactor, store, sup, timeout=5, no_output_timeout=4)
    reactor.advance(1)
    reactor.end(0, code=3)
    assert status(store, job).reason == "exit code 3"
    assert limit_timers(reactor) == []


def test_user_cancel_before_the_timeout_stays_canceled(make, signals):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, timeout=5, no_output_timeout=2)
    reactor.advance(1)
    waiting = sup.cancel(job.id)
    assert signals == [(pid, signal.SIGTERM)]
    reactor.advance(6)  # both limits pass while it shuts down: nothing more is sent
    assert signals == [(pid, signal.SIGTERM)]
    reactor.end(0, signal=signal.SIGTERM)
    final = result(waiting)
    assert (final.status, final.reason) == (JobStatus.CANCELED, "canceled by user")
    assert status(store, job).status is JobStatus.CANCELED


def test_user_cancel_after_the_timeout_keeps_the_timeout_reason(make, signals):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, timeout=5)
    reactor.advance(5)
    waiting = sup.cancel(job.id)
    assert terms(signals, pid) == [signal.SIGTERM], "no second TERM"
    reactor.end(0, signal=signal.SIGTERM)
    final = result(waiting)
    assert (final.status, final.reason) == (JobStatus.FAILED, "timed out after 5 s (timeout)")


def test_shutdown_before_the_timeout_is_recorded_as_shutdown(make, signals):  # noqa: F811
    from crawld.supervisor import SHUTDOWN_REASON
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, timeout=5)
    stopped = sup.stop()
    reactor.advance(5)
    reactor.end(0, signal=signal.SIGTERM)
    result(stopped)
    done = status(store, job)
    assert (done.status, done.reason) == (JobStatus.CANCELED, SHUTDOWN_REASON)
    assert terms(signals, pid) == [signal.SIGTERM]


# --------------------------------------------------------------- max-log-size, memory
def test_logs_past_max_log_size_end_the_job_failed(make, signals, tmp_path):  # noqa: F811
    reactor, store, sup = make()
    job, pid = start(reactor, store, sup, max_log_size=1000)
    (tmp_path / f"{job.id}.out").open("ab").write(b"x" * 600)
    (tmp_path / f"{job.id}.err").open("ab").write(b"y" * 300)
    tick(reactor, 2)
    assert signals == [], "900 bytes are within the limit"
    (tmp_path / f"{job.id}.err").open("ab").write(b"y" * 200)
    tick(reactor, 1)
    assert signals == [(pid, signal.SIGTERM)]
    reactor.end(0, signal=signal.SIGTERM)
    done = status(store, job)
    assert (done.status, done.reason) == (
        JobStatus.FAILED, "its logs passed max-log-size (1100 > 1000 bytes)")


def test_the_daemon_default_max_log_size_applies_and_zero_turns_it_off(make, signals,  # noqa: F811
                                                                       tmp_path):
    reactor, store, sup = make(max_log_size=100)
    limited, pid = start(reactor, store, sup)
    free, _ = start(reactor, store, sup, max_log_size=0)
    for job in (limited, free):
        (tmp_path / f"{job.id}.out").open("ab").write(b"z" * 500)
    tick(reactor, 1)
    assert signals == [(pid, signal.SIGTERM)]


def test_memory_limit_ends_the_job_failed_with_its_rss(make, signals, monkeypatch):  # noqa: F811
    from crawld import tree
    reactor, store, sup = make()
    rss = {"now": 100 * 1024 * 1024}
    roots: list[bool] = []
    monkeypatch.setattr(tree, "tree_rss",
                        lambda pid, root=True: roots.append(root) or rss["now"])
    job, pid = start(reactor, store, sup, memory_limit=200 * 1024 * 1024)
    tick(reactor, 3)
    assert signals == []
    assert roots and not any(roots), "a spider's keeper is not counted, only what it runs"
    rss["now"] = 300 * 1024 * 1024
    tick(reactor, 1)
    assert signals == [(pid, signal.SIGTERM)]
    reactor.end(0, signal=signal.SIGTERM)
    done = status(store, job)
    assert done.status is JobStatus.FAILED
    assert done.reason == ("memory-limit exceeded: its processes use 300 MiB (RSS) > "
                           "200 MiB")


def test_tree_rss_counts_the_whole_tree():
    import os
    import subprocess
    import sys
    from crawld import tree
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; b = bytearray(80 * 1024 * 1024); "
                              "b[::4096] = b'x' * len(b[::4096]); print('ok', flush=True); "
                              "time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ok\n"
        assert tree.tree_rss(child.pid) > 80 * 1024 * 1024
        assert tree.tree_rss(os.getpid()) >= tree.tree_rss(child.pid)
        assert tree.tree_rss(os.getpid(), root=False) >= tree.tree_rss(child.pid)
        assert tree.tree_rss(child.pid, root=False) == 0, "no children: nothing counted"
    finally:
        child.kill()
        child.wait()
    assert tree.tree_rss(child.pid) == 0


def test_a_memory_check_that_returns_after_the_job_ended_signals_nothing(make, signals,  # noqa: F811
                                                                         monkeypatch):
    from twisted.internet.defer import Deferred
    pending: list[Deferred] = []
    reactor, store, sup = make(to_thread=lambda f, *a: pending.append(Deferred()) or pending[-1])
    job, pid = start(reactor, store, sup, memory_limit=100 * 1024 * 1024)
    tick(reactor, 1)
    assert len(pending) == 1, "the watch is measuring"
    reactor.end(0)  # the job ends (and is reaped) meanwhile
    pending[0].callback(500 * 1024 * 1024)
    tick(reactor, 30)
    assert terms(signals, pid) == [] and kills(signals, pid) == [], \
        "no signal to a pid that may belong to someone else now"
    assert status(store, job).status is JobStatus.SUCCESSFUL
