"""Fires SCHEDULED templates on time: a heap of next-fire times and one armed timer.

An idle daemon does no per-schedule work: one ``callLater`` waits for the earliest due
time, a firing costs O(log n). Each firing is one store transaction that inserts the
PENDING child and moves the template's next fire time, so a restart neither loses nor
doubles a firing; a firing missed while the daemon was down runs once at start-up.
"""
from __future__ import annotations

import heapq
import random
import uuid
from typing import Any, Callable, Optional

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from . import spec as specs
from .model import Actor, Job, JobStatus
from .store import Store

log = Logger(namespace="crawld.scheduler")


class Scheduler:
    """Keeps templates' next fire times and turns each firing into a PENDING job."""

    def __init__(self, reactor: Any, store: Store, launch: Callable[[Job], None],
                 tz: Any = None, rng: Optional[random.Random] = None) -> None:
        self.reactor = reactor
        self.store = store
        self.launch = launch
        self.tz = tz
        self.rng = rng or random.Random()
        self.heap: list[tuple[float, int, str]] = []
        self.entries: dict[str, tuple[int, specs.Spec]] = {}  # id -> (generation, spec)
        self.generation = 0
        self.timer: Any = None
        self.stopped = False

    def __len__(self) -> int:
        return len(self.entries)

    def first_fire(self, spec: specs.Spec) -> float:
        """When a new template with this spec fires first."""
        return spec.first(self.reactor.seconds(), self.tz, self.rng)

    def add(self, template: Job) -> None:
        """Track a SCHEDULED template (new, or loaded at start-up) by its next_fire."""
        spec = specs.parse(template.schedule)
        due = template.next_fire
        if due is None:
            due = self.first_fire(spec)
        self.generation += 1
        self.entries[template.id] = (self.generation, spec)
        heapq.heappush(self.heap, (due, self.generation, template.id))
        self._arm()

    def remove(self, template_id: str) -> None:
        """Forget a template (canceled); its heap entry is dropped lazily when reached."""
        self.entries.pop(template_id, None)

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

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

    def _stale(self, entry: tuple[float, int, str]) -> bool:
        current = self.entries.get(entry[2])
        return current is None or current[0] != entry[1]

    def _tick(self) -> None:
        self.timer = None
        now = self.reactor.seconds()
        while self.heap and self.heap[0][0] <= now and not self.stopped:
            entry = heapq.heappop(self.heap)
            if not self._stale(entry):
                self._fire(entry[2], entry[0], now).addErrback(
                    lambda f, i=entry[2]: log.failure("firing schedule {id} failed", f, id=i))
        self._arm()

    @inlineCallbacks
    def _fire(self, template_id: str, due: float, now: float):
        gen, spec = self.entries[template_id]
        following = spec.following(due, now, self.tz, self.rng)
        heapq.heappush(self.heap, (following, gen, template_id))
        template = yield self.store.call("get_job", template_id)
        if template is None or template.status is not JobStatus.SCHEDULED:
            self.remove(template_id)
            return
        child = Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.SCHEDULER,
                    schedule="now", project=template.project, spider=template.spider,
                    description=template.description, payload=template.payload,
                    parent=template_id, created=now, updated=now)
        created, why = yield self.store.call("fire_template", template_id, child, following,
                                             now)
        if created is None:
            log.info("schedule {id} ({when}): firing skipped, {why}", id=template_id,
                     when=template.schedule, why=why)
            if why == "template is no longer scheduled":
                self.remove(template_id)
            return
        late = "" if now - due < 1 else f" (due {now - due:.0f} s ago)"
        log.info("schedule {id} ({when}) fired job {child}{late}", id=template_id,
                 when=template.schedule, child=created.id, late=late)
        self.launch(created)
