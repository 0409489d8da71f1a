"""How job processes come to exist: spawned directly, or forked by the zygote.

Both give the supervisor the same thing, a ``Spawned`` (pid, and a Deferred that fires
with the Exit), so slots, cancel and orphan handling do not care which one was used.
The zygote is the fast path (see runner/zygote.py); the direct spawn is its fallback
whenever the zygote is off, not ready to start or gone.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import logs, runner, tree
from ..commands import STATS_FD, Command
from ..lines import LineReader
from ..process import Exit, JobProcessProtocol, Spawned

log = Logger(namespace="crawld.spawner")

LOST_POLL = 0.5  # how often to look for jobs whose zygote died
MAX_EVENT = 1024 * 1024  # a zygote event line longer than this is dropped


def exit_from_status(status: int) -> Exit:
    """A raw wait status (as the zygote reports it) as an Exit."""
    if os.WIFSIGNALED(status):
        return Exit(None, os.WTERMSIG(status))
    return Exit(os.WEXITSTATUS(status), None)


class DirectSpawner:
    """``spawnProcess`` a fresh interpreter per job, handing it the log descriptors."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def spawn(self, cmd: Command, log_dir: str, job_id: str) -> Deferred:
        out_fd, err_fd = logs.open_for_child(log_dir, job_id)
        fds = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), out_fd, err_fd]
        try:
            if cmd.stats_fifo is not None:  # the daemon reads it already (statspipe.py)
                fds.append(os.open(cmd.stats_fifo,
                                   os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            proto = JobProcessProtocol()
            self.reactor.spawnProcess(proto, cmd.executable, list(cmd.args), env=dict(cmd.env),
                                      path=cmd.cwd, uid=cmd.uid, gid=cmd.gid,
                                      childFDs={0: fds[0], 1: out_fd, 2: err_fd,
                                                **({STATS_FD: fds[3]} if len(fds) > 3
                                                   else {})})
        finally:
            for fd in fds:
                os.close(fd)
        return succeed(Spawned(proto.transport.pid, proto.ended))

    def stop(self) -> Deferred:
        return succeed(None)

    def up(self) -> bool:
        """No zygote here (crawld_zygote_up is 0)."""
        return False


class _ZygoteProtocol(ProcessProtocol):
    def __init__(self, owner: "ZygoteSpawner") -> None:
        self.owner = owner
        self.lines = LineReader(MAX_EVENT, "the zygote")

    def outReceived(self, data: bytes) -> None:
        for line in self.lines.feed(data):
            try:
                event = json.loads(line)
            except ValueError:
                log.warn("zygote said something unexpected: {line!r}", line=line[:200])
                continue
            self.owner.event(event)

    def processEnded(self, reason: Failure) -> None:
        self.owner.lost(reason)


class ZygoteSpawner:
    """Asks a preloaded zygote process to fork each job; falls back to DirectSpawner."""

    def __init__(self, reactor: Any, python: str, cwd: str,
                 base_env: Optional[dict[str, str]] = None) -> None:
        self.reactor = reactor
        self.fallback = DirectSpawner(reactor)
        self.proto: Optional[_ZygoteProtocol] = None
        self.alive = False
        self.ready = False
        self.tokens = 0
        self.waiting: dict[int, tuple[Deferred, Command, str, str]] = {}
        self.ended: dict[int, Deferred] = {}
        self.stopped: Optional[Deferred] = None
        self._start(python, cwd, dict(os.environ if base_env is None else base_env))

    def _start(self, python: str, cwd: str, env: dict[str, str]) -> None:
        self.proto = _ZygoteProtocol(self)
        try:
            self.reactor.spawnProcess(self.proto, python, list(runner.argv(python, "zygote")),
                                      env=env, path=cwd, childFDs={0: "w", 1: "r", 2: 2})
            self.alive = True
        except Exception as exc:
            log.error("zygote could not start ({exc}); jobs start directly", exc=exc)

    def spawn(self, cmd: Command, log_dir: str, job_id: str) -> Deferred:
        if not self.alive:
            return self.fallback.spawn(cmd, log_dir, job_id)
        self.tokens += 1
        d: Deferred = Deferred()
        out, err = (logs.path(log_dir, job_id, ext) for ext in ("out", "err"))
        self.waiting[self.tokens] = (d, cmd, log_dir, job_id)
        request = {"op": "spawn", "token": self.tokens, "args": list(cmd.scrapy_args),
                   "env": dict(cmd.env), "cwd": cmd.cwd, "out": out, "err": err,
                   "uid": cmd.uid, "gid": cmd.gid, "stats": cmd.stats_fifo}
        self.proto.transport.write(json.dumps(request).encode() + b"\n")
        return d

    def event(self, event: dict) -> None:
        kind = event.get("ev")
        if kind == "ready":
            self.ready = True
            log.info("zygote ready (pid {pid}, {n} Scrapy components preloaded)",
                     pid=event.get("pid"), n=event.get("preloaded"))
        elif kind == "started":
            d, *_ = self.waiting.pop(event["token"])
            ended: Deferred = Deferred()
            self.ended[event["pid"]] = ended
            d.callback(Spawned(event["pid"], ended))
        elif kind == "failed":
            d, cmd, log_dir, job_id = self.waiting.pop(event["token"])
            log.warn("zygote could not fork ({error}); starting directly", error=event["error"])
            self.fallback.spawn(cmd, log_dir, job_id).chainDeferred(d)
        elif kind == "exited":
            ended = self.ended.pop(event["pid"], None)
            if ended is not None:
                ended.callback(exit_from_status(event["status"]))

    def lost(self, reason: Failure) -> None:
        """The zygote ended: retry waiting spawns directly, watch running jobs by pid."""
        self.alive = False
        if self.stopped is None:
            log.error("zygote ended unexpectedly ({why}); jobs start directly from now on",
                      why=reason.getErrorMessage())
        for d, cmd, log_dir, job_id in self.waiting.values():
            self.fallback.spawn(cmd, log_dir, job_id).chainDeferred(d)
        self.waiting.clear()
        for pid, ended in self.ended.items():
            self._watch(pid, tree.start_time(pid), ended)
        self.ended.clear()
        if self.stopped is not None:
            self.stopped.callback(None)

    def _watch(self, pid: int, started: Optional[float], ended: Deferred) -> None:
        """Poll a job whose exit status nobody can collect any more."""
        if started is not None and tree.is_same_process(pid, started):
            self.reactor.callLater(LOST_POLL, self._watch, pid, started, ended)
        else:
            ended.callback(Exit(None, None))

    def up(self) -> bool:
        """Whether the zygote runs and has said it is ready to fork jobs."""
        return self.alive and self.ready

    def stop(self) -> Deferred:
        """Close the zygote's stdin (it exits); fires when it is gone."""
        if not self.alive:
            return succeed(None)
        self.stopped = Deferred()
        self.proto.transport.closeStdin()
        return self.stopped
