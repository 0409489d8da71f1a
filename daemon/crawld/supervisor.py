"""Runs jobs: slots, a first-in-first-out queue, spawning, cancel, shutdown and orphans.

The supervisor decides; the process protocol only reports the end. A slot is refilled
the moment a process ends (no polling loop), and each job runs in a session of its own
so that cancel and shutdown reach every process it started.
"""
from __future__ import annotations

import os
import signal as signals
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import psutil
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from . import logs, tree
from .commands import RunAs, crawl_command
from .model import Job, JobStatus
from .process import Exit, signal_name
from .spawner import DirectSpawner
from .store import Store

log = Logger(namespace="crawld.supervisor")

SHUTDOWN_REASON = "stopped by daemon shutdown"
DISK_FULL_REASON = "the disk of the data directory is full: the job cannot write its logs"
DISK_CHECK = 2.0       # seconds between free-space checks while jobs run
WATCH_PERIOD = 1.0     # seconds between checks of a job's output, log size and memory
MIB = 1024 * 1024
MIN_FREE = 1024 * 1024  # below this many free bytes the disk counts as full
RETRY_DELAY = 5.0  # a job whose start hit a store error is queued again after this


@dataclass
class Running:
    """A job the supervisor has started (or is starting) and not yet seen end."""

    job: Job
    pid: Optional[int] = None
    cwd: Optional[str] = None
    cancel_reason: Optional[str] = None
    known: list[psutil.Process] = field(default_factory=list)
    kill_call: Any = None
    waiters: list[Deferred] = field(default_factory=list)
    fail_reason: Optional[str] = None   # ended by a limit (timeout): FAILED, not CANCELED
    limits: list[Any] = field(default_factory=list)  # the timeout timer
    watch: Any = None                   # the next no-output check
    activity: tuple[int, ...] = ()      # log sizes and events seen at the last check
    max_log: int = 0                    # the limits in force for this run (0: none)
    max_rss: int = 0
    active_at: float = 0.0              # when that activity last changed


def disk_full(path: str) -> bool:
    """Less than MIN_FREE bytes left for unprivileged writes where ``path`` lives."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < MIN_FREE


def describe_exit(exit: Exit) -> Optional[str]:
    """A short reason for a failed exit, or None for success."""
    if exit.ok:
        return None
    if exit.reason:
        return exit.reason
    if exit.code is None and exit.signal is None:
        return "exit status unknown: the zygote that started the job ended before it"
    if exit.signal is not None:
        return f"killed by signal {signal_name(exit.signal)}"
    return f"exit code {exit.code}"


class Supervisor:
    """Starts PENDING jobs when slots are free and records how they end."""

    def __init__(self, reactor: Any, store: Store, log_dir: str, slots: int,
                 kill_grace: float, python: str,
                 project_dir: Callable[[str], Optional[str]],
                 base_env: Optional[Mapping[str, str]] = None,
                 on_change: Optional[Callable[[Job], None]] = None,
                 spawner: Any = None, browsers: Any = None,
                 script_path: Optional[Callable[[str, str], str]] = None,
                 job_timeout: float = 0.0, browser_timeout: float = 0.0,
                 max_log_size: int = 0, memory_limit: int = 0) -> None:
        self.reactor = reactor
        self.store = store
        self.log_dir = log_dir
        self.slots = slots
        self.kill_grace = kill_grace
        self.python = python
        self.project_dir = project_dir
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.on_change = on_change or (lambda job: None)
        self.spawner = spawner or DirectSpawner(reactor)
        self.browsers = browsers            # runs browser jobs (browser.Browsers)
        self.script_path = script_path      # (project, script) -> the script's file
        self.job_timeout = job_timeout      # default timeouts, seconds (0: none)
        self.browser_timeout = browser_timeout
        self.max_log_size = max_log_size    # defaults for jobs that set none (0: none)
        self.run_as: Optional[RunAs] = None  # [crawld] run-as
        self.memory_limit = memory_limit
        self.disk_call: Any = None          # the free-space check, while jobs run
        self.record_retry = RETRY_DELAY     # a job end the store could not record: retry
        self._off_thread = deferToThread
        self.queue: deque[str] = deque()
        self.running: dict[str, Running] = {}
        self.stopping = False

    # -- queue ------------------------------------------------------------------------
    def enqueue(self, job_id: str) -> None:
        """Queue a PENDING job; it starts as soon as a slot is free."""
        self.queue.append(job_id)
        self.pump()

    def pump(self) -> None:
        """Start queued jobs while slots are free."""
        while self.queue and not self.stopping and len(self.running) < self.slots:
            self._start(self.queue.popleft())

    def is_running(self, job_id: str) -> bool:
        return job_id in self.running

    def dirs_in_use(self) -> set[str]:
        """Project version directories that running jobs use (kept by project GC)."""
        return {run.cwd for run in self.running.values() if run.cwd}

    # -- start ------------------------------------------------------------------------
    def _start(self, job_id: str) -> None:
        run = Running(job=None)  # type: ignore[arg-type]
        self.running[job_id] = run  # holds the slot from now on
        self._try_start(job_id, run).addErrback(self._start_failed, job_id, run)

    @inlineCallbacks
    def _try_start(self, job_id: str, run: Running):
        now = self.reactor.seconds()
        job = yield self.store.call("transition", job_id, [JobStatus.PENDING],
                                    JobStatus.RUNNING, now, started=now)
        if job is None:  # canceled (or removed) while it waited
            self._release(job_id, run, None)
            return
        run.job = job
        if run.cancel_reason is not None or self.stopping:
            # Canceled, or the daemon is stopping, before any process exists: nothing
            # ran, so the job goes back to PENDING (and to CANCELED if a user asked).
            yield self.store.call("unstart", job_id, self.reactor.seconds())
            final = None
            if run.cancel_reason not in (None, SHUTDOWN_REASON):
                final = yield self.store.call(
                    "transition", job_id, [JobStatus.PENDING], JobStatus.CANCELED,
                    self.reactor.seconds(), finished=self.reactor.seconds(),
                    reason=run.cancel_reason)
            self._release(job_id, run, final)
            return
        try:
            spawned = yield self._spawn(job, run)
        except Exception as exc:
            log.error("job {id} could not start: {exc}", id=job_id, exc=exc)
            failed = yield self.store.call(
                "transition", job_id, [JobStatus.RUNNING], JobStatus.FAILED,
                self.reactor.seconds(), finished=self.reactor.seconds(),
                reason=f"could not start: {exc}")
            self._release(job_id, run, failed)
            return
        run.pid = spawned.pid
        spawned.ended.addCallback(self._ended, run).addErrback(
            lambda f: log.failure("recording the end of job {id} failed", f, id=job_id))
        self._arm_limits(run)
        self._watch_disk()
        self._changed(job)
        log.info("job {id} started: {project}/{spider} pid {pid}", id=job_id,
                 project=job.project, spider=job.spider, pid=run.pid)
        if run.cancel_reason is not None:  # canceled while the spawn was under way
            self._signal(run, signals.SIGTERM)
        yield self.store.call("update_job", job_id, pid=run.pid,
                              pid_started=tree.start_time(run.pid))

    def _spawn(self, job: Job, run: Running) -> Deferred:
        """Start the job's process: Scrapy (maybe forked by the zygote) or a browser."""
        if job.kind == "browse":
            cwd = self.browsers.files_dir(job.id)
        else:
            run.cwd = cwd = self.project_dir(job.project)
            if cwd is None or not os.path.isdir(cwd):
                raise RuntimeError(f"project {job.project!r} is not available")
        if not job.is_browser:
            cmd = crawl_command(job, cwd, self.python, self.base_env, self.run_as)
            return self.spawner.spawn(cmd, self.log_dir, job.id)
        if self.browsers is None:
            raise RuntimeError("browser jobs are not available in this daemon")
        script = self.script_path(job.project, job.spider) if job.kind == "script" else None
        return self.browsers.spawn(self.browsers.command(job, cwd, script, self.base_env),
                                   job.id)

    # -- limits -----------------------------------------------------------------------
    def _arm_limits(self, run: Running) -> None:
        """The job's limits: wall-clock ``timeout``; ``no-output-timeout``,
        ``max-log-size`` and ``memory-limit``, checked by one watch per job. Past any of
        them the job ends FAILED with the reason (TERM, then KILL after the grace
        period, as a cancel)."""
        job = run.job
        timeout = job.timeout
        if timeout is None:
            timeout = self.browser_timeout if job.is_browser else self.job_timeout
        if timeout:
            run.limits.append(self.reactor.callLater(
                timeout, self._expire, run, f"timed out after {timeout:g} s (timeout)"))
        run.max_log = job.max_log_size if job.max_log_size is not None else self.max_log_size
        run.max_rss = job.memory_limit if job.memory_limit is not None else self.memory_limit
        if job.no_output_timeout or run.max_log or run.max_rss:
            run.active_at = self.reactor.seconds()
            period = min(WATCH_PERIOD, (job.no_output_timeout or WATCH_PERIOD) / 4)
            run.watch = self.reactor.callLater(period, self._watch, run, period)

    @inlineCallbacks
    def _watch(self, run: Running, period: float):
        run.watch = None
        now = self.reactor.seconds()
        sizes = logs.sizes(self.log_dir, run.job.id)
        channel = self.browsers.channels.get(run.job.id) if self.browsers else None
        activity = sizes + ((channel.count,) if channel is not None else ())
        if activity != run.activity:
            run.activity, run.active_at = activity, now
        silent = run.job.no_output_timeout
        logged = sum(size for size in sizes if size > 0)
        if silent and now - run.active_at >= silent:
            self._expire(run, f"no output for {silent:g} s (no-output-timeout)")
        elif run.max_log and logged > run.max_log:
            self._expire(run, f"its logs passed max-log-size ({logged} > {run.max_log} "
                              "bytes)")
        elif run.max_rss:
            rss = yield self._off_thread(tree.tree_rss, run.pid)
            if self.running.get(run.job.id) is not run:
                return  # it ended while its memory was measured
            if rss > run.max_rss and run.cancel_reason is None:
                self._expire(run, f"memory-limit exceeded: its processes use "
                                  f"{rss / MIB:.0f} MiB (RSS) > {run.max_rss / MIB:.0f} MiB")
        if run.cancel_reason is None and self.running.get(run.job.id) is run:
            run.watch = self.reactor.callLater(period, self._watch, run, period)

    def _watch_disk(self) -> None:
        """While jobs run, check the free space of the log directory every few seconds:
        on a full disk they cannot write their logs, and end FAILED saying so."""
        if self.disk_call is not None and self.disk_call.active():
            return
        if not self.running or self.stopping:
            self.disk_call = None
            return
        if disk_full(self.log_dir):
            for run in list(self.running.values()):
                if run.job is not None:
                    self._expire(run, DISK_FULL_REASON)
        self.disk_call = self.reactor.callLater(DISK_CHECK, self._disk_tick)

    def _disk_tick(self) -> None:
        self.disk_call = None
        self._watch_disk()

    def _expire(self, run: Running, reason: str) -> None:
        if (run.cancel_reason is not None or run.pid is None
                or self.running.get(run.job.id) is not run):  # ended (and reaped) already
            return
        log.warn("job {id}: {reason}; ending it", id=run.job.id, reason=reason)
        run.fail_reason = run.cancel_reason = reason
        self._signal(run, signals.SIGTERM)

    def _start_failed(self, failure: Any, job_id: str, run: Running) -> None:
        """A store error while starting: free the slot, tell waiters, retry later."""
        log.failure("starting job {id} failed", failure, id=job_id)
        if run.pid is not None:
            return  # the process runs; its end is recorded by _ended
        self._release(job_id, run, None)
        if not self.stopping:
            self.reactor.callLater(RETRY_DELAY, self.enqueue, job_id)

    def _release(self, job_id: str, run: Running, job: Optional[Job]) -> None:
        if self.running.get(job_id) is run:
            del self.running[job_id]
        self._notify(run, job)
        self.pump()

    # -- end --------------------------------------------------------------------------
    @inlineCallbacks
    def _ended(self, exit: Exit, run: Running):
        job_id = run.job.id
        now = self.reactor.seconds()  # the end, before the freed slot starts another job
        self.running.pop(job_id, None)
        for call in [run.kill_call, run.watch, *run.limits]:
            if call is not None and call.active():
                call.cancel()
        # Whatever the job left in its process group goes with it (the leader is reaped).
        tree.signal_tree(run.pid, signals.SIGKILL, run.known, leader=False)
        self.pump()
        if run.job.is_browser and self.browsers is not None:
            self.browsers.ended(job_id).addErrback(
                lambda f: log.failure("cleaning up after job {id} failed", f, id=job_id))
        if run.fail_reason is None and run.cancel_reason is None:
            logged = sum(size for size in logs.sizes(self.log_dir, job_id) if size > 0)
            if disk_full(self.log_dir):
                run.fail_reason = DISK_FULL_REASON  # whatever it printed last is lost
            elif run.max_log and logged > run.max_log:  # too fast for the watch
                run.fail_reason = (f"its logs passed max-log-size ({logged} > "
                                   f"{run.max_log} bytes)")
        if run.fail_reason is not None:
            status, reason = JobStatus.FAILED, run.fail_reason
        elif run.cancel_reason is not None:
            status, reason = JobStatus.CANCELED, run.cancel_reason
        elif exit.ok:
            status, reason = JobStatus.SUCCESSFUL, None
        else:
            status, reason = JobStatus.FAILED, describe_exit(exit)
        fields = dict(finished=now, exit_code=exit.code, signal=exit.signal, reason=reason)
        try:
            job = yield self.store.call("transition", job_id, [JobStatus.RUNNING], status,
                                        now, **fields)
        except Exception as exc:
            # e.g. a full disk: tell the waiters now, record it once the store can
            log.error("could not record the end of job {id} ({exc}); retrying every "
                      "{delay:g} s", id=job_id, exc=exc, delay=self.record_retry)
            job = None
            self._record_later(job_id, status, now, fields)
        log.info("job {id} ended {status} ({how})", id=job_id, status=status.value,
                 how=reason or "exit code 0")
        self._notify(run, job or run.job.evolve(status=status, updated=now, **fields))

    @inlineCallbacks
    def _record_later(self, job_id: str, status: JobStatus, now: float,
                      fields: dict[str, Any]):
        """Retry recording a job's end until the store takes it (or the daemon stops:
        then the next start settles the job as an orphan)."""
        while not self.stopping:
            yield deferLater(self.reactor, self.record_retry, lambda: None)
            try:
                job = yield self.store.call("transition", job_id, [JobStatus.RUNNING],
                                            status, now, **fields)
            except Exception:
                continue
            if job is not None:
                log.info("job {id}: its end is recorded now", id=job_id)
                self._changed(job)
            return

    def _notify(self, run: Running, job: Optional[Job]) -> None:
        if job is not None:
            self._changed(job)
        waiters, run.waiters = run.waiters, []
        for d in waiters:
            d.callback(job)

    def _changed(self, job: Job) -> None:
        try:
            self.on_change(job)
        except Exception:
            log.failure("on_change failed for job {id}", id=job.id)

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
            if run.pid is not None:
                self._signal(run, signals.SIGTERM)
        d: Deferred = Deferred()
        run.waiters.append(d)
        return d

    def _signal(self, run: Running, sig: int) -> None:
        run.known = list({p.pid: p for p in run.known + tree.descendants(run.pid)}.values())
        tree.signal_tree(run.pid, sig, run.known)
        if sig == signals.SIGTERM:
            run.kill_call = self.reactor.callLater(self.kill_grace, self._signal, run,
                                                   signals.SIGKILL)

    def stop(self) -> Deferred:
        """Shutdown: start nothing more, end every running job, fire when all are recorded."""
        self.stopping = True
        waits = [self.cancel(job_id, SHUTDOWN_REASON) for job_id in list(self.running)]
        return DeferredList([d for d in waits if d is not None], consumeErrors=True)

    # -- restart ----------------------------------------------------------------------
    @inlineCallbacks
    def recover(self, running: list[Job]):
        """Settle jobs a previous daemon left RUNNING: kill their orphans, never re-run.

        A job whose recorded pid still runs with the recorded start time is an orphan of
        a daemon that died: its whole tree is killed. Either way the job ends FAILED with
        the reason recorded.
        """
        for job in running:
            if job.pid is not None and tree.is_same_process(job.pid, job.pid_started):
                killed = tree.kill_tree(job.pid)
                reason = (f"orphaned when the daemon stopped; pid {job.pid} and "
                          f"{killed} descendant(s) killed at restart")
            elif job.pid is None or job.pid_started is None:
                # The daemon died between spawning and recording the pid: the job's
                # processes, if any, carry its id in their title or their environment.
                pids = yield self._off_thread(tree.find_job, job.id)
                for pid in pids:
                    tree.kill_tree(pid)
                reason = ("the daemon stopped while the job was starting"
                          + (f"; pid(s) {', '.join(map(str, pids))} killed at restart"
                             if pids else ""))
            else:
                reason = f"the daemon stopped while the job ran; pid {job.pid} was gone at restart"
            now = self.reactor.seconds()
            ended = yield self.store.call("transition", job.id, [JobStatus.RUNNING],
                                          JobStatus.FAILED, now, finished=now, reason=reason)
            log.warn("job {id}: {reason}", id=job.id, reason=reason)
            if ended is not None:
                self._changed(ended)
