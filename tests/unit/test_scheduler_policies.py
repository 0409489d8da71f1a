"""Schedule policies on a task.Clock: time zones, jitter, misfire, overlap, last-run."""
from __future__ import annotations

import random
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock

from crawld import spec
from crawld.model import Actor, Job, JobStatus
from crawld.scheduler import DEFAULT_MISFIRE_GRACE, Scheduler
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import result, scheduler_for

NEW_YORK = ZoneInfo("America/New_York")


def setup(start: float, seed: int = 7):
    clock = Clock()
    clock.advance(start)
    store = Store(":memory:", InlineExecutor())
    sched, launched = scheduler_for(clock, store, tz=ZoneInfo("UTC"), rng=random.Random(seed))
    return clock, store, sched, launched


def template(clock, store, sched, when: str, **policies) -> Job:
    job = Job(id=str(uuid.uuid4()), status=JobStatus.SCHEDULED, actor=Actor.USER,
              schedule=when, project="p", spider="s", created=clock.seconds(),
              updated=clock.seconds(), **policies)
    job = job.evolve(next_fire=sched.first_fire(spec.parse(when), job.tz))
    job = result(store.add_job(job))
    sched.add(job)
    return job


def finish(store, job) -> None:
    result(store.transition(job.id, [JobStatus.PENDING, JobStatus.RUNNING],
                      JobStatus.SUCCESSFUL, 0.0))


def start(store, job) -> None:
    result(store.transition(job.id, [JobStatus.PENDING], JobStatus.RUNNING, 0.0,
                      started=0.0))


def test_a_template_fires_in_its_own_time_zone():
    t0 = datetime(2026, 11, 20, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    clock, store, sched, launched = setup(t0)
    t = template(clock, store, sched, "every day at 10:30", tz="America/New_York")
    due = datetime(2026, 11, 20, 10, 30, tzinfo=NEW_YORK).timestamp()  # 15:30 UTC
    assert result(store.get_job(t.id)).next_fire == due
    clock.advance(due - clock.seconds() - 1)
    assert launched == []
    clock.advance(1)
    assert len(launched) == 1
    stored = result(store.get_job(t.id))
    assert stored.last_run == due
    assert stored.next_fire == datetime(2026, 11, 21, 10, 30, tzinfo=NEW_YORK).timestamp()


def test_jitter_delays_each_firing_within_its_bound_and_keeps_the_series():
    clock, store, sched, launched = setup(1_800_000_000.0)
    t = template(clock, store, sched, "every 10 minutes", jitter=120.0)
    nominal = 1_800_000_000.0 + 600
    fire_times = []
    for n in range(5):
        while len(launched) == n:
            clock.advance(1)
        fire_times.append(clock.seconds())
        finish(store, launched[-1])
        assert nominal + 600 * n <= fire_times[-1] <= nominal + 600 * n + 121
        assert result(store.get_job(t.id)).next_fire == nominal + 600 * (n + 1)
    assert len({round(f - nominal) % 600 for f in fire_times}) > 1, "drawn anew per firing"


def restart_after(clock, store, seconds: float):
    sched_clock = clock
    sched_clock.advance(seconds)
    sched, launched = scheduler_for(sched_clock, store, tz=ZoneInfo("UTC"))
    for job in result(store.list_jobs([JobStatus.SCHEDULED])):
        sched.add(job)
    clock.advance(0)
    return sched, launched


def test_misfire_skip_drops_missed_firings_and_continues_from_now():
    clock, store, sched, launched = setup(1_800_000_000.0)
    t = template(clock, store, sched, "every 1 hours", misfire="skip")
    sched.stop()
    sched2, launched2 = restart_after(clock, store, 3 * 3600 + 10)
    assert launched2 == []
    assert result(store.get_job(t.id)).next_fire > clock.seconds()


def test_misfire_skip_still_runs_a_firing_late_within_the_grace():
    clock, store, sched, launched = setup(1_800_000_000.0)
    template(clock, store, sched, "every 1 hours", misfire="skip", misfire_grace=300.0)
    sched.stop()
    sched2, launched2 = restart_after(clock, store, 3600 + 200)
    assert len(launched2) == 1


def test_misfire_once_is_the_default_and_runs_one_catch_up():
    clock, store, sched, launched = setup(1_800_000_000.0)
    template(clock, store, sched, "every 1 hours")
    sched.stop()
    sched2, launched2 = restart_after(clock, store, 5 * 3600 + DEFAULT_MISFIRE_GRACE)
    assert len(launched2) == 1


def test_overlap_queue_runs_one_waiting_firing_after_the_run_ends():
    clock, store, sched, launched = setup(1_800_000_000.0)
    t = template(clock, store, sched, "every 1 minutes", overlap="queue")
    clock.advance(60)
    first = launched[0]
    start(store, first)
    clock.advance(60)
    clock.advance(60)  # two firings during the run: at most one waits
    assert len(launched) == 1 and result(store.get_job(t.id)).queued == 1
    finish(store, first)
    result(sched.release(t.id))
    assert len(launched) == 2 and launched[1].parent == t.id
    result(sched.release(t.id))
    assert len(launched) == 2, "only one firing was waiting"
    assert result(store.get_job(t.id)).queued == 0


def test_overlap_allow_runs_alongside_and_skip_drops():
    clock, store, sched, launched = setup(1_800_000_000.0)
    allow = template(clock, store, sched, "every 1 minutes", overlap="allow")
    skip = template(clock, store, sched, "every 1 minutes")
    clock.advance(60)
    clock.advance(60)
    parents = [j.parent for j in launched]
    assert parents.count(allow.id) == 2 and parents.count(skip.id) == 1
