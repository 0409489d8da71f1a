"""Honest outcomes: the fail-on conditions that judge a spider job by its final stats
(pure: no I/O).

A spider job that exits 0 is SUCCESSFUL unless one of its conditions is met by the
stats its crawl reported last; then it is FAILED with a reason that says which and why.
The conditions (``[crawld] fail-on``, or ``fail-on=`` per job):

- ``all-requests-failed``: requests were made and no response was received;
- ``no-items``: no item was scraped;
- ``error-log``: the crawl logged at least one ERROR line;
- ``unfinished``: ``finish_reason`` is not ``finished`` (closed by a CloseSpider limit,
  by a signal, or never reported);
- ``none``: no condition (alone).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Sequence

from twisted.logger import Logger

from .errors import BadRequest
from .model import Job
from .process import Exit, signal_name

log = Logger(namespace="crawld.supervisor")

CONDITIONS = ("all-requests-failed", "no-items", "error-log", "unfinished")
NONE = "none"
DEFAULT = ("all-requests-failed",)

#: Scrapy's and Twisted's download exceptions (the last part of their names, as in
#: ``downloader/exception_type_count/<module>.<Name>``), in words.
EXCEPTION_WORDS = {
    "DNSLookupError": "DNS lookup failed",
    "CannotResolveHostError": "DNS lookup failed",
    "ConnectionRefusedError": "connection refused",
    "DownloadConnectionRefusedError": "connection refused",
    "TimeoutError": "timed out",
    "TCPTimedOutError": "timed out",
    "UserTimeoutError": "timed out",
    "DownloadTimeoutError": "timed out",
    "NoRouteError": "no route to host",
    "ConnectionLost": "connection lost",
    "ConnectionDone": "connection closed",
    "ResponseNeverReceived": "no response received",
    "ResponseFailed": "response failed",
    "DownloadFailedError": "download failed",
    "ResponseDataLossError": "response data lost",
    "_DataLoss": "response data lost",
    "DownloadCancelledError": "download cancelled",
    "UnsupportedURLSchemeError": "unsupported URL scheme",
    "NotSupported": "unsupported URL scheme",
    "SSLError": "TLS error",
    "Error": "error",
}
EXCEPTION_PREFIX = "downloader/exception_type_count/"


def parse(text: str) -> tuple[str, ...]:
    """Conditions from comma or space separated text, in the order of CONDITIONS;
    ``none`` gives ``()``. ValueError names what is wrong."""
    names = [t for t in re.split(r"[,\s]+", text.strip().lower()) if t]
    if not names:
        raise ValueError(f"give one or more of {', '.join(CONDITIONS)}, or {NONE}")
    unknown = [n for n in names if n not in CONDITIONS and n != NONE]
    if unknown:
        raise ValueError(f"unknown condition {unknown[0]!r}; the conditions are "
                         f"{', '.join(CONDITIONS)}, or {NONE} alone")
    if NONE in names:
        if len(set(names)) > 1:
            raise ValueError(f"{NONE} cannot be combined with other conditions")
        return ()
    return tuple(c for c in CONDITIONS if c in names)


def normalize(text: str) -> str:
    """A request's ``fail-on`` as stored on the job (``Job.fail_on``): the conditions
    comma-separated, or ``none``. 400 for anything else."""
    try:
        conditions = parse(text)
    except ValueError as exc:
        raise BadRequest(f"parameter 'fail-on': {exc}") from None
    return ",".join(conditions) or NONE


def conditions_of(stored: Optional[str], default: Sequence[str]) -> tuple[str, ...]:
    """A job's conditions: its own (``Job.fail_on``), else the daemon's default."""
    if stored is None:
        return tuple(default)
    try:
        return parse(stored)
    except ValueError:  # written by another crawld; judged by the daemon's default
        return tuple(default)


def _count(stats: Mapping[str, Any], name: str) -> int:
    value = stats.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def exception_words(name: str) -> str:
    """``twisted.internet.error.DNSLookupError`` as "DNS lookup failed"; an exception
    not known by its name as that name."""
    short = name.rsplit(".", 1)[-1]
    return EXCEPTION_WORDS.get(short, short)


def failures(stats: Mapping[str, Any]) -> str:
    """Why downloads failed, from ``downloader/exception_type_count/*``: "DNS lookup
    failed", or "connection refused (2), timed out (1)", most frequent first."""
    counts: dict[str, int] = {}
    for key in stats:
        if key.startswith(EXCEPTION_PREFIX):
            words = exception_words(key[len(EXCEPTION_PREFIX):])
            counts[words] = counts.get(words, 0) + _count(stats, key)
    if not counts:
        return "no exception was recorded"
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) == 1:
        return ranked[0][0]
    return ", ".join(f"{words} ({n})" for words, n in ranked)


def check(condition: str, stats: Mapping[str, Any]) -> Optional[str]:
    """Why ``condition`` is met by ``stats``, or None when it is not."""
    if condition == "all-requests-failed":
        requests = _count(stats, "downloader/request_count")
        if requests and not _count(stats, "response_received_count"):
            noun = "request" if requests == 1 else "requests"
            every = "the only" if requests == 1 else f"all {requests}"
            return f"{every} {noun} failed: {failures(stats)}"
    elif condition == "no-items":
        if not _count(stats, "item_scraped_count"):
            responses = _count(stats, "response_received_count")
            return f"no items scraped ({responses} response(s) received)"
    elif condition == "error-log":
        errors = _count(stats, "log_count/ERROR")
        if errors:
            return f"{errors} ERROR log line(s) (see the .err log)"
    elif condition == "unfinished":
        reason = stats.get("finish_reason")
        if reason != "finished":
            return ("the crawl did not report how it finished" if reason is None
                    else f"the crawl ended with finish_reason {reason!r}")
    return None


def judge(conditions: Sequence[str], stats: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The reason a job that exited 0 failed after all, or None: each condition met,
    why, and its name, joined by "; ". No stats: nothing to judge (None)."""
    if stats is None:
        return None
    met = []
    for condition in conditions:
        why = check(condition, stats)
        if why is not None:
            met.append(f"{why} (fail-on {condition})")
    return "; ".join(met) or None


def judge_job(job: Job, stats: Optional[Mapping[str, Any]],
              default: Sequence[str]) -> Optional[str]:
    """Why a job that exited 0 failed after all (its fail-on conditions, else
    ``default``, met by its last stats), or None. Browser jobs are judged by their exit
    alone; a spider that reported no stats (its project switched the extension off) too."""
    if job.is_browser:
        return None
    conditions = conditions_of(job.fail_on, default)
    if stats is None:
        if conditions:
            log.warn("job {id} exited 0 and reported no stats: fail-on ({what}) not "
                     "checked", id=job.id, what=",".join(conditions))
        return None
    return judge(conditions, stats)


def describe_exit(exit: Exit) -> Optional[str]:
    """A short reason for a failed exit, or None for success."""
    if exit.ok:
        return None
    if exit.reason:
        return exit.reason
    if exit.code is None and exit.signal is None:
        return "exit status unknown: the zygote that started the job ended before it"
    if exit.signal is not None:
        return f"killed by signal {signal_name(exit.signal)}"
    return f"exit code {exit.code}"
