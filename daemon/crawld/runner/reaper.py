"""A child subreaper's view of its tree: wait for its one child, reap everything that
ends below it, and finally clear every descendant (stdlib only).

Shared by a spider job's keeper (keeper.py) and a browser job's shim (shim.py). Both make
themselves child subreapers (``PR_SET_CHILD_SUBREAPER``) and fork the process that does
the work. A process below them that double-forks into a session of its own is
re-parented to them when its parent exits, so "descendant" is always the ppid chain
from here, and nothing started below escapes the sweep.

Signals are blocked (since before the fork) and collected with sigtimedwait, so none is
lost between checks and no handler runs at odd times. Every wait is bounded or woken by
SIGCHLD: a reaper never hangs forever.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable, Optional

from . import proc
from .proc import descendants

LEFTOVER_GRACE = 2.0     # seconds leftovers get after SIGTERM once the child has ended
KILL_GIVE_UP = 30.0      # stop trying to SIGKILL (unkillable: D state) after this
POLL = 0.1               # how often a wait for leftovers looks again


class Reaper:
    """Waits for ``child``, reaps every ended descendant, and clears the whole tree.

    ``watched``: the signals blocked by the caller (SIGCHLD and those it reacts to);
    ``who`` names the notes it writes to stderr (the job's log).
    """

    def __init__(self, child: int, watched: set[int], who: str) -> None:
        self.child = child
        self.watched = watched
        self.who = who
        self.child_status: Optional[int] = None

    def note(self, message: str) -> None:
        proc.note(message, self.who)

    def child_done(self) -> bool:
        return self.child_status is not None

    def reap(self) -> None:
        """Collect every ended child, remembering the status of ``child``."""
        proc.reap(self._ended)

    def _ended(self, pid: int, status: int) -> None:
        if pid == self.child:
            self.child_status = status

    def wait(self, done: Callable[[], bool], timeout: Optional[float],
             poll: Optional[float] = POLL) -> Optional[signal.struct_siginfo]:
        """Reap until ``done()`` or ``timeout`` seconds (None: no limit) have passed.

        Returns the first watched signal other than SIGCHLD that arrives meanwhile (the
        caller decides what it means). Looks again at least every ``poll`` seconds
        (grandchildren ending send no SIGCHLD here); ``poll=None`` sleeps until a signal
        comes, for a ``done`` that only a SIGCHLD can change.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.reap()
            if done():
                return None
            remaining = poll if deadline is None else deadline - time.monotonic()
            if poll is not None and remaining is not None:
                remaining = min(poll, remaining)
            if remaining is not None and remaining <= 0:
                return None
            info = (signal.sigwaitinfo(self.watched) if remaining is None
                    else signal.sigtimedwait(self.watched, remaining))
            if info is not None and info.si_signo != signal.SIGCHLD:
                return info

    def signal_all(self, sig: int) -> int:
        """Send ``sig`` to every descendant; returns how many were there."""
        pids = descendants(os.getpid())
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return len(pids)

    def kill_all(self) -> None:
        """SIGKILL descendants until none is left, reaping as they end.

        Repeated because a process may fork or be re-parented while we look; SIGKILL
        also ends SIGSTOPped processes. Gives up (with a note) only on processes that
        outlive KILL_GIVE_UP seconds of SIGKILLs, i.e. are stuck in the kernel.
        """
        deadline = time.monotonic() + KILL_GIVE_UP
        killed: set[int] = set()
        while True:
            self.reap()
            pids = descendants(os.getpid())
            if not pids:
                break
            if time.monotonic() > deadline:
                self.note(f"giving up on unkillable processes {sorted(pids)}")
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            signal.sigtimedwait({signal.SIGCHLD}, 0.02)
        if killed:
            self.note(f"killed {len(killed)} process(es): {sorted(killed)}")

    def sweep(self, what: str) -> None:
        """Once the child has ended: SIGTERM whatever it left, LEFTOVER_GRACE seconds to
        end, then SIGKILL until nothing is left. ``what`` says how the child ended."""
        leftovers = self.signal_all(signal.SIGTERM)
        if leftovers:
            self.note(f"{what}; SIGTERM to {leftovers} leftover process(es)")
            self.wait(lambda: not descendants(os.getpid()), LEFTOVER_GRACE)
        self.kill_all()
