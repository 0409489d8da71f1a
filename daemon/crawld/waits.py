"""Clients waiting for jobs to end: ``wait=SECONDS`` on list-jobs.json and
schedule-job.json, and browse.json's ``block=1``.

One observer of the event list (events.JobEvents) serves every wait: a job change costs
one dict look-up, however many clients wait. A wait is answered once, by the first of:
its job ends (an event with a completed status), its time runs out (a timer on the
injected clock), or it is canceled (the client went away, or the route no longer needs
it). Whichever comes first, the wait leaves nothing behind: its timer is canceled, its
entry removed, its place given back.

Waits a client asks for are bounded (``[web] max-waits``; TooManyWaits, a 429, past it):
each holds a connection and a timer for up to MAX_WAIT seconds. A place is taken before
the route does anything that cannot be undone (schedule-job creates its job after
taking it), so a refused wait never leaves a job behind.
"""
from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred

from .errors import TooManyWaits
from .events import JobEvents
from .model import Job
from .seams import Clock

#: The longest ``wait`` a client may ask for, seconds.
MAX_WAIT = 300.0


class Wait:
    """One place among the waits: ``until`` a job ends, then it is given back.

    ``release()`` gives the place back at any time (idempotent); a pending ``until``
    Deferred then fails with CancelledError, as does ``cancel()`` on that Deferred."""

    def __init__(self, owner: "JobWaits", counted: bool) -> None:
        self.owner = owner
        self.counted = counted
        self.job_id: Optional[str] = None
        self.timer: Any = None
        self.done = False
        self.answer: Optional[Deferred] = None

    def until(self, job_id: str, timeout: float) -> Deferred:
        """A Deferred that fires with the Job once it has ended (a completed status), or
        with None after ``timeout`` seconds; cancel it when its answer is not wanted."""
        if self.answer is not None or self.done:
            raise RuntimeError("a Wait waits once")
        self.job_id = job_id
        self.answer = Deferred(lambda _: self._clean())  # canceled: clean up
        self.owner.by_job.setdefault(job_id, set()).add(self)
        self.timer = self.owner.clock.callLater(timeout, self._fire, None)
        return self.answer

    def _fire(self, job: Optional[Job]) -> None:
        """Answer with ``job`` (None: the time ran out), after cleaning up."""
        answer = self.answer
        self._clean()
        if answer is not None and not answer.called:
            answer.callback(job)

    def release(self) -> None:
        """Give the place back; a wait still pending is canceled."""
        answer = self.answer
        self._clean()
        if answer is not None and not answer.called:
            answer.cancel()

    def _clean(self) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.job_id is not None:
            waiting = self.owner.by_job.get(self.job_id)
            if waiting is not None:
                waiting.discard(self)
                if not waiting:
                    del self.owner.by_job[self.job_id]
        if self.counted:
            self.owner.count -= 1


class JobWaits:
    """The waits of one daemon: at most ``limit`` asked for by clients at once.

    ``take()`` a place (TooManyWaits when none is left), then ``until(job_id, timeout)``
    on it; ``wait(job_id, timeout)`` does both."""

    def __init__(self, clock: Clock, events: JobEvents, limit: int) -> None:
        self.clock = clock
        self.limit = limit
        self.count = 0  # places taken by counted waits
        self.by_job: dict[str, set[Wait]] = {}
        events.subscribe(self._job_changed)

    def take(self, counted: bool = True) -> Wait:
        """A place for one wait. ``counted``: against ``limit`` (a client's ``wait=``);
        browse.json's ``block``, bounded by its job's own timeout, is not."""
        if counted:
            if self.count >= self.limit:
                raise TooManyWaits(f"{self.count} requests already wait for jobs, as many "
                                   "as [web] max-waits allows; retry later, or ask "
                                   "without wait and poll")
            self.count += 1
        return Wait(self, counted)

    def wait(self, job_id: str, timeout: float, counted: bool = True) -> Deferred:
        """``take(counted).until(job_id, timeout)``."""
        return self.take(counted).until(job_id, timeout)

    def waiting(self, job_id: str) -> int:
        """How many waits are on ``job_id`` now."""
        return len(self.by_job.get(job_id, ()))

    def _job_changed(self, job: Job) -> None:
        """An event: a job that ended answers every wait on it."""
        if job.status.completed and job.id in self.by_job:
            for wait in list(self.by_job[job.id]):
                wait._fire(job)
