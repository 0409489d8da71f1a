"""The observer list of job changes: every service publishes here, none calls another back.

Built first, before any service, and handed to each in its constructor. The supervisor
publishes a job as it starts and ends, the jobs service as a user creates, pauses or
cancels it, the scheduler as it fires; counters, retention, overlap queues and project
clean-up subscribe (and the event stream, metrics and webhooks of later issues will).
An observer that raises is logged and the others still run.
"""
from __future__ import annotations

from typing import Callable

from twisted.logger import Logger

from .model import Job

log = Logger(namespace="crawld.events")

Observer = Callable[[Job], None]


class JobEvents:
    """Observers of job changes, called in the order they subscribed."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(job)`` at every change from now on; returns an unsubscribe."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def publish(self, job: Job) -> None:
        """Tell every observer that ``job`` changed (the Job is its new state)."""
        for observer in list(self._observers):
            try:
                observer(job)
            except Exception:
                log.failure("an observer of job {id} failed", id=job.id)
