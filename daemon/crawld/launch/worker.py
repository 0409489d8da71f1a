"""``crawld worker``: a Celery worker that runs the daemon's job attempts on this host.

Process shape: the main thread runs the Celery worker (pool ``threads``, one thread per
slot); a Twisted reactor runs in a second thread (no signal handlers there: Celery owns
them) hosting the same LocalLauncher and spawner (zygote fast path) as the daemon, the
runtime (runtime.py), the heartbeat (heartbeat.py) and the HTTP client of the daemon.
The task ``crawld.run`` hands its message to the runtime with ``blockingCallFromThread``
and blocks until the attempt's end has been accepted by the daemon, so Celery's
concurrency is the worker's slot count and early acks (acked before it runs, never
redelivered) with the daemon's claim make each attempt run at most once.

Without the reactor's signal handlers nothing reaps the children the reactor spawns
(the zygote, direct spawns, browser shims: Twisted waits for SIGCHLD), so a
LoopingCall runs ``reapAllProcesses`` (one ``waitpid(WNOHANG)`` per child) every
``REAP_INTERVAL`` seconds. Zygote-forked jobs are reaped by the zygote, as on the daemon.

SIGTERM (systemd stop): Celery's warm shutdown waits for running tasks; the runtime is
told at once (``worker_shutting_down``) and ends each attempt (TERM, grace, KILL) and
reports its end, so jobs end FAILED with their logs rather than lost.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate, Logger,
                            globalLogBeginner, textFileLogObserver)

from .celery import CELERY_SETTINGS, QUEUES, TASK_NAME, celery_app, queue_for, task_id  # noqa: F401  (the shared contract, re-exported)

log = Logger(namespace="crawld.worker")

REAP_INTERVAL = 0.25
#: What only the consuming side sets: crawld's log observer keeps the worker's output.
WORKER_SETTINGS: dict[str, Any] = {
    "worker_hijack_root_logger": False,
    "worker_redirect_stdouts": False,
    # With early acks a running task no longer counts against the prefetch count, so a
    # busy worker would reserve one more message and sit on it while another worker
    # idles: reserve only while a slot is free (Redis brokers; Celery 5.6+).
    "worker_disable_prefetch": True,
}


def make_app(broker: str, run: Optional[Callable[[dict], str]] = None) -> Any:
    """The Celery app on ``broker`` (celery.celery_app, the daemon's settings); with
    ``run``, the task ``crawld.run`` calls it with the message (the worker side)."""
    app = celery_app(broker)
    app.conf.update(WORKER_SETTINGS)
    if run is not None:
        app.steps["worker"].add(_tick_step())
        @app.task(name=TASK_NAME, ignore_result=True)
        def crawld_run(message: dict) -> str:
            return run(message)
    return app


#: How often Celery's event loop looks again whether a slot is free (below).
TICK = 0.05


def _tick_step() -> Any:
    """A worker bootstep that runs Celery's event loop every ``TICK`` seconds.

    With ``worker_disable_prefetch``, the loop takes the next message only when it
    iterates with a slot free; a task ending in a pool thread does not wake it, so
    without a tick a burst waited up to a second (the loop's poll timeout) per freed
    slot. An empty timer wakes it; its cost is a loop iteration."""
    from celery import bootsteps

    class Tick(bootsteps.StartStopStep):
        requires = ("celery.worker.components:Hub",)

        def __init__(self, w: Any, **kwargs: Any) -> None:
            super().__init__(w, **kwargs)
            self.tref: Any = None

        def start(self, w: Any) -> None:
            if getattr(w, "hub", None) is not None:
                self.tref = w.hub.call_repeatedly(TICK, lambda: None)

        def stop(self, w: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

    return Tick


@dataclass(frozen=True)
class WorkerOptions:
    """``crawld worker``'s options (cli.py checks them)."""

    broker: str
    daemon: str
    key: str
    data_dir: str
    concurrency: int
    queues: tuple[str, ...] = ("spider", "browser")
    name: str = ""
    python: str = sys.executable
    ca_file: Optional[str] = None
    log_level: str = "info"
    kill_grace: float = 10.0
    preload: bool = True   # the zygote fast path


def default_name() -> str:
    """The host's name: a restarted worker keeps its name."""
    return socket.gethostname()


class WorkerProcess:
    """Builds the worker's parts on the reactor thread and runs Celery on this one."""

    def __init__(self, options: WorkerOptions, reactor: Any) -> None:
        self.options = options
        self.reactor = reactor
        self.name = options.name or default_name()
        self.stopped: Any = None

    def _build(self) -> None:
        """Wire the worker (on the reactor thread: the zygote is spawned here)."""
        from twisted.internet import process, task

        from ..browser import Browsers, Settings as BrowserSettings, find_browser
        from .codecache import CodeCache
        from .daemon_client import DaemonClient
        from .heartbeat import Heartbeat
        from .local import LocalLauncher, LocalSettings
        from .runtime import WorkerDirs, WorkerRuntime
        from .spawner import DirectSpawner, ZygoteSpawner
        o, reactor = self.options, self.reactor
        self.reaper = task.LoopingCall(process.reapAllProcesses)
        self.reaper.clock = reactor
        self.reaper.start(REAP_INTERVAL)
        dirs = WorkerDirs(os.path.abspath(o.data_dir))
        self.client = DaemonClient(reactor, o.daemon, o.key, o.ca_file)
        self.code = CodeCache(dirs.code, self.client.code)
        self.spawner = (ZygoteSpawner(reactor, o.python, dirs.root) if o.preload
                        else DirectSpawner(reactor))
        browsers = Browsers(reactor, dirs.root, dirs.logs,
                            BrowserSettings(find_browser("auto"), o.kill_grace), o.python)
        self.launcher = LocalLauncher(
            LocalSettings(o.python, dirs.logs, lambda project: None, self.code.script_path,
                          version_dir=self.code.version_dir, run_dir=dirs.run,
                          items_dir=dirs.items),
            self.spawner, browsers, reactor=reactor)
        self.runtime = WorkerRuntime(reactor, self.client, self.launcher, self.code, dirs,
                                     self.name, kill_grace=o.kill_grace)
        self.heartbeat = Heartbeat(reactor, self.client, self.runtime, self.name,
                                   o.concurrency, list(o.queues))

    def _start(self) -> Any:
        """Build, sweep what a previous run left, start beating (reactor thread)."""
        from .runtime import WorkerDirs
        from .statspipe import clear
        WorkerDirs(os.path.abspath(self.options.data_dir)).make()
        clear(os.path.join(os.path.abspath(self.options.data_dir), "run"))
        self._build()
        d = self.runtime.sweep()
        d.addCallback(lambda n: self.heartbeat.start())
        return d

    def _stop(self) -> Any:
        """End the attempts and the zygote, then the heartbeats (reactor thread)."""
        if self.stopped is None:
            self.stopped = self.runtime.stop()
            self.stopped.addBoth(lambda r: (self.heartbeat.stop(), self.reaper.stop(), r)[2])
        return self.stopped

    def run(self) -> int:
        """Run until Celery stops (SIGTERM, SIGINT); returns the exit code."""
        from celery import signals as celery_signals
        from twisted.internet.threads import blockingCallFromThread
        reactor = self.reactor
        thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                  name="crawld-reactor", daemon=True)
        thread.start()
        try:
            blockingCallFromThread(reactor, self._start)
        except Exception as exc:
            log.failure("the worker could not start")
            print(f"crawld worker: could not start: {exc}", file=sys.stderr)
            reactor.callFromThread(reactor.stop)
            return 1
        log.info("worker {name} ready: {n} slot(s), queues {q}, daemon {url}",
                 name=self.name, n=self.options.concurrency,
                 q=",".join(self.options.queues), url=self.options.daemon)

        def run_task(message: dict) -> str:
            outcome = blockingCallFromThread(reactor, self.runtime.run, message)
            log.info("{outcome}", outcome=outcome)
            return outcome

        def shutting_down(**kwargs: Any) -> None:
            reactor.callFromThread(self._stop)
        def ready(**kwargs: Any) -> None:
            log.info("crawld@{name} ready: consuming {q}", name=self.name,
                     q=", ".join(QUEUES[q] for q in self.options.queues))
        celery_signals.worker_shutting_down.connect(shutting_down, weak=False)
        celery_signals.worker_ready.connect(ready, weak=False)
        app = make_app(self.options.broker, run_task)
        worker = app.Worker(
            hostname=f"crawld@{self.name}", pool_cls="threads",
            concurrency=self.options.concurrency,
            queues=[QUEUES[q] for q in self.options.queues],
            loglevel=self.options.log_level.upper(), without_gossip=True,
            without_mingle=True, without_heartbeat=True, quiet=True)
        code = 0
        try:
            worker.start()
            code = worker.exitcode or 0
        finally:
            try:
                blockingCallFromThread(reactor, self._stop)
            finally:
                reactor.callFromThread(reactor.stop)
                thread.join(timeout=10)
        return code


def begin_logging(level: str) -> None:
    """The worker's Twisted log to stderr (journald), at ``level`` and above."""
    predicate = LogLevelFilterPredicate(LogLevel.levelWithName(level))
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
        redirectStandardIO=False)


def main(options: WorkerOptions) -> int:
    """Run a worker in this process (the global reactor)."""
    from twisted.internet import reactor
    begin_logging(options.log_level)
    return WorkerProcess(options, reactor).run()


def parse_queues(text: str) -> tuple[str, ...]:
    """``spider,browser`` -> ("spider", "browser"); ValueError for an unknown name."""
    names = tuple(dict.fromkeys(q.strip() for q in text.split(",") if q.strip()))
    unknown = [q for q in names if q not in QUEUES]
    if not names or unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown) or '(none)'}; "
                         f"use {', '.join(QUEUES)}")
    return names


def register(sub: Any) -> None:
    """Add ``crawld worker`` to the command line's subcommands."""
    p = sub.add_parser(
        "worker", help="run jobs for a daemon on this host (a Celery worker)",
        description="Run a worker of a crawld cluster ([cluster] launcher = celery): it "
        "takes job attempts from the broker, claims each from the daemon, fetches the "
        "project version from the daemon by its hash, runs the job as the daemon would "
        "(zygote, sessions, tree kill) and ships its logs, items and stats home by "
        "offset. Keeps only a code cache and a spool in --data-dir.")
    p.add_argument("--broker", metavar="URL", default=os.environ.get("CRAWLD_BROKER"),
                   help="the Celery broker: redis://HOST:PORT/DB or rediss://... "
                   "(default: $CRAWLD_BROKER; required)")
    p.add_argument("--daemon", metavar="URL", default=os.environ.get("CRAWLD_DAEMON"),
                   help="the daemon's URL, http:// or https:// (default: $CRAWLD_DAEMON; "
                   "required)")
    p.add_argument("--key", metavar="KEY", help="an API key of role worker ('crawld keys "
                   "add --role worker'); default: $CRAWLD_KEY (better: a command line "
                   "is visible to every user of the host)")
    p.add_argument("--data-dir", metavar="DIR", default="./crawld-worker",
                   help="the code cache and the spool (default ./crawld-worker)")
    p.add_argument("--concurrency", metavar="N", type=int, default=os.cpu_count() or 1,
                   help="jobs run at once: the slots this worker offers (default: the "
                   "number of CPUs)")
    p.add_argument("--queues", metavar="LIST", default="spider,browser",
                   help="which jobs to take: spider, browser or both (default "
                   "spider,browser)")
    p.add_argument("--name", metavar="NAME", default="",
                   help="the worker's name in the daemon (default: the host name, kept "
                   "across restarts)")
    p.add_argument("--python", metavar="PATH", default=sys.executable,
                   help="the jobs' interpreter (default: crawld's)")
    p.add_argument("--ca-file", metavar="PEM", help="trust only these CAs for an "
                   "https:// daemon (default: the system's)")
    p.add_argument("--kill-grace", metavar="SECONDS", type=float, default=10.0,
                   help="seconds between TERM and KILL when the worker stops (default 10)")
    p.add_argument("--no-preload", action="store_true",
                   help="start each job in a fresh interpreter (no zygote)")
    p.add_argument("--log-level", choices=("debug", "info", "warn", "error"),
                   default="info", help="log to stderr from this level (default info)")


def options_from(args: Any) -> WorkerOptions:
    """The parsed ``crawld worker`` arguments, checked; ValueError says what is wrong."""
    if not args.broker:
        raise ValueError("--broker is required (redis://HOST:PORT/DB or rediss://...)")
    if not args.broker.startswith(("redis://", "rediss://")):
        raise ValueError(f"--broker {args.broker!r}: expected redis://HOST:PORT/DB or "
                         "rediss://...")
    if not args.daemon:
        raise ValueError("--daemon is required (the daemon's http:// or https:// URL)")
    if not args.daemon.startswith(("http://", "https://")):
        raise ValueError(f"--daemon {args.daemon!r}: expected an http:// or https:// URL")
    key = args.key or os.environ.get("CRAWLD_KEY", "")
    if not key:
        raise ValueError("no key: pass --key KEY or set CRAWLD_KEY (a key of role worker, "
                         "'crawld keys add --role worker')")
    if args.concurrency < 1:
        raise ValueError("--concurrency must be 1 or more")
    if args.kill_grace < 0:
        raise ValueError("--kill-grace must be zero or more")
    if args.ca_file and not os.path.isfile(args.ca_file):
        raise ValueError(f"--ca-file {args.ca_file}: no such file")
    return WorkerOptions(args.broker, args.daemon, key, args.data_dir, args.concurrency,
                         parse_queues(args.queues), args.name, args.python, args.ca_file,
                         args.log_level, args.kill_grace, not args.no_preload)


def run(args: Any) -> int:
    """``crawld worker``: check the options, then run (exit 2 on a bad option)."""
    try:
        options = options_from(args)
    except ValueError as exc:
        print(f"crawld worker: {exc}", file=sys.stderr)
        return 2
    try:
        import celery  # noqa: F401
    except ImportError:
        print("crawld worker: Celery is not installed (pip install 'crawld[cluster]')",
              file=sys.stderr)
        return 2
    return main(options)
