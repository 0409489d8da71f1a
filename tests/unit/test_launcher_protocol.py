"""The supervisor against the Launcher protocol alone, with a launcher that reports the
way a remote one may: later than the start, more than once, and for attempts that are
over. Each job is still recorded once, with the first end reported."""
from __future__ import annotations

import signal
import uuid
from typing import Callable, Optional

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from crawld.events import JobEvents
from crawld.launch.protocol import Attempt, Reporter, Started
from crawld.model import Actor, Job, JobStatus
from crawld.process import Exit
from crawld.store import InlineExecutor, Store
from crawld.supervisor import Supervisor
from tests.unit.fakes import result


class FakeLauncher:
    """Accepts attempts at once and reports only when the test says so."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Attempt, Reporter]] = []
        self.signals: list[tuple[str, int]] = []
        self.orphans: list[str] = []

    def start(self, attempt: Attempt, reporter: Reporter) -> "Deferred[Started]":
        self.attempts.append((attempt, reporter))
        return succeed(Started(None, None, "elsewhere"))

    def signal(self, attempt: Attempt, sig: int) -> None:
        self.signals.append((attempt.key, sig))

    def rss(self, attempt: Attempt) -> "Deferred[int]":
        return succeed(0)

    def activity(self, attempt: Attempt) -> int:
        return 0

    def in_use(self) -> set[str]:
        return set()

    def settle_orphan(self, job: Job) -> "Deferred[str]":
        self.orphans.append(job.id)
        return succeed("the worker that ran it is gone")

    def stop(self) -> "Deferred[None]":
        return succeed(None)

    def capacity(self) -> Optional[int]:
        return None

    def watch_capacity(self, wake: Callable[[], None]) -> None:
        pass

    def adopt(self, job: Job, reporter: Reporter) -> "Deferred[Optional[Attempt]]":
        return succeed(None)

    def detach(self, attempt: Attempt) -> bool:
        return False


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    clock.advance(1_800_000_000)
    store = Store(":memory:", InlineExecutor())
    events = JobEvents()
    published: list[Job] = []
    events.subscribe(published.append)
    launcher = FakeLauncher()
    sup = Supervisor(clock, store, launcher, events, str(tmp_path), slots=1, kill_grace=5)
    return clock, store, launcher, sup, published


def pending(store: Store) -> Job:
    job = Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER,
              schedule="now", project="p", spider="s", created=1, updated=1)
    return result(store.add_job(job))


def get(store: Store, job: Job) -> Optional[Job]:
    return result(store.get_job(job.id))


def test_an_end_reported_twice_is_recorded_once_with_the_first(world):
    clock, store, launcher, sup, published = world
    job = pending(store)
    sup.enqueue(job.id)
    attempt, reporter = launcher.attempts[0]
    reporter.started(attempt, Started(4242, 77.0, "worker-1"))
    reporter.started(attempt, Started(9999, 88.0, "worker-2"))  # repeated: ignored
    assert get(store, job).pid == 4242 and sup.pid(job.id) == 4242
    reporter.ended(attempt, Exit(0, None))
    reporter.ended(attempt, Exit(3, None))  # repeated, different: ignored
    done = get(store, job)
    assert done.status is JobStatus.SUCCESSFUL and done.exit_code == 0
    assert [j.status for j in published] == [JobStatus.RUNNING, JobStatus.SUCCESSFUL]
    assert result(store.counters())["jobs-successful"] == 1


def test_a_late_end_of_an_attempt_that_is_over_changes_nothing(world):
    clock, store, launcher, sup, _ = world
    first, second = pending(store), pending(store)
    sup.enqueue(first.id)
    sup.enqueue(second.id)
    attempt, reporter = launcher.attempts[0]
    reporter.started(attempt, Started(1, 1.0, "worker-1"))
    reporter.ended(attempt, Exit(0, None))
    assert len(launcher.attempts) == 2, "the freed slot started the next job"
    late = Attempt(attempt.job, attempt.number)  # the same attempt, reported again later
    clock.advance(3600)
    reporter.ended(late, Exit(None, signal.SIGKILL))
    assert get(store, first).status is JobStatus.SUCCESSFUL
    assert get(store, second).status is JobStatus.RUNNING
    other, _ = launcher.attempts[1]
    wrong = Attempt(other.job, other.number + 100)  # not the attempt running
    reporter.ended(wrong, Exit(1, None))
    assert get(store, second).status is JobStatus.RUNNING and sup.is_running(second.id)


def test_cancel_before_the_start_is_reported_signals_once_it_is(world):
    clock, store, launcher, sup, _ = world
    job = pending(store)
    sup.enqueue(job.id)
    attempt, reporter = launcher.attempts[0]
    waiting = sup.cancel(job.id)
    assert launcher.signals == [], "nothing to signal before the attempt runs"
    reporter.started(attempt, Started(7, 7.0, "worker-1"))
    assert launcher.signals == [(attempt.key, signal.SIGTERM)]
    clock.advance(5)
    assert launcher.signals[-1] == (attempt.key, signal.SIGKILL)
    reporter.ended(attempt, Exit(None, signal.SIGKILL))
    assert result(waiting).status is JobStatus.CANCELED


def test_output_reported_twice_lands_once_at_its_offset(world, tmp_path):
    clock, store, launcher, sup, _ = world
    job = pending(store)
    sup.enqueue(job.id)
    attempt, reporter = launcher.attempts[0]
    reporter.started(attempt, Started(7, 7.0, "worker-1"))
    reporter.output(attempt, "out", 0, b"hello ")
    reporter.output(attempt, "out", 6, b"world\n")
    reporter.output(attempt, "out", 0, b"hello ")  # a retry of the first chunk
    assert (tmp_path / f"{job.id}.out").read_bytes() == b"hello world\n"


def test_orphans_are_settled_by_the_launcher_and_never_rerun(world):
    clock, store, launcher, sup, published = world
    job = pending(store)
    result(store.transition(job.id, [JobStatus.PENDING], JobStatus.RUNNING, 5.0, started=5.0))
    result(sup.recover(result(store.list_jobs([JobStatus.RUNNING]))))
    assert launcher.orphans == [job.id] and launcher.attempts == []
    done = get(store, job)
    assert done.status is JobStatus.FAILED and done.reason == "the worker that ran it is gone"
    assert published[-1].id == job.id
