"""What the API shows: times as ISO 8601 text and a job as list-jobs.json lists it.

A listing of 10,000 finished jobs calls ``job_dict`` 10,000 times and formats 30,000
times, so both are kept lean: a local time is made from an aware UTC time
(``astimezone()`` of a naive datetime first searches for the local offset with several
``mktime`` calls; of an aware one, a single ``localtime``), with the same result, and
the millisecond times of recently listed jobs are kept.
"""
from __future__ import annotations

import functools
import json
from datetime import datetime, timezone, tzinfo
from typing import Any, Optional

from twisted.logger import Logger

from .. import arguments, spec as specs
from ..hookurls import redact
from ..model import Job, JobStatus
from ..process import signal_name

log = Logger(namespace="crawld.api")
UTC = timezone.utc


def iso(ts: Optional[float], zone: Optional[tzinfo] = None,
        timespec: str = "seconds") -> Optional[str]:
    """ISO 8601 time with its UTC offset (in ``zone``, else local time), or None.

    None too for a time no datetime holds (past year 9999, infinite, NaN), such as a
    next fire time an older crawld stored for an absurd schedule: one row must not make
    a whole listing fail. Such a time is logged, once per value."""
    if ts is None:
        return None
    try:
        when = (datetime.fromtimestamp(ts, zone) if zone
                else datetime.fromtimestamp(ts, UTC).astimezone())
        return when.isoformat(timespec=timespec)
    except (OverflowError, OSError, ValueError):
        _unshowable(repr(ts))
        return None


def local_text(ts: float) -> Optional[str]:
    """scrapy-do's ``timestamp``: local time as ``str(datetime)``, or None as ``iso``."""
    try:
        return str(datetime.fromtimestamp(ts))
    except (OverflowError, OSError, ValueError):
        _unshowable(repr(ts))
        return None


@functools.lru_cache(maxsize=256)
def _unshowable(ts: str) -> None:
    """Log a stored time that no date can show, once per value (cached)."""
    log.warn("a stored time, {ts} s since 1970, is beyond the dates crawld can show; "
             "it is listed as null", ts=ts)


def iso_ms(ts: Optional[float]) -> Optional[str]:
    """A job's own event times, to the millisecond: enough to time a start or a firing."""
    return None if ts is None else _iso_ms(ts)


@functools.lru_cache(maxsize=8192)
def _iso_ms(ts: float) -> Optional[str]:
    """Kept for the times of the jobs pollers list again and again (a page of 100 has
    300): a time's local text does not change (crawld never changes its local zone
    while it runs), and making it was half of job_dict."""
    return iso(ts, timespec="milliseconds")


def display_zone(name: Optional[str]) -> Optional[tzinfo]:
    """A job's own time zone for display (None: local time)."""
    return specs.zone(name) if name else None


def job_dict(job: Job) -> dict[str, Any]:
    """A job as list-jobs.json shows it: scrapy-do's keys first, then crawld's."""
    return {
        "identifier": job.id,
        "status": job.status.value,
        "actor": job.actor.value,
        "schedule": job.schedule,
        "project": job.project,
        "spider": job.spider,
        "description": job.description,
        "payload": job.payload,
        "timestamp": local_text(job.updated),
        "duration": job.duration,
        "created": iso_ms(job.created),
        "started": iso_ms(job.started),
        "finished": iso_ms(job.finished),
        "exit-code": job.exit_code,
        "signal": signal_name(job.signal),
        "reason": job.reason,
        "parent": job.parent,
        "next-run": (iso(job.next_fire, display_zone(job.tz))
                     if job.status is JobStatus.SCHEDULED else None),
        "last-run": iso(job.last_run, display_zone(job.tz)),
        "tz": job.tz,
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
        # spider arguments (-a) and settings (-s): name -> value, as the spider gets them
        "args": {} if job.args == "[]" else arguments.as_object(job.args),
        "settings": {} if job.settings == "[]" else arguments.as_object(job.settings),
        # the process to look for in ps (crawld: job <id> ...) while the job runs
        "pid": job.pid if job.status is JobStatus.RUNNING else None,
        # its own webhook: scheme, host and port only (the rest may be a token)
        "webhook": redact(job.webhook) if job.webhook else None,
        "fail-on": job.fail_on,
        "stats": stats_object(job.stats),
    }


#: Stats texts up to this size are kept parsed (a crawl's are 1-3 KB); a larger one
#: (at most 64 KiB) is parsed each time, so the cache stays within a few MB.
CACHED_STATS = 8 * 1024


def stats_object(text: Optional[str]) -> Optional[dict[str, Any]]:
    """A job's stats (``Job.stats``, JSON text) as an object, or None: none yet, or a
    text that is not an object (never written by crawld)."""
    if text is None:
        return None
    return _parsed_stats(text) if len(text) <= CACHED_STATS else _parse_stats(text)


@functools.lru_cache(maxsize=1024)
def _parsed_stats(text: str) -> Optional[dict[str, Any]]:
    """Kept: a finished job's stats never change, and a listing shows them again and
    again (parsing a crawl's stats costs more than the rest of job_dict). The dict is
    shared: it is only ever encoded, never changed."""
    return _parse_stats(text)


def _parse_stats(text: str) -> Optional[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError:
        log.warn("a stored stats text is not JSON; shown as null")
        return None
    return value if isinstance(value, dict) else None
