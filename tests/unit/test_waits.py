"""Waiting for jobs to end (crawld.waits) on a fake clock: an end answers, the time runs
out, a canceled or released wait leaves nothing behind, and the number is bounded."""
from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock

from crawld.errors import TooManyWaits
from crawld.events import JobEvents
from crawld.model import Actor, Job, JobStatus
from crawld.waits import JobWaits

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"


def job(job_id: str, status: JobStatus) -> Job:
    return Job(id=job_id, status=status, actor=Actor.USER, schedule="now", project="p",
               spider="s", created=1.0, updated=1.0)


@pytest.fixture
def env():
    clock, events = Clock(), JobEvents()
    return clock, events, JobWaits(clock, events, limit=2)


def outcome(d) -> list:
    got: list = []
    d.addBoth(got.append)
    return got


def test_an_ended_job_answers_its_waits_and_nothing_is_left(env):
    clock, events, waits = env
    first, second = outcome(waits.wait(A, 30)), outcome(waits.wait(A, 60))
    assert waits.waiting(A) == 2 and waits.count == 2 and len(clock.getDelayedCalls()) == 2
    events.publish(job(A, JobStatus.RUNNING))  # not an end
    events.publish(job(B, JobStatus.SUCCESSFUL))  # another job
    assert first == [] and second == []
    ended = job(A, JobStatus.FAILED)
    events.publish(ended)
    assert first == [ended] and second == [ended]
    assert waits.waiting(A) == 0 and waits.by_job == {} and waits.count == 0
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("status", [JobStatus.SUCCESSFUL, JobStatus.FAILED,
                                    JobStatus.CANCELED])
def test_every_completed_status_is_an_end(env, status):
    _, events, waits = env
    got = outcome(waits.wait(A, 30))
    events.publish(job(A, status))
    assert got[0].status is status


def test_the_time_running_out_answers_none_and_nothing_is_left(env):
    clock, events, waits = env
    got = outcome(waits.wait(A, 30))
    clock.advance(29.9)
    assert got == []
    clock.advance(0.1)
    assert got == [None]
    assert waits.by_job == {} and waits.count == 0 and clock.getDelayedCalls() == []
    events.publish(job(A, JobStatus.SUCCESSFUL))  # too late: nothing happens
    assert got == [None]


def test_a_canceled_wait_leaves_nothing_behind(env):
    clock, events, waits = env
    d = waits.wait(A, 30)
    got = outcome(d)
    d.cancel()  # the client went away
    assert got[0].check(CancelledError)
    assert waits.by_job == {} and waits.count == 0 and clock.getDelayedCalls() == []
    events.publish(job(A, JobStatus.SUCCESSFUL))
    clock.advance(60)
    assert len(got) == 1


def test_release_gives_the_place_back_once_and_cancels_a_pending_wait(env):
    clock, _, waits = env
    place = waits.take()
    assert waits.count == 1
    got = outcome(place.until(A, 30))
    place.release()
    place.release()  # idempotent
    assert got[0].check(CancelledError) and waits.count == 0
    assert clock.getDelayedCalls() == [] and waits.by_job == {}
    unused = waits.take()  # a place taken and never used (schedule-job failed)
    unused.release()
    assert waits.count == 0


def test_release_after_the_answer_changes_nothing(env):
    _, events, waits = env
    place = waits.take()
    got = outcome(place.until(A, 30))
    events.publish(job(A, JobStatus.SUCCESSFUL))
    place.release()
    assert got[0].status is JobStatus.SUCCESSFUL and waits.count == 0


def test_a_place_waits_once(env):
    _, _, waits = env
    place = waits.take()
    place.until(A, 30)
    with pytest.raises(RuntimeError):
        place.until(B, 30)


def test_counted_waits_are_bounded_and_a_freed_place_is_reusable(env):
    clock, _, waits = env
    waits.wait(A, 30)
    second = waits.wait(B, 30)
    with pytest.raises(TooManyWaits) as info:
        waits.take()
    assert info.value.code == 429 and "max-waits" in info.value.msg
    assert waits.count == 2
    uncounted = outcome(waits.wait(A, 5, counted=False))  # browse.json's block=1
    assert waits.count == 2 and waits.waiting(A) == 2
    assert outcome(second) == []
    second.cancel()
    waits.wait(B, 30)  # the place is free again
    clock.advance(5)
    assert uncounted == [None] and waits.count == 2


def test_waits_of_other_jobs_are_untouched_by_an_end(env):
    _, events, waits = env
    a, b = outcome(waits.wait(A, 30)), outcome(waits.wait(B, 30))
    events.publish(job(A, JobStatus.SUCCESSFUL))
    assert a and not b and waits.waiting(B) == 1
