"""Webhook deliveries as the store keeps them: the values, and every SQL string of them.

A delivery is one POST of one job event to one URL (``[webhooks] url`` or the job's own
``webhook``), with the exact body made when the event happened, its state (pending,
delivered, failed), when it is next tried and every attempt made. ``DeliveryRows`` is
mixed into ``database.Database``, so it runs on the store's one thread like every other
write; the rows belong to their job (``ON DELETE CASCADE``): retention removes them
with it. Schema: migration 6 (migrations.py).
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from typing import Any, Optional

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
STATES = (PENDING, DELIVERED, FAILED)

#: The events a job's webhooks may be told, and the statuses that make them.
STARTED = "started"
ENDED = "ended"
EVENTS = (ENDED, STARTED)


@dataclass(frozen=True)
class DeliveryAttempt:
    """One try of a delivery: when, how long it took, and the HTTP status it got (None
    when no answer came) or what went wrong (None when it was a 2xx)."""

    number: int
    at: float
    duration: float
    code: Optional[int] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class Delivery:
    """One event of one job to one URL. ``body`` is sent as it is on every attempt (so
    the signature is the same after a restart); ``tried`` counts the attempts made;
    ``attempts`` is filled only by ``job_deliveries``."""

    id: str
    job_id: str
    event: str
    url: str
    body: bytes
    state: str
    created: float
    next_attempt: Optional[float]
    tried: int = 0
    attempts: tuple[DeliveryAttempt, ...] = ()


_COLUMNS = "id, job_id, event, url, body, state, created, next_attempt"
_SELECT = (f"SELECT {_COLUMNS}, (SELECT COUNT(*) FROM webhook_attempts a "
           "WHERE a.delivery_id = d.id) FROM webhook_deliveries d")
_ATTEMPT_COLUMNS = "number, at, duration, code, error"


def _delivery(row: Any) -> Delivery:
    values = list(row)
    values[4] = bytes(values[4])
    return Delivery(*values)


class DeliveryRows:
    """The deliveries' SQL, as methods of ``database.Database`` (one thread, one writer)."""

    conn: sqlite3.Connection

    def _transaction(self) -> Any:  # database.Database's: BEGIN IMMEDIATE ... COMMIT
        raise NotImplementedError

    def add_delivery(self, delivery: Delivery) -> bool:
        """Store a new pending delivery; False (and nothing stored) when the job already
        has one for the same event and URL (an end published twice is delivered once)
        or the job is gone."""
        with self._transaction():
            try:
                cur = self.conn.execute(
                    f"INSERT OR IGNORE INTO webhook_deliveries ({_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (delivery.id, delivery.job_id, delivery.event, delivery.url,
                     delivery.body, delivery.state, delivery.created, delivery.next_attempt))
            except sqlite3.IntegrityError:  # the job was purged meanwhile
                return False
        return cur.rowcount == 1

    def get_delivery(self, delivery_id: str) -> Optional[Delivery]:
        """The delivery (without its attempts; ``tried`` counts them), or None."""
        row = self.conn.execute(f"{_SELECT} WHERE d.id = ?", (delivery_id,)).fetchone()
        return _delivery(row) if row else None

    def due_deliveries(self) -> list[tuple[str, float]]:
        """(id, next attempt time) of every pending delivery, earliest first: what a
        daemon that starts still has to send."""
        return [(i, t) for i, t in self.conn.execute(
            "SELECT id, next_attempt FROM webhook_deliveries WHERE state = 'pending' "
            "ORDER BY next_attempt, created")]

    def record_attempt(self, delivery_id: str, attempt: DeliveryAttempt, state: str,
                       next_attempt: Optional[float]) -> bool:
        """Record an attempt and the delivery's new state in one transaction, only while
        the delivery is pending: a 2xx becomes ``delivered`` in the same commit as its
        attempt. False when the delivery is gone (purged with its job) or settled."""
        with self._transaction():
            row = self.conn.execute("SELECT state FROM webhook_deliveries WHERE id = ?",
                                    (delivery_id,)).fetchone()
            if row is None or row[0] != PENDING:
                return False
            self.conn.execute(
                f"INSERT INTO webhook_attempts (delivery_id, {_ATTEMPT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (delivery_id, attempt.number, attempt.at, attempt.duration, attempt.code,
                 attempt.error))
            self.conn.execute("UPDATE webhook_deliveries SET state = ?, next_attempt = ? "
                              "WHERE id = ?", (state, next_attempt, delivery_id))
        return True

    def job_deliveries(self, job_id: str) -> list[Delivery]:
        """A job's deliveries, oldest first, each with its attempts."""
        found = []
        for row in self.conn.execute(f"{_SELECT} WHERE d.job_id = ? ORDER BY d.created, d.id",
                                     (job_id,)).fetchall():
            delivery = _delivery(row)
            attempts = tuple(DeliveryAttempt(*a) for a in self.conn.execute(
                f"SELECT {_ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = ? "
                "ORDER BY number", (delivery.id,)))
            found.append(replace(delivery, tried=len(attempts), attempts=attempts))
        return found
