"""The feed of job events: each publication of the event list as a numbered event of a
kind, kept in a bounded backlog so that a client that reconnects resumes without loss.

``JobFeed`` subscribes to ``events.JobEvents`` and turns every job it is handed into a
``FeedEvent``: ``created`` (a new job or schedule), ``started``, ``stats`` (a running job
published again, e.g. with new ``stats``), ``ended`` (SUCCESSFUL, FAILED or CANCELED) or
``changed`` (any other publication of a job that is not running: a schedule paused,
resumed, updated or run now, which jobs.Jobs publishes). The kind is inferred from the
job's status and what the feed last saw of it, so publishers need not say it.

Stats events of one job are coalesced: at most one per ``stats_interval`` (1 s); a later
one waits for its turn and is replaced by any newer one meanwhile (the latest wins); a
job's ``ended`` drops the one still waiting (``ended`` carries the final state).

Event ids are ``<boot>-<n>``: ``n`` counts from 1 for the daemon's life, ``boot`` names
this start of the daemon (its start time in milliseconds, base 36), so that an id of an
earlier run is never taken for one of this run. The last ``backlog`` events are kept in
memory (their Jobs, not their encodings): ``since(id)`` replays what followed an id,
or says that it cannot (an id of another run, or older than the backlog), and the client
must then reload what it shows.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable, Optional

from twisted.logger import Logger

from .model import Job, JobStatus
from .seams import Clock, EventSource

log = Logger(namespace="crawld.feed")

KINDS = ("created", "started", "stats", "ended", "changed")
DEFAULT_BACKLOG = 1000
STATS_INTERVAL = 1.0  # seconds between two stats events of one job, at least
ID_RE = re.compile(r"([0-9a-z]{1,16})-([0-9]{1,19})")


@dataclass(eq=False)
class FeedEvent:
    """One numbered event of the feed. ``encoded`` caches what the HTTP layer made of
    it, by format, so that many streams encode each event once."""

    seq: int
    kind: str
    job: Job
    id: str
    encoded: dict[str, bytes] = field(default_factory=dict, repr=False)


def base36(number: int) -> str:
    """``number`` (0 or more) in base 36, lower case."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


class JobFeed:
    """The numbered, coalesced, bounded feed of job events (see the module docstring).

    ``listen(fn)`` calls ``fn(event)`` for every event from now on, in order, and
    ``fn(None)`` when the feed stops.
    """

    def __init__(self, clock: Clock, events: EventSource, backlog: int = DEFAULT_BACKLOG,
                 stats_interval: float = STATS_INTERVAL, boot: Optional[str] = None) -> None:
        if backlog < 1:
            raise ValueError("the backlog must keep at least one event")
        self.clock = clock
        self.stats_interval = stats_interval
        self.boot = boot if boot is not None else base36(int(clock.seconds() * 1000))
        self.backlog: deque[FeedEvent] = deque(maxlen=backlog)
        self.last_seq = 0
        self.listeners: list[Callable[[Optional[FeedEvent]], None]] = []
        self._running: set[str] = set()          # jobs seen RUNNING and not yet ended
        self._stats_at: dict[str, float] = {}    # when each job's last stats event went
        self._waiting: dict[str, tuple[Job, Any]] = {}  # a stats event waiting its turn
        self.stopped = False
        self.unsubscribe = events.subscribe(self.job_changed)

    # -- ids ------------------------------------------------------------------------
    def event_id(self, seq: int) -> str:
        return f"{self.boot}-{seq}"

    @property
    def last_id(self) -> str:
        """The id of the latest event (``<boot>-0`` before the first)."""
        return self.event_id(self.last_seq)

    def since(self, last_id: str) -> Optional[list[FeedEvent]]:
        """The events that followed ``last_id``, oldest first; None when they cannot all
        be given: ``last_id`` is of another run of the daemon, newer than any event, or
        older than the backlog. ValueError when it is not an event id at all."""
        m = ID_RE.fullmatch(last_id.strip())
        if not m:
            raise ValueError(f"{last_id!r} is not an event id (<boot>-<number>)")
        seq = int(m.group(2))
        if m.group(1) != self.boot or not self.keeps(seq):
            return None
        first = self.backlog[0].seq if self.backlog else self.last_seq + 1
        return list(islice(self.backlog, seq - first + 1, None))

    def after(self, seq: int) -> Optional[list[FeedEvent]]:
        """The events after ``seq`` of this run (None: some left the backlog)."""
        return self.since(self.event_id(seq))

    def keeps(self, seq: int) -> bool:
        """Whether every event after ``seq`` is still in the backlog (O(1))."""
        first = self.backlog[0].seq if self.backlog else self.last_seq + 1
        return first - 1 <= seq <= self.last_seq

    # -- listeners ------------------------------------------------------------------
    def listen(self, listener: Callable[[Optional[FeedEvent]], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on (None: the feed stopped);
        returns a remover."""
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    # -- events ---------------------------------------------------------------------
    def job_changed(self, job: Job) -> None:
        """An observer of the event list: one publication becomes one event (a stats
        update may wait for its turn, or be replaced by a newer one)."""
        if self.stopped:
            return
        kind = self._kind(job)
        if kind == "stats":
            self._stats(job)
            return
        self._drop_waiting(job.id)
        if kind == "ended":
            self._stats_at.pop(job.id, None)
        self._emit(kind, job)

    def _kind(self, job: Job) -> str:
        if job.status.completed:
            self._running.discard(job.id)
            return "ended"
        if job.status is JobStatus.RUNNING:
            if job.id in self._running:
                return "stats"
            self._running.add(job.id)
            return "started"
        if job.status in (JobStatus.PENDING, JobStatus.SCHEDULED) and job.updated == job.created:
            return "created"
        return "changed"

    def _stats(self, job: Job) -> None:
        waiting = self._waiting.get(job.id)
        if waiting is not None:  # one is waiting its turn: the newer one replaces it
            self._waiting[job.id] = (job, waiting[1])
            return
        now = self.clock.seconds()
        last = self._stats_at.get(job.id)
        if last is None or now - last >= self.stats_interval:
            self._stats_at[job.id] = now
            self._emit("stats", job)
            return
        call = self.clock.callLater(last + self.stats_interval - now, self._due, job.id)
        self._waiting[job.id] = (job, call)

    def _due(self, job_id: str) -> None:
        job, _ = self._waiting.pop(job_id)
        self._stats_at[job_id] = self.clock.seconds()
        self._emit("stats", job)

    def _drop_waiting(self, job_id: str) -> None:
        waiting = self._waiting.pop(job_id, None)
        if waiting is not None and waiting[1].active():
            waiting[1].cancel()

    def _emit(self, kind: str, job: Job) -> None:
        self.last_seq += 1
        event = FeedEvent(self.last_seq, kind, job, self.event_id(self.last_seq))
        self.backlog.append(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.failure("a listener of event {id} failed", id=event.id)

    def stop(self) -> None:
        """No more events (the daemon stops): stats waiting their turn are dropped and
        every listener is called with None, once, so that streams end."""
        if self.stopped:
            return
        self.stopped = True
        self.unsubscribe()
        for job_id in list(self._waiting):
            self._drop_waiting(job_id)
        for listener in list(self.listeners):
            try:
                listener(None)
            except Exception:
                log.failure("a listener of the feed failed as it stopped")
        self.listeners.clear()
