"""The zygote: a process that imports Scrapy once and forks every job from there.

Starting a fresh interpreter and importing Scrapy costs ~0.7 s of CPU per job, nearly
all of a short job's cost. The zygote pays it once; each job is then a fork that costs
~0.1 s. It runs in the jobs' interpreter (the ``python`` option), imports no Twisted
reactor, and speaks JSON lines: requests on stdin, events on stdout. The daemon starts it
through the package's bootstrap (``runner.argv(python, "zygote")``), so its command line
carries no source, and it calls itself ``crawld: zygote``.

    -> {"op": "spawn", "token": 1, "args": [...], "env": {...}, "cwd": "...",
        "out": "<log path>", "err": "<log path>", "uid": null, "gid": null}
    <- {"ev": "ready", "preloaded": 61}
    <- {"ev": "started", "token": 1, "pid": 4242}
    <- {"ev": "exited", "pid": 4242, "status": 0}          (a raw wait status)

Each child leads a session of its own and has only its log files, /dev/null and its
environment: what a freshly spawned ``scrapy crawl`` would have, and its title is the
job's (``crawld: job <id> <project>/<spider>``, see proc.py). It is the job's keeper
(keeper.py): a subreaper that runs Scrapy in its own child and, when Scrapy ends, kills
whatever the job left, even in sessions of its own, before it reports Scrapy's status
as its own. The zygote is a child subreaper too: should a keeper be SIGKILLed, what it
kept is re-parented here, and the zygote kills every child that is not a keeper. When
stdin closes (the daemon stopped or died) the zygote exits; running jobs are not touched.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import traceback
from typing import NoReturn

from . import crawl, keeper, proc
from .spider import run_scrapy
from .stats import FD_ENV

#: The daemon creates (and empties) a job's logs before the job is RUNNING, so that
#: they can be followed from then on; the child appends to those same files.
LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def preload() -> int:
    """Import Scrapy's command line and every component its default settings name."""
    from scrapy.settings import default_settings
    from scrapy.utils.misc import load_object
    import scrapy.cmdline  # noqa: F401
    import scrapy.commands.crawl  # noqa: F401
    import scrapy.commands.list  # noqa: F401

    names: set[str] = set()
    for attr in dir(default_settings):
        value = getattr(default_settings, attr)
        if isinstance(value, dict):
            names.update(k for k in value if isinstance(k, str) and "." in k)
        elif isinstance(value, str) and value.count(".") >= 2 and " " not in value:
            names.add(value)
    loaded = 0
    for name in sorted(names):
        try:
            load_object(name)
            loaded += 1
        except Exception:  # optional components (missing extras) are simply skipped
            pass
    try:  # crawld's own: the stats extension (stats.py), as the jobs will name it
        load_object(crawl.EXTENSION)
        loaded += 1
    except Exception:  # not loaded as crawld_runner (a test): each job loads it itself
        pass
    assert "twisted.internet.reactor" not in sys.modules, "preload installed a reactor"
    return loaded


def emit(event: dict) -> None:
    """Write one event line to the daemon (unbuffered: nothing lingers for a fork)."""
    data = (json.dumps(event) + "\n").encode()
    while data:
        data = data[os.write(1, data):]


def open_stats_channel(request: dict) -> None:
    """Open the job's stats FIFO (``request["stats"]``, the daemon reads it) as the fd
    ``CRAWLD_STATS_FD`` names, where the stats extension writes (stats.py). Without it
    the job runs, and says why on its stderr, with no stats reported."""
    path = request.get("stats")
    env = request["env"]
    if not path or FD_ENV not in env:
        return
    try:
        target = int(env[FD_ENV])
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: nobody reads it
        if fd != target:
            os.dup2(fd, target)
            os.close(fd)
    except (OSError, ValueError) as exc:
        print(f"crawld: no stats channel ({exc}); this job reports no stats",
              file=sys.stderr, flush=True)
        env.pop(FD_ENV, None)


def run_child(request: dict, keep_fds: tuple[int, ...], daemon: int) -> NoReturn:
    """In the forked child: become the job's keeper, run Scrapy below it, never return."""
    try:
        title = proc.job_title(request["env"])
        proc.set_title(title)  # first: ps tells it from the zygote
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["out"], LOG_FLAGS, 0o640)
        err = os.open(request["err"], LOG_FLAGS, 0o640)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        for fd in keep_fds:
            os.close(fd)
        open_stats_channel(request)  # as crawld's user, before run-as drops it
        if request.get("uid") is not None:  # run-as: drop root for good, groups first
            import pwd
            user = pwd.getpwuid(request["uid"]).pw_name
            os.initgroups(user, request["gid"])
            os.setgid(request["gid"])
            os.setuid(request["uid"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["scrapy", *request["args"]]  # as `scrapy crawl` would have it
    except BaseException:
        traceback.print_exc()
        proc.exit_now(1)
    keeper.keep(lambda: run_scrapy(sys.argv), title, daemon)


class Jobs:
    """The keepers this zygote forked: their ends are reported; any other child is a
    stray and is killed."""

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def exited(self, pid: int, status: int) -> None:
        """Report a reaped keeper's raw wait status (a reaped stray is not news)."""
        if pid in self.pids:
            self.pids.discard(pid)
            emit({"ev": "exited", "pid": pid, "status": status})

    def kill_strays(self) -> None:
        """SIGKILL every child that is not a keeper.

        Only a keeper that was itself SIGKILLed leaves its processes to the zygote (a
        subreaper): its child follows it (PR_SET_PDEATHSIG), and whatever that had
        started is re-parented here before the keeper's SIGCHLD arrives. Their own
        children land here in turn as they die, and are killed at the next SIGCHLD.
        """
        for pid in proc.children(os.getpid()):
            if pid not in self.pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def serve() -> None:
    """Read spawn requests until stdin closes."""
    proc.set_title("crawld: zygote")
    proc.prctl(proc.PR_SET_CHILD_SUBREAPER, 1)
    daemon = os.getppid()
    jobs = Jobs()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the daemon ends it by closing stdin
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    emit({"ev": "ready", "preloaded": preload(), "pid": os.getpid()})
    buffer = b""
    while True:
        try:
            readable, _, _ = select.select([0, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 4096)
            proc.reap(jobs.exited)
            jobs.kill_strays()
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as exc:
                    emit({"ev": "failed", "token": request["token"], "error": str(exc)})
                    continue
                if pid == 0:
                    run_child(request, (wake_r, wake_w), daemon)
                jobs.pids.add(pid)
                emit({"ev": "started", "token": request["token"], "pid": pid})


def main() -> None:
    """The zygote's whole life (started by the package's bootstrap)."""
    try:
        serve()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
