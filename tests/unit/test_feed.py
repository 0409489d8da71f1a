"""feed.JobFeed: kinds inferred from the event list, stats coalesced, ids and the backlog."""
from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from crawld.events import JobEvents
from crawld.feed import JobFeed, base36
from crawld.model import Actor, Job, JobStatus

JOB_ID = "6a1e3b7c-0000-4000-8000-{:012d}"


def job(n: int = 1, status: JobStatus = JobStatus.PENDING, created: float = 100.0,
        updated: float = 100.0, **fields: Any) -> Job:
    return Job(id=JOB_ID.format(n), status=status, actor=Actor.USER,
               schedule=fields.pop("schedule", "now"),
               project=fields.pop("project", "demo"), spider="ok", created=created,
               updated=updated, **fields)


def feed_of(backlog: int = 100, clock: Any = None) -> tuple[JobFeed, JobEvents, Clock, list]:
    clock = clock or Clock()
    events = JobEvents()
    feed = JobFeed(clock, events, backlog=backlog, boot="b")
    seen: list = []
    feed.listen(seen.append)
    return feed, events, clock, seen


def life(n: int = 1) -> list[Job]:
    """A job created, started, with stats, ended."""
    return [job(n), job(n, JobStatus.RUNNING, updated=101, started=101),
            job(n, JobStatus.RUNNING, updated=101, started=101, stats='{"a": 1}'),
            job(n, JobStatus.SUCCESSFUL, updated=105, started=101, finished=105)]


def test_each_publication_becomes_an_event_of_its_kind():
    feed, events, clock, seen = feed_of()
    template = job(2, JobStatus.SCHEDULED, schedule="every day at 03:00")
    events.publish(template)
    for j in life():
        events.publish(j)
    events.publish(job(2, JobStatus.PAUSED, updated=200))  # a change, not a creation
    events.publish(job(3, JobStatus.CANCELED, updated=201, finished=201))
    assert [(e.kind, e.job.id[-1]) for e in seen] == [
        ("created", "2"), ("created", "1"), ("started", "1"), ("stats", "1"),
        ("ended", "1"), ("changed", "2"), ("ended", "3")]
    assert [e.seq for e in seen] == list(range(1, 8))
    assert [e.id for e in seen] == [f"b-{n}" for n in range(1, 8)]
    assert seen[3].job.stats == '{"a": 1}'  # the Job itself, as published


def test_a_running_job_after_its_end_starts_again():
    """The feed remembers only jobs that run: an ended job is forgotten."""
    feed, events, clock, seen = feed_of()
    for j in life():
        events.publish(j)
    events.publish(job(1, JobStatus.RUNNING, started=300))
    assert seen[-1].kind == "started" and feed._running == {JOB_ID.format(1)}
    events.publish(job(1, JobStatus.FAILED, finished=301, started=300))
    assert feed._running == set() and feed._stats_at == {}


def test_stats_of_a_job_are_coalesced_to_one_a_second_the_latest_wins():
    feed, events, clock, seen = feed_of()
    clock.advance(1000)
    events.publish(job(1, JobStatus.RUNNING))
    events.publish(job(1, JobStatus.RUNNING, stats='{"n": 1}'))  # the first goes at once
    clock.advance(0.3)
    events.publish(job(1, JobStatus.RUNNING, stats='{"n": 2}'))  # waits for its turn
    events.publish(job(1, JobStatus.RUNNING, stats='{"n": 3}'))  # and is replaced
    events.publish(job(2, JobStatus.RUNNING))  # another job is not held up
    assert [(e.kind, e.job.stats) for e in seen] == [
        ("started", None), ("stats", '{"n": 1}'), ("started", None)]
    clock.advance(0.69)
    assert len(seen) == 3
    clock.advance(0.01)  # one second after the last stats event of job 1
    assert [(e.kind, e.job.stats) for e in seen[3:]] == [("stats", '{"n": 3}')]
    clock.advance(5)
    events.publish(job(1, JobStatus.RUNNING, stats='{"n": 4}'))  # a second passed: at once
    assert seen[-1].job.stats == '{"n": 4}' and len(seen) == 5


def test_an_end_drops_the_stats_waiting_for_their_turn():
    feed, events, clock, seen = feed_of()
    events.publish(job(1, JobStatus.RUNNING))
    events.publish(job(1, JobStatus.RUNNING, stats='{"n": 1}'))
    events.publish(job(1, JobStatus.RUNNING, stats='{"n": 2}'))
    events.publish(job(1, JobStatus.SUCCESSFUL, finished=101))
    clock.advance(10)
    assert [e.kind for e in seen] == ["started", "stats", "ended"]
    assert not clock.getDelayedCalls()


def test_since_replays_what_followed_an_id():
    feed, events, clock, seen = feed_of()
    for j in life():
        events.publish(j)
    assert [e.seq for e in feed.since("b-1")] == [2, 3, 4]
    assert feed.since("b-4") == [] and feed.since(" b-0 ") == seen
    assert feed.after(2) == seen[2:]
    assert feed.last_id == "b-4" and feed.event_id(7) == "b-7"


def test_an_id_of_another_run_or_older_than_the_backlog_cannot_be_resumed():
    feed, events, clock, seen = feed_of(backlog=3)
    for n in range(1, 6):
        events.publish(job(n))
    assert [e.seq for e in feed.backlog] == [3, 4, 5]
    assert [e.seq for e in feed.since("b-2")] == [3, 4, 5]  # nothing lost yet
    assert feed.since("b-1") is None      # event 2 is gone
    assert feed.since("other-3") is None  # another run of the daemon
    assert feed.since("b-6") is None      # not given by this run
    assert feed.keeps(2) and not feed.keeps(1) and not feed.keeps(6)
    for bad in ("", "3", "b-", "b-x", "B-3", "b-3-4", "b" * 17 + "-1", "b-" + "9" * 20):
        with pytest.raises(ValueError):
            feed.since(bad)


def test_the_boot_id_is_the_start_time_in_base36():
    clock = Clock()
    clock.advance(1_767_000_000.123)
    feed = JobFeed(clock, JobEvents())
    assert feed.boot == base36(1_767_000_000_123) and feed.last_id == feed.boot + "-0"
    assert base36(0) == "0" and base36(35) == "z" and base36(36) == "10"
    later = Clock()
    later.advance(1_767_000_001)
    assert JobFeed(later, JobEvents()).boot > feed.boot  # same length: later sorts after


def test_a_failing_listener_does_not_stop_the_others():
    feed, events, clock, seen = feed_of()
    feed.listeners.insert(0, lambda e: 1 / 0)
    events.publish(job())
    assert len(seen) == 1


def test_stop_tells_listeners_once_and_takes_no_more_events():
    feed, events, clock, seen = feed_of()
    events.publish(job(1, JobStatus.RUNNING))
    events.publish(job(1, JobStatus.RUNNING, stats="{}"))
    events.publish(job(1, JobStatus.RUNNING, stats='{"n": 1}'))  # waiting its turn
    feed.stop()
    feed.stop()
    events.publish(job(2))
    clock.advance(5)
    assert [e and e.kind for e in seen] == ["started", "stats", None]
    assert not clock.getDelayedCalls() and not events._observers


def test_removing_a_listener():
    feed, events, clock, seen = feed_of()
    other: list = []
    remove = feed.listen(other.append)
    remove()
    remove()
    events.publish(job())
    assert len(seen) == 1 and other == []
    with pytest.raises(ValueError):
        JobFeed(clock, events, backlog=0)
