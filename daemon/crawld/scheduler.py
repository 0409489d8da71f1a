"""Fires SCHEDULED templates on time: a heap of next-fire times and one armed timer.

An idle daemon does no per-schedule work: one ``callLater`` waits for the earliest due
time, a firing costs O(log n). The firings due in one tick are one store transaction
(in batches of FIRE_BATCH) that inserts the PENDING children and moves the templates'
next fire times, so a restart neither loses nor doubles a firing, and a thousand
schedules due in the same second cost one commit, not a thousand. Per template: its time zone, a random ``jitter`` per firing, what to
do with firings missed while the daemon was down (``misfire``), and what to do when the
previous run is still going (``overlap``). See docs/scheduling.md.
"""
from __future__ import annotations

import heapq
import random
import uuid
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Callable, Optional

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from . import spec as specs
from .events import JobEvents
from .model import Actor, Job, JobStatus
from .store import Store

log = Logger(namespace="crawld.scheduler")

DEFAULT_MISFIRE_GRACE = 60.0  # seconds late before a firing counts as missed
FIRE_BATCH = 500  # firings per store transaction when many are due at once
FIRE_RETRY = 5.0  # seconds before a batch the store refused is tried again


@dataclass(slots=True)
class Entry:
    """What the scheduler keeps per template (the template row itself stays in the store)."""

    generation: int
    spec: specs.Spec
    tz: Optional[tzinfo]
    jitter: float
    misfire: str
    grace: float
    nominal: float  # the un-jittered due time of the next firing


class Scheduler:
    """Keeps templates' next fire times and turns each firing into a PENDING job."""

    def __init__(self, reactor: Any, store: Store, enqueue: Callable[[str, float], None],
                 events: JobEvents, tz: Optional[tzinfo] = None,
                 rng: Optional[random.Random] = None,
                 lateness: Callable[[float], None] = lambda late: None) -> None:
        """``lateness(seconds)`` is told how late each firing is (the metrics)."""
        self.reactor = reactor
        self.store = store
        self.enqueue = enqueue   # hands a PENDING job to the supervisor
        self.events = events
        self.lateness = lateness
        self.tz = tz
        self.rng = rng or random.Random()
        self.heap: list[tuple[float, int, str]] = []
        self.entries: dict[str, Entry] = {}
        self.generation = 0
        self.timer: Any = None
        self.stopped = False
        events.subscribe(self._job_changed)

    def launch(self, job: Job) -> None:
        """A firing's PENDING child exists: publish it and queue it to run."""
        self.events.publish(job)
        self.enqueue(job.id, job.priority)

    def _job_changed(self, job: Job) -> None:
        """A run of an overlap=queue template ended: the firing that waited may start."""
        if job.status.completed and job.parent is not None and not self.stopped:
            self.release(job.parent).addErrback(
                lambda f: log.failure("releasing a queued firing failed", f))

    def __len__(self) -> int:
        return len(self.entries)

    def zone(self, name: Optional[str]) -> Optional[tzinfo]:
        """A template's zone: its own ``tz``, or the daemon's."""
        return specs.zone(name) if name else self.tz

    def first_fire(self, spec: specs.Spec, tz_name: Optional[str] = None) -> float:
        """When a new template with this spec (and zone) fires first."""
        return spec.first(self.reactor.seconds(), self.zone(tz_name), self.rng)

    def add(self, template: Job) -> None:
        """Track a SCHEDULED template (new, or changed) by its next_fire."""
        self._track(template.id, template.schedule, template.next_fire, template.tz,
                    template.jitter, template.misfire, template.misfire_grace)
        self._arm()

    def load(self, rows: list[tuple]) -> list[tuple[str, Exception]]:
        """Track every template of the store at start-up (``Database.schedule_rows``).

        One heapify and one timer for all of them. Returns the rows that could not be
        loaded (id, error), e.g. a time zone this machine no longer has.
        """
        failed: list[tuple[str, Exception]] = []
        for row in rows:
            try:
                self._track(*row, push=False)
            except Exception as exc:
                failed.append((row[0], exc))
        self.heap = [item for item in self.heap if not self._stale(item)]
        for template_id, entry in self.entries.items():
            self.heap.append((self._fire_at(entry), entry.generation, template_id))
        heapq.heapify(self.heap)
        self._arm()
        return failed

    def _track(self, template_id: str, schedule: str, next_fire: Optional[float],
               tz_name: Optional[str], jitter: Optional[float], misfire: str,
               misfire_grace: Optional[float], push: bool = True) -> None:
        spec = specs.parse(schedule)
        due = next_fire if next_fire is not None else self.first_fire(spec, tz_name)
        self.generation += 1
        grace = misfire_grace if misfire_grace is not None else DEFAULT_MISFIRE_GRACE
        entry = Entry(self.generation, spec, self.zone(tz_name), jitter or 0.0, misfire,
                      grace, due)
        self.entries[template_id] = entry
        if push:
            self._push(template_id, entry, arm=False)

    def remove(self, template_id: str) -> None:
        """Forget a template (canceled, paused); its heap entry is dropped lazily."""
        self.entries.pop(template_id, None)

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    # -- the heap and the one timer ---------------------------------------------------
    def _fire_at(self, entry: Entry) -> float:
        return entry.nominal + (self.rng.uniform(0, entry.jitter) if entry.jitter else 0)

    def _push(self, template_id: str, entry: Entry, arm: bool = True) -> None:
        heapq.heappush(self.heap, (self._fire_at(entry), entry.generation, template_id))
        if arm:
            self._arm()

    def _arm(self) -> None:
        if self.stopped:
            return
        while self.heap and self._stale(self.heap[0]):
            heapq.heappop(self.heap)
        if not self.heap:
            return
        delay = max(0.0, self.heap[0][0] - self.reactor.seconds())
        if self.timer is not None and self.timer.active():
            self.timer.reset(delay)
        else:
            self.timer = self.reactor.callLater(delay, self._tick)

    def _stale(self, item: tuple[float, int, str]) -> bool:
        current = self.entries.get(item[2])
        return current is None or current.generation != item[1]

    def _tick(self) -> None:
        self.timer = None
        try:
            now = self.reactor.seconds()
            due: list[tuple[str, float, bool, float]] = []
            while self.heap and self.heap[0][0] <= now and not self.stopped:
                fire_at, _, template_id = heapq.heappop(self.heap)
                if self._stale((fire_at, _, template_id)):
                    continue
                entry = self.entries[template_id]
                try:
                    following = entry.spec.following(entry.nominal, now, entry.tz, self.rng)
                except Exception:  # e.g. a date past year 9999: this one schedule stops
                    log.failure("schedule {id} has no next fire time; it stops firing",
                                id=template_id)
                    self.remove(template_id)
                    continue
                missed = now - fire_at > entry.grace
                self.lateness(now - fire_at)  # after its (jittered) due time
                entry.nominal = following
                self._push(template_id, entry, arm=False)
                due.append((template_id, entry.nominal,
                            not (missed and entry.misfire == "skip"), now - fire_at))
            for start in range(0, len(due), FIRE_BATCH):
                self._send(due[start:start + FIRE_BATCH])
        finally:
            self._arm()  # whatever happened to one schedule, the others keep firing

    def _send(self, batch: list[tuple[str, float, bool, float]]) -> None:
        """Fire a batch; if the store refuses it (e.g. a full disk), the transaction
        rolled back: try the same batch again later, so no firing is lost."""
        def failed(failure: Any) -> None:
            if self.stopped:
                log.failure("firing {n} schedules failed at shutdown; the next start "
                            "runs them as missed firings", failure, n=len(batch))
                return
            log.failure("firing {n} schedules failed; retrying in {delay:g} s", failure,
                        n=len(batch), delay=FIRE_RETRY)
            self.reactor.callLater(FIRE_RETRY, self._send, batch)
        self._fire(batch).addErrback(failed)

    # -- firing -----------------------------------------------------------------------
    def child_of(self, template: Job, now: float, actor: Actor = Actor.SCHEDULER) -> Job:
        """A PENDING job for one firing of ``template``."""
        return Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=actor,
                   schedule="now", project=template.project, spider=template.spider,
                   description=template.description, payload=template.payload,
                   parent=template.id, created=now, updated=now, kind=template.kind,
                   timeout=template.timeout, no_output_timeout=template.no_output_timeout,
                   max_log_size=template.max_log_size, memory_limit=template.memory_limit,
                   webhook=template.webhook, args=template.args,
                   settings=template.settings, priority=template.priority,
                   version=template.version, fail_on=template.fail_on,
                   retry_lost=template.retry_lost)

    @inlineCallbacks
    def _fire(self, batch: list[tuple[str, float, bool, float]]):
        """One store transaction for the firings of one tick; then launch the children."""
        fired = yield self.store.fire_templates([b[:3] for b in batch],
                                      self.child_of, self.reactor.seconds)
        for outcome, firing in zip(fired, batch):
            try:  # the firings are committed: a problem from here on is logged, not retried
                self._fired(outcome, firing)
            except Exception:
                log.failure("after firing schedule {id}", id=outcome[0])

    def _fired(self, outcome: tuple, firing: tuple[str, float, bool, float]) -> None:
        template_id, template, created, why = outcome
        _, _, wanted, late = firing
        when = template.schedule if template is not None else "?"
        if created is not None:
            late_note = "" if late < 1 else f" ({late:.0f} s late)"
            log.info("schedule {id} ({when}) fired job {child}{late}", id=template_id,
                     when=when, child=created.id, late=late_note)
            self.launch(created)
        elif not wanted:
            log.info("schedule {id} ({when}): missed firing skipped (misfire=skip, "
                     "{late:.0f} s late)", id=template_id, when=when, late=late)
        else:
            log.info("schedule {id} ({when}): firing not run, {why}", id=template_id,
                     when=when, why=why)
        if template is None:
            self.remove(template_id)

    @inlineCallbacks
    def release(self, template_id: str):
        """A run of ``template_id`` ended: start the firing that waited (overlap=queue)."""
        template = yield self.store.get_job(template_id)
        if template is None or not template.queued:
            return
        now = self.reactor.seconds()
        created = yield self.store.release_queued(template_id,
                                        self.child_of(template, now), now)
        if created is not None:
            log.info("schedule {id}: queued firing runs as job {child}", id=template_id,
                     child=created.id)
            self.launch(created)
