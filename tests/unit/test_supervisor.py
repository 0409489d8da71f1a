"""Supervisor with a fake process reactor: slots, FIFO, outcomes, cancel, shutdown, orphans."""
from __future__ import annotations

import signal
import uuid

import pytest

from twisted.internet.defer import Deferred, fail, succeed

from crawld import tree as tree_module
from crawld.events import JobEvents
from crawld.launch.local import LocalLauncher, LocalSettings
from crawld.model import Actor, Job, JobStatus
from crawld.launch.spawner import DirectSpawner
from crawld.store import InlineExecutor, Store
from crawld.supervisor import SHUTDOWN_REASON, Supervisor
from tests.unit.fakes import FakeProcessReactor, result


class GatedExecutor(InlineExecutor):
    """Runs store calls inline; while ``gate`` is set they wait until release(), and
    the method names in ``fail`` fail once."""

    def __init__(self) -> None:
        self.gate = False
        self.held: list = []
        self.fail: set[str] = set()

    def run(self, name, fn):
        if name in self.fail:
            self.fail.discard(name)
            return fail(RuntimeError(f"database is locked ({name})"))
        if not self.gate:
            return super().run(name, fn)
        d = Deferred()
        self.held.append((d, name, fn))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, name, fn in held:
            super().run(name, fn).chainDeferred(d)


def build(reactor, store, tmp_path, project_dir=None, **kwargs):
    """A supervisor over a local launcher that spawns through ``reactor``; returns it
    and the list of jobs it published."""
    events = JobEvents()
    changes: list[Job] = []
    events.subscribe(changes.append)
    settings = LocalSettings("/py", str(tmp_path),
                             project_dir or (lambda name: str(tmp_path / "proj")),
                             lambda project, script: "", base_env={"A": "1"})
    launcher = LocalLauncher(settings, DirectSpawner(reactor),
                             to_thread=lambda f, *a: succeed(f(*a)))
    return Supervisor(reactor, store, launcher, events, str(tmp_path), **kwargs), changes


class Sent(list):
    """Tree signals a test recorded instead of sending; ``left`` says which pids
    ``tree.find_job`` finds for a job id (none unless a test says so)."""

    left: dict[str, list[int]]


@pytest.fixture
def signals(monkeypatch):
    """Record tree signals instead of sending them."""
    sent = Sent()
    sent.left = {}
    tree = tree_module
    monkeypatch.setattr(tree, "signal_tree", lambda pid, sig, known=None, leader=True:
                        sent.append((pid, sig if leader else "sweep")))
    monkeypatch.setattr(tree, "kill_tree", lambda pid, known=None: sent.append((pid, 9)) or 0)
    monkeypatch.setattr(tree, "descendants", lambda pid: [])
    monkeypatch.setattr(tree, "start_time", lambda pid: 123.0)
    monkeypatch.setattr(tree, "find_job", lambda job_id: sent.append((job_id, "find"))
                        or sent.left.get(job_id, []))
    return sent


@pytest.fixture
def world(tmp_path, signals):
    reactor = FakeProcessReactor()
    reactor.advance(1_700_000_000)
    store = Store(":memory:", GatedExecutor())  # inline: calls complete synchronously
    (tmp_path / "proj").mkdir()
    sup, changes = build(reactor, store, tmp_path, slots=2, kill_grace=10)
    return reactor, store, sup, changes


def pending(store: Store, spider: str = "s") -> Job:
    job = Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER,
              schedule="now", project="p", spider=spider, created=1, updated=1)
    return result(store.add_job(job))


def status(store: Store, job: Job) -> Job:
    return result(store.get_job(job.id))


def crawled(spawned: dict) -> str:
    """The spider a spawned ``scrapy crawl <spider>`` command runs."""
    args = spawned["args"]
    return args[args.index("crawl") + 1]


def test_slots_limit_and_fifo_and_refill_without_waiting(world):
    reactor, store, sup, _ = world
    jobs = [pending(store, f"s{i}") for i in range(4)]
    for job in jobs:
        sup.enqueue(job.id)
    assert [crawled(s) for s in reactor.spawned] == ["s0", "s1"]
    assert [status(store, j).status for j in jobs] == [JobStatus.RUNNING] * 2 + [JobStatus.PENDING] * 2
    reactor.end(1)  # no clock advance: the next job starts in the same turn
    assert [crawled(s) for s in reactor.spawned] == ["s0", "s1", "s2"]
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
    assert (pid, signal.SIGKILL) not in signals
    assert signals[-1] == (pid, "sweep"), "the group is swept after the leader ends"
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


def test_the_logs_exist_before_the_job_is_recorded_running(world, tmp_path):
    """A reader who sees the job RUNNING finds its logs, even before any child exists
    to write them (a zygote forks a moment later)."""
    reactor, store, sup, _ = world
    job = pending(store)
    store.executor.gate = True
    sup.enqueue(job.id)
    assert [name for _, name, _ in store.executor.held] == ["transition"]
    assert (tmp_path / f"{job.id}.out").read_bytes() == b""
    assert (tmp_path / f"{job.id}.err").read_bytes() == b""
    assert reactor.spawned == []
    store.executor.gate = False
    store.executor.release()
    assert status(store, job).status is JobStatus.RUNNING and len(reactor.spawned) == 1


def test_a_job_whose_logs_cannot_be_created_fails_to_start(world, tmp_path):
    reactor, store, _, _ = world
    sup, _ = build(reactor, store, tmp_path, slots=2, kill_grace=10)
    sup.log_dir = str(tmp_path / "gone")  # as if the folder had been removed
    job = pending(store)
    sup.enqueue(job.id)
    done = status(store, job)
    assert done.status is JobStatus.FAILED
    assert done.reason.startswith("could not start: cannot create its log files: ")
    assert reactor.spawned == [] and not sup.running


@pytest.mark.parametrize("code, sig, swept", [
    (0, None, False), (3, None, False), (None, signal.SIGKILL, True),
    (None, signal.SIGSEGV, True)])
def test_an_end_by_signal_sweeps_the_job_processes_by_title_and_environment(
        world, signals, code, sig, swept):
    """A keeper that exits with a code has swept its tree; one killed by a signal may
    not have: the daemon looks for what is left before it reports the end."""
    reactor, store, sup, _ = world
    job = pending(store)
    sup.enqueue(job.id)
    signals.left[job.id] = [555, 556]
    reactor.end(0, code=code or 0, signal=sig)
    expected = [(job.id, "find"), (555, 9), (556, 9)] if swept else []
    assert [s for s in signals if s[1] != "sweep"] == expected
    assert status(store, job).status is (JobStatus.SUCCESSFUL if code == 0 and sig is None
                                         else JobStatus.FAILED)


def test_missing_project_fails_the_job_with_a_reason(world, tmp_path):
    reactor, store, _, _ = world
    sup, _ = build(reactor, store, tmp_path, project_dir=lambda name: None, slots=2,
                   kill_grace=10)
    job = pending(store)
    sup.enqueue(job.id)
    done = status(store, job)
    assert done.status is JobStatus.FAILED and "could not start" in done.reason
    assert not sup.running


def test_recover_kills_live_orphans_and_fails_every_leftover(world, monkeypatch, signals):
    reactor, store, sup, _ = world
    alive, dead = pending(store), pending(store)
    for job, pid in ((alive, 4242), (dead, 4343)):
        result(store.transition(job.id, [JobStatus.PENDING], JobStatus.RUNNING, 5.0,
                          started=5.0, pid=pid, pid_started=99.0))
    monkeypatch.setattr(tree_module, "is_same_process", lambda pid, st: pid == 4242)
    running = result(store.list_jobs([JobStatus.RUNNING]))
    signals.left[dead.id] = [4444]  # its keeper is gone, an escapee is not
    result(sup.recover(running))
    assert (4242, 9) in signals and (4343, 9) not in signals and (4444, 9) in signals
    a, d = status(store, alive), status(store, dead)
    assert a.status is d.status is JobStatus.FAILED
    assert "orphaned" in a.reason and "was gone" in d.reason
    assert d.reason.endswith("; 1 process(es) it left killed")
    assert reactor.spawned == [], "recovery never re-runs a job"


def test_zygote_spawner_turns_events_into_pids_and_exits(tmp_path):
    import json
    from crawld.commands import Command
    from crawld import runner
    from crawld.launch.spawner import ZygoteSpawner

    reactor = FakeProcessReactor()
    spawner = ZygoteSpawner(reactor, "/py", str(tmp_path), base_env={})
    zygote = reactor.spawned[0]
    assert zygote["args"] == ["/py", "-c", runner.BOOTSTRAP, runner.DIR, "zygote"]
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


def test_store_error_while_starting_frees_the_slot_and_retries(world):
    from crawld.supervisor import RETRY_DELAY
    reactor, store, sup, _ = world
    gated = store.executor
    gated.fail.add("transition")
    job = pending(store)
    sup.enqueue(job.id)
    assert not sup.running and reactor.spawned == [], "slot freed, nothing spawned"
    reactor.advance(RETRY_DELAY)
    assert len(reactor.spawned) == 1 and status(store, job).status is JobStatus.RUNNING
    reactor.end(0)
    assert status(store, job).status is JobStatus.SUCCESSFUL


def test_cancel_while_starting_spawns_nothing_and_counts_no_run(world):
    reactor, store, sup, _ = world
    gated = store.executor
    job = pending(store)
    gated.gate = True
    sup.enqueue(job.id)
    waiting = sup.cancel(job.id)
    gated.gate = False
    gated.release()
    final = result(waiting)
    assert final.status is JobStatus.CANCELED and final.started is None
    assert reactor.spawned == [] and not sup.running
    assert result(store.counters())["jobs-run"] == 0


def test_stop_while_starting_leaves_the_job_pending_for_the_next_start(world):
    reactor, store, sup, _ = world
    gated = store.executor
    job = pending(store)
    gated.gate = True
    sup.enqueue(job.id)
    stopped = sup.stop()
    gated.gate = False
    gated.release()
    result(stopped)
    assert reactor.spawned == []
    assert status(store, job).status is JobStatus.PENDING and status(store, job).started is None


def test_store_error_at_the_end_still_answers_waiters(world):
    reactor, store, sup, changes = world
    gated = store.executor
    job = pending(store)
    sup.enqueue(job.id)
    waiting = sup.cancel(job.id)
    gated.fail.add("transition")
    reactor.end(0, signal=signal.SIGTERM)
    final = result(waiting)
    assert final.status is JobStatus.CANCELED and final.signal == signal.SIGTERM
    assert not sup.running


def test_signal_tree_reaches_a_leader_that_has_no_group_yet():
    import subprocess
    from crawld import tree
    child = subprocess.Popen(["sleep", "30"])  # in our process group, not its own
    try:
        tree.signal_tree(child.pid, signal.SIGTERM)
        assert child.wait(10) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_recover_finds_processes_of_a_job_with_no_recorded_pid(world, monkeypatch, signals):
    reactor, store, sup, _ = world
    job = pending(store)
    result(store.transition(job.id, [JobStatus.PENDING], JobStatus.RUNNING, 5.0,
                      started=5.0))  # crashed before the pid was recorded
    looked_for = []
    monkeypatch.setattr(tree_module, "find_job",
                        lambda job_id: looked_for.append(job_id) or [5151])
    result(sup.recover(result(store.list_jobs([JobStatus.RUNNING]))))
    assert looked_for == [job.id]
    assert (5151, 9) in signals
    done = status(store, job)
    assert done.status is JobStatus.FAILED and "5151" in done.reason


def test_start_ticks_identify_a_process_and_find_job_finds_it_by_its_environment():
    import os
    import subprocess
    import time
    from crawld import tree
    me = tree.start_time(os.getpid())
    assert me is not None and me == tree.start_time(os.getpid())
    assert tree.is_same_process(os.getpid(), me) and not tree.is_same_process(os.getpid(), me + 1)
    child = subprocess.Popen(["sleep", "30"], env={"CRAWLD_JOB_ID": "find-me-42"})
    try:
        assert tree.start_time(child.pid) >= me
        # /proc/<pid>/environ shows the new environment only once the child has exec'd
        deadline = time.monotonic() + 10
        while (found := tree.find_job("find-me-42")) != [child.pid]:
            assert time.monotonic() < deadline, found
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()
    assert tree.start_time(child.pid) is None and not tree.is_same_process(child.pid, me)


def test_find_job_finds_a_process_by_its_title_alone():
    """As a zygote-forked job: its environment is not the job's, its title is."""
    import subprocess
    import sys
    import time
    from crawld import tree
    code = ("import sys, setproctitle; setproctitle.setproctitle(sys.argv[1]); "
            "print('titled', flush=True); sys.stdin.read()")
    # env not empty: setproctitle finds the process's argv next to its environment
    others = [subprocess.Popen([sys.executable, "-c", code, title], env={"LANG": "C"},
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
              for title in ("crawld: job title-7 demo/sleep", "crawld: job title-77 demo/x",
                            "crawld: job title-7")]
    try:
        for proc in others:
            assert proc.stdout.readline() == b"titled\n"
        deadline = time.monotonic() + 10
        while (found := tree.find_job("title-7")) != sorted([others[0].pid, others[2].pid]):
            assert time.monotonic() < deadline, found
            time.sleep(0.01)
        assert tree.find_job("title") == [], "a whole id, not a prefix of one"
    finally:
        for proc in others:
            proc.kill()
            proc.wait()


def test_priority_orders_the_queue_higher_first_and_fifo_among_equals(world):
    reactor, store, sup, _ = world
    jobs = [pending(store, f"s{i}") for i in range(6)]
    # two fill the slots; the rest wait: s2 and s4 at 0, s3 at 5, s5 at 5, then -1
    for job, priority in zip(jobs, (0, 0, 0, 5, 0, 5)):
        sup.enqueue(job.id, priority)
    assert [crawled(s) for s in reactor.spawned] == ["s0", "s1"]
    for n in range(4):
        reactor.end(n)
    assert [crawled(s) for s in reactor.spawned] == ["s0", "s1", "s3", "s5", "s2", "s4"]


def test_a_jobs_settings_and_arguments_become_s_and_a_before_the_payload(world):
    reactor, store, sup, _ = world
    job = pending(store).evolve(id=str(uuid.uuid4()), args='[["color", "blue"]]',
                                settings='[["TELNETCONSOLE_ENABLED", "1"], ["X", "a=b"]]')
    result(store.add_job(job))
    sup.enqueue(job.id)
    args = reactor.spawned[-1]["args"]
    tail = args[args.index("crawl"):]
    assert tail == ["crawl", "s", "-s", "TELNETCONSOLE_ENABLED=1", "-s", "X=a=b",
                    "-s", "TELNETCONSOLE_ENABLED=0", "-s", "REMOTE_CONTROL_ENABLED=0",
                    "-a", "color=blue"]


COUNTER = r"""
import os, signal, sys, time
out = sys.argv[1]
def note(mark):
    def handler(signum, frame):
        with open(out, "a") as fh:
            fh.write(f"{os.getpid()} {mark}\n")
    return handler
signal.signal(signal.SIGTERM, note("TERM"))
signal.signal(signal.SIGRTMIN, note("MARK"))
if sys.argv[2] == "leader":
    os.setsid()
    import subprocess
    subprocess.Popen([sys.executable, "-c", sys.argv[3], out, "child", sys.argv[3]])
with open(out, "a") as fh:
    fh.write(f"{os.getpid()} READY\n")
while True:
    time.sleep(0.01)
"""


def test_signal_tree_signals_each_process_of_a_group_once(tmp_path, monkeypatch):
    """A leader in its own session and a child in its group, both known: each gets one
    SIGTERM (through the group), not a second by pid; Scrapy takes a second SIGTERM as
    "force an unclean shutdown". A real-time signal sent afterwards marks the end: it
    is delivered after any pending standard signal."""
    import os
    import subprocess
    import sys
    import psutil
    from crawld import tree
    from tests.conftest import wait_for
    out = tmp_path / "signals"
    leader = subprocess.Popen([sys.executable, "-c", COUNTER, str(out), "leader", COUNTER])
    try:
        lines = lambda: out.read_text().splitlines() if out.exists() else []
        wait_for(lambda: sum(line.endswith("READY") for line in lines()) == 2, 30,
                 what="the leader and its child to be ready")
        known = psutil.Process(leader.pid).children(recursive=True)
        assert len(known) == 1
        by_pid = []  # whether two signals coalesce is up to the scheduler: record them
        real_send = psutil.Process.send_signal
        monkeypatch.setattr(psutil.Process, "send_signal",
                            lambda self, sig: by_pid.append(self.pid) or real_send(self, sig))
        tree.signal_tree(leader.pid, signal.SIGTERM, known)
        monkeypatch.undo()
        assert by_pid == [], "the group's processes had it through the group"
        for proc in [psutil.Process(leader.pid), *known]:
            proc.send_signal(signal.SIGRTMIN)
        wait_for(lambda: sum(line.endswith("MARK") for line in lines()) == 2, 30,
                 what="both to see the mark")
        terms = [line.split()[0] for line in lines() if line.endswith("TERM")]
        assert sorted(terms) == sorted([str(leader.pid), str(known[0].pid)])
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
