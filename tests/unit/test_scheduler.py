"""Scheduler on a task.Clock with an inline store: firing, skipping, persistence, idleness."""
from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock

from crawld import spec
from crawld.model import Actor, Job, JobStatus
from crawld.scheduler import Scheduler
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import result, scheduler_for

T0 = 1_800_000_000.0


def make(store: Store | None = None, clock: Clock | None = None):
    clock = clock or Clock()
    if clock.seconds() == 0:
        clock.advance(T0)
    store = store or Store(":memory:", InlineExecutor())
    sched, launched = scheduler_for(clock, store, tz=ZoneInfo("UTC"))
    return clock, store, sched, launched


def template(clock: Clock, store: Store, sched: Scheduler, when: str) -> Job:
    job = Job(id=str(uuid.uuid4()), status=JobStatus.SCHEDULED, actor=Actor.USER,
              schedule=when, project="p", spider="s", created=clock.seconds(),
              updated=clock.seconds(), payload='{"x": 1}', description="d")
    job = job.evolve(next_fire=sched.first_fire(spec.parse(when)))
    job = result(store.add_job(job))
    sched.add(job)
    return job


def finish(store: Store, job: Job) -> None:
    result(store.transition(job.id, [JobStatus.PENDING], JobStatus.SUCCESSFUL, 0.0))


def test_fires_a_pending_child_at_the_due_time(make_=make):
    clock, store, sched, launched = make()
    t = template(clock, store, sched, "every 10 minutes")
    clock.advance(599)
    assert launched == []
    clock.advance(1)
    [child] = launched
    assert child.status is JobStatus.PENDING and child.actor is Actor.SCHEDULER
    assert child.schedule == "now" and child.parent == t.id
    assert (child.project, child.spider, child.payload, child.description) == ("p", "s",
                                                                               '{"x": 1}', "d")
    assert result(store.get_job(t.id)).next_fire == T0 + 1200


def test_no_second_firing_while_the_previous_run_is_active():
    clock, store, sched, launched = make()
    template(clock, store, sched, "every 1 minutes")
    clock.advance(60)
    assert len(launched) == 1
    clock.advance(60)
    assert len(launched) == 1, "skipped: the previous child is still pending"
    finish(store, launched[0])
    clock.advance(60)
    assert len(launched) == 2


def test_canceled_template_fires_no_more():
    clock, store, sched, launched = make()
    t = template(clock, store, sched, "every 1 minutes")
    result(store.transition(t.id, [JobStatus.SCHEDULED], JobStatus.CANCELED, 1.0))
    sched.remove(t.id)
    clock.advance(600)
    assert launched == [] and len(sched) == 0


def test_one_timer_for_many_schedules_and_no_idle_work():
    clock, store, sched, launched = make()
    for minutes in range(1, 201):
        template(clock, store, sched, f"every {minutes} minutes")
    assert len(clock.getDelayedCalls()) == 1, "one armed timer, not one per schedule"
    assert clock.getDelayedCalls()[0].getTime() == T0 + 60
    clock.advance(60)
    assert len(launched) == 1
    assert len(clock.getDelayedCalls()) == 1


def test_restart_keeps_next_fire_and_fires_a_missed_run_once():
    clock, store, sched, launched = make()
    t = template(clock, store, sched, "every 1 hours")
    sched.stop()
    # a new scheduler over the same store, three hours later: the firing was missed
    clock.advance(3 * 3600 + 5)
    clock2, _, sched2, launched2 = make(store, clock)
    for job in result(store.list_jobs([JobStatus.SCHEDULED])):
        sched2.add(job)
    clock2.advance(0)
    assert len(launched2) == 1 and launched2[0].parent == t.id
    nxt = result(store.get_job(t.id)).next_fire
    assert nxt > clock2.seconds(), "the series continues from now, no backlog"
    finish(store, launched2[0])
    clock2.advance(nxt - clock2.seconds() - 1)
    assert len(launched2) == 1
    clock2.advance(1)
    assert len(launched2) == 2


def test_restart_before_due_fires_at_the_persisted_time():
    clock, store, sched, launched = make()
    t = template(clock, store, sched, "every 10 minutes")
    sched.stop()
    clock.advance(300)
    _, _, sched2, launched2 = make(store, clock)
    sched2.add(result(store.get_job(t.id)))
    clock.advance(299)
    assert launched2 == []
    clock.advance(1)
    assert len(launched2) == 1


class CountingExecutor(InlineExecutor):
    """Runs store calls inline and counts them by method name."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run(self, name, fn):
        self.calls.append(name)
        return super().run(name, fn)


def CountingStore() -> Store:
    store = Store(":memory:", CountingExecutor())
    store.calls = store.executor.calls
    return store


def test_firings_due_in_one_tick_share_one_transaction_per_batch():
    from crawld.scheduler import FIRE_BATCH
    clock, store, sched, launched = make(store=CountingStore())
    count = FIRE_BATCH + 7
    templates = [template(clock, store, sched, "every 10 minutes") for _ in range(count)]
    store.calls.clear()
    clock.advance(600)
    assert store.calls == ["fire_templates", "fire_templates"]
    assert sorted(c.parent for c in launched) == sorted(t.id for t in templates)
    assert {c.created for c in launched} == {T0 + 600}
    for t in templates:
        assert result(store.get_job(t.id)).next_fire == T0 + 1200


def test_a_template_canceled_behind_the_schedulers_back_is_forgotten_at_its_firing():
    clock, store, sched, launched = make()
    t = template(clock, store, sched, "every 10 minutes")
    result(store.transition(t.id, [JobStatus.SCHEDULED], JobStatus.CANCELED, T0))
    clock.advance(600)
    assert launched == [] and len(sched) == 0


def test_a_schedule_without_a_next_time_stops_alone_the_others_keep_firing():
    clock, store, sched, launched = make()
    steady = template(clock, store, sched, "every 1 minutes")
    broken = template(clock, store, sched, "every 2 minutes")

    def no_next(*args, **kwargs):
        raise OverflowError("date value out of range")
    object.__setattr__(sched.entries[broken.id], "spec",
                       type("Broken", (), {"following": staticmethod(no_next)})())
    for minute in range(1, 6):
        clock.advance(60)
        for job in [j for j in launched if j.status is JobStatus.PENDING]:
            finish(store, job)
    assert [j.parent for j in launched].count(steady.id) == 5
    assert broken.id not in sched.entries and sched.timer is not None


class FlakyExecutor(InlineExecutor):
    """Runs store calls inline; fire_templates fails the first ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def run(self, name, fn):
        if name == "fire_templates" and self.failures:
            self.failures -= 1
            from twisted.internet.defer import fail
            import sqlite3
            return fail(sqlite3.OperationalError("database or disk is full"))
        return super().run(name, fn)


def FlakyStore(failures: int) -> Store:
    return Store(":memory:", FlakyExecutor(failures))


def test_a_batch_the_store_refuses_is_fired_later_not_lost():
    from crawld.scheduler import FIRE_RETRY
    clock, store, sched, launched = make(store=FlakyStore(failures=2))
    templates = [template(clock, store, sched, "every 1 hours") for _ in range(3)]
    clock.advance(3600)
    assert launched == []
    clock.advance(FIRE_RETRY)
    assert launched == []
    clock.advance(FIRE_RETRY)
    assert sorted(j.parent for j in launched) == sorted(t.id for t in templates)
    for t in templates:
        assert result(store.get_job(t.id)).next_fire == T0 + 7200
