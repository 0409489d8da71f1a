"""Ships one attempt's output home: its ``out``, ``err``, ``items`` and (browser jobs)
``events`` files, by offset.

The job writes its files on the worker as it would locally (the spool); the shipper
reads each from the offset the daemon acknowledged, at most ``CHUNK`` bytes per
request, every ``interval`` seconds while the job runs. The daemon answers each chunk
with how much of the stream it now holds contiguously; a 409 carries where to resume
(a daemon that restarted, or lost a chunk), so nothing is sent blind twice and nothing
is skipped. While the daemon cannot be reached the files stay where they are and the
shipper retries with a growing delay (at most ``max_backoff`` seconds), resuming from
the daemon's answer when it is back.

At the end, ``finish`` ships the rest, then the files a browser job saved in its files
dir (``files_dir``: screenshots, downloads; each by offset like a stream, regular
files only, never through a link), and reports the end with the offsets the worker
holds; the daemon records it only once it has every byte (else 409 with its own offsets:
ship from there and ask again). A 409 that carries no offset means the daemon no longer
accepts the attempt (lost, canceled and replaced, not current): ``Refused``, the caller
kills what runs and drops the spool.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Callable, Mapping, Optional

from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from .daemon_client import Reply, Unreachable

log = Logger(namespace="crawld.worker")

STREAMS = ("out", "err", "items", "events")
CHUNK = 1024 * 1024       # bytes per request, at most (the daemon's limit)
INTERVAL = 0.5            # seconds between shipping rounds while the job runs
MAX_BACKOFF = 5.0         # seconds between retries while the daemon is unreachable


class Refused(Exception):
    """The daemon no longer accepts reports of this attempt."""


def size_of(path: Optional[str]) -> int:
    """The file's size (0 when it is missing or there is none)."""
    if path is None:
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def saved_files(folder: Optional[str]) -> dict[str, int]:
    """The files a browser job saved in ``folder``: name -> size, regular files only,
    not hidden, not through a link (blocking: a thread)."""
    if folder is None:
        return {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return {}
    return {e.name: e.stat(follow_symlinks=False).st_size for e in entries
            if e.is_file(follow_symlinks=False) and not e.name.startswith(".")}


def read_file_at(folder: str, name: str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``folder/name`` from ``offset``, only if it is a regular file
    reached without a link (the job owns the folder; blocking: a thread)."""
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{name} is not a regular file")
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def read_at(path: str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``path`` from ``offset`` (blocking: a thread)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


class Shipper:
    """Ships one attempt's streams and stats, then its end (see the module docstring)."""

    def __init__(self, reactor: Any, client: Any, key: str,
                 paths: Mapping[str, Optional[str]], interval: float = INTERVAL,
                 max_backoff: float = MAX_BACKOFF,
                 to_thread: Callable[..., Deferred] = deferToThread) -> None:
        """``paths``: stream name -> its file on the worker (None: the job has none)."""
        self.reactor = reactor
        self.client = client
        self.key = key
        self.paths = dict(paths)
        self.interval = interval
        self.max_backoff = max_backoff
        self.to_thread = to_thread
        self.held = {stream: 0 for stream in self.paths}  # what the daemon acknowledged
        self.files_dir: Optional[str] = None  # a browser job's saved files (at the end)
        self.files_held: dict[str, int] = {}  # file name -> bytes the daemon holds
        self.pending_stats: Optional[dict[str, Any]] = None
        self.lock = DeferredLock()   # one shipping round at a time
        self.timer: Optional[Any] = None
        self.delay = interval
        self.refused: Optional[str] = None  # why the daemon refused the attempt
        self.abandoned = False
        self.on_refused: Callable[[str], None] = lambda why: None

    # -- while the job runs -----------------------------------------------------------
    def start(self, on_refused: Callable[[str], None]) -> None:
        """Ship every ``interval`` seconds until ``finish`` (or a refusal:
        ``on_refused(why)`` is called once)."""
        self.on_refused = on_refused
        self._schedule(self.interval)

    def stats(self, stats: dict[str, Any]) -> None:
        """The job's latest stats: sent with the next round (the latest wins)."""
        self.pending_stats = stats

    def _schedule(self, delay: float) -> None:
        if self.refused is None and not self.abandoned:
            self.timer = self.reactor.callLater(delay, self._tick)

    @inlineCallbacks
    def _tick(self):
        self.timer = None
        try:
            yield self.round()
        except Unreachable as exc:
            self._backoff(exc)
            return
        except Refused:
            return
        self.delay = self.interval
        self._schedule(self.interval)

    def _backoff(self, exc: Exception) -> None:
        log.warn("job {key}: the daemon is unreachable ({exc}); retrying in {d:g} s",
                 key=self.key, exc=exc, d=self.delay)
        self._schedule(self.delay)
        self.delay = min(self.delay * 2, self.max_backoff)

    def _refuse(self, reply: Reply) -> None:
        why = str(reply.body.get("msg") or f"HTTP {reply.code}")
        if self.refused is None:
            self.refused = why
            log.warn("job {key}: the daemon refuses it ({why})", key=self.key, why=why)
            self.on_refused(why)
        raise Refused(why)

    def refuse(self, why: str) -> None:
        """The daemon said so in a heartbeat answer: stop shipping."""
        if self.refused is None:
            self.refused = why
            self.on_refused(why)
        self.stop()

    @inlineCallbacks
    def round(self):
        """One shipping round: the latest stats, then each stream up to its file's size."""
        yield self.lock.acquire()
        try:
            if self.refused is not None:
                raise Refused(self.refused)
            stats = self.pending_stats
            if stats is not None:
                reply = yield self.client.stats(self.key, stats)
                if not reply.ok:
                    self._refuse(reply)
                if self.pending_stats is stats:
                    self.pending_stats = None
            for stream in self.paths:
                yield self._ship(stream)
        finally:
            self.lock.release()

    @inlineCallbacks
    def _ship(self, stream: str):
        path = self.paths[stream]
        while path is not None and not self.abandoned:
            size = size_of(path)
            offset = self.held[stream]
            if offset >= size:
                return
            data = yield self.to_thread(read_at, path, offset, min(CHUNK, size - offset))
            if not data:
                return
            reply = yield self.client.output(self.key, stream, offset, data)
            if reply.code in (200, 409) and isinstance(reply.body.get("offset"), int):
                self.held[stream] = reply.body["offset"]
            else:
                self._refuse(reply)

    @inlineCallbacks
    def ship_files(self):
        """Ship every file the job saved, each from what the daemon holds of it. A file
        the daemon declines (too large, a name it refuses, no files taken) is left
        out with a log line: it does not hold the end back."""
        found = yield self.to_thread(saved_files, self.files_dir)
        for name, size in sorted(found.items()):
            while not self.abandoned and self.files_held.get(name, 0) < size:
                offset = self.files_held.get(name, 0)
                try:
                    data = yield self.to_thread(read_file_at, self.files_dir, name, offset,
                                                min(CHUNK, size - offset))
                except OSError as exc:
                    log.warn("job {key}: file {name!r} not shipped: {exc}", key=self.key,
                             name=name, exc=exc)
                    break
                if not data:
                    break
                reply = yield self.client.file(self.key, name, offset, data)
                if reply.code in (200, 409) and isinstance(reply.body.get("offset"), int):
                    self.files_held[name] = reply.body["offset"]
                elif reply.code in (400, 404, 413):
                    log.warn("job {key}: the daemon declines file {name!r}: {msg}",
                             key=self.key, name=name, msg=reply.body.get("msg"))
                    self.files_held[name] = size
                else:
                    self._refuse(reply)

    # -- the end ----------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the periodic rounds (``finish`` and ``round`` still work)."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def abandon(self) -> None:
        """The worker is stopping: give up (the spool and the attempt's record stay for
        the next start's sweep)."""
        self.abandoned = True
        self.stop()

    def offsets(self) -> dict[str, int]:
        """The size of each stream on the worker: what the end is reported with."""
        return {stream: size_of(path) for stream, path in self.paths.items()}

    @inlineCallbacks
    def finish(self, code: Optional[int], signal: Optional[int], reason: Optional[str]):
        """Ship the rest and report the end until the daemon has accepted it. Fires
        True (accepted), False (refused) or None (abandoned: the worker stops)."""
        self.stop()
        delay = self.interval
        while not self.abandoned:
            if self.refused is not None:
                return False
            try:
                yield self.round()
                yield self.ship_files()
                offsets = self.offsets()
                reply = yield self.client.ended(self.key, code, signal, reason, offsets)
            except Refused:
                return False
            except Unreachable as exc:
                log.warn("job {key}: reporting its end failed ({exc}); retrying in "
                         "{d:g} s", key=self.key, exc=exc, d=delay)
                yield task.deferLater(self.reactor, delay, lambda: None)
                delay = min(delay * 2, self.max_backoff)
                continue
            if reply.ok:
                return True
            held = reply.body.get("offsets")
            if reply.code != 409 or not isinstance(held, dict):
                try:
                    self._refuse(reply)
                except Refused:
                    return False
            behind = {s: int(held[s]) for s in self.paths
                      if isinstance(held.get(s), int) and held[s] < offsets[s]}
            if not behind:  # it lacks nothing we have: it will never accept this end
                log.error("job {key}: the daemon refuses the end although it holds "
                          "every byte ({held})", key=self.key, held=held)
                return False
            self.held.update(behind)
            delay = self.interval
        return None
