"""A running job's limits: timeout, no-output-timeout, max-log-size, memory-limit, disk.

The supervisor arms them when a job starts and asks, when it ends, whether its logs
broke a limit too fast for the watch to see. Past any limit the job is expired: the
supervisor ends it (TERM, then KILL after the grace period, as a cancel) and records it
FAILED with the reason. One watch per job checks its log sizes, its other activity and
its memory once a period; one check of the log directory's free space serves all jobs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from twisted.internet.defer import inlineCallbacks

from . import logs

DISK_FULL_REASON = "the disk of the data directory is full: the job cannot write its logs"
DISK_CHECK = 2.0       # seconds between free-space checks while jobs run
WATCH_PERIOD = 1.0     # seconds between checks of a job's output, log size and memory
MIB = 1024 * 1024
MIN_FREE = 1024 * 1024  # below this many free bytes the disk counts as full


def disk_full(path: str) -> bool:
    """Less than MIN_FREE bytes left for unprivileged writes where ``path`` lives."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < MIN_FREE


@dataclass(frozen=True)
class Defaults:
    """The limits of jobs that set none (``[crawld]``/``[browser]`` options; 0: none)."""

    job_timeout: float = 0.0
    browser_timeout: float = 0.0
    max_log_size: int = 0
    memory_limit: int = 0


@dataclass
class Watch:
    """One job's limits in force, and what its watch saw last."""

    timer: Any = None                   # the wall-clock timeout
    call: Any = None                    # the next periodic check
    activity: tuple[int, ...] = ()      # log sizes and events seen at the last check
    active_at: float = 0.0              # when that activity last changed
    max_log: int = 0
    max_rss: int = 0
    no_output: float = 0.0
    period: float = WATCH_PERIOD
    stopped: bool = field(default=False)

    def cancel(self) -> None:
        self.stopped = True
        for call in (self.timer, self.call):
            if call is not None and call.active():
                call.cancel()


class Limits:
    """Arms and checks the limits of running jobs.

    ``expire(job_id, reason)`` ends a job past a limit; ``activity(job_id)`` is a counter
    of its non-log output; ``rss(job_id)`` a Deferred of its memory in bytes."""

    def __init__(self, reactor: Any, log_dir: str, defaults: Defaults,
                 expire: Callable[[str, str], None], activity: Callable[[str], int],
                 rss: Callable[[str], Any]) -> None:
        self.reactor = reactor
        self.log_dir = log_dir
        self.defaults = defaults
        self.expire = expire
        self.activity = activity
        self.rss = rss
        self.disk_call: Any = None

    def arm(self, job: Any) -> Watch:
        """Start the job's watch: its own limits, else the defaults."""
        d = self.defaults
        watch = Watch()
        timeout = job.timeout
        if timeout is None:
            timeout = d.browser_timeout if job.is_browser else d.job_timeout
        if timeout:
            watch.timer = self.reactor.callLater(
                timeout, self.expire, job.id, f"timed out after {timeout:g} s (timeout)")
        watch.max_log = job.max_log_size if job.max_log_size is not None else d.max_log_size
        watch.max_rss = job.memory_limit if job.memory_limit is not None else d.memory_limit
        watch.no_output = job.no_output_timeout or 0.0
        if watch.no_output or watch.max_log or watch.max_rss:
            watch.active_at = self.reactor.seconds()
            watch.period = min(WATCH_PERIOD, (watch.no_output or WATCH_PERIOD) / 4)
            watch.call = self.reactor.callLater(watch.period, self._check, job.id, watch)
        return watch

    @inlineCallbacks
    def _check(self, job_id: str, watch: Watch):
        watch.call = None
        now = self.reactor.seconds()
        sizes = logs.sizes(self.log_dir, job_id)
        activity = sizes + (self.activity(job_id),)
        if activity != watch.activity:
            watch.activity, watch.active_at = activity, now
        logged = sum(size for size in sizes if size > 0)
        if watch.no_output and now - watch.active_at >= watch.no_output:
            self.expire(job_id, f"no output for {watch.no_output:g} s (no-output-timeout)")
            return
        if watch.max_log and logged > watch.max_log:
            self.expire(job_id, f"its logs passed max-log-size ({logged} > "
                                f"{watch.max_log} bytes)")
            return
        if watch.max_rss:
            rss = yield self.rss(job_id)
            if watch.stopped:
                return  # it ended while its memory was measured
            if rss > watch.max_rss:
                self.expire(job_id, f"memory-limit exceeded: its processes use "
                                    f"{rss / MIB:.0f} MiB (RSS) > {watch.max_rss / MIB:.0f} MiB")
                return
        if not watch.stopped:
            watch.call = self.reactor.callLater(watch.period, self._check, job_id, watch)

    def at_end(self, job_id: str, watch: Optional[Watch]) -> Optional[str]:
        """Why a job that just ended broke a limit after all (a full disk, logs grown
        past max-log-size faster than the watch looks), or None."""
        logged = sum(size for size in logs.sizes(self.log_dir, job_id) if size > 0)
        if disk_full(self.log_dir):
            return DISK_FULL_REASON  # whatever it printed last is lost
        if watch is not None and watch.max_log and logged > watch.max_log:
            return f"its logs passed max-log-size ({logged} > {watch.max_log} bytes)"
        return None

    # -- the disk, for all jobs -------------------------------------------------------
    def watch_disk(self, running: Callable[[], list[str]]) -> None:
        """While ``running()`` names jobs, check the free space of the log directory every
        few seconds: on a full disk they cannot write their logs, and are expired."""
        if self.disk_call is not None and self.disk_call.active():
            return
        self.disk_call = None
        if not running():
            return
        if disk_full(self.log_dir):
            for job_id in running():
                self.expire(job_id, DISK_FULL_REASON)
        self.disk_call = self.reactor.callLater(DISK_CHECK, self._disk_tick, running)

    def _disk_tick(self, running: Callable[[], list[str]]) -> None:
        self.disk_call = None
        self.watch_disk(running)
