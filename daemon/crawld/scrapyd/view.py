"""scrapyd's jobs kept in memory: what ``status.json``, ``listjobs.json``, ``/jobs`` and
``/logs/`` show, answered without a round trip to the store on every request.

scrapyd answers these from memory (its queue, its launcher's processes, its last
``finished_to_keep`` jobs). crawld's listener asked the store (SQLite, on its own
thread) each time, and under load that round trip cost more than the rest of the
request. The view is filled once from the store at start-up (the pending queue and the
spider jobs that have started) and then kept by the job events (events.JobEvents):

- a PENDING spider job joins ``pending`` (the queue's order: higher priority first,
  first in first out among equals, as the store orders it);
- a RUNNING one (its process reported started) moves to ``running``; between its move
  to RUNNING in the store and that report (milliseconds), the supervisor's ``holding``
  says it runs, as the store does;
- a completed one that had started moves to ``finished``; one canceled before it ran
  leaves (scrapyd drops those too);
- retention's removals (``JobEvents.removed``) drop finished ones with the store's rows.

So the view holds exactly the spider jobs the store keeps, and the answers are those
the store gave. daemonstatus.json counts every job (of every kind) in the store: its
answer is kept from one event to the next (the counts move only with job events), and
read again after. Whether a job has an items file is known once it has started (the
launcher makes the file before the process) and holds until retention removes both: a
listing of the items folder, in a thread, settles the jobs not known yet, once each.
"""
from __future__ import annotations

import bisect
from typing import Any, Callable, Iterable, Optional, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from .. import items as item_files
from ..model import Job, JobStatus, RanJob

log = Logger(namespace="crawld.scrapyd")


class Holder(Protocol):
    """supervisor.Supervisor as the view asks it about jobs it runs."""

    def holding(self, job_id: str) -> Optional[Job]: ...

    def pid(self, job_id: str) -> Optional[int]: ...


class Events(Protocol):
    """events.JobEvents as the view listens to it."""

    def subscribe(self, observer: Callable[[Job], None]) -> Callable[[], None]: ...

    def subscribe_removed(self, observer: Callable[[Any], None]) -> Callable[[], None]: ...


class Source(Protocol):
    """jobs.Jobs as the view is filled from it at start-up."""

    def pending(self) -> Deferred: ...

    def ran_spider_jobs(self, project: Optional[str] = None) -> Deferred: ...


def ran(job: Job, pid: Optional[int]) -> RanJob:
    """A started spider job in the columns scrapyd's listings show."""
    return RanJob(job.id, job.project, job.spider, job.status, pid, job.started or 0.0,
                  job.finished, job.updated, job.seq)


def _newest_first(jobs: Iterable[RanJob]) -> list[RanJob]:
    """The store's order of a listing: most recently changed first, then by row."""
    return sorted(jobs, key=lambda j: (j.updated, j.seq), reverse=True)


class JobsView:
    """The scrapyd listener's jobs in memory (see the module docstring).

    ``memo`` is for the listener's answers made from the finished jobs (encoded
    listings): it is emptied whenever those jobs, or what is known of their items,
    change. ``entries`` keeps one encoded answer per job, dropped when that job
    changes or goes."""

    def __init__(self, events: Events, holder: Holder, items_dir: Optional[str],
                 to_thread: Callable[..., Deferred]) -> None:
        self.holder = holder
        self.items_dir = items_dir
        self.to_thread = to_thread
        self.pending: dict[str, Job] = {}
        self.running: dict[str, RanJob] = {}
        self.finished: dict[str, RanJob] = {}
        self._order: list[tuple[float, int, str]] = []  # finished, oldest change first
        self.items: dict[str, bool] = {}   # settled: has the job an items file?
        self.memo: dict[Any, Any] = {}
        self.entries: dict[str, Any] = {}
        #: daemonstatus.json's answer (the store's counts of every job), kept until the
        #: next event of any job; ``generation`` counts the events
        self.counts: Any = None
        self.generation = 0
        self._early: Optional[list[tuple[str, Any]]] = []  # events before load(); then None
        events.subscribe(self.job_changed)
        events.subscribe_removed(self.jobs_removed)

    # -- filling ----------------------------------------------------------------------
    @inlineCallbacks
    def load(self, source: Source):
        """Fill the view from the store (once, at start-up, before the listener
        listens); events heard meanwhile are applied after, in their order."""
        pending = yield source.pending()
        running, finished = yield source.ran_spider_jobs()
        for job in pending:
            if job.kind == "spider":
                self.pending[job.id] = job
        for row in running:
            self.running[row.id] = row
        for row in finished:
            self._finish(row)
        early, self._early = self._early or [], None
        for kind, value in early:
            (self.job_changed if kind == "job" else self.jobs_removed)(value)

    @property
    def loaded(self) -> bool:
        return self._early is None

    def job_changed(self, job: Job) -> None:
        """A job event: move the job between pending, running and finished."""
        if self._early is not None:
            self._early.append(("job", job))
            return
        self.changed()
        if job.kind != "spider" or job.id in self.finished:
            return  # not scrapyd's, or over (a late report changes nothing)
        status, job_id = job.status, job.id
        if status is JobStatus.PENDING:
            if job_id not in self.running:
                self.pending[job_id] = job
                self.entries.pop(job_id, None)
        elif status is JobStatus.RUNNING:
            self.pending.pop(job_id, None)
            self.entries.pop(job_id, None)
            before = self.running.get(job_id)
            pid = job.pid or (before.pid if before else None) or self.holder.pid(job_id)
            self.running[job_id] = ran(job, pid)
        elif status.completed:
            self.pending.pop(job_id, None)
            self.entries.pop(job_id, None)
            before = self.running.pop(job_id, None)
            if job.started is not None:
                self._finish(ran(job, job.pid or (before.pid if before else None)))

    def changed(self) -> None:
        """Some job changed, or went: the kept counts no longer hold."""
        self.generation += 1
        self.counts = None

    def _finish(self, row: RanJob) -> None:
        old = self.finished.get(row.id)
        if old is not None:
            self._order.remove((old.updated, old.seq, old.id))
        self.finished[row.id] = row
        bisect.insort(self._order, (row.updated, row.seq, row.id))
        self.memo.clear()

    def jobs_removed(self, job_ids: Any) -> None:
        """Retention removed these jobs from the store: drop them here too."""
        if self._early is not None:
            self._early.append(("removed", job_ids))
            return
        self.changed()
        gone = set(job_ids)
        for job_id in gone:
            self.pending.pop(job_id, None)
            self.running.pop(job_id, None)
            self.items.pop(job_id, None)
            self.entries.pop(job_id, None)
        dropped = [job_id for job_id in gone if self.finished.pop(job_id, None) is not None]
        if dropped:
            self._order = [key for key in self._order if key[2] not in gone]
            self.memo.clear()

    # -- reading ----------------------------------------------------------------------
    def state(self, job_id: str, project: Optional[str] = None) -> Optional[str]:
        """status.json's ``currstate``: pending, running, finished, or None (not a
        scrapyd job, not this ``project``'s, or not kept)."""
        job: Any = self.pending.get(job_id)
        if job is not None:
            found = "running" if self.holder.holding(job_id) is not None else "pending"
        else:
            job = self.running.get(job_id)
            if job is not None:
                found = "running"
            else:
                job = self.finished.get(job_id)
                if job is None:
                    return None
                found = "finished"
        return found if project is None or job.project == project else None

    def queued(self, project: Optional[str] = None) -> list[Job]:
        """The pending spider jobs (of ``project``) in the queue's order."""
        return sorted((j for j in self.pending.values()
                       if (project is None or j.project == project)
                       and self.holder.holding(j.id) is None),
                      key=lambda j: (-j.priority, j.seq))

    def started(self, project: Optional[str] = None) -> list[RanJob]:
        """The running spider jobs (of ``project``), most recently changed first."""
        found = [j for j in self.running.values() if project is None or j.project == project]
        for job in self.pending.values():
            held = self.holder.holding(job.id)
            if held is not None and (project is None or job.project == project):
                found.append(ran(held, self.holder.pid(job.id)))
        return _newest_first(found) if len(found) > 1 else found

    def ended(self, project: Optional[str] = None) -> list[RanJob]:
        """The finished spider jobs (of ``project``), most recently changed first."""
        finished = self.finished
        rows = (finished[key[2]] for key in reversed(self._order))
        if project is None:
            return list(rows)
        return [j for j in rows if j.project == project]

    # -- items ------------------------------------------------------------------------
    def settled(self, jobs: Iterable[RanJob]) -> bool:
        """Whether it is known of each of ``jobs`` if it has an items file."""
        if self.items_dir is None:
            return True
        items = self.items
        return all(j.id in items for j in jobs)

    def has_items(self, job_id: str, listed: Optional[set[str]] = None) -> bool:
        """Whether the job has an items file: known, else as ``listed`` (a listing
        made for this request) says."""
        known = self.items.get(job_id)
        if known is not None:
            return known
        return listed is not None and job_id in listed

    def list_items(self) -> Deferred:
        """List the items folder (in a thread); settle what it tells of the jobs that
        have started (their answer cannot change); fires with the ids it lists."""
        if self.items_dir is None:
            return succeed(set())

        def got(found: set[str]) -> set[str]:
            for jobs in (self.finished, self.running):
                for job_id in jobs:
                    if job_id not in self.items:
                        self.items[job_id] = job_id in found
            self.memo.clear()
            return found
        return self.to_thread(item_files.present, self.items_dir).addCallback(got)
