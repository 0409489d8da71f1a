"""The local launcher: job attempts as processes on this machine.

Spiders are ``scrapy crawl`` processes under a keeper, forked by the zygote (or spawned
directly); browser jobs are the browser runner's shim (see browser.py). The keeper and
the shim lead a session of their own, so a signal reaches the whole tree, and are child
subreapers that sweep whatever the job started before they exit. When one ends, what is
left in its group is SIGKILLed; when it ended by a signal (it may not have swept), the
job's processes are also looked for by title and environment, in a thread, before the
end is reported. Orphans of a previous daemon are recognised by pid and start time, or,
when the daemon died before recording the pid, by their title or environment.
"""
from __future__ import annotations

import os
import signal as signals
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import psutil
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from .. import items as item_files, tree
from ..commands import Command, RunAs, crawl_command, with_reports
from ..model import Job
from ..process import Exit
from ..seams import BrowserRunner, Spawner
from .protocol import Attempt, Reporter, Started
from .statspipe import StatsPipe, fifo_path

log = Logger(namespace="crawld.launch")


@dataclass(frozen=True)
class LocalSettings:
    """What the local launcher needs to build a job's command."""

    python: str                                        # the jobs' interpreter
    log_dir: str
    project_dir: Callable[[str], Optional[str]]        # project -> current version dir
    script_path: Callable[[str, str], str]             # (project, script) -> file
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    run_as: Optional[RunAs] = None                     # [crawld] run-as
    #: (project, version name) -> that stored version's dir (jobs pinned to a version)
    version_dir: Callable[[str, str], Optional[str]] = lambda project, version: None
    run_dir: Optional[str] = None      # spider jobs' stats FIFOs (None: no stats)
    stats_interval: float = 5.0        # [crawld] stats-interval
    items_dir: Optional[str] = None    # spider jobs' items files ([crawld] items = no: None)


@dataclass
class _Local:
    """A running local attempt."""

    pid: int
    cwd: Optional[str]
    keeper: bool = False  # a spider's keeper (it only waits: its memory is not the job's)
    known: list[psutil.Process] = field(default_factory=list)
    stats: Optional[StatsPipe] = None  # a spider's stats channel


class LocalLauncher:
    """Starts attempts through a spawner (zygote or direct) or the browser runner."""

    def __init__(self, settings: LocalSettings, spawner: Spawner,
                 browsers: Optional[BrowserRunner] = None,
                 to_thread: Callable[..., Deferred] = deferToThread,
                 reactor: Any = None) -> None:
        """``reactor`` reads spider jobs' stats channels (with ``settings.run_dir``;
        without either, jobs report no stats)."""
        self.settings = settings
        self.reactor = reactor
        self.spawner = spawner
        self.browsers = browsers
        self.to_thread = to_thread
        self.attempts: dict[str, _Local] = {}
        self.starting: dict[str, Optional[str]] = {}  # attempt -> project dir, spawning

    # -- start ------------------------------------------------------------------------
    @inlineCallbacks
    def start(self, attempt: Attempt, reporter: Reporter):
        """Spawn the attempt's process; report started, and ended once it is reaped."""
        job = attempt.job
        cwd: Optional[str]
        if job.kind == "browse":
            cwd = self.browsers.files_dir(job.id) if self.browsers is not None else None
            project_dir = None
        else:
            if job.version is not None:  # pinned (scrapyd's _version, version=)
                cwd = project_dir = self.settings.version_dir(job.project, job.version)
            else:
                cwd = project_dir = self.settings.project_dir(job.project)
            if cwd is None or not os.path.isdir(cwd):
                raise RuntimeError(f"project {job.project!r}"
                                   + (f" version {job.version!r}" if job.version else "")
                                   + " is not available")
        if job.is_browser:
            if self.browsers is None:
                raise RuntimeError("browser jobs are not available in this daemon")
            script = (self.settings.script_path(job.project, job.spider)
                      if job.kind == "script" else None)
            spawned = yield self.browsers.spawn(
                self.browsers.command(job, cwd, script, self.settings.base_env), job.id)
        else:
            cmd = crawl_command(job, cwd, self.settings.python, self.settings.base_env,
                                self.settings.run_as)
            cmd, stats = self._with_reports(cmd, attempt, reporter)
            # in use from now on, while the zygote forks: a version deleted meanwhile
            # would leave the job without its project
            self.starting[attempt.key] = project_dir
            try:
                spawned = yield self.spawner.spawn(cmd, self.settings.log_dir, job.id)
            except BaseException:
                if stats is not None:
                    stats.close()
                raise
            finally:
                self.starting.pop(attempt.key, None)
        self.attempts[attempt.key] = _Local(spawned.pid, project_dir, not job.is_browser,
                                            stats=None if job.is_browser else stats)
        info = Started(spawned.pid, tree.start_time(spawned.pid), "local", project_dir)
        reporter.started(attempt, info)
        spawned.ended.addCallback(self._ended, attempt, reporter).addErrback(
            lambda f: log.failure("after job {id} ended", f, id=job.id))
        return info

    def _with_reports(self, cmd: Command, attempt: Attempt, reporter: Reporter
                      ) -> tuple[Command, Optional[StatsPipe]]:
        """A spider job's command with its stats channel (opened now: it reads from
        before the job exists) and its items file (created now, empty)."""
        s, job_id = self.settings, attempt.job.id
        stats = None
        if s.run_dir is not None and self.reactor is not None:
            stats = StatsPipe(self.reactor, fifo_path(s.run_dir, job_id),
                              lambda found: reporter.stats(attempt, found), job_id)
            stats.open()
        try:
            items = (item_files.create(s.items_dir, job_id, cmd.uid, cmd.gid)
                     if s.items_dir is not None else None)
        except BaseException:
            if stats is not None:
                stats.close()
            raise
        return with_reports(cmd, stats and stats.path, s.stats_interval, items), stats

    @inlineCallbacks
    def _ended(self, exit: Exit, attempt: Attempt, reporter: Reporter):
        """The job's process is reaped: read its last stats, sweep what it left, then
        report its end."""
        job = attempt.job
        local = self.attempts.pop(attempt.key, None)
        if local is not None and local.stats is not None:
            local.stats.close()  # reports what the job left in the pipe: its last stats
        if local is not None:
            # whatever the job left in its process group goes with it (the leader is
            # reaped: its pid may be reused, so the group and known processes only)
            tree.signal_tree(local.pid, signals.SIGKILL, local.known, leader=False)
        if exit.code is None:
            # Its keeper (or shim) sweeps before it exits with a code; killed by a
            # signal, it may not have: find what is left by title and environment.
            try:
                killed = yield self.to_thread(self._sweep, job.id)
                if killed:
                    log.warn("job {id}: killed {n} process(es) it left running",
                             id=job.id, n=killed)
            except Exception:
                log.failure("sweeping after job {id} failed", id=job.id)
        if job.is_browser and self.browsers is not None:
            self.browsers.ended(job.id).addErrback(
                lambda f: log.failure("cleaning up after job {id} failed", f, id=job.id))
        reporter.ended(attempt, exit)

    # -- running attempts -------------------------------------------------------------
    def signal(self, attempt: Attempt, sig: int) -> None:
        """Signal the attempt's leader, its group and every descendant seen so far."""
        local = self.attempts.get(attempt.key)
        if local is None:
            return
        local.known = list({p.pid: p for p in
                            local.known + tree.descendants(local.pid)}.values())
        tree.signal_tree(local.pid, sig, local.known)

    def rss(self, attempt: Attempt) -> "Deferred[int]":
        local = self.attempts.get(attempt.key)
        if local is None:
            return succeed(0)
        return self.to_thread(tree.tree_rss, local.pid, not local.keeper)

    def activity(self, attempt: Attempt) -> int:
        if self.browsers is None:
            return 0
        channel = self.browsers.channels.get(attempt.job.id)
        return channel.count if channel is not None else 0

    def in_use(self) -> set[str]:
        return ({local.cwd for local in self.attempts.values() if local.cwd}
                | {cwd for cwd in self.starting.values() if cwd})

    # -- restart ----------------------------------------------------------------------
    @inlineCallbacks
    def settle_orphan(self, job: Job):
        """Kill what a previous daemon's job left running; fires with the reason.

        A recorded pid that still runs with the recorded start time is the job's: its
        whole tree is killed. With no pid recorded (the daemon died between spawning and
        recording it), the job's processes are found by their title or environment."""
        if job.pid is not None and tree.is_same_process(job.pid, job.pid_started):
            killed = tree.kill_tree(job.pid)
            yield self.to_thread(self._sweep, job.id)
            return (f"orphaned when the daemon stopped; pid {job.pid} and {killed} "
                    "descendant(s) killed at restart")
        pids = yield self.to_thread(tree.find_job, job.id)
        yield self.to_thread(tree.kill_found, pids)
        if job.pid is None or job.pid_started is None:
            return ("the daemon stopped while the job was starting"
                    + (f"; pid(s) {', '.join(map(str, pids))} killed at restart"
                       if pids else ""))
        return (f"the daemon stopped while the job ran; pid {job.pid} was gone at restart"
                + (f"; {len(pids)} process(es) it left killed" if pids else ""))

    @staticmethod
    def _sweep(job_id: str) -> int:
        """SIGKILL every process of the job found by title or environment (blocking)."""
        return tree.kill_found(tree.find_job(job_id))

    def stop(self) -> "Deferred[None]":
        return self.spawner.stop()

    # -- what remote launchers do, trivially (one machine) -----------------------------
    def capacity(self) -> Optional[int]:
        """None: the supervisor's ``[crawld] slots`` are this machine's."""
        return None

    def watch_capacity(self, wake: Callable[[], None]) -> None:
        """This machine's capacity never changes while the daemon runs."""

    def adopt(self, job: Job, reporter: Reporter) -> "Deferred[Optional[Attempt]]":
        """None: a local job of a previous daemon is an orphan (settle_orphan)."""
        return succeed(None)

    def detach(self, attempt: Attempt) -> bool:
        """False: a local job never outlives the daemon."""
        return False
