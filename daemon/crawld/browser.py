"""Browser jobs, daemon side: spawning the runner, its control channel, its events.

A browser job is one process tree: ``runner/shim.py`` (a child subreaper that ends and
reaps everything under it, Chromium included) over ``runner/browser.py`` running the
user's ``run(page, job)``. The daemon talks to it over two pipes of their own, never
over the job's stdout:

- fd 3, job -> daemon: JSON lines (``post``, ``progress``, ``result``, ``file``,
  ``screenshot`` replies, ``ready``, and ``error``: why it is about to fail, which
  becomes the job's reason);
- fd 4, daemon -> job: JSON lines (``message``, ``screenshot`` requests).

Every event the job sends is appended to ``<logs>/<id>.events`` (one JSON object per
line, numbered from 1), which is what job-output.json pages through; posts are also
kept for job-posts.json, which hands each one out once. A job's temporary directory
(its TMPDIR and browser profile) is removed when it ends, by the job's own shim and,
should that have been killed first, by the daemon.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutput
from twisted.logger import Logger

from . import logs, runner
from .commands import Command, RunAs, as_user, job_env
from .errors import CrawldError, NotFound
from .lines import LineReader
from .model import Job
from .process import JobProcessProtocol, Spawned, exit_from_reason

log = Logger(namespace="crawld.browser")

#: The runner's entry: runner/shim.py, loaded as a module from its path (runner/__init__
#: says why), in the jobs' interpreter; it forks runner/browser.py.
SHIM = "shim"
CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser",
              "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable")
CONTROL_OUT, CONTROL_IN = 3, 4  # the job's fds: it writes events to 3, reads commands on 4
MAX_LINE = 16 * 1024 * 1024     # a control line longer than this is dropped
MAX_REASON = 1000               # characters of the job's own failure reason kept
MAX_POSTS = 10000               # unread posts kept per job; older ones are dropped
EVENT_TYPES = ("post", "progress", "result", "file")


class ScreenshotFailed(CrawldError):
    """The job could not take a screenshot (or did not answer in time)."""

    code = 503


def find_browser(configured: str = "auto") -> Optional[str]:
    """The Chromium executable: the configured path, or the first one installed."""
    if configured and configured != "auto":
        return configured if os.access(configured, os.X_OK) else None
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def events_path(log_dir: str, job_id: str) -> str:
    """A browser job's events file: ``<log_dir>/<id>.events`` (JSON lines)."""
    return logs.stream_path(log_dir, job_id, "events")


def read_events(path: str, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """Events numbered after ``after`` (at most ``limit``), from a job's events file.

    Runs in a thread. Event ``id`` is its line number, so a client that passes the last
    id it saw gets only what is new.
    """
    found: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if number <= after:
                    continue
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash
                if len(found) >= limit:
                    break
    except FileNotFoundError:
        pass
    return found


def last_progress(events: list[dict[str, Any]]) -> tuple[Optional[float], Optional[str]]:
    value = label = None
    for event in events:
        if event.get("type") == "progress":
            data = event.get("data") or {}
            value, label = data.get("value"), data.get("label")
    return value, label


@dataclass
class Channel:
    """The daemon's end of one running browser job's control pipes."""

    job_id: str
    events_file: Any
    clock: Callable[[], float]
    send_line: Callable[[bytes], None] = lambda line: None
    count: int = 0
    posts: deque = field(default_factory=lambda: deque(maxlen=MAX_POSTS))
    shots: dict[int, Deferred] = field(default_factory=dict)
    next_shot: int = 0
    closed: bool = False
    error: Optional[str] = None      # the job's own reason for failing, if it sent one
    lines: LineReader = field(init=False)  # the pipe's bytes, framed into lines

    def __post_init__(self) -> None:
        self.lines = LineReader(MAX_LINE, f"job {self.job_id}'s control pipe")

    # -- job -> daemon ----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        """Hand each complete line of the pipe's bytes on (lines.py bounds them)."""
        for line in self.lines.feed(data):
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            log.warn("job {id}: unreadable control line {line!r}", id=self.job_id,
                     line=line[:200])
            return
        if kind == "ready":
            return  # the runner is up; nothing to record
        if kind == "error":
            message = event.get("message")
            if isinstance(message, str) and message:
                self.error = message[:MAX_REASON]
        elif kind == "screenshot":
            waiting = self.shots.pop(event.get("req"), None)
            if waiting is not None:
                waiting.callback(event)
        elif kind in EVENT_TYPES:
            if kind == "progress":
                data: Any = {"value": event.get("value"), "label": event.get("label")}
            elif kind == "file":
                data = {"name": event.get("name"), "size": event.get("size")}
            else:
                data = event.get("data")
            self.record(kind, data)

    def record(self, kind: str, data: Any) -> dict[str, Any]:
        """Number an event, append it to the events file (and the posts, for a post)."""
        self.count += 1
        event = {"id": self.count, "date": self.clock(), "type": kind, "data": data}
        if kind == "post":
            self.posts.append(event)
        try:
            self.events_file.write(json.dumps(event, ensure_ascii=False).encode() + b"\n")
            self.events_file.flush()
        except (OSError, ValueError) as exc:
            log.error("job {id}: cannot write its events: {exc}", id=self.job_id, exc=exc)
        return event

    # -- daemon -> job ----------------------------------------------------------------
    def send(self, obj: Any) -> None:
        if self.closed:
            raise NotFound(f"job {self.job_id} is not running")
        self.send_line(json.dumps(obj, ensure_ascii=False).encode() + b"\n")

    def message(self, data: Any) -> None:
        """Deliver a message to the script (``job.messages()`` and ``window.ondata``)."""
        self.send({"type": "message", "data": data})

    def screenshot(self, path: str, full_page: bool) -> Deferred:
        """Ask the job for a PNG at ``path``; fires with the job's reply."""
        self.next_shot += 1
        req = self.next_shot
        waiting: Deferred = Deferred()
        self.shots[req] = waiting
        self.send({"type": "screenshot", "req": req, "path": path, "full_page": full_page})
        return waiting

    def take_posts(self) -> list[dict[str, Any]]:
        taken = list(self.posts)
        self.posts.clear()
        return taken

    def close(self) -> None:
        self.closed = True
        for waiting in self.shots.values():
            waiting.errback(NotFound(f"job {self.job_id} ended"))
        self.shots.clear()
        try:
            self.events_file.close()
        except OSError:
            pass


class BrowserProtocol(JobProcessProtocol):
    """A browser job's process: reports its end, and carries its control pipes."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def connectionMade(self) -> None:
        self.channel.send_line = lambda line: self.transport.writeToChild(CONTROL_IN, line)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == CONTROL_OUT:
            self.channel.data_received(data)

    def processEnded(self, reason: Any) -> None:
        """Report the end; a failed job's own reason (an ``error`` event) goes with it."""
        self.channel.close()
        exit = exit_from_reason(reason)
        if not exit.ok and self.channel.error:
            exit = replace(exit, reason=self.channel.error)
        self.ended.callback(exit)


@dataclass(frozen=True)
class Settings:
    """What the browser side needs from the configuration."""

    executable: Optional[str]
    kill_grace: float
    screenshot_timeout: float = 15.0


class Browsers:
    """Runs browser jobs and holds the control channels of the running ones."""

    def __init__(self, reactor: Any, data_dir: str, log_dir: str, settings: Settings,
                 python: str, run_as: Optional[RunAs] = None,
                 to_thread: Callable[..., Deferred] = deferToThread) -> None:
        self.reactor = reactor
        self.to_thread = to_thread
        self.log_dir = log_dir
        self.tmp_root = os.path.join(data_dir, "tmp")
        self.files_root = os.path.join(data_dir, "files")
        self.settings = settings
        self.python = python
        self.run_as = run_as  # [crawld] run-as
        self.channels: dict[str, Channel] = {}
        self.posts: dict[str, deque] = {}  # unread posts of jobs that have ended
        self.version: Optional[str] = None

    # -- paths ------------------------------------------------------------------------
    def tmp_dir(self, job_id: str) -> str:
        return os.path.join(self.tmp_root, job_id)

    def files_dir(self, job_id: str) -> str:
        return os.path.join(self.files_root, job_id)

    # -- running ----------------------------------------------------------------------
    def command(self, job: Job, cwd: str, script: Optional[str],
                base_env: Mapping[str, str]) -> Command:
        """The command for a browser job: the runner's shim with its inputs in the
        environment (the runner needs only the stdlib and Playwright)."""
        if self.settings.executable is None:
            raise RuntimeError("no Chromium found; install Debian's chromium package or "
                               "set [browser] executable")
        env = job_env(base_env, job)
        tmp = self.tmp_dir(job.id)
        env.update(CRAWLD_SCRIPT=script or "", CRAWLD_FILES_DIR=self.files_dir(job.id),
                   CRAWLD_TMP=tmp, TMPDIR=tmp, CRAWLD_BROWSER=self.settings.executable,
                   # the shim's own grace ends before the daemon's SIGKILL, so it can
                   # still reap and clean up after a runner that ignores SIGTERM
                   CRAWLD_KILL_GRACE=str(max(0.0, self.settings.kill_grace - 1.0) if
                                         self.settings.kill_grace > 1 else
                                         self.settings.kill_grace / 2),
                   CRAWLD_CONTROL_OUT=str(CONTROL_OUT), CRAWLD_CONTROL_IN=str(CONTROL_IN))
        if job.kind == "browse":
            env["CRAWLD_BROWSE"] = job.payload
        else:
            env["CRAWLD_ARGUMENT"] = job.payload
        if self.run_as is not None:
            env.update(self.run_as.env())
        return as_user(Command(runner.argv(self.python, SHIM), env, cwd), self.run_as)

    def spawn(self, cmd: Command, job_id: str) -> Any:
        """Start the runner with its log files and control pipes; returns a Spawned."""
        if cmd.uid is not None:  # run-as: the roots stay traversable whatever the umask
            for root in (self.tmp_root, self.files_root):
                os.makedirs(root, exist_ok=True)
                os.chmod(root, 0o711)
        for path, mode in ((self.tmp_dir(job_id), 0o700), (self.files_dir(job_id), 0o755)):
            os.makedirs(path, mode=mode, exist_ok=True)
            if cmd.uid is not None:  # run-as: the job writes there as its own user
                os.chown(path, cmd.uid, cmd.gid if cmd.gid is not None else -1)
        # a job runs once: its events file starts empty, numbered from 1, like its logs
        events = open(events_path(self.log_dir, job_id), "wb")
        channel = Channel(job_id, events, self.reactor.seconds)
        out_fd, err_fd = logs.open_for_child(self.log_dir, job_id)
        null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            proto = BrowserProtocol(channel)
            self.reactor.spawnProcess(
                proto, cmd.executable, list(cmd.args), env=dict(cmd.env), path=cmd.cwd,
                uid=cmd.uid, gid=cmd.gid, childFDs={0: null_fd, 1: out_fd, 2: err_fd, CONTROL_OUT: "r",
                          CONTROL_IN: "w"})
        except BaseException:
            events.close()
            raise
        finally:
            for fd in (null_fd, out_fd, err_fd):
                os.close(fd)
        self.channels[job_id] = channel
        return succeed(Spawned(proto.transport.pid, proto.ended))

    def ended(self, job_id: str) -> Deferred:
        """A browser job ended: keep its unread posts, remove its temporary directory."""
        channel = self.channels.pop(job_id, None)
        if channel is not None:
            channel.close()
            if channel.posts:
                self.posts[job_id] = channel.posts
        return self.to_thread(shutil.rmtree, self.tmp_dir(job_id), True)

    def channel(self, job_id: str) -> Channel:
        channel = self.channels.get(job_id)
        if channel is None:
            raise NotFound(f"job {job_id} is not running (or is not a browser job)")
        return channel

    def take_posts(self, job_id: str) -> list[dict[str, Any]]:
        """Posts not read yet, then forgotten: each one is handed out once."""
        channel = self.channels.get(job_id)
        if channel is not None:
            return channel.take_posts()
        left = self.posts.pop(job_id, None)
        return list(left) if left else []

    @inlineCallbacks
    def describe(self):
        """The browser that browser jobs use, for browsers.json: fires with ``{"name",
        "executable", "version"}`` (and ``"error"`` when ``--version`` failed: shown, not
        cached, as it may work next time), or None when no browser is installed. The
        version is asked of the executable once, and kept."""
        exe = self.settings.executable
        if exe is None:
            return None
        if self.version is None:
            try:
                out = yield getProcessOutput(exe, ("--version",), env=dict(os.environ),
                                             reactor=self.reactor, errortoo=True)
            except Exception as exc:
                return {"name": "chromium", "executable": exe, "version": None,
                        "error": str(exc)}
            self.version = out.decode("utf-8", "replace").strip()
        return {"name": "chromium", "executable": exe, "version": self.version}

    def forget(self, job_id: str) -> None:  # called by retention
        """Drop what is kept of a purged job."""
        self.posts.pop(job_id, None)

