"""How a job is shown to clients: ``job_dict`` and the ISO times in it.

Pure functions of a Job, shared by every route that shows jobs. A listing of 10,000
finished jobs calls ``job_dict`` 10,000 times and formats 30,000 times, so both are
kept lean: a local time is made from an aware UTC time (``astimezone()`` of a naive
datetime first searches for the local offset with several ``mktime`` calls; of an
aware one, a single ``localtime``), with the same result, and the millisecond times
of recently listed jobs are kept.
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Optional

from . import spec as specs
from .model import Job, JobStatus
from .process import signal_name

UTC = timezone.utc


def iso(ts: Optional[float], zone: Any = None, timespec: str = "seconds") -> Optional[str]:
    """ISO 8601 time with its UTC offset (in ``zone``, else local time), or None."""
    if ts is None:
        return None
    when = (datetime.fromtimestamp(ts, zone) if zone
            else datetime.fromtimestamp(ts, UTC).astimezone())
    return when.isoformat(timespec=timespec)


def iso_ms(ts: Optional[float]) -> Optional[str]:
    """A job's own event times, to the millisecond: enough to time a start or a firing."""
    return None if ts is None else _iso_ms(ts)


@lru_cache(maxsize=8192)
def _iso_ms(ts: float) -> str:
    """Kept for the times of the jobs pollers list again and again (a page of 100 has
    300): a time's local text does not change (crawld never changes its local zone
    while it runs), and making it was half of job_dict."""
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="milliseconds")


def display_zone(name: Optional[str]) -> Any:
    """A job's own time zone for display (None: local time)."""
    return specs.zone(name) if name else None


def job_dict(job: Job) -> dict[str, Any]:
    """A job as list-jobs.json shows it: scrapy-do's keys first, then crawld's."""
    tz = job.tz
    return {
        "identifier": job.id,
        "status": job.status.value,
        "actor": job.actor.value,
        "schedule": job.schedule,
        "project": job.project,
        "spider": job.spider,
        "description": job.description,
        "payload": job.payload,
        "timestamp": str(datetime.fromtimestamp(job.updated)),
        "duration": job.duration,
        "created": iso_ms(job.created),
        "started": iso_ms(job.started),
        "finished": iso_ms(job.finished),
        "exit-code": job.exit_code,
        "signal": signal_name(job.signal),
        "reason": job.reason,
        "parent": job.parent,
        "next-run": (iso(job.next_fire, display_zone(tz))
                     if job.status is JobStatus.SCHEDULED else None),
        "last-run": None if job.last_run is None else iso(job.last_run, display_zone(tz)),
        "tz": tz,
        "jitter": job.jitter,
        "misfire": job.misfire,
        "misfire-grace": job.misfire_grace,
        "overlap": job.overlap,
        "kind": job.kind,
        "script": job.spider if job.kind == "script" else None,
        "timeout": job.timeout,
        "no-output-timeout": job.no_output_timeout,
        "max-log-size": job.max_log_size,
        "memory-limit": job.memory_limit,
    }
