"""Start-up loading of schedules, the parse cache, and one-transaction firing.

``Scheduler.load(rows)`` takes ``Database.schedule_rows()`` as it is (no Job objects) and
arms one timer; ``spec.parse`` is cached; ``Database.fire_templates`` does a whole batch
of firings, whatever happens to each, in one transaction.
"""
from __future__ import annotations

import dataclasses
import random
import uuid
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.task import Clock

from crawld import spec
from crawld.errors import BadRequest
from crawld.model import Actor, Job, JobStatus
from crawld.scheduler import DEFAULT_MISFIRE_GRACE, Scheduler
from crawld.spec import SpecError
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import result, scheduler_for

T0 = 1_800_000_000.0


class CountingClock(Clock):
    """A Clock that counts the timers armed and re-armed on it."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = 0
        self.resets = 0

    def callLater(self, delay, f, *args, **kw):
        self.armed += 1
        call = super().callLater(delay, f, *args, **kw)
        reset = call.reset

        def counted(seconds):
            self.resets += 1
            reset(seconds)
        call.reset = counted
        return call


def setup():
    clock = CountingClock()
    clock.advance(T0)
    store = Store(":memory:", InlineExecutor())
    sched, launched = scheduler_for(clock, store, tz=ZoneInfo("UTC"),
                      rng=random.Random(3))
    return clock, store, sched, launched


def stored(store: Store, when: str = "every 1 hours", next_fire: float | None = None,
           **fields) -> Job:
    """A SCHEDULED template in the store only (the scheduler has not seen it)."""
    job = Job(id=str(uuid.uuid4()), status=JobStatus.SCHEDULED, actor=Actor.USER,
              schedule=when, project="p", spider="s", created=T0, updated=T0,
              next_fire=next_fire, **fields)
    return result(store.add_job(job))


def rows(store: Store) -> list[tuple]:
    return result(store.schedule_rows())


def get(store: Store, job: Job) -> Job:
    return result(store.get_job(job.id))


def parents(launched: list[Job]) -> list[str]:
    return [c.parent for c in launched]


# ------------------------------------------------------------------------------- load


def test_schedule_rows_are_what_load_takes():
    _, store, _, _ = setup()
    t = stored(store, "every 5 minutes", T0 + 10, tz="Europe/Paris", jitter=2.0,
               misfire="skip", misfire_grace=30.0)
    stored(store)
    result(store.add_job(Job(id="not-a-template", status=JobStatus.PENDING,
                                     actor=Actor.USER, schedule="now", project="p",
                                     spider="s", created=T0, updated=T0)))
    found = {r[0]: r for r in rows(store)}
    assert len(found) == 2, "only SCHEDULED templates"
    assert found[t.id] == (t.id, "every 5 minutes", T0 + 10, "Europe/Paris", 2.0, "skip", 30.0)


def test_every_template_fires_at_its_next_fire_with_one_timer():
    clock, store, sched, launched = setup()
    late = stored(store, next_fire=T0 - 30)  # missed by less than the grace: fires now
    a = stored(store, next_fire=T0 + 10)
    b = stored(store, next_fire=T0 + 25)
    c = stored(store, "every 2 hours", next_fire=T0 + 25)
    d = stored(store, next_fire=T0 + 40)
    fresh = stored(store, "every 5 minutes", next_fire=None)  # never had a next fire
    assert sched.load(rows(store)) == []
    assert len(sched) == 6
    assert clock.armed == 1 and clock.resets == 0, "one timer for all of them"
    [timer] = clock.getDelayedCalls()
    assert timer.getTime() == T0, "the earliest (overdue) one is due at once"
    assert len(sched.heap) == 6
    clock.advance(0)
    assert parents(launched) == [late.id]
    clock.advance(9.9)
    assert len(launched) == 1
    clock.advance(0.1)
    assert parents(launched)[1:] == [a.id]
    clock.advance(15)
    assert set(parents(launched)[2:]) == {b.id, c.id}
    clock.advance(15)
    assert parents(launched)[4:] == [d.id]
    clock.advance(300 - 40 - 1)
    assert len(launched) == 5
    clock.advance(1)
    assert parents(launched)[5:] == [fresh.id]
    assert len(clock.getDelayedCalls()) == 1, "still one timer armed"
    assert get(store, late).next_fire == T0 + 3600 - 30
    assert get(store, c).next_fire == T0 + 25 + 7200
    assert get(store, fresh).next_fire == T0 + 600


def test_bad_rows_are_returned_and_the_others_load():
    clock, store, sched, launched = setup()
    good = stored(store, next_fire=T0 + 60)
    no_zone = stored(store, next_fire=T0 + 30, tz="Mars/Olympus_Mons")
    sneaky_zone = stored(store, next_fire=T0 + 30, tz="../../etc/localtime")
    bad_spec = stored(store, "every fortnight", next_fire=T0 + 30)
    empty_spec = stored(store, "   ", next_fire=T0 + 30)
    also_good = stored(store, "cron:*/2 * * * *", next_fire=T0 + 120, tz="Europe/Paris")
    failed = dict(sched.load(rows(store)))
    assert set(failed) == {no_zone.id, sneaky_zone.id, bad_spec.id, empty_spec.id}
    assert isinstance(failed[no_zone.id], BadRequest) and "time zone" in str(failed[no_zone.id])
    assert isinstance(failed[sneaky_zone.id], BadRequest)
    assert isinstance(failed[bad_spec.id], SpecError)
    assert isinstance(failed[empty_spec.id], SpecError)
    assert set(sched.entries) == {good.id, also_good.id}
    assert len(sched.heap) == 2, "nothing of a bad row is left in the heap"
    assert clock.armed == 1 and clock.getDelayedCalls()[0].getTime() == T0 + 60
    clock.advance(120)
    assert set(parents(launched)) == {good.id, also_good.id}
    for bad in (no_zone, sneaky_zone, bad_spec, empty_spec):
        assert get(store, bad).next_fire == T0 + 30, "a bad row is left as it was"


def test_nothing_to_load_arms_nothing():
    clock, store, sched, _ = setup()
    assert sched.load([]) == []
    assert clock.armed == 0 and clock.getDelayedCalls() == [] and len(sched) == 0


def test_loaded_policies_are_kept():
    clock, store, sched, launched = setup()
    skipped = stored(store, next_fire=T0 - 3600 + 1, misfire="skip")  # late by far
    graced = stored(store, next_fire=T0 - 500, misfire="skip", misfire_grace=600.0)
    jittered = stored(store, next_fire=T0 + 100, jitter=50.0)
    sched.load(rows(store))
    assert sched.entries[skipped.id].grace == DEFAULT_MISFIRE_GRACE
    assert sched.entries[graced.id].grace == 600.0
    assert sched.entries[jittered.id].tz == ZoneInfo("UTC"), "the daemon's zone"
    clock.advance(0)
    assert parents(launched) == [graced.id], "misfire=skip drops the missed firing only"
    assert get(store, skipped).next_fire == T0 + 1, "... and moves on"
    fire_at = next(t for t, _, i in sched.heap if i == jittered.id)
    assert T0 + 100 <= fire_at <= T0 + 150
    clock.advance(fire_at - clock.seconds())
    assert parents(launched)[-1] == jittered.id


def test_load_twice_or_after_add_fires_each_template_once():
    clock, store, sched, launched = setup()
    t = stored(store, "every 1 minutes", next_fire=T0 + 60, overlap="allow")
    sched.add(get(store, t))
    sched.load(rows(store))
    sched.load(rows(store))
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(60)
    assert parents(launched) == [t.id]
    assert get(store, t).next_fire == T0 + 120, "fired once, not once per load"


def test_a_loaded_template_can_be_removed_and_changed():
    clock, store, sched, launched = setup()
    gone = stored(store, next_fire=T0 + 10)
    moved = stored(store, next_fire=T0 + 20)
    sched.load(rows(store))
    sched.remove(gone.id)
    moved = result(store.transition(moved.id, [JobStatus.SCHEDULED],
                              JobStatus.SCHEDULED, T0, next_fire=T0 + 50))
    sched.add(moved)
    clock.advance(49)
    assert launched == []
    clock.advance(1)
    assert parents(launched) == [moved.id]


def test_a_thousand_schedules_load_with_one_timer_and_one_parse_per_text():
    clock, store, sched, _ = setup()
    texts = ["every 1 hours", "@daily", "cron:*/5 * * * *", "every monday at 10:00"]
    for i in range(1000):
        stored(store, texts[i % 4], next_fire=T0 + 1 + i)
    spec._parse_cached.cache_clear()
    assert sched.load(rows(store)) == []
    info = spec._parse_cached.cache_info()
    assert (info.misses, info.hits) == (4, 996)
    assert clock.armed == 1 and len(sched) == 1000 and len(sched.heap) == 1000
    assert len({id(e.spec) for e in sched.entries.values()}) == 4, "shared Spec objects"


# ------------------------------------------------------------------------ parse cache


def test_parse_returns_the_same_object_for_the_same_text():
    first = spec.parse("every 17 minutes")
    assert spec.parse("every 17 minutes") is first
    assert spec.parse("every 18 minutes") is not first
    assert spec.parse("cron:0 4 * * *") is spec.parse("cron:0 4 * * *")


def test_a_cached_spec_cannot_be_changed_by_one_of_its_users():
    shared = spec.parse("every 3 hours")
    with pytest.raises(dataclasses.FrozenInstanceError):
        shared.low = 1  # type: ignore[misc]
    assert spec.parse("every 3 hours").low == 3


@pytest.mark.parametrize("bad", ["every fortnight", "", "   ", "@sometimes",
                                 "cron:61 * * * *", "every 3 to 2 hours"])
def test_bad_text_raises_every_time_and_is_not_cached(bad):
    before = spec._parse_cached.cache_info().currsize
    for _ in range(3):
        with pytest.raises(SpecError):
            spec.parse(bad)
    assert spec._parse_cached.cache_info().currsize == before


@pytest.mark.parametrize("bad", [None, 5, ["every 1 hours"], b"every 1 hours"])
def test_parse_refuses_what_is_not_text_without_a_type_error(bad):
    with pytest.raises(SpecError):
        spec.parse(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------- fire_templates


def child(store: Store, template: Job, status: JobStatus) -> Job:
    job = Job(id=str(uuid.uuid4()), status=status, actor=Actor.SCHEDULER, schedule="now",
              project="p", spider="s", created=T0, updated=T0, parent=template.id)
    return result(store.add_job(job))


def children(store: Store, template: Job) -> list[Job]:
    jobs = result(store.list_jobs(list(JobStatus)))
    return [j for j in jobs if j.parent == template.id]


@pytest.fixture
def batch():
    """Templates in every situation a firing can meet, and the firings of one tick."""
    clock, store, sched, _ = setup()
    t = dict(
        gone=stored(store, next_fire=T0),
        skip=stored(store, next_fire=T0, overlap="skip"),
        queue=stored(store, next_fire=T0, overlap="queue"),
        fine=stored(store, next_fire=T0, overlap="skip"),
        unwanted=stored(store, next_fire=T0),
        allow=stored(store, next_fire=T0, overlap="allow"),
    )
    result(store.transition(t["gone"].id, [JobStatus.SCHEDULED], JobStatus.CANCELED,
                      T0))
    busy = dict(skip=child(store, t["skip"], JobStatus.PENDING),
                queue=child(store, t["queue"], JobStatus.RUNNING),
                allow=child(store, t["allow"], JobStatus.RUNNING))
    child(store, t["fine"], JobStatus.SUCCESSFUL)  # an ended run does not block
    firings = [(t["gone"].id, T0 + 100, True), (t["skip"].id, T0 + 101, True),
               (t["queue"].id, T0 + 102, True), (t["fine"].id, T0 + 103, True),
               (t["unwanted"].id, T0 + 104, False), (t["allow"].id, T0 + 105, True),
               ("no-such-template", T0 + 106, True)]
    return store, sched, t, busy, firings


def traced(store: Store) -> list[str]:
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    return statements


def test_fire_templates_does_a_mixed_batch_in_one_transaction(batch):
    store, sched, t, busy, firings = batch
    stamp = T0 + 7.5
    reads: list[bool] = []

    def clock() -> float:
        reads.append(store.db.conn.in_transaction)
        return stamp
    made: list[tuple[str, float]] = []

    def make_child(template: Job, now: float) -> Job:
        made.append((template.id, now))
        return sched.child_of(template, now)
    statements = traced(store)
    fired = result(store.fire_templates(firings, make_child, clock))
    store.db.conn.set_trace_callback(None)

    assert reads == [True], "the clock is read once, inside the transaction"
    assert [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK")] == [
        "BEGIN IMMEDIATE", "COMMIT"]
    assert made == [(t["fine"].id, stamp), (t["allow"].id, stamp)]

    assert [f[0] for f in fired] == [f[0] for f in firings], "one answer per firing, in order"
    outcome = {f[0]: f for f in fired}
    assert outcome[t["gone"].id] == (t["gone"].id, None, None, "template is no longer scheduled")
    assert outcome["no-such-template"] == ("no-such-template", None, None,
                                           "template is no longer scheduled")
    assert outcome[t["skip"].id][2:] == (None, f"previous run {busy['skip'].id} is still active")
    assert outcome[t["queue"].id][2:] == (None, f"queued behind run {busy['queue'].id}")
    assert outcome[t["unwanted"].id][2:] == (None, "no child requested")
    for name in ("fine", "allow"):
        _, template, new, why = outcome[t[name].id]
        assert why == "" and template.id == t[name].id
        assert new.status is JobStatus.PENDING and new.actor is Actor.SCHEDULER
        assert new.parent == t[name].id and new.created == new.updated == stamp
        assert get(store, new) == new, "the child is stored as returned"
        assert (get(store, t[name]).last_run, get(store, t[name]).updated) == (stamp, stamp)

    after = {name: get(store, job) for name, job in t.items()}
    assert after["gone"].next_fire == T0, "a template no longer scheduled is left alone"
    assert after["gone"].status is JobStatus.CANCELED
    assert [after[n].next_fire for n in ("skip", "queue", "fine", "unwanted", "allow")] == [
        T0 + 101, T0 + 102, T0 + 103, T0 + 104, T0 + 105], "every scheduled one moves on"
    assert [after[n].queued for n in ("skip", "queue", "unwanted")] == [0, 1, 0]
    assert [after[n].last_run for n in ("skip", "queue", "unwanted")] == [None] * 3
    assert [len(children(store, t[n])) for n in ("skip", "queue", "fine", "unwanted",
                                                  "allow")] == [1, 1, 2, 0, 2]


def test_fire_templates_is_all_or_nothing(batch):
    store, sched, t, busy, firings = batch
    before = {name: get(store, job) for name, job in t.items()}
    count = len(result(store.list_jobs(list(JobStatus))))

    def make_child(template: Job, now: float) -> Job:
        if template.id == t["allow"].id:  # the second child of the batch
            raise RuntimeError("disk full")
        return sched.child_of(template, now)
    with pytest.raises(RuntimeError, match="disk full"):
        result(store.fire_templates(firings, make_child, lambda: T0 + 7.5))
    assert not store.db.conn.in_transaction
    assert {name: get(store, job) for name, job in t.items()} == before
    assert len(result(store.list_jobs(list(JobStatus)))) == count
