"""The database schema as migrations: each version's statements, applied in order.

Pure data: ``store.Database`` applies what a database lacks, one transaction per version,
and refuses a database written by a newer crawld.
"""
from __future__ import annotations

from typing import Sequence

SCHEMA_VERSION = 10

#: The status groups of list-jobs.json as SQL, each with a partial index in (updated,
#: seq) order (migration 4). The index is usable only for this very expression.
COMPLETED_SQL = "status IN ('SUCCESSFUL', 'FAILED', 'CANCELED')"
ACTIVE_SQL = "status IN ('SCHEDULED', 'PAUSED', 'PENDING', 'RUNNING')"

MIGRATIONS: dict[int, Sequence[str]] = {
    1: (
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        """CREATE TABLE projects (
               name TEXT PRIMARY KEY, version INTEGER NOT NULL, path TEXT NOT NULL,
               spiders TEXT NOT NULL, pushed REAL NOT NULL)""",
        """CREATE TABLE jobs (
               seq INTEGER PRIMARY KEY AUTOINCREMENT,
               id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, actor TEXT NOT NULL,
               schedule TEXT NOT NULL, project TEXT NOT NULL, spider TEXT NOT NULL,
               description TEXT NOT NULL, payload TEXT NOT NULL, parent TEXT,
               created REAL NOT NULL, updated REAL NOT NULL, started REAL, finished REAL,
               exit_code INTEGER, signal INTEGER, reason TEXT, pid INTEGER,
               pid_started REAL, next_fire REAL)""",
        "CREATE INDEX jobs_by_status ON jobs (status, updated)",
        "CREATE INDEX jobs_by_parent ON jobs (parent, status)",
        "CREATE INDEX jobs_by_finished ON jobs (finished)",
    ),
    2: (  # schedule policies (issue 3)
        "ALTER TABLE jobs ADD COLUMN tz TEXT",
        "ALTER TABLE jobs ADD COLUMN jitter REAL NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN misfire TEXT NOT NULL DEFAULT 'once'",
        "ALTER TABLE jobs ADD COLUMN misfire_grace REAL",
        "ALTER TABLE jobs ADD COLUMN overlap TEXT NOT NULL DEFAULT 'skip'",
        "ALTER TABLE jobs ADD COLUMN queued INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN last_run REAL",
    ),
    3: (  # browser jobs and timeouts (issue 4)
        "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'spider'",
        "ALTER TABLE jobs ADD COLUMN timeout REAL",
        "ALTER TABLE jobs ADD COLUMN no_output_timeout REAL",
        "ALTER TABLE jobs ADD COLUMN max_log_size INTEGER",
        "ALTER TABLE jobs ADD COLUMN memory_limit INTEGER",
        "ALTER TABLE projects ADD COLUMN scripts TEXT NOT NULL DEFAULT '[]'",
    ),
    4: (  # list-jobs pages of a status group read in order, not sorted (issue 9)
        f"CREATE INDEX jobs_completed ON jobs (updated) WHERE {COMPLETED_SQL}",
        f"CREATE INDEX jobs_active ON jobs (updated) WHERE {ACTIVE_SQL}",
    ),
    5: (  # what each crawl did: stats, outcomes, arguments, webhooks (issue 11)
        "ALTER TABLE jobs ADD COLUMN stats TEXT",
        "ALTER TABLE jobs ADD COLUMN fail_on TEXT",
        "ALTER TABLE jobs ADD COLUMN args TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE jobs ADD COLUMN settings TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE jobs ADD COLUMN webhook TEXT",
    ),
    6: (  # webhook deliveries and their attempts, kept with their job (issue 11)
        """CREATE TABLE webhook_deliveries (
               id TEXT PRIMARY KEY,
               job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
               event TEXT NOT NULL, url TEXT NOT NULL, body BLOB NOT NULL,
               state TEXT NOT NULL, created REAL NOT NULL, next_attempt REAL,
               UNIQUE (job_id, event, url))""",
        "CREATE INDEX webhook_due ON webhook_deliveries (next_attempt) "
        "WHERE state = 'pending'",
        """CREATE TABLE webhook_attempts (
               delivery_id TEXT NOT NULL
                   REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
               number INTEGER NOT NULL, at REAL NOT NULL, duration REAL NOT NULL,
               code INTEGER, error TEXT,
               PRIMARY KEY (delivery_id, number))""",
    ),
    7: (  # what /metrics counts of finished jobs, kept whatever retention removes
        """CREATE TABLE job_totals (
               project TEXT NOT NULL, spider TEXT NOT NULL, status TEXT NOT NULL,
               jobs INTEGER NOT NULL, items INTEGER NOT NULL,
               PRIMARY KEY (project, spider, status))""",
        # an upgraded daemon starts from the finished jobs retention kept
        f"""INSERT INTO job_totals (project, spider, status, jobs, items)
               SELECT project, spider, status, COUNT(*), SUM(CASE
                   WHEN json_valid(stats)
                        AND json_type(stats, '$.item_scraped_count') = 'integer'
                        AND json_extract(stats, '$.item_scraped_count') > 0
                   THEN json_extract(stats, '$.item_scraped_count') ELSE 0 END)
               FROM jobs WHERE {COMPLETED_SQL} AND started IS NOT NULL
               GROUP BY project, spider, status""",
    ),
    8: (  # scrapyd's side (issue 13): the queue's priority, versions kept and pinned
        "ALTER TABLE jobs ADD COLUMN priority REAL NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN version TEXT",
        """CREATE TABLE versions (
               project TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL,
               spiders TEXT NOT NULL, scripts TEXT NOT NULL, pushed REAL NOT NULL,
               kind TEXT NOT NULL, PRIMARY KEY (project, name))""",
        # the versions of projects a crawld before this one pushed: their current one
        """INSERT INTO versions (project, name, number, spiders, scripts, pushed, kind)
               SELECT name, CAST(version AS TEXT), version, spiders, scripts, pushed,
                      'archive' FROM projects""",
    ),
    9: (  # the dashboard's chart of jobs finished per hour by outcome (issue 12): one
          # count of an index range per hour and status. Retention's "completed and
          # finished before" walks it too, where no plan used the index it replaces.
        "CREATE INDEX jobs_status_finished ON jobs (status, finished)",
        "DROP INDEX jobs_by_finished",
    ),
    10: (  # jobs run by workers on other hosts (issue 14): the attempt a RUNNING job is
           # on (unique across daemon restarts), the worker that claimed it (NULL: not
           # claimed; the first claim wins) and the job's retry-lost=1
        "ALTER TABLE jobs ADD COLUMN attempt INTEGER",
        "ALTER TABLE jobs ADD COLUMN host TEXT",
        "ALTER TABLE jobs ADD COLUMN retry_lost INTEGER NOT NULL DEFAULT 0",
    ),
}
