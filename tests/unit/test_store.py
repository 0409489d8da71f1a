"""SQLite persistence (crawld.store.Database): schema, compare-and-set, firing, retention."""
from __future__ import annotations

import sqlite3

import pytest

from crawld.model import Actor, Job, JobStatus, Project
from crawld.database import COUNTERS, Database
from crawld.migrations import SCHEMA_VERSION
from crawld.store import InlineExecutor, Store

S = JobStatus


def job(job_id: str, status: JobStatus = S.PENDING, *, project: str = "p",
        spider: str = "s", t: float = 1.0, **fields) -> Job:
    fields.setdefault("created", t)
    fields.setdefault("updated", t)
    return Job(id=job_id, status=status, actor=fields.pop("actor", Actor.USER),
               schedule=fields.pop("schedule", "now"), project=project, spider=spider,
               **fields)


def template(job_id: str, next_fire: float = 100.0, **fields) -> Job:
    return job(job_id, S.SCHEDULED, schedule="every 10 minutes", next_fire=next_fire,
               **fields)


def child_of(parent: str, job_id: str, now: float = 150.0) -> Job:
    return job(job_id, S.PENDING, actor=Actor.SCHEDULER, parent=parent, t=now)


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "crawld.db")


@pytest.fixture
def db():
    database = Database(":memory:")
    yield database
    database.close()


def ids(jobs) -> list[str]:
    return [j.id for j in jobs]


# ----------------------------------------------------------------------------- schema


def test_schema_version_is_current_after_open_and_reopen(db_path):
    db = Database(db_path)
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.schema_version() == SCHEMA_VERSION
    db.add_job(job("a"))
    db.close()
    again = Database(db_path)  # no migration re-run: it would fail on existing tables
    try:
        assert again.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert again.get_job("a") is not None
    finally:
        again.close()


def test_a_version_4_database_gains_the_outcome_columns_and_keeps_its_jobs(db_path):
    from crawld.migrations import MIGRATIONS
    raw = sqlite3.connect(db_path)
    for version in range(1, 5):  # the schema as crawld before issue 11 left it
        for statement in MIGRATIONS[version]:
            raw.execute(statement)
    raw.execute("INSERT INTO jobs (id, status, actor, schedule, project, spider, "
                "description, payload, created, updated) VALUES "
                "('old', 'SUCCESSFUL', 'USER', 'now', 'p', 's', '', '{}', 1, 2)")
    raw.execute("PRAGMA user_version = 4")
    raw.commit()
    raw.close()
    db = Database(db_path)
    try:
        old = db.get_job("old")
        assert (old.stats, old.fail_on, old.args, old.settings, old.webhook) == (
            None, None, "[]", "[]", None)
        db.add_job(job("new", stats='{"item_scraped_count": 3}', fail_on="no-items",
                       args='[["a", "1"]]', settings='[["X", "y"]]',
                       webhook="http://127.0.0.1:9/h"))
        new = db.get_job("new")
        assert (new.stats, new.fail_on, new.args, new.settings, new.webhook) == (
            '{"item_scraped_count": 3}', "no-items", '[["a", "1"]]', '[["X", "y"]]',
            "http://127.0.0.1:9/h")
    finally:
        db.close()


def test_database_from_a_newer_crawld_is_refused(db_path):
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(RuntimeError, match="newer"):
        Database(db_path)


def test_store_with_the_inline_executor_runs_calls_at_once():
    store = Store(":memory:", InlineExecutor())
    results = []
    store.ready().addCallback(results.append)
    store.add_job(job("a"))
    store.get_job("a").addCallback(lambda j: results.append(j.id))
    store.close()
    assert results == [SCHEMA_VERSION, "a"]


def test_store_that_cannot_open_fails_ready(db_path):
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    failures = []
    Store(db_path, InlineExecutor()).ready().addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(RuntimeError)


# ------------------------------------------------------------------------ jobs basics


def test_add_job_round_trips_and_assigns_increasing_seq(db):
    a = db.add_job(job("a", payload='{"k": 1}', description="d"))
    b = db.add_job(job("b", S.SCHEDULED, next_fire=5.0))
    assert 0 < a.seq < b.seq
    assert db.get_job("a") == a
    assert db.get_job("b") == b
    assert db.get_job("a").payload == '{"k": 1}'


def test_get_unknown_job_is_none(db):
    assert db.get_job("nope") is None


def test_duplicate_job_id_is_refused(db):
    db.add_job(job("a"))
    with pytest.raises(sqlite3.IntegrityError):
        db.add_job(job("a"))


def test_update_job_sets_fields_without_touching_status(db):
    db.add_job(job("a", S.RUNNING, t=5.0))
    db.update_job("a", pid=4242, pid_started=6.5)
    got = db.get_job("a")
    assert (got.pid, got.pid_started, got.status, got.updated) == (4242, 6.5, S.RUNNING, 5.0)


# ------------------------------------------------------------------------- transition


def test_transition_moves_a_job_in_an_allowed_status(db):
    db.add_job(job("a", S.PENDING, t=1.0))
    moved = db.transition("a", [S.PENDING], S.RUNNING, 10.0, started=10.0, pid=99)
    assert moved is not None
    assert (moved.status, moved.updated, moved.started, moved.pid) == (S.RUNNING, 10.0, 10.0, 99)
    assert db.get_job("a") == moved


def test_transition_from_a_wrong_status_returns_none_and_changes_nothing(db):
    db.add_job(job("a", S.RUNNING, t=1.0))
    before = db.get_job("a")
    assert db.transition("a", [S.PENDING, S.SCHEDULED], S.CANCELED, 10.0, finished=10.0) is None
    assert db.get_job("a") == before
    assert db.counters()["jobs-canceled"] == 0


def test_transition_of_an_unknown_job_returns_none(db):
    assert db.transition("ghost", [S.PENDING], S.RUNNING, 1.0) is None


def test_transition_is_compare_and_set_only_one_of_two_racers_wins(db):
    db.add_job(job("a", S.RUNNING))
    first = db.transition("a", [S.RUNNING], S.SUCCESSFUL, 5.0, finished=5.0, exit_code=0)
    second = db.transition("a", [S.RUNNING], S.CANCELED, 6.0, finished=6.0)
    assert first is not None and first.status is S.SUCCESSFUL
    assert second is None
    assert db.get_job("a").status is S.SUCCESSFUL
    assert db.counters()["jobs-successful"] == 1
    assert db.counters()["jobs-canceled"] == 0


# --------------------------------------------------------------------------- counters


def test_counters_start_at_zero(db):
    assert db.counters() == {name: 0 for name in COUNTERS}


def test_counters_bump_for_running_and_completed_statuses(db):
    for name in ("ok", "bad", "stopped", "never-ran"):
        db.add_job(job(name))
    for name in ("ok", "bad", "stopped"):
        db.transition(name, [S.PENDING], S.RUNNING, 2.0, started=2.0)
    assert db.counters() == {"jobs-run": 3, "jobs-successful": 0, "jobs-failed": 0,
                             "jobs-canceled": 0}
    db.transition("ok", [S.RUNNING], S.SUCCESSFUL, 3.0)
    db.transition("bad", [S.RUNNING], S.FAILED, 3.0)
    db.transition("stopped", [S.RUNNING], S.CANCELED, 3.0)
    db.transition("never-ran", [S.PENDING], S.CANCELED, 3.0)  # canceled, never run
    # scrapy-do counts a cancel only for a job that ran
    assert db.counters() == {"jobs-run": 3, "jobs-successful": 1, "jobs-failed": 1,
                             "jobs-canceled": 1}


def test_counters_persist_across_reopen(db_path):
    db = Database(db_path)
    db.add_job(job("a"))
    db.transition("a", [S.PENDING], S.RUNNING, 2.0)
    db.transition("a", [S.RUNNING], S.FAILED, 3.0)
    db.close()
    again = Database(db_path)
    try:
        assert again.counters() == {"jobs-run": 1, "jobs-successful": 0, "jobs-failed": 1,
                                    "jobs-canceled": 0}
        again.add_job(job("b"))
        again.transition("b", [S.PENDING], S.RUNNING, 4.0)
        assert again.counters()["jobs-run"] == 2
    finally:
        again.close()


# ---------------------------------------------------------------------- fire_template


def fire_one(db, template_id, child, next_fire, now):
    """Fire one template with a ready-made child (one firing of fire_templates)."""
    fired = db.fire_templates([(template_id, next_fire, child is not None)],
                              lambda template, stamp: child, lambda: now)
    return fired[0][2], fired[0][3]


def test_fire_template_inserts_the_child_and_moves_next_fire(db):
    db.add_job(template("t", next_fire=100.0, t=1.0))
    created, why = fire_one(db, "t", child_of("t", "c1", 150.0), 200.0, 150.0)
    assert why == ""
    assert created is not None and created.id == "c1" and created.seq > 0
    stored = db.get_job("c1")
    assert stored == created
    assert (stored.status, stored.parent, stored.actor) == (S.PENDING, "t", Actor.SCHEDULER)
    tpl = db.get_job("t")
    assert tpl.status is S.SCHEDULED
    assert tpl.next_fire == 200.0
    assert tpl.updated == 150.0


@pytest.mark.parametrize("busy", [S.PENDING, S.RUNNING])
def test_fire_template_skips_while_a_previous_child_is_active(db, busy):
    db.add_job(template("t", next_fire=100.0))
    fire_one(db, "t", child_of("t", "c1"), 200.0, 150.0)
    if busy is S.RUNNING:
        assert db.transition("c1", [S.PENDING], S.RUNNING, 160.0) is not None
    created, why = fire_one(db, "t", child_of("t", "c2", 210.0), 300.0, 210.0)
    assert created is None
    assert "c1" in why and "still active" in why
    assert db.get_job("c2") is None
    assert db.get_job("t").next_fire == 300.0  # the series still moves on


def test_fire_template_runs_again_once_the_previous_child_completed(db):
    db.add_job(template("t"))
    fire_one(db, "t", child_of("t", "c1"), 200.0, 150.0)
    db.transition("c1", [S.PENDING], S.RUNNING, 160.0)
    db.transition("c1", [S.RUNNING], S.SUCCESSFUL, 170.0)
    created, why = fire_one(db, "t", child_of("t", "c2", 210.0), 300.0, 210.0)
    assert created is not None and created.id == "c2" and why == ""


def test_fire_template_ignores_active_jobs_of_other_templates(db):
    db.add_job(template("t1"))
    db.add_job(template("t2"))
    fire_one(db, "t1", child_of("t1", "a"), 200.0, 150.0)
    created, _ = fire_one(db, "t2", child_of("t2", "b"), 200.0, 150.0)
    assert created is not None and created.id == "b"


@pytest.mark.parametrize("status", [S.CANCELED, S.SUCCESSFUL, S.PENDING])
def test_fire_template_no_longer_scheduled_skips_and_keeps_next_fire(db, status):
    db.add_job(job("t", status, next_fire=100.0, schedule="every 10 minutes"))
    created, why = fire_one(db, "t", child_of("t", "c1"), 200.0, 150.0)
    assert created is None
    assert why == "template is no longer scheduled"
    assert db.get_job("c1") is None
    assert db.get_job("t").next_fire == 100.0


def test_fire_unknown_template_skips(db):
    created, why = fire_one(db, "ghost", child_of("ghost", "c1"), 200.0, 150.0)
    assert created is None and why == "template is no longer scheduled"
    assert db.get_job("c1") is None


def test_fire_template_without_child_only_moves_next_fire(db):
    db.add_job(template("t", next_fire=100.0))
    created, why = fire_one(db, "t", None, 200.0, 150.0)
    assert created is None and why == "no child requested"
    assert db.get_job("t").next_fire == 200.0
    assert db.pending_in_order() == []


def test_fire_template_is_atomic_when_inserting_the_child_fails(db):
    db.add_job(template("t", next_fire=100.0))
    db.add_job(job("taken", S.SUCCESSFUL))
    with pytest.raises(sqlite3.IntegrityError):
        fire_one(db, "t", child_of("t", "taken"), 200.0, 150.0)
    assert db.get_job("t").next_fire == 100.0  # neither the child nor the move


# -------------------------------------------------------------------------- list_jobs


def test_list_jobs_most_recently_updated_first(db):
    db.add_job(job("old", S.PENDING, t=10.0))
    db.add_job(job("new", S.PENDING, t=30.0))
    db.add_job(job("mid", S.PENDING, t=20.0))
    assert ids(db.list_jobs([S.PENDING])) == ["new", "mid", "old"]
    db.transition("old", [S.PENDING], S.RUNNING, 40.0)
    assert ids(db.list_jobs([S.PENDING, S.RUNNING])) == ["old", "new", "mid"]


def test_list_jobs_ties_on_updated_put_the_later_inserted_first(db):
    for name in ("a", "b", "c"):
        db.add_job(job(name, t=5.0))
    assert ids(db.list_jobs([S.PENDING])) == ["c", "b", "a"]


def test_list_jobs_filters_by_status_project_and_spider(db):
    db.add_job(job("p1-s1", S.PENDING, project="p1", spider="s1", t=1))
    db.add_job(job("p1-s2", S.RUNNING, project="p1", spider="s2", t=2))
    db.add_job(job("p2-s1", S.PENDING, project="p2", spider="s1", t=3))
    db.add_job(job("p1-s1-done", S.SUCCESSFUL, project="p1", spider="s1", t=4))
    assert ids(db.list_jobs([S.PENDING])) == ["p2-s1", "p1-s1"]
    assert ids(db.list_jobs([S.PENDING, S.RUNNING], project="p1")) == ["p1-s2", "p1-s1"]
    assert ids(db.list_jobs(list(S), spider="s1")) == ["p1-s1-done", "p2-s1", "p1-s1"]
    assert ids(db.list_jobs(list(S), project="p1", spider="s1")) == ["p1-s1-done", "p1-s1"]
    assert db.list_jobs([S.FAILED]) == []
    assert db.list_jobs(list(S), project="nope") == []


def test_list_jobs_limit_and_offset(db):
    for i in range(5):
        db.add_job(job(f"j{i}", t=float(i)))  # j4 is the newest
    assert ids(db.list_jobs([S.PENDING])) == ["j4", "j3", "j2", "j1", "j0"]
    assert ids(db.list_jobs([S.PENDING], limit=2)) == ["j4", "j3"]
    assert ids(db.list_jobs([S.PENDING], limit=2, offset=2)) == ["j2", "j1"]
    assert ids(db.list_jobs([S.PENDING], limit=2, offset=4)) == ["j0"]
    assert ids(db.list_jobs([S.PENDING], offset=3)) == ["j1", "j0"]
    assert db.list_jobs([S.PENDING], limit=2, offset=5) == []


# ------------------------------------------------------------------- pending_in_order


def test_pending_in_order_is_fifo_by_insertion_not_by_time(db):
    db.add_job(job("first", t=50.0))
    db.add_job(job("running", S.RUNNING, t=1.0))
    db.add_job(job("second", t=10.0))
    db.add_job(job("third", t=30.0))
    assert ids(db.pending_in_order()) == ["first", "second", "third"]
    db.transition("second", [S.PENDING], S.RUNNING, 60.0)
    assert ids(db.pending_in_order()) == ["first", "third"]



def test_a_page_of_active_or_completed_is_read_in_order_from_its_index(db):
    import random
    from crawld.model import ACTIVE, COMPLETED
    rng = random.Random(9)
    for i in range(300):  # every status, many ties on updated, two projects and spiders
        db.add_job(job(f"j{i:03}", rng.choice(list(S)), t=float(rng.randint(1, 40)),
                       project=rng.choice("pq"), spider=rng.choice("st")))
    rows = {j.id: j for j in db.list_jobs(list(S))}
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    for group in (ACTIVE, COMPLETED):
        for limit, offset, project, spider in ((-1, 0, None, None), (10, 0, None, None),
                                               (10, 25, None, None), (7, 3, "p", None),
                                               (5, 0, "q", "t"), (10, 1000, None, None)):
            wanted = sorted((j for j in rows.values() if j.status in group
                             and project in (None, j.project) and spider in (None, j.spider)),
                            key=lambda j: (j.updated, j.seq), reverse=True)
            end = None if limit < 0 else offset + limit
            got = db.list_jobs(group, limit, offset, project, spider)
            assert ids(got) == ids(wanted[offset:end]), (group, limit, offset, project)
    db.conn.set_trace_callback(None)
    for sql in {q for q in seen if "ORDER BY" in q}:
        plan = " ".join(r[3] for r in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "INDEX jobs_active" in plan or "INDEX jobs_completed" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort of the whole group


def test_a_version_3_database_gets_the_group_indexes(tmp_path):
    from crawld.migrations import MIGRATIONS as _MIGRATIONS
    path = str(tmp_path / "v3.db")
    conn = sqlite3.connect(path)
    for version in (1, 2, 3):
        for statement in _MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("INSERT INTO jobs (id, status, actor, schedule, project, spider, description, "
                 "payload, created, updated) VALUES ('old', 'SUCCESSFUL', 'USER', 'now', 'p', "
                 "'s', '', '{}', 1.0, 2.0)")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    db = Database(path)
    names = {r[1] for r in db.conn.execute("PRAGMA index_list(jobs)")}
    assert {"jobs_active", "jobs_completed"} <= names
    assert ids(db.list_jobs([S.SUCCESSFUL, S.FAILED, S.CANCELED])) == ["old"]
    db.close()


# ------------------------------------------------------------------------------ purge


def completed(db, name, status=S.SUCCESSFUL, at=1.0):
    db.add_job(job(name, status, t=at, finished=at))


def add_active(db):
    db.add_job(template("tpl", t=0.5))
    db.add_job(job("pending", S.PENDING, t=0.5))
    db.add_job(job("running", S.RUNNING, t=0.5, started=0.5))
    return {"tpl", "pending", "running"}


def remaining(db) -> set[str]:
    return {j.id for j in db.list_jobs(list(S))}


def test_purge_keeps_only_the_newest_cap_completed_jobs(db):
    active = add_active(db)
    for i, status in enumerate([S.SUCCESSFUL, S.FAILED, S.CANCELED, S.SUCCESSFUL, S.FAILED]):
        completed(db, f"done{i}", status, at=10.0 + i)  # done4 is the newest
    removed = db.purge(3, older_than=0.0)
    assert set(removed) == {"done0", "done1"}
    assert remaining(db) == active | {"done2", "done3", "done4"}


def test_purge_removes_completed_jobs_finished_before_the_cutoff(db):
    active = add_active(db)
    for i in range(5):
        completed(db, f"done{i}", at=10.0 + i)
    removed = db.purge(1000, older_than=12.0)
    assert set(removed) == {"done0", "done1"}  # 12.0 itself is not older
    assert remaining(db) == active | {"done2", "done3", "done4"}


def test_purge_applies_cap_and_age_together(db):
    for i in range(5):
        completed(db, f"done{i}", at=10.0 + i)
    assert set(db.purge(4, older_than=11.5)) == {"done0", "done1"}
    assert set(db.purge(2, older_than=0.0)) == {"done2"}
    assert remaining(db) == {"done3", "done4"}


def test_purge_never_removes_active_jobs(db):
    active = add_active(db)  # all older than everything, and cap 0
    completed(db, "done", at=5.0)
    assert db.purge(0, older_than=1e12) == ["done"]
    assert remaining(db) == active


def test_purge_with_nothing_to_do_returns_empty(db):
    add_active(db)
    completed(db, "done", at=5.0)
    assert db.purge(10, older_than=1.0) == []
    assert "done" in remaining(db)


# ------------------------------------------------------------------ templates, projects


def test_scheduled_spiders_lists_spiders_of_scheduled_templates_of_a_project(db):
    db.add_job(template("t1", spider="a"))
    db.add_job(template("t2", spider="a"))
    db.add_job(template("t3", spider="b"))
    db.add_job(job("t4", S.CANCELED, spider="c", schedule="every day"))
    db.add_job(job("j5", S.PENDING, spider="d"))
    db.add_job(template("t6", spider="e", project="other"))
    assert sorted(db.scheduled_spiders("p")) == ["a", "b"]
    assert db.scheduled_spiders("other") == ["e"]
    assert db.scheduled_spiders("none") == []


def test_active_project_names(db):
    db.add_job(template("t", project="a"))
    db.add_job(job("j", S.RUNNING, project="b"))
    db.add_job(job("k", S.PENDING, project="c"))
    db.add_job(job("d", S.FAILED, project="d"))
    assert db.active_project_names() == {"a", "b", "c"}


def test_projects_put_get_delete(db):
    assert db.projects() == []
    b = Project("beta", 1, "/data/projects/beta/1", ("x", "y"), 10.0)
    a = Project("alpha", 3, "/data/projects/alpha/3", (), 20.0)
    db.put_project(b)
    db.put_project(a)
    assert db.projects() == [a, b]  # by name
    b2 = Project("beta", 2, "/data/projects/beta/2", ("z",), 30.0)
    db.put_project(b2)
    assert db.projects() == [a, b2]
    db.delete_project("alpha")
    assert db.projects() == [b2]
    db.delete_project("alpha")  # deleting twice is harmless
    assert db.projects() == [b2]


def test_projects_persist_across_reopen(db_path):
    db = Database(db_path)
    p = Project("alpha", 1, "/x", ("s1",), 1.5)
    db.put_project(p)
    db.close()
    again = Database(db_path)
    try:
        assert again.projects() == [p]
    finally:
        again.close()


def test_a_version_1_database_is_migrated_in_place(tmp_path):
    import sqlite3
    from crawld.migrations import MIGRATIONS as _MIGRATIONS
    path = str(tmp_path / "v1.db")
    conn = sqlite3.connect(path)
    for statement in _MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO jobs (id, status, actor, schedule, project, spider, description, "
                 "payload, created, updated, next_fire) VALUES ('old', 'SCHEDULED', 'USER', "
                 "'every 1 hours', 'p', 's', '', '{}', 1.0, 1.0, 3601.0)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    db = Database(path)
    assert db.schema_version() == SCHEMA_VERSION >= 2
    old = db.get_job("old")
    assert old.next_fire == 3601.0 and old.schedule == "every 1 hours"
    assert (old.tz, old.jitter, old.misfire, old.overlap, old.queued, old.last_run) == (
        None, 0.0, "once", "skip", 0, None)


def test_a_job_both_past_the_cap_and_too_old_is_removed_once(db):
    for i in range(4):
        completed(db, f"done{i}", at=10.0 + i)
    removed = db.purge(2, older_than=100.0)  # done0, done1 are both; done2, done3 too old
    assert sorted(removed) == ["done0", "done1", "done2", "done3"]
    assert remaining(db) == set()


# ------------------------------------------------------------- scrapyd's lean listing


def test_ran_spider_jobs_are_the_started_spider_jobs_newest_change_first(db):
    db.add_job(job("run", S.RUNNING, t=5.0, started=4.0, pid=42))
    db.add_job(job("old", S.SUCCESSFUL, t=2.0, started=1.0, finished=2.0))
    db.add_job(job("new", S.FAILED, t=3.0, started=2.5, finished=3.0, project="q"))
    db.add_job(job("never", S.CANCELED, t=6.0))              # canceled before it ran
    db.add_job(job("wait", S.PENDING, t=7.0))
    db.add_job(job("shot", S.SUCCESSFUL, t=8.0, started=7.5, finished=8.0,
                   kind="browser"))
    running, done = db.ran_spider_jobs()
    assert [tuple(r) for r in running] == [
        ("run", "p", "s", S.RUNNING, 42, 4.0, None, 5.0, 1)]  # seq: the first row
    assert [r.id for r in done] == ["new", "old"]
    assert done[1].status is S.SUCCESSFUL and done[1].finished == 2.0
    running, done = db.ran_spider_jobs("q")
    assert running == [] and [r.id for r in done] == ["new"]
