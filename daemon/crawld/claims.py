"""Workers' claims of job attempts (issue 14): the SQL that makes the first claim win.

A Celery message may be delivered twice (a broker restart, a worker that died after
taking it); the daemon's store decides which worker runs an attempt, in one UPDATE that
only the first claim can match. Mixed into ``database.Database`` (one thread).
"""
from __future__ import annotations

from typing import Any


class ClaimRows:
    """The claims' side of the database (``self.conn``: the Database's connection)."""

    conn: Any

    def claim(self, job_id: str, number: int, host: str) -> bool:
        """Record that worker ``host`` runs attempt ``number`` of RUNNING job ``job_id``;
        True only for the first claim of the job's current attempt."""
        cur = self.conn.execute(
            "UPDATE jobs SET host = ? WHERE id = ? AND attempt = ? AND host IS NULL "
            "AND status = 'RUNNING'", (host, job_id, number))
        return cur.rowcount == 1
