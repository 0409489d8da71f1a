"""Fires SCHEDULED templates on time: a heap of next-fire times and one armed timer.

An idle daemon does no per-schedule work: one ``callLater`` waits for the earliest due
time, a firing costs O(log n). Each firing is one store transaction that inserts the
PENDING child and moves the template's next fire time, so a restart neither loses nor
doubles a firing. Per template: its time zone, a random ``jitter`` per firing, what to
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
from .model import Actor, Job, JobStatus
from .store import Store

log = Logger(namespace="crawld.scheduler")

DEFAULT_MISFIRE_GRACE = 60.0  # seconds late before a firing counts as missed


@dataclass
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

    def __init__(self, reactor: Any, store: Store, launch: Callable[[Job], None],
                 tz: Optional[tzinfo] = None, rng: Optional[random.Random] = None) -> None:
        self.reactor = reactor
        self.store = store
        self.launch = launch
        self.tz = tz
        self.rng = rng or random.Random()
        self.heap: list[tuple[float, int, str]] = []
        self.entries: dict[str, Entry] = {}
        self.generation = 0
        self.timer: Any = None
        self.stopped = False

    def __len__(self) -> int:
        return len(self.entries)

    def zone(self, name: Optional[str]) -> Optional[tzinfo]:
        """A template's zone: its own ``tz``, or the daemon's."""
        return specs.zone(name) if name else self.tz

    def first_fire(self, spec: specs.Spec, tz_name: Optional[str] = None) -> float:
        """When a new template with this spec (and zone) fires first."""
        return spec.first(self.reactor.seconds(), self.zone(tz_name), self.rng)

    def add(self, template: Job) -> None:
        """Track a SCHEDULED template (new, or loaded at start-up) by its next_fire."""
        spec = specs.parse(template.schedule)
        due = template.next_fire
        if due is None:
            due = self.first_fire(spec, template.tz)
        self.generation += 1
        grace = (template.misfire_grace if template.misfire_grace is not None
                 else DEFAULT_MISFIRE_GRACE)
        entry = Entry(self.generation, spec, self.zone(template.tz), template.jitter or 0.0,
                      template.misfire, grace, due)
        self.entries[template.id] = entry
        self._push(template.id, entry)

    def remove(self, template_id: str) -> None:
        """Forget a template (canceled, paused); its heap entry is dropped lazily."""
        self.entries.pop(template_id, None)

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    # -- the heap and the one timer ---------------------------------------------------
    def _push(self, template_id: str, entry: Entry) -> None:
        fire_at = entry.nominal + (self.rng.uniform(0, entry.jitter) if entry.jitter else 0)
        heapq.heappush(self.heap, (fire_at, entry.generation, template_id))
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
        now = self.reactor.seconds()
        while self.heap and self.heap[0][0] <= now and not self.stopped:
            item = heapq.heappop(self.heap)
            if not self._stale(item):
                self._fire(item[2], item[0], now).addErrback(
                    lambda f, i=item[2]: log.failure("firing schedule {id} failed", f, id=i))
        self._arm()

    # -- firing -----------------------------------------------------------------------
    def child_of(self, template: Job, now: float, actor: Actor = Actor.SCHEDULER) -> Job:
        """A PENDING job for one firing of ``template``."""
        return Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=actor,
                   schedule="now", project=template.project, spider=template.spider,
                   description=template.description, payload=template.payload,
                   parent=template.id, created=now, updated=now)

    @inlineCallbacks
    def _fire(self, template_id: str, fire_at: float, now: float):
        entry = self.entries[template_id]
        due = entry.nominal
        entry.nominal = entry.spec.following(due, now, entry.tz, self.rng)
        self._push(template_id, entry)
        missed = now - fire_at > entry.grace
        template = yield self.store.call("get_job", template_id)
        if template is None or template.status is not JobStatus.SCHEDULED:
            self.remove(template_id)
            return
        if missed and entry.misfire == "skip":
            yield self.store.call("fire_template", template_id, None, entry.nominal, now)
            log.info("schedule {id} ({when}): missed firing skipped (misfire=skip, "
                     "{late:.0f} s late)", id=template_id, when=template.schedule,
                     late=now - fire_at)
            return
        created, why = yield self.store.call("fire_template", template_id,
                                             self.child_of(template, now), entry.nominal, now)
        if created is None:
            log.info("schedule {id} ({when}): firing not run, {why}", id=template_id,
                     when=template.schedule, why=why)
            if why == "template is no longer scheduled":
                self.remove(template_id)
            return
        late = "" if now - fire_at < 1 else f" ({now - fire_at:.0f} s late)"
        log.info("schedule {id} ({when}) fired job {child}{late}", id=template_id,
                 when=template.schedule, child=created.id, late=late)
        self.launch(created)

    @inlineCallbacks
    def release(self, template_id: str):
        """A run of ``template_id`` ended: start the firing that waited (overlap=queue)."""
        template = yield self.store.call("get_job", template_id)
        if template is None or not template.queued:
            return
        now = self.reactor.seconds()
        created = yield self.store.call("release_queued", template_id,
                                        self.child_of(template, now), now)
        if created is not None:
            log.info("schedule {id}: queued firing runs as job {child}", id=template_id,
                     child=created.id)
            self.launch(created)
