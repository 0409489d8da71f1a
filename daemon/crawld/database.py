"""SQLite persistence: every SQL string of crawld, and the transactions that must not split.

All methods of ``Database`` are synchronous and run on one dedicated thread (see
``store.Store``), so SQLite has exactly one writer and the reactor never waits on disk.
State changes that must not be split (fire a template, finish a job and count it) are
single transactions here, which is what makes restarts neither lose nor double work.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import fields
from typing import Any, Callable, Iterable, Optional, Sequence

from .claims import ClaimRows
from .deliveries import DeliveryRows
from .model import ACTIVE, COMPLETED, Actor, Job, JobStatus, Project, RanJob, Version
from .migrations import ACTIVE_SQL, COMPLETED_SQL, MIGRATIONS, SCHEMA_VERSION

COUNTERS = ("jobs-run", "jobs-successful", "jobs-failed", "jobs-canceled")
_COUNTER_FOR = {JobStatus.SUCCESSFUL: "jobs-successful", JobStatus.FAILED: "jobs-failed",
                JobStatus.CANCELED: "jobs-canceled"}

#: frozenset of statuses -> (index, WHERE term) for the groups of migration 4
_GROUPS = {frozenset(COMPLETED): ("jobs_completed", COMPLETED_SQL),
           frozenset(ACTIVE): ("jobs_active", ACTIVE_SQL)}

#: The jobs table's columns are Job's fields; rows are read in Job's field order, so
#: that a row becomes a Job positionally (see _row_to_job).
_JOB_COLUMNS = tuple(f.name for f in fields(Job))
_COLUMN_LIST = ", ".join(_JOB_COLUMNS)
_SELECT_JOB = f"SELECT {_COLUMN_LIST} FROM jobs"
_STATUS_AT, _ACTOR_AT, _RETRY_LOST_AT = (_JOB_COLUMNS.index(c) for c in
                                         ("status", "actor", "retry_lost"))
_STATUSES = {s.value: s for s in JobStatus}
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ACTORS = {a.value: a for a in Actor}


#: One firing's outcome: (template id, template or None, child or None, why no child).
Fired = tuple[str, Optional[Job], Optional[Job], str]


def _row_to_job(row: Sequence[Any]) -> Job:
    """A row of ``_SELECT_JOB`` as a Job (a listing makes thousands: kept lean)."""
    values = list(row)
    values[_STATUS_AT] = _STATUSES[values[_STATUS_AT]]
    values[_ACTOR_AT] = _ACTORS[values[_ACTOR_AT]]
    values[_RETRY_LOST_AT] = bool(values[_RETRY_LOST_AT])
    return Job(*values)


def items_scraped(stats: Optional[str]) -> int:
    """``item_scraped_count`` of a job's stats (JSON text), 0 when absent or not a count."""
    if not stats:
        return 0
    try:
        value = json.loads(stats).get("item_scraped_count")
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _marks(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


class Database(DeliveryRows, ClaimRows):
    """The synchronous SQL layer. Use it from one thread only (Store sees to that).
    Webhook deliveries' SQL is in deliveries.DeliveryRows, claims' in claims.ClaimRows."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            # jobs may run as another user (run-as) with the data dir traversable: the
            # database is crawld's alone (SQLite gives -wal/-shm the same mode)
            for name in (path, path + "-wal", path + "-shm"):
                if os.path.exists(name):
                    os.chmod(name, 0o600)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- schema -----------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"database schema {version} is newer than this crawld "
                               f"({SCHEMA_VERSION}); upgrade crawld")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                for statement in MIGRATIONS[target]:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {target}")

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _transaction(self) -> "_Tx":
        return _Tx(self.conn)

    def close(self) -> None:
        self.conn.close()

    # -- counters ---------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        found = dict(self.conn.execute("SELECT name, value FROM counters").fetchall())
        return {name: found.get(name, 0) for name in COUNTERS}

    def _bump(self, name: str) -> None:
        self.conn.execute("INSERT INTO counters (name, value) VALUES (?, 1) "
                          "ON CONFLICT(name) DO UPDATE SET value = value + 1", (name,))

    # -- projects ---------------------------------------------------------------------
    def projects(self) -> list[Project]:
        rows = self.conn.execute(
            "SELECT name, version, path, spiders, pushed, scripts FROM projects ORDER BY name")
        return [Project(n, v, p, tuple(json.loads(s)), t, tuple(json.loads(b)))
                for n, v, p, s, t, b in rows]

    def put_project(self, project: Project) -> None:
        self.conn.execute(
            "INSERT INTO projects (name, version, path, spiders, pushed, scripts) "
            "VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET version=excluded.version, path=excluded.path, "
            "spiders=excluded.spiders, pushed=excluded.pushed, scripts=excluded.scripts",
            (project.name, project.version, project.path, json.dumps(list(project.spiders)),
             project.pushed, json.dumps(list(project.scripts))))

    def delete_project(self, name: str) -> None:
        """Forget a project and every version of it (one transaction)."""
        with self._transaction():
            self.conn.execute("DELETE FROM versions WHERE project = ?", (name,))
            self.conn.execute("DELETE FROM projects WHERE name = ?", (name,))

    # -- versions ---------------------------------------------------------------------
    def versions(self) -> list[Version]:
        """Every stored version of every project (paths are resolved by the caller)."""
        rows = self.conn.execute("SELECT project, name, number, spiders, pushed, kind, "
                                 "scripts FROM versions ORDER BY project, number")
        return [Version(p, n, num, "", tuple(json.loads(s)), t, k, tuple(json.loads(b)))
                for p, n, num, s, t, k, b in rows]

    def put_version(self, version: Version, current: Project,
                    drop: Sequence[str] = ()) -> None:
        """Store a version (replacing one of the same name), make ``current`` the
        project's current version and forget the versions named in ``drop``: one
        transaction, so a crash leaves the old state or the new one."""
        with self._transaction():
            for name in drop:
                self.conn.execute("DELETE FROM versions WHERE project = ? AND name = ?",
                                  (version.project, name))
            self.conn.execute(
                "INSERT OR REPLACE INTO versions (project, name, number, spiders, scripts, "
                "pushed, kind) VALUES (?,?,?,?,?,?,?)",
                (version.project, version.name, version.number,
                 json.dumps(list(version.spiders)), json.dumps(list(version.scripts)),
                 version.pushed, version.kind))
            self.put_project(current)

    def delete_version(self, project: str, name: str, current: Optional[Project]) -> None:
        """Forget one version; ``current`` is the project's current version now (None:
        that was its last version, and the project goes too)."""
        with self._transaction():
            self.conn.execute("DELETE FROM versions WHERE project = ? AND name = ?",
                              (project, name))
            if current is None:
                self.conn.execute("DELETE FROM projects WHERE name = ?", (project,))
            else:
                self.put_project(current)

    def version_users(self, project: str, name: str) -> list[str]:
        """PENDING or RUNNING jobs (and schedules) pinned to a version of a project."""
        rows = self.conn.execute("SELECT id FROM jobs WHERE project = ? AND version = ? "
                                 "AND status IN ('SCHEDULED', 'PAUSED', 'PENDING', "
                                 "'RUNNING') ORDER BY seq LIMIT 10", (project, name))
        return [r[0] for r in rows]

    def status_counts(self) -> dict[str, int]:
        """How many jobs are in each status (scrapyd's daemonstatus.json)."""
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"))

    def scheduled_spiders(self, project: str, kind: str = "spider") -> list[str]:
        """Spiders (or scripts) of a project that SCHEDULED or PAUSED templates still name."""
        rows = self.conn.execute("SELECT DISTINCT spider FROM jobs WHERE project = ? "
                                 "AND kind = ? AND status IN ('SCHEDULED', 'PAUSED')",
                                 (project, kind))
        return [r[0] for r in rows]

    def active_project_names(self) -> set[str]:
        """Projects with jobs that are scheduled, paused, pending or running."""
        rows = self.conn.execute("SELECT DISTINCT project FROM jobs WHERE status IN "
                                 "('SCHEDULED', 'PAUSED', 'PENDING', 'RUNNING')")
        return {r[0] for r in rows}

    # -- jobs: reads ------------------------------------------------------------------
    def get_job(self, job_id: str) -> Optional[Job]:
        row = self.conn.execute(f"{_SELECT_JOB} WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def list_jobs(self, statuses: Sequence[JobStatus], limit: int = -1, offset: int = 0,
                  project: Optional[str] = None, spider: Optional[str] = None,
                  text: Optional[str] = None) -> list[Job]:
        """Jobs in any of ``statuses``, most recently changed first (as scrapy-do orders).

        A page of ACTIVE or COMPLETED is read in order from the group's index, and one
        status in order from ``jobs_by_status``: ``limit + offset`` rows are visited,
        not the whole group sorted (with 10,000 finished jobs, a page was 40x slower).

        ``text``: only jobs whose identifier, description, spider or project contains
        it (ASCII letters in either case). The same walk in the same order, stopping
        once the page is full; a text that matches nothing visits the whole group
        (~1 µs a job). A whole identifier is found by the primary key at once.
        """
        table, args = "jobs", []
        group = _GROUPS.get(frozenset(statuses))
        if text is not None and UUID_TEXT.fullmatch(text):
            where = [f"status IN ({_marks(statuses)})", "id = ?"]
            args = [*(s.value for s in statuses), text]
            text = None
        elif group is not None:
            table = f"jobs INDEXED BY {group[0]}"
            where = [group[1]]
        else:
            where = [f"status IN ({_marks(statuses)})"]
            args = [s.value for s in statuses]
        for column, value in (("project", project), ("spider", spider)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if text is not None:
            where.append("(id LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\' "
                         "OR spider LIKE ? ESCAPE '\\' OR project LIKE ? ESCAPE '\\')")
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
            args += [pattern] * 4
        sql = (f"SELECT {_COLUMN_LIST} FROM {table} WHERE {' AND '.join(where)} "
               "ORDER BY updated DESC, seq DESC LIMIT ? OFFSET ?")
        return [_row_to_job(r) for r in self.conn.execute(sql, (*args, limit, offset))]

    def ran_spider_jobs(self, project: Optional[str] = None
                        ) -> tuple[list[RanJob], list[RanJob]]:
        """(running, completed) spider jobs that started, each most recently changed
        first, as lean rows (scrapyd's listjobs.json, /jobs and /logs/ read them on
        every request); completed ones from the group's index, as list_jobs does."""
        where, args = "kind = 'spider' AND started IS NOT NULL", []
        if project is not None:
            where, args = where + " AND project = ?", [project]
        columns = "id, project, spider, status, pid, started, finished, updated, seq"
        order = "ORDER BY updated DESC, seq DESC"
        running = self.conn.execute(
            f"SELECT {columns} FROM jobs WHERE status = 'RUNNING' AND {where} {order}", args)
        done = self.conn.execute(
            f"SELECT {columns} FROM jobs INDEXED BY jobs_completed WHERE {COMPLETED_SQL} "
            f"AND {where} {order}", args)
        return ([RanJob(r[0], r[1], r[2], _STATUSES[r[3]], *r[4:]) for r in running],
                [RanJob(r[0], r[1], r[2], _STATUSES[r[3]], *r[4:]) for r in done])

    def job_history(self, first_hour: int, hours: int) -> list[tuple[int, str, int]]:
        """How many jobs reached each completed status in each of ``hours`` hours from
        hour ``first_hour`` (hours since the epoch): (hour, status, count) rows, counts
        over 0 only (the dashboard's chart).

        One count of a range of ``jobs_status_finished`` per hour and status: ~30 ms
        for 100,000 jobs in a day, where a GROUP BY of the hour sorted them all (~250
        ms) on the store thread."""
        found = []
        for status in COMPLETED:
            for hour in range(first_hour, first_hour + hours):
                count = self.conn.execute(
                    "SELECT COUNT(*) FROM jobs INDEXED BY jobs_status_finished "
                    "WHERE status = ? AND finished >= ? AND finished < ?",
                    (status.value, hour * 3600, (hour + 1) * 3600)).fetchone()[0]
                if count:
                    found.append((hour, status.value, count))
        return found

    def schedule_rows(self) -> list[tuple]:
        """What the scheduler keeps of every SCHEDULED template, without whole rows:
        (id, schedule, next_fire, tz, jitter, misfire, misfire_grace). Start-up with
        100,000 schedules reads these instead of building 100,000 Jobs."""
        return self.conn.execute(
            "SELECT id, schedule, next_fire, tz, jitter, misfire, misfire_grace FROM jobs "
            "WHERE status = 'SCHEDULED'").fetchall()

    def pending_in_order(self) -> list[Job]:
        """PENDING jobs in the queue's order: higher priority first, first in first out
        among equals."""
        return [_row_to_job(r) for r in self.conn.execute(
            f"{_SELECT_JOB} WHERE status = 'PENDING' ORDER BY priority DESC, seq")]

    # -- jobs: writes -----------------------------------------------------------------
    def add_job(self, job: Job) -> Job:
        columns = [c for c in _JOB_COLUMNS if c != "seq"]
        values = [getattr(job, c) for c in columns]
        values[columns.index("status")] = job.status.value
        values[columns.index("actor")] = job.actor.value
        with self._transaction():
            cur = self.conn.execute(
                f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({_marks(columns)})", values)
        return job.evolve(seq=cur.lastrowid)

    def transition(self, job_id: str, allowed: Sequence[JobStatus], status: JobStatus,
                   now: float, **fields: Any) -> Optional[Job]:
        """Move a job to ``status`` only if it is in one of ``allowed`` (compare and set).

        Reaching a completed status counts it in the persistent counters in the same
        transaction, and so does reaching RUNNING (jobs-run); CANCELED counts only for
        jobs that had started, as scrapy-do counts it. Returns the new job, or
        None when the job is gone or in another status.
        """
        sets = ["status = ?", "updated = ?"] + [f"{k} = ?" for k in fields]
        with self._transaction():
            cur = self.conn.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? "
                f"AND status IN ({_marks(allowed)})",
                (status.value, now, *fields.values(), job_id, *(s.value for s in allowed)))
            if cur.rowcount != 1:
                return None
            if status is JobStatus.RUNNING:
                self._bump("jobs-run")
            elif status in _COUNTER_FOR:
                self._count_end(job_id, status)
        return self.get_job(job_id)

    def _count_end(self, job_id: str, status: JobStatus) -> None:
        """A job reached a completed status: count it (in the transaction that moved it).

        A job that never ran (a canceled schedule or queued job) is not counted, as in
        scrapy-do; one that ran counts in ``counters`` and, by project, spider and
        status with the items its stats report, in ``job_totals`` (/metrics), which
        retention does not touch."""
        project, spider, started, stats = self.conn.execute(
            "SELECT project, spider, started, stats FROM jobs WHERE id = ?",
            (job_id,)).fetchone()
        if status is JobStatus.CANCELED and started is None:
            return
        self._bump(_COUNTER_FOR[status])
        if started is None:
            return
        self.conn.execute(
            "INSERT INTO job_totals (project, spider, status, jobs, items) "
            "VALUES (?, ?, ?, 1, ?) ON CONFLICT(project, spider, status) DO UPDATE SET "
            "jobs = jobs + 1, items = items + excluded.items",
            (project, spider, status.value, items_scraped(stats)))

    def metric_counts(self) -> tuple[list[tuple[str, str, str, int, int]], dict[str, int]]:
        """What /metrics reads of the store: ``job_totals`` rows (project, spider,
        status, jobs, items), and how many jobs are PENDING and RUNNING."""
        totals = self.conn.execute(
            "SELECT project, spider, status, jobs, items FROM job_totals "
            "ORDER BY project, spider, status").fetchall()
        found = dict(self.conn.execute(
            "SELECT status, COUNT(*) FROM jobs INDEXED BY jobs_by_status "
            "WHERE status IN ('PENDING', 'RUNNING') GROUP BY status").fetchall())
        return totals, {name: found.get(name, 0) for name in ("PENDING", "RUNNING")}

    def unstart(self, job_id: str, now: float) -> None:
        """Undo a RUNNING transition (a job that never ran, or lost before any item)."""
        with self._transaction():
            cur = self.conn.execute("UPDATE jobs SET status = 'PENDING', started = NULL, "
                                    "host = NULL, pid = NULL, pid_started = NULL, "
                                    "updated = ? WHERE id = ? AND status = 'RUNNING'",
                                    (now, job_id))
            if cur.rowcount == 1:
                self.conn.execute("UPDATE counters SET value = value - 1 "
                                  "WHERE name = 'jobs-run' AND value > 0")

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set fields of a job without changing its status (e.g. the pid once known)."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._transaction():
            self.conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))

    def set_stats(self, job_id: str, stats: str) -> Optional[Job]:
        """Record a running job's latest stats (JSON text); returns the job, or None when
        it is no longer RUNNING (its end records its last stats itself). ``updated`` is
        left alone: a stats report is not a change of status, and listings stay in
        the order of those."""
        with self._transaction():
            cur = self.conn.execute("UPDATE jobs SET stats = ? WHERE id = ? AND "
                                    "status = 'RUNNING'", (stats, job_id))
            if cur.rowcount != 1:
                return None
        return self.get_job(job_id)

    def fire_templates(self, firings: Sequence[tuple[str, float, bool]],
                       make_child: Callable[[Job, float], Job],
                       clock: Callable[[], float]) -> list[Fired]:
        """Fire SCHEDULED templates: move each one's next fire time, maybe add a child.

        ``firings`` are ``(template_id, next_fire, want_child)``. All of them are one
        transaction, so a crash leaves every firing done or none, and a thousand firings
        due in the same second cost one commit. A child (built by ``make_child(template,
        stamp)``, with ``stamp = clock()`` read just before the commit, so its ``created``
        time is when it became PENDING) is not added, and the reason given, when the
        template is no longer SCHEDULED, or when a previous child is still PENDING or
        RUNNING and the overlap policy is ``skip`` (dropped) or ``queue`` (remembered:
        it fires when that run ends). Returns ``(template_id, template, child, reason)``
        per firing, in order.
        """
        results: list[Fired] = []
        with self._transaction():
            for template_id, next_fire, want_child in firings:
                template = self.get_job(template_id)
                if template is None or template.status is not JobStatus.SCHEDULED:
                    results.append((template_id, None, None, "template is no longer scheduled"))
                    continue
                self.conn.execute("UPDATE jobs SET next_fire = ? WHERE id = ?",
                                  (next_fire, template_id))
                why = "no child requested" if not want_child else self._blocked(template)
                results.append((template_id, template, None, why))
            stamp = clock()
            for i, (template_id, template, _, why) in enumerate(results):
                if template is not None and not why:
                    child = self._add_child(template_id, make_child(template, stamp), stamp)
                    results[i] = (template_id, template, child, "")
        return results

    def _blocked(self, template: Job) -> str:
        """Why the template may not start a run now (its overlap policy), or ''."""
        if template.overlap == "allow":
            return ""
        busy = self._active_child(template.id)
        if not busy:
            return ""
        if template.overlap == "queue":
            self.conn.execute("UPDATE jobs SET queued = 1 WHERE id = ?", (template.id,))
            return f"queued behind run {busy}"
        return f"previous run {busy} is still active"

    def release_queued(self, template_id: str, child: Job, now: float) -> Optional[Job]:
        """overlap=queue: the template's run ended; fire the firing that waited, if any."""
        with self._transaction():
            row = self.conn.execute("SELECT status, queued FROM jobs WHERE id = ?",
                                    (template_id,)).fetchone()
            if row is None or row[0] != JobStatus.SCHEDULED.value or not row[1]:
                return None
            if self._active_child(template_id):
                return None
            self.conn.execute("UPDATE jobs SET queued = 0 WHERE id = ?", (template_id,))
            return self._add_child(template_id, child, now)

    def _active_child(self, template_id: str) -> Optional[str]:
        row = self.conn.execute(
            "SELECT id FROM jobs WHERE parent = ? AND status IN ('PENDING', 'RUNNING') "
            "LIMIT 1", (template_id,)).fetchone()
        return row[0] if row else None

    def _add_child(self, template_id: str, child: Job, now: float) -> Job:
        self.conn.execute("UPDATE jobs SET updated = ?, last_run = ? WHERE id = ?",
                          (now, now, template_id))
        return self.add_job(child)  # joins this transaction

    def purge(self, cap: int, older_than: float) -> list[str]:
        """Delete completed jobs past the newest ``cap`` or finished before ``older_than``.

        Both are index walks (``jobs_completed`` past the cap, ``jobs_status_finished``
        before the cutoff): it runs after every burst of finished jobs, and sorting
        every completed job each time held the store thread for ~50 ms at 10,000."""
        past_cap = self.conn.execute(
            f"SELECT id FROM jobs INDEXED BY jobs_completed WHERE {COMPLETED_SQL} "
            "ORDER BY updated DESC, seq DESC LIMIT -1 OFFSET ?", (cap,))
        too_old = self.conn.execute(
            f"SELECT id FROM jobs WHERE {COMPLETED_SQL} AND finished < ?", (older_than,))
        ids = list(dict.fromkeys(r[0] for rows in (past_cap, too_old) for r in rows))
        with self._transaction():
            self.conn.executemany("DELETE FROM jobs WHERE id = ?", ((i,) for i in ids))
        return ids


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK; nested uses join the outer transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.outer = False

    def __enter__(self) -> None:
        self.outer = not self.conn.in_transaction
        if self.outer:
            self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb) -> None:
        if not self.outer:
            return
        if kind is not None:
            self.conn.execute("ROLLBACK")
            return
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            # e.g. disk full: never leave the transaction open, or every later write
            # would join it and none would ever commit
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
