"""Jobs service on a Clock: retention by age and cap, debounced after jobs finish."""
from __future__ import annotations

import uuid

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from crawld.events import JobEvents
from crawld.scheduler import Scheduler
from crawld.jobs import PURGE_DELAY, PURGE_PERIOD, Jobs, normalize_payload
from crawld.model import Actor, Job, JobStatus
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import result

DAY = 86400.0


def done_job(store: Store, finished: float) -> Job:
    job = Job(id=str(uuid.uuid4()), status=JobStatus.SUCCESSFUL, actor=Actor.USER,
              schedule="now", project="p", spider="s", created=finished, updated=finished,
              started=finished, finished=finished)
    return result(store.add_job(job))


def make(tmp_path, cap: int = 1000):
    clock = Clock()
    clock.advance(1_800_000_000)
    store = Store(":memory:", InlineExecutor())
    events = JobEvents()
    scheduler = Scheduler(clock, store, lambda job_id, priority=0.0: None, events)
    jobs = Jobs(clock, store, projects=None, scheduler=scheduler, supervisor=None,
                events=events, log_dir=str(tmp_path), completed_cap=cap, max_age_days=30,
                to_thread=lambda f, *a: succeed(f(*a)))
    return clock, store, jobs


def exists(store: Store, job: Job) -> bool:
    return result(store.get_job(job.id)) is not None


def test_jobs_older_than_max_age_are_purged_with_their_logs(tmp_path):
    clock, store, jobs = make(tmp_path)
    old = done_job(store, clock.seconds() - 31 * DAY)
    recent = done_job(store, clock.seconds() - 29 * DAY)
    (tmp_path / f"{old.id}.out").write_text("old")
    (tmp_path / f"{recent.id}.out").write_text("recent")
    jobs.purge()
    assert not exists(store, old) and exists(store, recent)
    assert not (tmp_path / f"{old.id}.out").exists() and (tmp_path / f"{recent.id}.out").exists()


def test_age_is_checked_hourly_even_when_nothing_finishes(tmp_path):
    clock, store, jobs = make(tmp_path)
    jobs.purge()
    job = done_job(store, clock.seconds() - 30 * DAY + PURGE_PERIOD / 2)
    clock.advance(PURGE_PERIOD - 1)
    assert exists(store, job)
    clock.advance(1)
    assert not exists(store, job)


def test_a_finished_job_triggers_one_debounced_purge_to_the_cap(tmp_path):
    clock, store, jobs = make(tmp_path, cap=2)
    jobs.purge()  # arms the hourly check, which must not hide the quick one
    made = [done_job(store, clock.seconds() + i) for i in range(4)]
    for job in made:
        jobs.job_changed(job)
    assert all(exists(store, j) for j in made)
    clock.advance(PURGE_DELAY)
    assert [exists(store, j) for j in made] == [False, False, True, True]


def test_payload_is_validated_and_normalized():
    assert normalize_payload(None) == "{}"
    assert normalize_payload('{"a":   [1, 2]}') == '{"a": [1, 2]}'
    import pytest
    from crawld.errors import BadRequest
    with pytest.raises(BadRequest, match="payload is not valid JSON"):
        normalize_payload("{nope")
