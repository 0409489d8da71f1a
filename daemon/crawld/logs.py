"""Job log files: where they live, how the child gets them, and following them over HTTP.

The child process owns the writing (it inherits the file descriptors), so the daemon
does no per-byte work while a spider runs. Readers stream the file in bounded chunks,
never the whole log in memory, and follow it like ``tail -f`` while the job runs.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred

from .errors import TooManyStreams

EXTENSIONS = ("out", "err")
CHUNK = 64 * 1024
FOLLOW_INTERVAL = 0.2


def path(log_dir: str, job_id: str, ext: str) -> str:
    """``<log_dir>/<job_id>.<out|err>``; callers validate ``job_id`` and ``ext`` first."""
    if ext not in EXTENSIONS:
        raise ValueError(f"unknown log type {ext!r}")
    return os.path.join(log_dir, f"{job_id}.{ext}")


def stream_path(log_dir: str, job_id: str, stream: str) -> str:
    """Where a stream that came home from a worker goes: ``out``/``err`` as ``path``,
    ``events`` (a browser job's events, JSON lines) as ``<log_dir>/<job_id>.events``."""
    if stream == "events":
        return os.path.join(log_dir, f"{job_id}.events")
    return path(log_dir, job_id, stream)


def create(log_dir: str, job_id: str) -> None:
    """Create both log files, empty, before the job is recorded RUNNING: from then on
    there is a log to follow, even before the child exists to write it (a zygote
    forks it a moment later). The child appends to these same files."""
    for ext in EXTENSIONS:
        os.close(os.open(path(log_dir, job_id, ext),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640))


def open_for_child(log_dir: str, job_id: str) -> tuple[int, int]:
    """Open both log files for appending (created if ``create`` did not run) and return
    their descriptors for the child. No O_TRUNC: a reader may already follow them."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    out_fd = os.open(path(log_dir, job_id, "out"), flags, 0o640)
    try:
        err_fd = os.open(path(log_dir, job_id, "err"), flags, 0o640)
    except OSError:
        os.close(out_fd)
        raise
    return out_fd, err_fd


def sizes(log_dir: str, job_id: str) -> tuple[int, ...]:
    """Sizes of a job's log files (two stat calls; -1 for a missing one)."""
    found = []
    for ext in EXTENSIONS:
        try:
            found.append(os.stat(path(log_dir, job_id, ext)).st_size)
        except OSError:
            found.append(-1)
    return tuple(found)


def write_at(log_dir: str, job_id: str, ext: str, offset: int, data: bytes) -> None:
    """Write output that came home from elsewhere at its offset in the job's log.

    Writing at the offset, not appending, makes a chunk reported twice (a remote launcher
    may report more than once) land on itself. One bounded chunk: a single pwrite."""
    fd = os.open(stream_path(log_dir, job_id, ext), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                 0o640)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def remove(log_dir: str, job_id: str) -> None:
    """Delete a job's log and events files, if they exist (blocking: call from a thread)."""
    for name in [stream_path(log_dir, job_id, ext) for ext in EXTENSIONS + ("events",)]:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


class Follower:
    """Streams a file to a Twisted request, following it while ``still_running()``.

    It is a streaming producer: when the client reads slowly, the transport pauses it,
    so a multi-gigabyte log never sits in memory. ``done`` fires when the response is
    complete or the client went away.
    """

    def __init__(self, reactor: Any, request: Any, fh: Any,
                 still_running: Callable[[], bool], interval: float = FOLLOW_INTERVAL) -> None:
        self.reactor = reactor
        self.request = request
        self.fh = fh
        self.still_running = still_running
        self.interval = interval
        self.done: Deferred = Deferred()
        self.paused = False
        self.finished = False
        self.timer: Optional[Any] = None
        request.notifyFinish().addBoth(self._gone)
        request.registerProducer(self, True)
        self.reactor.callLater(0, self._pump)

    def _pump(self) -> None:
        self.timer = None
        if not self.request.startedWriting and not self.finished:
            # the status line and headers now, even while the log is still empty: a
            # client learns at once that there is a log to follow
            self.request.write(b"")
        while not self.paused and not self.finished:
            running = self.still_running()  # read before the data: no lost tail
            data = self.fh.read(CHUNK)
            if data:
                self.request.write(data)
                continue
            if running:
                self.timer = self.reactor.callLater(self.interval, self._pump)
            else:
                self._finish()
            return

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.fh.close()
        self.request.unregisterProducer()
        self.request.finish()
        self.done.callback(None)

    def _gone(self, _: Any) -> None:
        if not self.finished:
            self.finished = True
            self.fh.close()
            if self.timer is not None and self.timer.active():
                self.timer.cancel()
            self.done.callback(None)

    # IPushProducer
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused and not self.finished:
            self.paused = False
            if self.timer is None:
                self.reactor.callLater(0, self._pump)

    def stopProducing(self) -> None:
        self._gone(None)


class StreamGate:
    """The followed logs and file downloads open at once, against ``[web] max-streams``:
    one count for both listeners (the native API's get-log and downloads, the scrapyd
    listener's ``/logs/`` and ``/items/`` files)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @property
    def full(self) -> bool:
        return self.open >= self.limit


def stream(gate: StreamGate, reactor: Any, request: Any, fh: Any,
           still_running: Callable[[], bool]) -> Deferred:
    """Stream a file to the client (following it while ``still_running()``) within
    ``gate``: past ``[web] max-streams`` the file is closed and TooManyStreams (429)
    raised. Fires once the file is sent (or the client went away)."""
    if gate.full:
        fh.close()
        raise TooManyStreams(f"{gate.open} log and file streams are open, the most "
                             f"[web] max-streams allows; retry later")
    gate.open += 1
    follower = Follower(reactor, request, fh, still_running)

    def closed(result: Any) -> Any:
        gate.open -= 1
        return result
    return follower.done.addBoth(closed)
