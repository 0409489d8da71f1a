"""A worker's runtime: runs the attempts the daemon dispatched, on the worker's reactor.

For each Celery message ``{"job", "attempt", "kind"}`` (``run``): claim the attempt from
the daemon (a 409 starts nothing: at most once), fetch the project version by its hash
(codecache), start the attempt through the same ``LocalLauncher`` and spawner as the
daemon (argv, environment, zygote fast path, sessions, titles, subreaper, tree kill),
ship its output by offset (shipper) and, once it ended, report the end until the daemon
accepted it. The heartbeat loop (heartbeat.py) carries the attempts' pids and memory and
brings back signals (cancel) and refusals (lost attempts), which land here.

At start, ``sweep`` settles what a previous run of this worker left (attempt_records).
At stop, running attempts are ended (TERM, grace, KILL) and their ends reported; what
cannot be reported in time stays recorded for the next start's sweep.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal as signals
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from .. import items as item_files, logs
from ..model import JOB_ID_RE, JOB_KINDS, Actor, Job, JobStatus
from ..process import Exit
from . import attempt_records as records, shots
from .daemon_client import Unreachable
from .protocol import Attempt, Started
from .shipper import Shipper

log = Logger(namespace="crawld.worker")

CLAIM_RETRY = 15.0   # seconds a claim is retried while the daemon is unreachable
STOP_WAIT = 10.0     # seconds, at stop, to report the ends of the attempts stopped
JOB_FIELDS = {f.name for f in dataclasses.fields(Job)}


@dataclass(frozen=True)
class WorkerDirs:
    """A worker's data directory and its parts."""

    root: str

    @property
    def code(self) -> str:
        return os.path.join(self.root, "code")

    @property
    def logs(self) -> str:
        return os.path.join(self.root, "logs")

    @property
    def items(self) -> str:
        return os.path.join(self.root, "items")

    @property
    def run(self) -> str:
        return os.path.join(self.root, "run")

    @property
    def attempts(self) -> str:
        return os.path.join(self.root, "attempts")

    @property
    def files(self) -> str:
        """Browser jobs' artifacts (browser.Browsers.files_dir): shipped home at the end."""
        return os.path.join(self.root, "files")

    def make(self) -> None:
        """Create the folders (blocking)."""
        for folder in (self.root, self.code, self.logs, self.items):
            os.makedirs(folder, mode=0o750, exist_ok=True)
        for folder in (self.run, self.attempts):
            os.makedirs(folder, mode=0o700, exist_ok=True)

    def streams(self, job_id: str) -> dict[str, str]:
        """The spool files of a job: stream name -> path (``events``: a browser job's
        events, which browser.Browsers writes to ``<logs>/<id>.events``)."""
        return {"out": logs.path(self.logs, job_id, "out"),
                "err": logs.path(self.logs, job_id, "err"),
                "items": item_files.path(self.items, job_id),
                "events": logs.stream_path(self.logs, job_id, "events")}


class BadMessage(ValueError):
    """A Celery message that is not ``{"job": ID, "attempt": N, "kind": K}``."""


def parse_message(message: Any) -> tuple[str, int, str]:
    """``(job id, attempt number, kind)`` of a ``crawld.run`` message."""
    if not isinstance(message, dict):
        raise BadMessage(f"expected an object, got {type(message).__name__}")
    job, number, kind = message.get("job"), message.get("attempt"), message.get("kind")
    if not isinstance(job, str) or not JOB_ID_RE.fullmatch(job):
        raise BadMessage(f"bad job id {job!r}")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise BadMessage(f"bad attempt number {number!r}")
    if kind not in JOB_KINDS:
        raise BadMessage(f"bad kind {kind!r}")
    return job, number, kind


def job_from_wire(data: dict[str, Any]) -> Job:
    """A Job from the claim answer's ``job`` (fields this worker does not know are
    left out: a newer daemon may send more)."""
    known = {k: v for k, v in data.items() if k in JOB_FIELDS}
    known["status"] = JobStatus(known["status"])
    known["actor"] = Actor(known["actor"])
    return Job(**known)


class _Reporter:
    """The launcher's Reporter on a worker: stats go to the shipper, the end fires
    ``done`` (the daemon hears of the start from the runtime)."""

    def __init__(self, shipper: Shipper) -> None:
        self.shipper = shipper
        self.done: Deferred = Deferred()  # fires with the Exit

    def started(self, attempt: Attempt, info: Started) -> None:
        pass

    def output(self, attempt: Attempt, stream: str, offset: int, data: bytes) -> None:
        pass  # a worker's job writes its own files; the shipper reads them

    def stats(self, attempt: Attempt, stats: dict[str, Any]) -> None:
        self.shipper.stats(stats)

    def ended(self, attempt: Attempt, exit: Exit) -> None:
        if not self.done.called:
            self.done.callback(exit)


@dataclass
class Running:
    """An attempt this worker has claimed (pid None until it runs)."""

    attempt: Attempt
    shipper: Shipper
    pid: Optional[int] = None
    signalled: set[int] = field(default_factory=set)


class WorkerRuntime:
    """Runs claimed attempts through a LocalLauncher; see the module docstring."""

    def __init__(self, reactor: Any, client: Any, launcher: Any, code: Any,
                 dirs: WorkerDirs, name: str, kill_grace: float = 10.0,
                 to_thread: Callable[..., Deferred] = deferToThread,
                 shipper_factory: Optional[Callable[..., Shipper]] = None) -> None:
        self.reactor = reactor
        self.client = client
        self.launcher = launcher
        self.code = code
        self.dirs = dirs
        self.name = name
        self.kill_grace = kill_grace
        self.to_thread = to_thread
        self.make_shipper = shipper_factory or (
            lambda key, paths: Shipper(reactor, client, key, paths, to_thread=to_thread))
        self.running: dict[str, Running] = {}
        self.sweeping: list[Shipper] = []  # ends of attempts a previous run left
        self.stopping = False

    # -- one attempt ------------------------------------------------------------------
    @inlineCallbacks
    def run(self, message: Any):
        """Claim, start and see through one attempt; fires with what happened (text)."""
        job_id, number, kind = parse_message(message)
        key = f"{job_id}/{number}"
        if key in self.running or self.stopping:
            return f"{key}: not started (" + ("the worker is stopping)" if self.stopping
                                               else "already running here)")
        reply = yield self._claim(job_id, number)
        if reply is None:
            return f"{key}: not started (the daemon could not be reached to claim it)"
        if not reply.ok:
            log.info("job {key}: not started: {msg}", key=key, msg=reply.body.get("msg"))
            return f"{key}: not started ({reply.body.get('msg') or reply.code})"
        job = job_from_wire(reply.body["job"])
        shipper = self.make_shipper(key, self.dirs.streams(job_id))
        shipper.files_dir = os.path.join(self.dirs.files, job_id)
        running = self.running[key] = Running(Attempt(job, number), shipper)
        try:
            outcome = yield self._see_through(running, reply.body.get("code"))
        finally:
            self.running.pop(key, None)
        return outcome

    @inlineCallbacks
    def _claim(self, job_id: str, number: int):
        """The claim's Reply, retried while the daemon is unreachable (None: gave up:
        the daemon will count the attempt lost)."""
        deadline = self.reactor.seconds() + CLAIM_RETRY
        delay = 0.5
        while True:
            try:
                return (yield self.client.claim(self.name, job_id, number))
            except Unreachable as exc:
                if self.reactor.seconds() + delay > deadline:
                    log.error("job {id}: could not claim attempt {n}: {exc}", id=job_id,
                              n=number, exc=exc)
                    return None
                yield task.deferLater(self.reactor, delay, lambda: None)
                delay = min(delay * 2, 5.0)

    @inlineCallbacks
    def _see_through(self, running: Running, code: Optional[dict[str, Any]]):
        attempt, shipper = running.attempt, running.shipper
        job, key = attempt.job, attempt.key
        yield self.to_thread(records.write, self.dirs.attempts, records.AttemptRecord(key))
        try:
            if code is not None:
                path = yield self.code.get(str(code.get("hash")))
                log.debug("job {key}: code in {path}", key=key, path=path)
                job = job.evolve(version=code["hash"])  # launcher's version_dir: the cache
            elif job.kind != "browse":
                raise RuntimeError(f"the daemon sent no code for a {job.kind} job")
            attempt = running.attempt = Attempt(job, attempt.number)
            reporter = _Reporter(shipper)
            self.code.starting = code["hash"] if code is not None else None
            try:
                started = self.launcher.start(attempt, reporter)  # resolves paths at once
            finally:
                self.code.starting = None
            info = yield started
        except Exception as exc:
            log.warn("job {key} could not start: {exc}", key=key, exc=exc)
            accepted = yield shipper.finish(None, None,
                                            f"could not start on worker {self.name}: {exc}")
            yield self._forget(job.id, accepted)
            return f"{key}: could not start ({exc})"
        running.pid = info.pid
        yield self.to_thread(records.write, self.dirs.attempts,
                             records.AttemptRecord(key, info.pid, info.pid_started))
        log.info("job {key} started (pid {pid})", key=key, pid=info.pid)
        shipper.start(lambda why: self._kill(running))
        if shipper.refused is not None:  # refused while it was starting
            self._kill(running)
        else:
            self._report_started(running, info)
        if self.stopping:
            self._end(running)
        exit = yield reporter.done
        reason = exit.reason
        if reason is None and self.stopping and not exit.ok:
            reason = f"ended by the stop of worker {self.name}"
        accepted = yield shipper.finish(exit.code, exit.signal, reason)
        yield self._forget(job.id, accepted)
        return f"{key}: ended ({exit}); " + {True: "reported", False: "refused by the daemon",
                                            None: "left for the next start"}[accepted]

    @inlineCallbacks
    def _report_started(self, running: Running, info: Started):
        """Tell the daemon the attempt runs; a 409 (another worker has it, or it is not
        current) kills the tree. Unreachable: the heartbeats carry the pid anyway."""
        try:
            reply = yield self.client.started(self.name, running.attempt.key, info.pid,
                                              info.pid_started)
        except Unreachable as exc:
            log.warn("job {key}: reporting its start failed ({exc})",
                     key=running.attempt.key, exc=exc)
            return
        if reply.code == 409:
            running.shipper.refuse(str(reply.body.get("msg") or "refused"))

    def _forget(self, job_id: str, accepted: Optional[bool]) -> Deferred:
        """Drop the spool and record once the daemon has the end (or refused it)."""
        if accepted is None:  # abandoned at stop: the next start sweeps it
            return succeed(None)
        return self.to_thread(self._remove_files, job_id)

    def _remove_files(self, job_id: str) -> None:
        for path in self.dirs.streams(job_id).values():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        logs.remove(self.dirs.logs, job_id)  # and a browser job's events file
        # a browser job's artifacts came home with its end (the worker keeps only a
        # cache and a spool)
        shutil.rmtree(os.path.join(self.dirs.files, job_id), ignore_errors=True)
        records.remove(self.dirs.attempts, job_id)

    def _kill(self, running: Running) -> None:
        """The daemon refused the attempt: its tree goes at once."""
        log.warn("job {key}: killing its processes (refused by the daemon)",
                 key=running.attempt.key)
        self.launcher.signal(running.attempt, signals.SIGKILL)

    # -- from the heartbeat -----------------------------------------------------------
    def apply(self, signal: dict[str, Any], refuse: list[str],
              messages: Optional[dict[str, Any]] = None,
              screenshots: Optional[dict[str, Any]] = None) -> None:
        """A heartbeat answer: send each requested signal once; refused attempts stop
        shipping and their trees are killed; ``messages`` (job-message.json's, per
        attempt) go to the browser job's channel, as the daemon's own runner does;
        ``screenshots`` (live screenshot requests) are taken and uploaded (shots.py)."""
        for key, sent in (messages or {}).items():
            running = self.running.get(key)
            if running is not None and isinstance(sent, list):
                self._deliver(running, sent)
        for key, asked in (screenshots or {}).items():
            running = self.running.get(key)
            if running is not None:
                shots.relay_all(self.client, getattr(self.launcher, "browsers", None), key,
                                running.attempt.job.id, asked, self.reactor, self.to_thread)
        for key, sig in signal.items():
            running = self.running.get(key)
            if running is None or not isinstance(sig, int) or sig in running.signalled:
                continue
            running.signalled.add(sig)
            log.info("job {key}: signal {sig} from the daemon", key=key, sig=sig)
            self.launcher.signal(running.attempt, sig)
        for key in refuse:
            running = self.running.get(key)
            if running is not None:  # stops shipping; kills the tree once it runs
                running.shipper.refuse("refused in a heartbeat answer")

    def _deliver(self, running: Running, sent: list[Any]) -> None:
        browsers = getattr(self.launcher, "browsers", None)
        channel = (browsers.channels.get(running.attempt.job.id)
                   if browsers is not None else None)
        for data in sent:
            try:
                if channel is None:
                    raise LookupError("it has no control channel here")
                channel.message(data)
            except Exception as exc:  # ended meanwhile: lost, as locally
                log.warn("job {key}: a message from the daemon was not delivered: {exc}",
                         key=running.attempt.key, exc=exc)
                return

    @inlineCallbacks
    def attempts(self):
        """What the heartbeat reports: each claimed attempt's key, pid and memory."""
        found = []
        for key, running in list(self.running.items()):
            rss = 0
            if running.pid is not None:
                try:
                    rss = yield self.launcher.rss(running.attempt)
                except Exception:
                    rss = 0
            found.append({"key": key, "pid": running.pid, "rss": rss})
        return found

    # -- restart and stop -------------------------------------------------------------
    @inlineCallbacks
    def sweep(self):
        """Settle what a previous run of this worker left: kill it (before anything new
        starts), then ship its output and report its end in the background."""
        yield self.to_thread(self.code.clear_partial)
        found = yield self.to_thread(records.load_all, self.dirs.attempts)
        for record in found:
            killed = yield self.to_thread(records.kill, record)
            log.warn("job {key}: left by a previous run of this worker; {n} process(es) "
                     "killed", key=record.key, n=killed)
            shipper = self.make_shipper(record.key, self.dirs.streams(record.job_id))
            shipper.files_dir = os.path.join(self.dirs.files, record.job_id)
            d = shipper.finish(None, None, "the worker restarted")
            d.addCallback(lambda accepted, job_id=record.job_id: self._forget(job_id, accepted))
            d.addErrback(lambda f: log.failure("sweeping a job failed", f))
            self.sweeping.append(shipper)
        return len(found)

    def _end(self, running: Running) -> None:
        """TERM the attempt's tree, KILL it after the grace."""
        self.launcher.signal(running.attempt, signals.SIGTERM)
        self.reactor.callLater(self.kill_grace, self.launcher.signal, running.attempt,
                               signals.SIGKILL)

    @inlineCallbacks
    def stop(self):
        """The worker stops: end every attempt (TERM, grace, KILL), wait up to STOP_WAIT
        seconds after the grace for their ends to be reported, then give up on the rest
        (their records stay for the next start)."""
        self.stopping = True
        for running in list(self.running.values()):
            if running.pid is not None:
                self._end(running)
        waits = [r.shipper for r in self.running.values()]
        timer = self.reactor.callLater(self.kill_grace + STOP_WAIT,
                                       lambda: [s.abandon() for s in waits])
        deadline = self.reactor.seconds() + self.kill_grace + STOP_WAIT + 1
        while self.running and self.reactor.seconds() < deadline:
            yield task.deferLater(self.reactor, 0.1, lambda: None)
        for shipper in self.sweeping:
            shipper.abandon()
        if timer.active():
            timer.cancel()
        yield self.launcher.stop()

