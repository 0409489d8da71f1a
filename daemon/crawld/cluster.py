"""The cluster service (issue 14): what workers ask of the daemon, over /cluster/*.

A worker claims an attempt (the store's first claim wins), fetches its code bundle,
reports it started, sends its output by byte offset (written into the daemon's own
``logs/<id>.out|.err`` and ``items/<id>.jl``, so every reader works unchanged), its
stats, a heartbeat every few seconds (answered with the signals to send and the
attempts to kill), and its end, which the daemon records only once it holds every byte.
The attempts' state is RemoteAttempts' (launch/remote.py); this service checks what
each report may do, and answers.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread

from . import items as item_files, logs
from .browser import MAX_POSTS, read_events
from .bundles import Bundles
from .errors import Conflict, NotFound, TooLarge
from .launch.protocol import Started
from .launch.remote import Remote, RemoteAttempts
from .model import Job
from .process import Exit
from .remote_shots import RemoteShots
from .store import Store

STREAMS = ("out", "err", "items", "events")  # events: a browser job's, JSON lines
MAX_CHUNK = 1024 * 1024  # bytes of output per request
MAX_FILE = 1024 ** 3     # bytes of one artifact a browser job saved on a worker
POSTS_READ_KEPT = 10_000  # jobs whose job-posts cursor is kept (the oldest go first)
MAX_WAITING = 1000       # messages to a remote browser job not handed to its worker yet


class Refused(Conflict):
    """A 409 with more to say than its message (``extra``: the offsets the daemon
    holds, for the worker to resume from)."""

    def __init__(self, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.extra = extra


def job_fields(job: Job) -> dict[str, Any]:
    """Every field of the job, as ``dataclasses.asdict`` gives them, enums as values."""
    found = dataclasses.asdict(job)
    found["status"] = job.status.value
    found["actor"] = job.actor.value
    return found


class Cluster:
    """Answers workers (http/routes_cluster.py) for the celery launcher."""

    def __init__(self, store: Store, attempts: RemoteAttempts, projects: Any,
                 bundles: Bundles, log_dir: str, items_dir: Optional[str],
                 canceling: Callable[[str], bool] = lambda job_id: False,
                 files_root: Optional[str] = None,
                 to_thread: Callable[..., Deferred] = deferToThread) -> None:
        """``projects``: projects.Projects (the version a job runs); ``canceling``:
        Supervisor.canceling (a job being ended is claimed by no one); ``files_root``:
        browser.Browsers.files_root, where the artifacts of browser jobs go (None: they
        are not taken)."""
        self.store = store
        self.attempts = attempts
        self.projects = projects
        self.bundles = bundles
        self.log_dir = log_dir
        self.items_dir = items_dir
        self.canceling = canceling
        self.held: dict[tuple[str, str], int] = {}  # (attempt key, stream) -> bytes held
        self.files_root = files_root
        self.waiting: dict[str, list[Any]] = {}  # attempt key -> messages for its job
        self.posts_read: dict[str, int] = {}  # job id -> the last event id job-posts saw
        self.shots = RemoteShots()  # live screenshots of remote browser jobs
        self.to_thread = to_thread

    def timings(self) -> dict[str, float]:
        """What every answer tells the worker: how often to beat, when it is lost."""
        return {"heartbeat": self.attempts.heartbeat, "lost_after": self.attempts.lost_after}

    def _remote(self, key: str, worker: Optional[str] = None) -> Remote:
        """The running attempt ``key`` (claimed by ``worker`` when given), or a 409."""
        remote = self.attempts.current(key)
        if remote is None:
            raise Refused(f"attempt {key} is not the job's current attempt")
        if worker is not None and remote.worker != worker:
            raise Refused(f"attempt {key} was claimed by "
                          f"{'worker ' + remote.worker if remote.worker else 'no worker'}")
        return remote

    # -- claim ----------------------------------------------------------------------------
    @inlineCallbacks
    def claim(self, worker: str, job_id: str, number: int):
        """The first claim of the current attempt of a RUNNING job wins: fires with the
        job's fields and its code (project, version, hash; None for a browse)."""
        key = f"{job_id}/{number}"
        remote = self._remote(key)
        if self.canceling(job_id):
            raise Refused(f"attempt {key}: the job is canceled")
        won = yield self.store.claim(job_id, number, worker)
        job = yield self.store.get_job(job_id)
        if not won:
            if job is not None and job.attempt == number and job.host is not None:
                raise Refused(f"attempt {key} was already claimed by worker {job.host}")
            raise Refused(f"attempt {key} is not the job's current attempt")
        self.attempts.claimed(key, worker)
        try:
            code = yield self._code(job, remote)
        except Exception as exc:  # no code to run (gone, unreadable): nothing starts
            why = exc.msg if isinstance(exc, NotFound) else f"its code bundle failed: {exc}"
            self.attempts.finish(key, Exit(None, None, reason=f"could not start: {why}"))
            raise Refused(f"attempt {key}: {why}") from None
        return {"job": job_fields(job), "code": code}

    @inlineCallbacks
    def _code(self, job: Job, remote: Remote):
        """The code the attempt runs: the job's pinned version or the project's current
        one now, with its bundle's hash (built if needed). Its dir is in use from now."""
        if job.kind == "browse":
            return None
        if job.version is not None:
            version, directory = job.version, self.projects.version_path(job.project,
                                                                         job.version)
        else:
            project = self.projects.get(job.project)
            directory = project.path
            names = [n for n in self.projects.version_names(job.project)
                     if self.projects.get_version(job.project, n).number == project.version]
            version = names[0] if names else str(project.version)
        if directory is None or not os.path.isdir(directory):
            raise NotFound(f"project {job.project!r} version {version!r} is not available")
        remote.cwd = directory
        digest = yield self.bundles.hash_of(directory)
        return {"project": job.project, "version": version, "hash": digest}

    # -- reports --------------------------------------------------------------------------
    def started(self, worker: str, key: str, pid: Optional[int],
                pid_started: Optional[float]) -> dict[str, Any]:
        """The worker spawned the attempt's tree."""
        remote = self._remote(key, worker)
        remote.pid = pid
        remote.reporter.started(remote.attempt, Started(pid, pid_started, worker))
        return {}

    def output(self, key: str, stream: str, offset: int, data: bytes) -> dict[str, Any]:
        """Bytes of a stream at ``offset``: written where the daemon's readers look; the
        answer is how many bytes of it the daemon now holds from the start."""
        remote = self._remote(key)
        held = self._held(remote, stream)
        if offset > held:
            raise Refused(f"attempt {key}: {stream} offset {offset} is beyond the "
                          f"{held} bytes held", offset=held)
        end = offset + len(data)
        if end > held:
            job_id = remote.attempt.job.id
            if stream == "items":
                if self.items_dir is not None:
                    item_files.write_at(self.items_dir, job_id, offset, data)
            else:
                logs.write_at(self.log_dir, job_id, stream, offset, data)
            self.held[(key, stream)] = held = end
        return {"offset": held}

    def _held(self, remote: Remote, stream: str) -> int:
        """Bytes of ``stream`` held for the attempt: from its file the first time (an
        adopted attempt's logs are what the previous daemon wrote)."""
        key = (remote.attempt.key, stream)
        if key not in self.held:
            job_id = remote.attempt.job.id
            if stream == "items":
                size = (item_files.size(self.items_dir, job_id)
                        if self.items_dir is not None else 0)
            else:
                try:
                    size = os.stat(logs.stream_path(self.log_dir, job_id, stream)).st_size
                except FileNotFoundError:
                    size = 0
            self.held[key] = size
        return self.held[key]

    def file(self, key: str, name: str, offset: int, data: bytes) -> dict[str, Any]:
        """Bytes of an artifact the attempt's browser job saved (``name``: checked by the
        route), written at ``offset`` in the daemon's ``<files>/<job id>/<name>``, where
        job-files looks; answered like ``output``."""
        remote = self._remote(key)
        if self.files_root is None:
            raise NotFound("this daemon takes no job files (no browser jobs)")
        held = self.held.get((key, "file:" + name), 0)
        if offset > held:
            raise Refused(f"attempt {key}: file {name!r} offset {offset} is beyond the "
                          f"{held} bytes held", offset=held)
        end = offset + len(data)
        if end > MAX_FILE:
            raise TooLarge(f"a job's file is at most {MAX_FILE} bytes here")
        folder = os.path.join(self.files_root, remote.attempt.job.id)
        os.makedirs(folder, mode=0o755, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        if offset == 0 and held == 0:
            flags |= os.O_TRUNC  # the worker sends a file whole, from 0: no stale tail
        fd = os.open(os.path.join(folder, name), flags, 0o644)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        held = max(held, end)
        self.held[(key, "file:" + name)] = held
        return {"offset": held}

    def message(self, job_id: str, data: Any) -> bool:
        """A message for a browser job running on a worker (job-message.json): handed to
        the worker in its next heartbeat answer. False when no worker runs the job."""
        for key, remote in self.attempts.attempts.items():
            if remote.attempt.job.id == job_id and remote.worker is not None:
                waiting = self.waiting.setdefault(key, [])
                if len(waiting) >= MAX_WAITING:
                    raise Conflict(f"job {job_id} has {MAX_WAITING} messages waiting "
                                   "for its worker already")
                waiting.append(data)
                return True
        return False

    def screenshot(self, job_id: str, full_page: bool) -> Optional[Deferred]:
        """A live screenshot of a browser job running on a worker (job-screenshot.png):
        asked in the worker's next heartbeat answer; fires with the PNG's bytes (see
        remote_shots.RemoteShots.request). None when no worker runs the job."""
        for key, remote in self.attempts.attempts.items():
            if remote.attempt.job.id == job_id and remote.worker is not None:
                return self.shots.request(key, job_id, full_page)
        return None

    def screenshot_taken(self, key: str, req: int, data: Optional[bytes],
                         error: Optional[str]) -> dict[str, Any]:
        """The worker's PNG (or why it failed) for screenshot request ``req``."""
        self._remote(key)
        if not self.shots.answer(key, req, data, error):
            raise Conflict(f"attempt {key}: no screenshot request {req} is waiting "
                           "(it timed out)")
        return {}

    @inlineCallbacks
    def take_posts(self, job_id: str):
        """job-posts.json for a job that ran on a worker: the ``post`` events that came
        home (its events file) and no call returned yet, each handed out once (as
        browser.Browsers.take_posts; the last ``MAX_POSTS`` at most). What was handed
        out is kept in memory (for the last ``POSTS_READ_KEPT`` jobs read): after a daemon
        restart they are handed out again."""
        after = self.posts_read.get(job_id, 0)
        events = yield self.to_thread(read_events, logs.stream_path(self.log_dir, job_id,
                                                                    "events"), after,
                                      10 ** 12)
        if events:
            self.posts_read.pop(job_id, None)  # the most recently read last
            self.posts_read[job_id] = max(after, *(e.get("id", 0) for e in events))
            while len(self.posts_read) > POSTS_READ_KEPT:
                del self.posts_read[next(iter(self.posts_read))]
        return [e for e in events if e.get("type") == "post"][-MAX_POSTS:]

    def runs_remotely(self, job_id: str) -> bool:
        """Whether a worker runs (or is about to run) the job's current attempt."""
        return any(r.attempt.job.id == job_id for r in self.attempts.attempts.values())

    def stats(self, key: str, stats: dict[str, Any]) -> dict[str, Any]:
        """The crawl's latest stats (the latest wins)."""
        remote = self._remote(key)
        remote.reporter.stats(remote.attempt, stats)
        return {}

    def heartbeat(self, worker: str, slots: int, queues: list[str],
                  attempts: list[dict[str, Any]]) -> dict[str, Any]:
        """A worker is alive: its slots count, its attempts are not lost; the answer
        carries the signals to send and the attempts to kill."""
        signals_out, refuse = self.attempts.beat(worker, slots, queues, attempts)
        for key in [k for k in self.held if self.attempts.current(k[0]) is None]:
            del self.held[key]  # of attempts lost or refused since
        for key in [k for k in self.waiting if self.attempts.current(k) is None]:
            del self.waiting[key]
        self.shots.prune(lambda k: self.attempts.current(k) is not None)
        messages, shots = {}, {}  # for this worker's attempts that run (pid known)
        for item in attempts:
            remote = self.attempts.current(item["key"])
            if item.get("pid") is None or remote is None or remote.worker != worker:
                continue
            if self.waiting.get(item["key"]):
                messages[item["key"]] = self.waiting.pop(item["key"])
            asked = self.shots.hand_out(item["key"])
            if asked:
                shots[item["key"]] = asked
        return {"signal": signals_out, "refuse": refuse, "messages": messages,
                "screenshots": shots}

    def ended(self, key: str, code: Optional[int], signal: Optional[int],
              reason: Optional[str], offsets: dict[str, int]) -> dict[str, Any]:
        """The attempt's tree is gone: recorded once the daemon holds every byte up to
        ``offsets`` (else a 409 with what it holds); a repeated end is answered 200."""
        remote = self.attempts.current(key)
        if remote is None:
            if self.attempts.end_of(key) is not None:
                return {}  # recorded already
            raise Refused(f"attempt {key} is not the job's current attempt")
        held = {stream: self._held(remote, stream) for stream in STREAMS}
        if any(offsets.get(stream, 0) > held[stream] for stream in STREAMS):
            raise Refused(f"attempt {key}: the daemon lacks output", offsets=held)
        for held_key in [k for k in self.held if k[0] == key]:
            del self.held[held_key]  # its streams and files
        self.waiting.pop(key, None)
        self.shots.end(key, remote.attempt.job.id)
        self.attempts.finish(key, Exit(code, signal, reason))
        return {}

    def code(self, digest: str):
        """A bundle's bytes by hash (NotFound when unknown)."""
        def found(data: Optional[bytes]) -> bytes:
            if data is None:
                raise NotFound(f"unknown code bundle {digest!r}")
            return data
        return self.bundles.read(digest).addCallback(found)
