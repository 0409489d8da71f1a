"""A spider job's keeper: the job's process, a child subreaper that runs Scrapy in its
one child and ends only once nothing it started is left (stdlib only).

Process shape (both for a zygote fork and a direct spawn, and for a push's ``scrapy
list``)::

    keeper (the job's pid; session leader;     waits; forwards signals sent to it;
     |      subreaper)                         when Scrapy ends: SIGTERM to leftovers,
     `- Scrapy (" (scrapy)" in its title)      LEFTOVER_GRACE s, SIGKILL until none is
         `- whatever the spider starts         left; then ends as Scrapy ended

A process the spider (or a project's settings.py) double-forks into a session of its
own is re-parented to the keeper, not to the zygote or init, so the keeper's sweep and
the daemon's whole-tree signals (which start at the keeper's pid) still reach it.

The keeper ends as its child did: the same exit code, or death by the same signal
(``proc.end_as``), so a job killed by SIGSEGV still reports SIGSEGV. The child gets
SIGKILL should the keeper die first (``PR_SET_PDEATHSIG``).

Signals. The daemon signals the keeper's process group and every descendant itself
(cancel, limits, shutdown), so the keeper passes on nothing the daemon sent, nor what
came from inside the job: Scrapy stops gracefully at its first SIGTERM and uncleanly at
a second. What someone else sends the keeper's pid alone (``kill <pid>`` from
list-jobs) it forwards to Scrapy, as if Scrapy had been signalled.
"""
from __future__ import annotations

import os
import signal
import traceback
from typing import Callable, NoReturn, Optional

from . import proc
from .reaper import Reaper

FORWARDED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2}
WATCHED = {signal.SIGCHLD, *FORWARDED}
CHILD_SUFFIX = " (scrapy)"


class Keeper(Reaper):
    """Waits for Scrapy, forwarding outside signals; then clears the tree."""

    def __init__(self, child: int, quiet: int) -> None:
        super().__init__(child, WATCHED, "crawld-job")
        self.quiet = quiet  # the daemon's pid: it signals the whole tree itself

    def forward(self, info: signal.struct_siginfo) -> None:
        """Pass a signal on to Scrapy unless the daemon or the job itself sent it."""
        sender = info.si_pid
        if sender == self.quiet or sender == os.getpid() or (
                sender and sender in proc.descendants(os.getpid())):
            return
        try:
            os.kill(self.child, info.si_signo)
        except ProcessLookupError:
            pass

    def run(self) -> int:
        """The keeper's life once Scrapy is forked; returns Scrapy's raw wait status."""
        while not self.child_done():
            info = self.wait(self.child_done, None, poll=None)
            if info is not None:
                self.forward(info)
        status = self.child_status
        assert status is not None
        self.sweep(f"Scrapy ended with status {proc.exit_code(status)}")
        return status


def keep(main: Callable[[], int], title: Optional[str], quiet: int,
         finish: Callable[[int], NoReturn] = proc.exit_now) -> NoReturn:
    """Become a subreaper, run ``main()`` (returns an exit code) in a forked child
    titled ``title`` + " (scrapy)", sweep, and end as that child ended.

    Call it in a process that already leads its session and has its log files as
    stdout and stderr. ``quiet``: the pid whose signals are not forwarded (the daemon).
    The child ends with ``finish(code)``: ``os._exit`` by default (a zygote's fork must
    not run the zygote's exit handlers), ``sys.exit`` for a freshly started interpreter.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    if not proc.prctl(proc.PR_SET_CHILD_SUBREAPER, 1):
        proc.note("cannot become a child subreaper; orphans may escape the cleanup",
                  "crawld-job")
    keeper = os.getpid()
    proc.flush()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            proc.prctl(proc.PR_SET_PDEATHSIG, signal.SIGKILL)  # the keeper killed: follow
            if os.getppid() != keeper:
                os._exit(code)
            proc.set_title(title and title + CHILD_SUFFIX)
            code = main()
        except BaseException:
            traceback.print_exc()
        finally:
            finish(code)
    try:
        status = Keeper(child, quiet).run()
    except BaseException:  # never return into the caller's code (a zygote's loop)
        traceback.print_exc()
        Reaper(child, WATCHED, "crawld-job").kill_all()
        status = 1 << 8  # exit code 1
    proc.end_as(status)
