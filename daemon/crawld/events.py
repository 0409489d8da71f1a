"""The observer list of job changes: every service publishes here, none calls another back.

Built first, before any service, and handed to each in its constructor. The supervisor
publishes a job as it starts and ends, the jobs service as a user creates, pauses or
cancels it, the scheduler as it fires; counters, retention, overlap queues and project
clean-up subscribe (and the event stream, metrics and webhooks of later issues will).
An observer that raises is logged and the others still run.

Removal is a change too: retention deletes completed jobs in batches and tells the
observers of removals their identifiers (``removed``), so that a view of the jobs kept
in memory (the scrapyd listener's) drops them when the store does.
"""
from __future__ import annotations

from typing import Callable, Sequence

from twisted.logger import Logger

from .model import Job

log = Logger(namespace="crawld.events")

Observer = Callable[[Job], None]
#: Told the identifiers of jobs the store no longer has (retention removed them).
RemovalObserver = Callable[[Sequence[str]], None]


class JobEvents:
    """Observers of job changes, called in the order they subscribed."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._removal_observers: list[RemovalObserver] = []

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

    def subscribe_removed(self, observer: RemovalObserver) -> Callable[[], None]:
        """Call ``observer(job_ids)`` whenever jobs are removed from the store from now
        on; returns an unsubscribe."""
        self._removal_observers.append(observer)
        return lambda: (self._removal_observers.remove(observer)
                        if observer in self._removal_observers else None)

    def removed(self, job_ids: Sequence[str]) -> None:
        """Tell every removal observer that the jobs ``job_ids`` are gone."""
        if not job_ids:
            return
        for observer in list(self._removal_observers):
            try:
                observer(job_ids)
            except Exception:
                log.failure("an observer of {n} removed job(s) failed", n=len(job_ids))
