"""The stats of running spider jobs: kept in memory as they arrive, written to the store
(``Job.stats``) and published as a change of the job.

A job's stats come home every few seconds (``[crawld] stats-interval``) through its
stats channel (launch/statspipe.py); the supervisor hands each report here. A report is
written at once unless the job's previous one was written less than ``WRITE_GAP``
seconds ago: then the newest report waits for that moment (older ones are dropped), so
a job that reports too often costs at most one write a second. A report equal to the
last one written is not written again. Each write that finds the job still RUNNING is
published on the event list: to the subscribers, a RUNNING job whose ``stats`` changed
is a stats update. At the job's end the supervisor takes the last report (``finish``)
and records it with the job's end, in the same transaction.
"""
from __future__ import annotations

import json
import math
from typing import Any, Optional

from twisted.logger import Logger

from .seams import Clock, EventSink, JobStore

log = Logger(namespace="crawld.stats")

WRITE_GAP = 1.0  # seconds between two writes of one job's stats, at least


def encode(stats: dict[str, Any]) -> str:
    """Stats as stored in ``Job.stats``: compact JSON, keys sorted, valid UTF-8 (a lone
    surrogate, which SQLite and the API could not encode, becomes "?")."""
    text = json.dumps(stats, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)
    return text.encode("utf-8", "replace").decode("utf-8")


def _no_constant(name: str) -> None:
    """NaN and Infinity, which Python's json reads but JSON has not: null."""
    return None


def _finite(text: str) -> Optional[float]:
    """A JSON number too large for a float (1e999) is null, not infinity."""
    value = float(text)
    return value if math.isfinite(value) else None


def decode_report(line: bytes) -> Optional[dict[str, Any]]:
    """The stats of one report line ``{"stats": {...}}``, or None if it is not one."""
    try:
        report = json.loads(line, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        return None
    stats = report.get("stats") if isinstance(report, dict) else None
    return stats if isinstance(stats, dict) else None


class JobStats:
    """The latest stats of each running job, written at most once per WRITE_GAP."""

    def __init__(self, clock: Clock, store: JobStore, events: EventSink,
                 gap: float = WRITE_GAP) -> None:
        self.clock = clock
        self.store = store
        self.events = events
        self.gap = gap
        self.latest: dict[str, dict[str, Any]] = {}   # job id -> its newest report
        self._written: dict[str, tuple[float, str]] = {}  # job id -> (when, text)
        self._due: dict[str, Any] = {}                # job id -> the planned write

    def report(self, job_id: str, stats: dict[str, Any]) -> None:
        """A running job's newest stats: write them now, or as soon as the gap allows."""
        self.latest[job_id] = stats
        if job_id in self._due:
            return  # the planned write takes the newest report
        last = self._written.get(job_id)
        wait = 0.0 if last is None else last[0] + self.gap - self.clock.seconds()
        if wait <= 0:
            self._write(job_id)
        else:
            self._due[job_id] = self.clock.callLater(wait, self._write, job_id)

    def _write(self, job_id: str) -> None:
        self._due.pop(job_id, None)
        stats = self.latest.get(job_id)
        if stats is None:
            return  # the job ended meanwhile: its end records the stats
        text = encode(stats)
        last = self._written.get(job_id)
        if last is not None and last[1] == text:
            return
        self._written[job_id] = (self.clock.seconds(), text)
        self.store.set_stats(job_id, text).addCallbacks(
            self._stored, lambda f: log.failure("storing the stats of job {id} failed", f,
                                                id=job_id), callbackArgs=(job_id,))

    def _stored(self, job: Any, job_id: str) -> None:
        """Publish the job with its new stats, if it still runs (a stats update)."""
        if job is not None and job_id in self.latest:
            self.events.publish(job)

    def finish(self, job_id: str) -> Optional[dict[str, Any]]:
        """The job ended: its last stats (None if it never reported); forget it."""
        due = self._due.pop(job_id, None)
        if due is not None and due.active():
            due.cancel()
        self._written.pop(job_id, None)
        return self.latest.pop(job_id, None)
