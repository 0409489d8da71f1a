"""What the dashboard reads beyond scrapy-do's API, over a real store in memory:
job-history.json (jobs finished per hour by outcome), list-jobs' text search ``q``,
and the slots and queue of status.json."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from crawld.database import Database
from crawld.model import Actor, Job, JobStatus
from tests.unit.test_api import call_json, client  # noqa: F401 (the fixture)

NOW = 1_800_000_000  # the fixture's clock; 2027-01-15T08:00:00Z, a whole hour
HOUR = 3600


def add(stub, status=JobStatus.SUCCESSFUL, finished=None, **fields):
    """A job straight into the fixture's store; returns its id."""
    job_id = fields.pop("id", str(uuid.uuid4()))
    when = finished if finished is not None else NOW - 10
    job = Job(id=job_id, status=status, actor=Actor.USER, schedule="now",
              project=fields.pop("project", "demo"), spider=fields.pop("spider", "ok"),
              created=when - 5, updated=fields.pop("updated", when), started=when - 5,
              finished=when if status.completed else None, **fields)
    stub.services.jobs.store.db.add_job(job)
    return job_id


# -- job-history.json ---------------------------------------------------------------
def test_history_counts_each_hour_by_outcome(client):
    stub, _ = client
    assert NOW % HOUR == 0
    current = NOW  # the hour now starts here; the clock is at its first second
    for finished, status, n in ((current + 1, JobStatus.SUCCESSFUL, 3),
                                (current - 1, JobStatus.FAILED, 2),         # the hour before
                                (current - HOUR, JobStatus.CANCELED, 1),    # its first second
                                (current - 23 * HOUR, JobStatus.SUCCESSFUL, 4),
                                (current - 23 * HOUR - 1, JobStatus.FAILED, 7)):  # too old
        for _ in range(n):
            add(stub, status, finished)
    add(stub, JobStatus.RUNNING)  # not finished: not counted
    stub.clock.advance(2)
    code, body = call_json(stub, "get", "/job-history.json")
    assert code == 200 and body["hours"] == 24 and len(body["buckets"]) == 24
    buckets = body["buckets"]
    starts = [datetime.fromisoformat(b["start"]).timestamp() for b in buckets]
    assert starts == [current - (23 - i) * HOUR for i in range(24)]
    assert buckets[-1] == {**buckets[-1], "SUCCESSFUL": 3, "FAILED": 0, "CANCELED": 0}
    assert (buckets[-2]["FAILED"], buckets[-2]["CANCELED"]) == (2, 1)
    assert buckets[0]["SUCCESSFUL"] == 4 and buckets[0]["FAILED"] == 0
    assert sum(b[s] for b in buckets for s in ("SUCCESSFUL", "FAILED", "CANCELED")) == 10
    code, body = call_json(stub, "get", "/job-history.json?hours=1")
    assert [(b["SUCCESSFUL"], b["FAILED"]) for b in body["buckets"]] == [(3, 0)]
    code, body = call_json(stub, "get", "/job-history.json?hours=25")
    assert body["buckets"][0]["FAILED"] == 7


@pytest.mark.parametrize("hours", ["0", "721", "x", "-1", ""])
def test_history_refuses_other_spans(client, hours):
    code, body = call_json(client[0], "get", f"/job-history.json?hours={hours}")
    assert code == 400 and "'hours'" in body["msg"]


def test_history_counts_index_ranges_and_never_sorts():
    db = Database(":memory:")
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    db.job_history(NOW // HOUR - 23, 24)
    db.conn.set_trace_callback(None)
    assert len(seen) == 3 * 24
    for sql in seen:
        plan = " ".join(r[3] for r in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "COVERING INDEX jobs_status_finished" in plan and "TEMP" not in plan, plan


# -- list-jobs q ----------------------------------------------------------------------
@pytest.fixture
def searchable(client):
    stub, _ = client
    ids = {
        "books": add(stub, description="Nightly BOOKS catalogue", updated=NOW - 1),
        "shop": add(stub, project="shop", spider="detail", updated=NOW - 2),
        "pct": add(stub, description="100% done_ok", updated=NOW - 3),
        "failed": add(stub, JobStatus.FAILED, description="books again", updated=NOW - 4),
        "running": add(stub, JobStatus.RUNNING, description="books live"),
    }
    return stub, ids


def search(stub, q, status="COMPLETED", **params):
    query = "&".join(f"{k}={v}" for k, v in {"status": status, "q": q, **params}.items())
    code, body = call_json(stub, "get", f"/list-jobs.json?{query}")
    assert code == 200, body
    return [j["identifier"] for j in body["jobs"]]


def test_q_matches_description_spider_project_and_identifier(searchable):
    stub, ids = searchable
    assert search(stub, "books") == [ids["books"], ids["failed"]]  # any case, newest first
    assert search(stub, "detail") == [ids["shop"]]                 # the spider
    assert search(stub, "sho") == [ids["shop"]]                    # the project
    assert search(stub, ids["pct"][:8]) == [ids["pct"]]            # an identifier's start
    assert search(stub, ids["failed"]) == [ids["failed"]]          # a whole identifier
    assert search(stub, ids["running"]) == []                      # not in this group
    assert search(stub, "books", "ACTIVE") == [ids["running"]]
    assert search(stub, "books", "FAILED") == [ids["failed"]]
    assert search(stub, "books", project="demo", spider="ok") == [ids["books"], ids["failed"]]
    assert search(stub, "nothing-like-it") == []


def test_q_takes_percent_and_underscore_literally_and_pages(searchable):
    stub, ids = searchable
    assert search(stub, "100%25") == [ids["pct"]]  # %25: a literal %
    assert search(stub, "0%25 d") == [ids["pct"]]
    assert search(stub, "e_o") == [ids["pct"]]    # "done_ok"; _ is no wildcard
    assert search(stub, "%25") == [ids["pct"]] and search(stub, "_") == [ids["pct"]]
    assert search(stub, "books", limit=1) == [ids["books"]]
    assert search(stub, "books", limit=1, offset=1) == [ids["failed"]]
    assert len(search(stub, "")) == 4  # empty: no filter


def test_q_is_bounded(client):
    code, body = call_json(client[0], "get", "/list-jobs.json?status=COMPLETED&q=" + "x" * 201)
    assert code == 400 and "200 characters" in body["msg"]


def test_a_text_search_walks_the_groups_index_in_order():
    db = Database(":memory:")
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    for statuses in ([JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELED],
                     [JobStatus.FAILED]):
        db.list_jobs(statuses, 10, 0, "p", None, "words")
    db.list_jobs([JobStatus.FAILED], 10, 0, None, None, str(uuid.uuid4()))
    db.conn.set_trace_callback(None)
    plans = [" ".join(r[3] for r in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
             for sql in seen]
    assert "INDEX jobs_completed" in plans[0] and "TEMP B-TREE" not in plans[0]
    assert "INDEX jobs_by_status" in plans[1] and "TEMP B-TREE" not in plans[1]
    assert "sqlite_autoindex_jobs_1 (id=?)" in plans[2], plans[2]  # the primary key


# -- status.json ------------------------------------------------------------------------
def test_status_shows_slots_running_and_queued(client):
    stub, sup = client
    code, body = call_json(stub, "get", "/status.json")
    assert (body["job-slots"], body["jobs-running"], body["jobs-pending"]) == (4, 0, 0)
    sup.queued.extend(["a", "b"])
    code, body = call_json(stub, "get", "/status.json")
    assert body["jobs-pending"] == 2


def test_a_version_5_database_gets_the_chart_index(tmp_path):
    import sqlite3
    from crawld.migrations import MIGRATIONS
    path = str(tmp_path / "v5.db")
    conn = sqlite3.connect(path)
    for version in range(1, 6):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()
    db = Database(path)
    indexes = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "jobs_status_finished" in indexes and "jobs_by_finished" not in indexes
