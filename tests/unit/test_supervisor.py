"""Supervisor with a fake process reactor: slots, FIFO, outcomes, cancel, shutdown, orphans."""
from __future__ import annotations

import signal
import uuid

import pytest

from crawld import supervisor as supervisor_module
from crawld.model import Actor, Job, JobStatus
from crawld.store import Store
from crawld.supervisor import SHUTDOWN_REASON, Supervisor
from tests.unit.fakes import FakeProcessReactor, result


@pytest.fixture
def signals(monkeypatch):
    """Record tree signals instead of sending them."""
    sent: list[tuple[int, int]] = []
    tree = supervisor_module.tree
    monkeypatch.setattr(tree, "signal_tree", lambda pid, sig, known=None: sent.append((pid, sig)))
    monkeypatch.setattr(tree, "kill_tree", lambda pid, known=None: sent.append((pid, 9)) or 0)
    monkeypatch.setattr(tree, "descendants", lambda pid: [])
    monkeypatch.setattr(tree, "start_time", lambda pid: 123.0)
    return sent


@pytest.fixture
def world(tmp_path, signals):
    reactor = FakeProcessReactor()
    reactor.advance(1_700_000_000)
    store = Store(":memory:")  # inline: calls complete synchronously
    changes: list[Job] = []
    (tmp_path / "proj").mkdir()
    sup = Supervisor(reactor, store, str(tmp_path), slots=2, kill_grace=10, python="/py",
                     project_dir=lambda name: str(tmp_path / "proj"), base_env={"A": "1"},
                     on_change=changes.append)
    return reactor, store, sup, changes


def pending(store: Store, spider: str = "s") -> Job:
    job = Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER,
              schedule="now", project="p", spider=spider, created=1, updated=1)
    return result(store.call("add_job", job))


def status(store: Store, job: Job) -> Job:
    return result(store.call("get_job", job.id))


def test_slots_limit_and_fifo_and_refill_without_waiting(world):
    reactor, store, sup, _ = world
    jobs = [pending(store, f"s{i}") for i in range(4)]
    for job in jobs:
        sup.enqueue(job.id)
    assert [s["args"][4] for s in reactor.spawned] == ["s0", "s1"]
    assert [status(store, j).status for j in jobs] == [JobStatus.RUNNING] * 2 + [JobStatus.PENDING] * 2
    reactor.end(1)  # no clock advance: the next job starts in the same turn
    assert [s["args"][4] for s in reactor.spawned] == ["s0", "s1", "s2"]
    assert status(store, jobs[1]).status is JobStatus.SUCCESSFUL


def test_child_gets_log_fds_env_and_project_dir(world, tmp_path):
    reactor, store, sup, _ = world
    job = pending(store)
    sup.enqueue(job.id)
    spawned = reactor.spawned[0]
    assert set(spawned["childFDs"]) == {0, 1, 2}
    assert all(isinstance(fd, int) for fd in spawned["childFDs"].values())
    assert (tmp_path / f"{job.id}.out").exists() and (tmp_path / f"{job.id}.err").exists()
    assert spawned["env"]["CRAWLD_JOB_ID"] == job.id and spawned["env"]["A"] == "1"
    assert spawned["path"] == str(tmp_path / "proj")
    running = status(store, job)
    assert running.pid == spawned["pid"] and running.pid_started == 123.0


@pytest.mark.parametrize("code,sig,expected,reason", [
    (0, None, JobStatus.SUCCESSFUL, None),
    (2, None, JobStatus.FAILED, "exit code 2"),
    (None, signal.SIGSEGV, JobStatus.FAILED, "killed by signal SIGSEGV"),
])
def test_exit_status_is_recorded(world, code, sig, expected, reason):
    reactor, store, sup, changes = world
    job = pending(store)
    sup.enqueue(job.id)
    reactor.advance(90000)  # a run longer than a day
    reactor.end(0, code=code or 0, signal=sig)
    done = status(store, job)
    assert done.status is expected and done.reason == reason
    assert done.exit_code == code and done.signal == sig
    assert done.duration == 90000
    assert changes[-1].status is expected


def test_cancel_sends_term_then_kill_after_grace(world, signals):
    reactor, store, sup, _ = world
    job = pending(store)
    sup.enqueue(job.id)
    pid = reactor.spawned[0]["pid"]
    waiting = sup.cancel(job.id)
    assert signals == [(pid, signal.SIGTERM)]
    reactor.advance(9.9)
    assert (pid, signal.SIGKILL) not in signals
    reactor.advance(0.1)
    assert (pid, signal.SIGKILL) in signals
    reactor.end(0, signal=signal.SIGKILL)
    final = result(waiting)
    assert final.status is JobStatus.CANCELED and final.reason == "canceled by user"


def test_cancel_of_a_job_that_ends_in_grace_sends_no_kill(world, signals):
    reactor, store, sup, _ = world
    job = pending(store)
    sup.enqueue(job.id)
    pid = reactor.spawned[0]["pid"]
    waiting = sup.cancel(job.id)
    reactor.end(0, code=0)
    reactor.advance(60)
    assert (pid, signal.SIGKILL) not in signals[:-1], "only the post-exit group sweep"
    assert result(waiting).status is JobStatus.CANCELED
    assert sup.cancel(job.id) is None


def test_stop_ends_everything_and_starts_nothing(world, signals):
    reactor, store, sup, _ = world
    jobs = [pending(store) for _ in range(3)]
    for job in jobs:
        sup.enqueue(job.id)
    stopped = sup.stop()
    assert sorted(s for _, s in signals) == [signal.SIGTERM] * 2
    reactor.end(0)
    reactor.end(1)
    result(stopped)
    assert len(reactor.spawned) == 2, "the queued job is not started during shutdown"
    assert [status(store, j).reason for j in jobs[:2]] == [SHUTDOWN_REASON] * 2
    assert status(store, jobs[2]).status is JobStatus.PENDING


def test_missing_project_fails_the_job_with_a_reason(world):
    reactor, store, sup, _ = world
    sup.project_dir = lambda name: None
    job = pending(store)
    sup.enqueue(job.id)
    done = status(store, job)
    assert done.status is JobStatus.FAILED and "could not start" in done.reason
    assert not sup.running


def test_recover_kills_live_orphans_and_fails_every_leftover(world, monkeypatch, signals):
    reactor, store, sup, _ = world
    alive, dead = pending(store), pending(store)
    for job, pid in ((alive, 4242), (dead, 4343)):
        result(store.call("transition", job.id, [JobStatus.PENDING], JobStatus.RUNNING, 5.0,
                          started=5.0, pid=pid, pid_started=99.0))
    monkeypatch.setattr(supervisor_module.tree, "is_same_process", lambda pid, st: pid == 4242)
    running = result(store.call("list_jobs", [JobStatus.RUNNING]))
    result(sup.recover(running))
    assert (4242, 9) in signals and (4343, 9) not in signals
    a, d = status(store, alive), status(store, dead)
    assert a.status is d.status is JobStatus.FAILED
    assert "orphaned" in a.reason and "was gone" in d.reason
    assert reactor.spawned == [], "recovery never re-runs a job"


def test_zygote_spawner_turns_events_into_pids_and_exits(tmp_path):
    import json
    from crawld.commands import Command
    from crawld.spawner import ZygoteSpawner

    reactor = FakeProcessReactor()
    spawner = ZygoteSpawner(reactor, "/py", str(tmp_path), base_env={})
    zygote = reactor.spawned[0]
    assert zygote["args"][:2] == ["/py", "-c"] and "crawld.zygote" in zygote["args"][2]
    written: list[bytes] = []
    zygote["proto"].transport.write = written.append
    cmd = Command(("/py", "-c", "x", "crawl", "s"), {"E": "1"}, "/proj", ("crawl", "s"))
    d = spawner.spawn(cmd, str(tmp_path), "job-1")
    request = json.loads(written[0])
    assert request["args"] == ["crawl", "s"] and request["env"] == {"E": "1"}
    assert request["out"].endswith("job-1.out") and request["cwd"] == "/proj"
    out = zygote["proto"].outReceived
    out(b'{"ev": "ready", "preloaded": 3, "pid": 9}\n{"ev": "started", "token": ')
    out(b'%d, "pid": 77}\n' % request["token"])
    spawned = result(d)
    assert spawned.pid == 77
    out(b'{"ev": "exited", "pid": 77, "status": %d}\n' % (2 << 8))
    ended = result(spawned.ended)
    assert (ended.code, ended.signal) == (2, None)
    d2 = spawner.spawn(cmd, str(tmp_path), "job-2")
    out(b'{"ev": "started", "token": 2, "pid": 78}\n{"ev": "exited", "pid": 78, "status": 9}\n')
    assert result(result(d2).ended).signal == 9
