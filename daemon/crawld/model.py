"""The nouns of crawld: jobs, their statuses and actors, and projects.

Plain data with no I/O, so every other module can share them without cycles.
"""
from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional


class JobStatus(enum.Enum):
    """Where a job is in its life; names are the scrapy-do wire values."""

    SCHEDULED = "SCHEDULED"
    PAUSED = "PAUSED"  # a template that does not fire until resumed
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def active(self) -> bool:
        return self in ACTIVE

    @property
    def completed(self) -> bool:
        return self in COMPLETED


ACTIVE = (JobStatus.SCHEDULED, JobStatus.PAUSED, JobStatus.PENDING, JobStatus.RUNNING)
TEMPLATES = (JobStatus.SCHEDULED, JobStatus.PAUSED)
COMPLETED = (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELED)

#: The status filters list-jobs.json accepts, as scrapy-do defines them.
STATUS_GROUPS: dict[str, tuple[JobStatus, ...]] = {
    "ACTIVE": ACTIVE,
    "COMPLETED": COMPLETED,
    **{s.value: (s,) for s in JobStatus},
}


JOB_KINDS = ("spider", "script", "browse")

#: A job's identifier: crawld's own are UUIDs; a client may choose one (scrapyd's
#: ``jobid``) of this shape, safe in a file name and a URL path segment.
JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class Actor(enum.Enum):
    """Who created a job: a user through the API, or the scheduler firing a template."""

    USER = "USER"
    SCHEDULER = "SCHEDULER"



class RanJob(NamedTuple):
    """A spider job that has started (running or completed), in the few columns
    scrapyd's listings show: listjobs.json reads every finished job on each request,
    so the store reads these instead of whole Jobs (and their stats)."""

    id: str
    project: str
    spider: str
    status: JobStatus
    pid: Optional[int]
    started: float
    finished: Optional[float]
    updated: float
    seq: int = 0           # the row's insertion order: listings order equal times by it


@dataclass(frozen=True)
class Job:
    """One row of the jobs table.

    A SCHEDULED job is a template: it never runs itself, each firing creates a PENDING
    child whose ``parent`` names the template. Times are epoch seconds (floats).
    """

    id: str
    status: JobStatus
    actor: Actor
    schedule: str
    project: str
    spider: str
    created: float
    updated: float
    description: str = ""
    payload: str = "{}"
    parent: Optional[str] = None
    started: Optional[float] = None
    finished: Optional[float] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    reason: Optional[str] = None
    pid: Optional[int] = None
    pid_started: Optional[float] = None
    next_fire: Optional[float] = None
    seq: int = 0
    # schedule policies (templates only; see docs/scheduling.md)
    tz: Optional[str] = None             # IANA zone; None: the daemon's timezone
    jitter: float = 0.0                  # random delay up to this many seconds per firing
    misfire: str = "once"                # once | skip
    misfire_grace: Optional[float] = None  # seconds late before a firing counts as missed
    overlap: str = "skip"                # skip | queue | allow
    queued: int = 0                      # overlap=queue: a firing waits for the run
    last_run: Optional[float] = None     # when the template last fired
    # what runs (see docs/browser-jobs.md): a Scrapy spider, a browser script of the
    # project (its name is in ``spider``), or an ad-hoc browse (parameters in ``payload``)
    kind: str = "spider"                 # spider | script | browse
    timeout: Optional[float] = None      # seconds of wall clock before the job is ended
    no_output_timeout: Optional[float] = None  # seconds without output before it is ended
    max_log_size: Optional[int] = None   # bytes of .out + .err before the job is ended
    memory_limit: Optional[int] = None   # bytes of RSS (its process tree) before it is ended
    # what the crawl did and how it is judged (issue 11; see docs/api.md). JSON texts, as
    # ``payload`` is, so that a row stays plain SQLite values.
    stats: Optional[str] = None          # JSON object: the crawler's latest stats; None: none yet
    fail_on: Optional[str] = None        # comma list of fail-on conditions; None: the daemon's
    args: str = "[]"                     # JSON list of [name, value]: spider arguments (-a)
    settings: str = "[]"                 # JSON list of [name, value]: Scrapy settings (-s)
    webhook: Optional[str] = None        # URL POSTed the job's events, besides [webhooks] url
    # issue 13: the pending queue's order (higher first, first in first out among
    # equals) and the project version a job runs (None: the current one when it starts)
    priority: float = 0.0
    version: Optional[str] = None
    # issue 14: the current attempt's number (unique across daemon restarts; None: never
    # started), the worker that claimed it (None: not claimed, or run locally) and
    # whether a lost attempt that wrote no items is queued again (schedule-job retry-lost)
    attempt: Optional[int] = None
    host: Optional[str] = None
    retry_lost: bool = False

    @property
    def is_browser(self) -> bool:
        """Runs a headless browser (a script or a browse), not Scrapy."""
        return self.kind != "spider"

    @property
    def duration(self) -> Optional[int]:
        """Whole seconds the job ran (all of them, days included) once it has ended.

        None before it ends, as scrapy-do reports it; ``started`` tells a running job's age.
        """
        if self.started is None or self.finished is None:
            return None
        took = self.finished - self.started
        return max(0, int(took)) if math.isfinite(took) else None  # a stored inf or NaN

    def evolve(self, **changes) -> "Job":
        """A copy with some fields changed (jobs are immutable values)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Version:
    """One stored version of a project: a pushed archive or an uploaded egg, unpacked in
    ``path`` (``projects/<project>/<number>``). ``name`` is what clients call it (an
    egg's version as scrapyd names it, a push's number as text); ``number`` names its
    directory. An egg's directory gets a ``scrapy.cfg`` naming the settings module of
    the egg's ``scrapy`` entry point, so it runs as any pushed project does."""

    project: str
    name: str
    number: int
    path: str
    spiders: tuple[str, ...] = field(default_factory=tuple)
    pushed: float = 0.0
    kind: str = "archive"  # archive | egg
    scripts: tuple[str, ...] = field(default_factory=tuple)

    def evolve(self, **changes) -> "Version":
        return replace(self, **changes)


@dataclass(frozen=True)
class Project:
    """A pushed project: its current version, the spiders ``scrapy list`` found in it and
    its browser scripts (``scripts/*.py``)."""

    name: str
    version: int
    path: str
    spiders: tuple[str, ...] = field(default_factory=tuple)
    pushed: float = 0.0
    scripts: tuple[str, ...] = field(default_factory=tuple)

    def evolve(self, **changes) -> "Project":
        return replace(self, **changes)
