"""A spider job's stats channel, daemon side: a FIFO the job writes JSON lines to.

The stats extension (runner/stats.py) writes ``{"stats": {...}}`` lines to fd 3 of the
Scrapy process. Why a FIFO (a named pipe) and not an anonymous one: a zygote-forked
job is a child of the zygote, not of the daemon, so it cannot inherit a pipe the daemon
made; both kinds of job can open a path. The daemon makes ``<data>/run/<id>.stats``
(mode 0600) before the job starts and opens its read end, and a write end of its own
that it never writes to (so the read end never sees end-of-file, which would wake the
reactor for nothing). A direct spawn gets a write end as its fd 3; the zygote's child
opens the path itself (as crawld's user, before ``run-as`` drops it) onto fd 3.

Why a pipe at all, and not the job's stdout or a socket: the job's stdout and stderr are
its log files, the spider's to fill; a pipe the daemon holds open before the job exists
keeps every report the job wrote before it exited, so the last one is read (``close``
drains it) before the job's end is judged, whatever order the reactor sees the exit and
the data in.

Reading is bounded: at most ``CHUNK`` bytes per read, only the newest complete line of
what was read is decoded, and after a report the reader pauses ``GAP`` seconds. A job
that writes more than its extension would (a report every few seconds) fills the pipe,
and its extension drops reports; the daemon spends at most a couple of reads a second
on it.
"""
from __future__ import annotations

import errno
import os
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from ..lines import LineReader
from ..stats import decode_report

log = Logger(namespace="crawld.stats")

CHUNK = 64 * 1024       # bytes per read
MAX_LINE = 64 * 1024    # a report longer than this is dropped (the extension keeps under)
GAP = 0.5               # seconds the reader pauses after a report
MAX_DRAIN = 1024 * 1024  # bytes read at the end, at most


def fifo_path(run_dir: str, job_id: str) -> str:
    """``<run_dir>/<job_id>.stats``: the job's FIFO."""
    return os.path.join(run_dir, f"{job_id}.stats")


def clear(run_dir: str) -> None:
    """Remove the FIFOs a previous daemon left (blocking: at start-up, in a thread)."""
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return
    for name in names:
        if name.endswith(".stats"):
            try:
                os.unlink(os.path.join(run_dir, name))
            except FileNotFoundError:
                pass


@implementer(IReadDescriptor)
class StatsPipe:
    """The daemon's end of one job's stats FIFO; ``on_stats(dict)`` gets each report."""

    def __init__(self, reactor: Any, path: str, on_stats: Callable[[dict], None],
                 job_id: str = "", gap: float = GAP) -> None:
        self.reactor = reactor
        self.path = path
        self.on_stats = on_stats
        self.job_id = job_id
        self.gap = gap
        self.read_fd = -1
        self.keep_fd = -1       # the daemon's idle write end
        self.lines = LineReader(MAX_LINE, f"job {job_id}'s stats channel")
        self.paused: Optional[Any] = None
        self.closed = False

    def open(self) -> None:
        """Make the FIFO, open both ends and start reading (before the job exists)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.mkfifo(self.path, 0o600)
        try:
            self.read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self.keep_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self._release()
            raise
        self.reactor.addReader(self)

    # -- IReadDescriptor --------------------------------------------------------------
    def fileno(self) -> int:
        """The read end the reactor watches (-1 once closed)."""
        return self.read_fd

    def logPrefix(self) -> str:
        """How Twisted names this reader in its log."""
        return "StatsPipe"

    def connectionLost(self, reason: Any) -> None:
        pass  # never: the daemon's own write end keeps the FIFO open

    def doRead(self) -> None:
        """Read what is there; hand on the newest report, then pause GAP seconds."""
        data = self._read(CHUNK)
        if self._deliver(data):
            self.reactor.removeReader(self)
            self.paused = self.reactor.callLater(self.gap, self._resume)

    def _resume(self) -> None:
        self.paused = None
        if not self.closed:
            self.reactor.addReader(self)

    def _read(self, limit: int) -> bytes:
        if self.read_fd < 0:
            return b""
        try:
            return os.read(self.read_fd, limit)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EINTR):
                log.warn("job {id}: reading its stats failed: {exc}", id=self.job_id,
                         exc=exc)
            return b""

    def _deliver(self, data: bytes) -> bool:
        """Frame ``data``; decode the newest complete line and hand it on. True if
        there was a report."""
        lines = self.lines.feed(data) if data else []
        for line in reversed(lines):
            stats = decode_report(line)
            if stats is not None:
                self.on_stats(stats)
                return True
            log.warn("job {id}: an unreadable stats report dropped ({line!r})",
                     id=self.job_id, line=line[:100])
        return False

    # -- the end ----------------------------------------------------------------------
    def close(self) -> None:
        """The job ended: read what it left in the pipe (its last report comes out
        here), stop reading, close both ends, remove the FIFO. Call it once the job's
        processes are gone and before its end is recorded."""
        if self.closed:
            return
        self.closed = True
        if self.paused is not None and self.paused.active():
            self.paused.cancel()
        if self.read_fd >= 0:
            self.reactor.removeReader(self)
        left, total = [], 0
        while total < MAX_DRAIN:
            data = self._read(CHUNK)
            if not data:
                break
            left.append(data)
            total += len(data)
        self._deliver(b"".join(left))
        self._release()

    def _release(self) -> None:
        for fd in (self.read_fd, self.keep_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.keep_fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
