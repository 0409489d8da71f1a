"""Runs jobs: slots, a queue (higher priority first, first in first out among equals),
limits, cancel, shutdown and orphans.

The supervisor decides; a launcher (launch/) does. A slot is refilled the moment an
attempt ends (no polling loop). Every change of a job is published to the event list.
Reports from the launcher name their attempt, and one that does not match the attempt
running (late, or a second time) is ignored: a remote launcher may report from elsewhere
and more than once.

A remote launcher (launch/celery.py) sets the number of slots (the capacity its live
workers offer), keeps its attempts running across a daemon restart (detached at stop,
adopted at start) and may report an attempt ``lost``: FAILED, or queued again when the
job asked ``retry-lost`` and the attempt wrote no items.
"""
from __future__ import annotations

import heapq
import itertools
import signal as signals
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from . import logs, outcomes
from .launch.protocol import Attempt, Launcher, Started
from .limits import Defaults, Limits, Watch
from .model import Job, JobStatus
from .outcomes import describe_exit  # noqa: F401  (where callers found it)
from .process import Exit
from .seams import Clock, EventSink, JobStore
from .stats import JobStats, encode as encode_stats

log = Logger(namespace="crawld.supervisor")

SHUTDOWN_REASON = "stopped by daemon shutdown"
RETRY_DELAY = 5.0  # a job whose start hit a store error is queued again after this


@dataclass
class Running:
    """A job the supervisor has started (or is starting) and not yet seen end."""

    job: Optional[Job] = None
    attempt: Optional[Attempt] = None
    started: Optional[Started] = None
    cancel_reason: Optional[str] = None
    fail_reason: Optional[str] = None   # ended by a limit: FAILED, not CANCELED
    kill_call: Any = None
    watch: Optional[Watch] = None
    waiters: list[Deferred] = field(default_factory=list)


class Supervisor:
    """Starts PENDING jobs when slots are free and records how they end."""

    def __init__(self, reactor: Clock, store: JobStore, launcher: Launcher, events: EventSink,
                 log_dir: str, slots: int, kill_grace: float,
                 limits: Defaults = Defaults(), record_retry: float = RETRY_DELAY,
                 job_stats: Optional[JobStats] = None,
                 fail_on: Sequence[str] = outcomes.DEFAULT) -> None:
        """``job_stats`` keeps running jobs' stats (one over the same store and events
        when None); ``fail_on``: the conditions of jobs that give none ([crawld] fail-on)."""
        self.reactor = reactor
        self.job_stats = job_stats or JobStats(reactor, store, events)
        self.fail_on = tuple(fail_on)
        self.store = store
        self.launcher = launcher
        self.events = events
        self.log_dir = log_dir
        self.slots = slots
        self.kill_grace = kill_grace
        self.record_retry = record_retry    # a job end the store could not record: retry
        self.limits = Limits(reactor, log_dir, limits, self.expire,
                             self._activity, self._rss)
        #: (-priority, arrival, job id): a heap, so the highest priority pops first and
        #: equal priorities in the order they came
        self.queue: list[tuple[float, int, str]] = []
        self._arrivals = itertools.count()
        self.running: dict[str, Running] = {}
        self.stopping = False
        # attempt numbers are unique across daemon restarts (a worker's claim names one):
        # milliseconds of the clock at start, so a later daemon's numbers are higher
        self._numbers = itertools.count(max(1, int(reactor.seconds() * 1000)))
        launcher.watch_capacity(self.pump)

    # -- queue ------------------------------------------------------------------------
    def enqueue(self, job_id: str, priority: float = 0.0) -> None:
        """Queue a PENDING job; it starts as soon as a slot is free and no job of a
        higher ``priority`` (nor of the same one queued earlier) waits."""
        heapq.heappush(self.queue, (-priority, next(self._arrivals), job_id))
        self.pump()

    def pump(self) -> None:
        """Start queued jobs while slots are free."""
        while self.queue and not self.stopping and len(self.running) < self.capacity():
            self._start(heapq.heappop(self.queue)[2])

    def capacity(self) -> int:
        """How many jobs may run now: the launcher's capacity (a remote launcher's live
        workers' slots), or ``[crawld] slots``."""
        offered = self.launcher.capacity()
        return self.slots if offered is None else offered

    def is_running(self, job_id: str) -> bool:
        return job_id in self.running

    def load(self) -> tuple[int, int, int]:
        """(slots, jobs holding one, jobs queued for one) as status.json shows them. A
        job canceled while queued leaves the queue when its turn comes, so the last
        figure may count it until then."""
        return self.capacity(), len(self.running), len(self.queue)

    def holding(self, job_id: str) -> Optional[Job]:
        """The job, as the store has it RUNNING, while it holds a slot: from its move to
        RUNNING, before its process is reported started (when it is published), until
        its end. None when the supervisor holds no slot for it, or has not moved it."""
        run = self.running.get(job_id)
        return run.job if run is not None else None

    def pid(self, job_id: str) -> Optional[int]:
        """The pid of a running job's process, once it has one."""
        run = self.running.get(job_id)
        return run.started.pid if run is not None and run.started is not None else None

    # -- start ------------------------------------------------------------------------
    def _start(self, job_id: str) -> None:
        run = Running()
        self.running[job_id] = run  # holds the slot from now on
        self._try_start(job_id, run).addErrback(self._start_failed, job_id, run)

    @inlineCallbacks
    def _try_start(self, job_id: str, run: Running):
        # The logs exist before anyone can see the job RUNNING: a reader follows them
        # from then on, even before the child that writes them exists.
        try:
            logs.create(self.log_dir, job_id)
            no_logs = None
        except OSError as exc:
            no_logs = exc
        now = self.reactor.seconds()
        number = next(self._numbers)
        job = yield self.store.transition(job_id, [JobStatus.PENDING], JobStatus.RUNNING,
                                          now, started=now, attempt=number, host=None)
        if job is None:  # canceled (or removed) while it waited
            self._release(job_id, run, None)
            return
        run.job = job
        if run.cancel_reason is not None or self.stopping:
            # Canceled, or the daemon is stopping, before any process exists: nothing
            # ran, so the job goes back to PENDING (and to CANCELED if a user asked).
            yield self.store.unstart(job_id, self.reactor.seconds())
            final = None
            if run.cancel_reason not in (None, SHUTDOWN_REASON):
                now = self.reactor.seconds()
                final = yield self.store.transition(
                    job_id, [JobStatus.PENDING], JobStatus.CANCELED, now, finished=now,
                    reason=run.cancel_reason)
            self._release(job_id, run, final)
            return
        run.attempt = Attempt(job, number)
        try:
            if no_logs is not None:
                raise RuntimeError(f"cannot create its log files: {no_logs}")
            yield self.launcher.start(run.attempt, self)
        except Exception as exc:
            log.error("job {id} could not start: {exc}", id=job_id, exc=exc)
            now = self.reactor.seconds()
            failed = yield self.store.transition(
                job_id, [JobStatus.RUNNING], JobStatus.FAILED, now, finished=now,
                reason=f"could not start: {exc}")
            self._release(job_id, run, failed)

    def _current(self, attempt: Attempt) -> Optional[Running]:
        """The run this attempt belongs to, if it is still the one running."""
        run = self.running.get(attempt.job.id)
        return run if run is not None and run.attempt == attempt else None

    # -- reports from the launcher (Reporter) -----------------------------------------
    def started(self, attempt: Attempt, info: Started) -> None:
        """The attempt runs: arm its limits, publish it, record its pid."""
        run = self._current(attempt)
        if run is None or run.started is not None:
            return  # late or repeated
        run.started = info
        job = attempt.job
        run.watch = self.limits.arm(job)
        self.limits.watch_disk(self._running_ids)
        self.events.publish(job)
        log.info("job {id} started: {project}/{spider} pid {pid}", id=job.id,
                 project=job.project, spider=job.spider, pid=info.pid)
        if run.cancel_reason is not None:  # canceled while the start was under way
            self._signal(run, signals.SIGTERM)
        self.store.update_job(job.id, pid=info.pid, pid_started=info.pid_started
                              ).addErrback(lambda f: log.failure(
                                  "recording the pid of job {id} failed", f, id=job.id))

    def output(self, attempt: Attempt, stream: str, offset: int, data: bytes) -> None:
        """Output that came home from elsewhere: written into the job's log at offset."""
        if self._current(attempt) is None:
            return
        logs.write_at(self.log_dir, attempt.job.id, stream, offset, data)

    def stats(self, attempt: Attempt, stats: dict[str, Any]) -> None:
        """A running spider's latest stats: kept, stored, published (stats.py)."""
        if self._current(attempt) is not None:
            self.job_stats.report(attempt.job.id, stats)

    def ended(self, attempt: Attempt, exit: Exit) -> None:
        """The attempt is gone: record how it ended (once)."""
        run = self._current(attempt)
        if run is None:
            return  # late or repeated
        self._ended(exit, run).addErrback(
            lambda f: log.failure("recording the end of job {id} failed", f,
                                  id=attempt.job.id))

    # -- end --------------------------------------------------------------------------
    @inlineCallbacks
    def _ended(self, exit: Exit, run: Running):
        job_id = run.job.id
        now = self.reactor.seconds()  # the end, before the freed slot starts another job
        self._forget(job_id, run)
        self.pump()
        if exit.lost and run.cancel_reason is None:
            if run.job.retry_lost and exit.retryable and not self.stopping:
                yield self._retry(run)
                return
            run.fail_reason = exit.reason or "worker lost"
        if run.fail_reason is None and run.cancel_reason is None:
            run.fail_reason = self.limits.at_end(job_id, run.watch)
        stats = self.job_stats.finish(job_id)
        if run.fail_reason is not None:
            status, reason = JobStatus.FAILED, run.fail_reason
        elif run.cancel_reason is not None:
            status, reason = JobStatus.CANCELED, run.cancel_reason
        elif exit.ok:
            reason = outcomes.judge_job(run.job, stats, self.fail_on)
            status = JobStatus.SUCCESSFUL if reason is None else JobStatus.FAILED
        else:
            status, reason = JobStatus.FAILED, describe_exit(exit)
        fields = dict(finished=now, exit_code=exit.code, signal=exit.signal, reason=reason)
        if stats is not None:
            fields["stats"] = encode_stats(stats)
        try:
            job = yield self.store.transition(job_id, [JobStatus.RUNNING], status, now,
                                              **fields)
        except Exception as exc:
            # e.g. a full disk: tell the waiters now, record it once the store can
            log.error("could not record the end of job {id} ({exc}); retrying every "
                      "{delay:g} s", id=job_id, exc=exc, delay=self.record_retry)
            job = None
            self._record_later(job_id, status, now, fields)
        log.info("job {id} ended {status} ({how})", id=job_id, status=status.value,
                 how=reason or "exit code 0")
        self._notify(run, job or run.job.evolve(status=status, updated=now, **fields))

    def _forget(self, job_id: str, run: Running) -> None:
        """The run holds no slot nor timer any more."""
        if self.running.get(job_id) is run:
            del self.running[job_id]
        if run.kill_call is not None and run.kill_call.active():
            run.kill_call.cancel()
        if run.watch is not None:
            run.watch.cancel()

    @inlineCallbacks
    def _retry(self, run: Running):
        """A lost attempt that wrote no items, of a job that asked retry-lost: back to
        PENDING and into the queue (its priority), to run as a new attempt."""
        job = run.job
        self.job_stats.finish(job.id)
        yield self.store.unstart(job.id, self.reactor.seconds())
        log.warn("job {id}: attempt {n} was lost before it wrote items; queued again "
                 "(retry-lost)", id=job.id, n=run.attempt.number if run.attempt else "?")
        again = yield self.store.get_job(job.id)
        self._notify(run, None)
        if again is not None and again.status is JobStatus.PENDING:
            self.events.publish(again)
            self.enqueue(job.id, again.priority)

    @inlineCallbacks
    def _record_later(self, job_id: str, status: JobStatus, now: float,
                      fields: dict[str, Any]):
        """Retry recording a job's end until the store takes it (or the daemon stops:
        then the next start settles the job as an orphan)."""
        while not self.stopping:
            yield deferLater(self.reactor, self.record_retry, lambda: None)
            try:
                job = yield self.store.transition(job_id, [JobStatus.RUNNING], status,
                                                  now, **fields)
            except Exception:
                continue
            if job is not None:
                log.info("job {id}: its end is recorded now", id=job_id)
                self.events.publish(job)
            return

    def _start_failed(self, failure: Any, job_id: str, run: Running) -> None:
        """A store error while starting: free the slot, tell waiters, retry later."""
        log.failure("starting job {id} failed", failure, id=job_id)
        if run.started is not None:
            return  # the process runs; its end is recorded by ended()
        self._release(job_id, run, None)
        if not self.stopping:
            self.reactor.callLater(self.record_retry, self.enqueue, job_id)  # (its priority: 0)

    def _release(self, job_id: str, run: Running, job: Optional[Job]) -> None:
        if self.running.get(job_id) is run:
            del self.running[job_id]
        self._notify(run, job)
        self.pump()

    def _notify(self, run: Running, job: Optional[Job]) -> None:
        if job is not None:
            self.events.publish(job)
        waiters, run.waiters = run.waiters, []
        for d in waiters:
            d.callback(job)

    # -- limits -----------------------------------------------------------------------
    def _running_ids(self) -> list[str]:
        return [] if self.stopping else [job_id for job_id, run in self.running.items()
                                         if run.started is not None]

    def _activity(self, job_id: str) -> int:
        run = self.running.get(job_id)
        return self.launcher.activity(run.attempt) if run and run.attempt else 0

    def _rss(self, job_id: str) -> "Deferred[int]":
        run = self.running.get(job_id)
        return self.launcher.rss(run.attempt) if run and run.attempt else succeed(0)

    def expire(self, job_id: str, reason: str) -> None:
        """A running job broke a limit: end it, to be recorded FAILED with ``reason``."""
        run = self.running.get(job_id)
        if run is None or run.started is None or run.cancel_reason is not None:
            return  # ended (and reaped) already, or already ending
        log.warn("job {id}: {reason}; ending it", id=job_id, reason=reason)
        run.fail_reason = run.cancel_reason = reason
        self._signal(run, signals.SIGTERM)

    # -- cancel -----------------------------------------------------------------------
    def cancel(self, job_id: str, reason: str = "canceled by user") -> Optional[Deferred]:
        """End a running job: SIGTERM to its tree, SIGKILL after the grace period.

        Returns a Deferred that fires with the final Job once the process is gone, or
        None when the supervisor is not running that job.
        """
        run = self.running.get(job_id)
        if run is None:
            return None
        if run.cancel_reason is None:
            run.cancel_reason = reason
            if run.started is not None:
                self._signal(run, signals.SIGTERM)
        d: Deferred = Deferred()
        run.waiters.append(d)
        return d

    def _signal(self, run: Running, sig: int) -> None:
        self.launcher.signal(run.attempt, sig)
        if sig == signals.SIGTERM:
            run.kill_call = self.reactor.callLater(self.kill_grace, self._signal, run,
                                                   signals.SIGKILL)

    def stop(self) -> Deferred:
        """Shutdown: start nothing more, end every running job, fire when all are
        recorded. Attempts the launcher detaches (remote ones) are left RUNNING: they go
        on, and the next daemon adopts them."""
        self.stopping = True
        waits = []
        for job_id, run in list(self.running.items()):
            if run.attempt is not None and self.launcher.detach(run.attempt):
                log.info("job {id} goes on without the daemon (attempt {key})", id=job_id,
                         key=run.attempt.key)
                self._forget(job_id, run)
                self._notify(run, None)
                continue
            waits.append(self.cancel(job_id, SHUTDOWN_REASON))
        return DeferredList([d for d in waits if d is not None], consumeErrors=True)

    def canceling(self, job_id: str) -> bool:
        """Whether a running job is being ended (canceled, expired, the daemon stops):
        a worker that has not started it yet must not (launch/cluster)."""
        run = self.running.get(job_id)
        return run is not None and run.cancel_reason is not None

    # -- restart ----------------------------------------------------------------------
    @inlineCallbacks
    def recover(self, running: list[Job]):
        """Jobs a previous daemon left RUNNING: the launcher adopts those that still run
        elsewhere (remote attempts: they hold a slot and their reports resume); it ends
        whatever of the others still runs, and each ends FAILED with the reason
        recorded, never re-run."""
        for job in running:
            attempt = yield self.launcher.adopt(job, self)
            if attempt is not None:
                self._adopt(job, attempt)
                continue
            reason = yield self.launcher.settle_orphan(job)
            now = self.reactor.seconds()
            ended = yield self.store.transition(job.id, [JobStatus.RUNNING],
                                                JobStatus.FAILED, now, finished=now,
                                                reason=reason)
            log.warn("job {id}: {reason}", id=job.id, reason=reason)
            if ended is not None:
                self.events.publish(ended)

    def _adopt(self, job: Job, attempt: Attempt) -> None:
        """A remote attempt of a previous daemon runs on: it holds a slot, and once a
        worker has claimed it, its limits are armed as at its start."""
        run = Running(job=job, attempt=attempt)
        self.running[job.id] = run
        log.info("job {id}: attempt {key} adopted", id=job.id, key=attempt.key)
        if job.host is not None:
            run.started = Started(job.pid, job.pid_started, job.host)
            run.watch = self.limits.arm(job)
            self.limits.watch_disk(self._running_ids)
