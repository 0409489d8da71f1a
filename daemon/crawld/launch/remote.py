"""Remote attempts' bookkeeping (issue 14): which worker runs what, heartbeats, lost.

The celery launcher (launch/celery.py) dispatches attempts; this keeps what the daemon
knows of them and of the workers, all on the reactor and on the injected clock:

- the workers heard from (their slots: the daemon's capacity is the sum of the slots of
  the workers heard from within ``lost_after``);
- each attempt the daemon runs remotely: sent to the broker or not yet, claimed by which
  worker, its pid, its latest rss (from heartbeats), the signal to repeat in every
  heartbeat answer until it ends;
- lost attempts: one not mentioned by any heartbeat for ``lost_after`` seconds (counted
  from its dispatch while unclaimed, from the daemon's start for adopted ones) is
  reported ended ``lost``; a later report of it is refused.
"""
from __future__ import annotations

import signal as signals
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from twisted.logger import Logger

from ..process import Exit
from ..seams import Clock
from .protocol import Attempt, Reporter

log = Logger(namespace="crawld.cluster")

#: How many ended attempts are remembered (an end reported twice is answered 200).
ENDED_KEPT = 10_000


@dataclass
class Remote:
    """One attempt the daemon runs on a worker."""

    attempt: Attempt
    reporter: Reporter
    since: Optional[float]              # dispatched (or adopted) at; None: not sent yet
    worker: Optional[str] = None        # who claimed it
    seen: Optional[float] = None        # last mention in a heartbeat (or claim)
    pid: Optional[int] = None
    rss: int = 0
    signal: Optional[int] = None        # pending: repeated until the attempt ends
    asked: float = 0.0                  # when ``signal`` was asked
    told: Optional[float] = None        # when a heartbeat answer first carried it
    kill_asked: Optional[float] = None  # a SIGKILL asked after it (the grace ran out)
    cwd: Optional[str] = None           # the version dir its code bundle came from


@dataclass
class Worker:
    """A worker host as its heartbeats describe it."""

    name: str
    slots: int
    queues: tuple[str, ...]
    seen: float
    attempts: set[str] = field(default_factory=set)


class RemoteAttempts:
    """What the daemon knows of its remote attempts and of the workers."""

    def __init__(self, clock: Clock, heartbeat: float, lost_after: float,
                 items_held: Callable[[str], int] = lambda job_id: 0,
                 canceling: Callable[[str], bool] = lambda job_id: False) -> None:
        """``items_held(job_id)``: bytes of the job's items the daemon holds (a lost
        attempt with none is retryable); ``canceling(job_id)``: the supervisor is ending
        that job (an unclaimed attempt of it ends at once: nothing ran)."""
        self.clock = clock
        self.heartbeat = heartbeat
        self.lost_after = lost_after
        self.items_held = items_held
        self.canceling = canceling
        self.attempts: dict[str, Remote] = {}
        self.workers: dict[str, Worker] = {}
        self.ended: dict[str, Optional[Exit]] = {}  # key -> its end (None: refused)
        self.wake: Callable[[], None] = lambda: None
        self._last_capacity = 0

    # -- attempts -----------------------------------------------------------------------
    def add(self, attempt: Attempt, reporter: Reporter, worker: Optional[str] = None,
            adopted: bool = False) -> Remote:
        """An attempt to run remotely: just queued for dispatch, or (``adopted``) left
        running by a previous daemon (lost-after counts from now)."""
        now = self.clock.seconds()
        remote = Remote(attempt, reporter, since=now if adopted else None, worker=worker,
                        seen=now if adopted else None)
        self.attempts[attempt.key] = remote
        return remote

    def sent(self, key: str) -> None:
        """The attempt's message is in the broker: lost-after counts from now."""
        remote = self.attempts.get(key)
        if remote is not None and remote.since is None:
            remote.since = self.clock.seconds()

    def current(self, key: str) -> Optional[Remote]:
        """The attempt, while the daemon runs it (None: ended, lost, unknown)."""
        return self.attempts.get(key)

    def claimed(self, key: str, worker: str) -> None:
        """A worker claimed the attempt (the store recorded it first)."""
        remote = self.attempts.get(key)
        if remote is not None:
            remote.worker = worker
            remote.seen = self.clock.seconds()

    def finish(self, key: str, exit: Exit) -> bool:
        """The attempt ended (its worker said so, or it is lost): report it once.
        False when it was not running."""
        remote = self.attempts.pop(key, None)
        if remote is None:
            return False
        self._remember(key, exit)
        remote.reporter.ended(remote.attempt, exit)
        return True

    def refuse(self, key: str) -> None:
        """Forget an attempt without reporting (the supervisor has moved on)."""
        if self.attempts.pop(key, None) is not None:
            self._remember(key, None)

    def end_of(self, key: str) -> Optional[Exit]:
        """How an attempt that is over ended, when the daemon recorded it (None: it is
        not known to have ended, or it was lost or refused)."""
        exit = self.ended.get(key)
        return exit if exit is not None and not exit.lost else None

    def _remember(self, key: str, exit: Optional[Exit]) -> None:
        self.ended[key] = exit
        while len(self.ended) > ENDED_KEPT:
            del self.ended[next(iter(self.ended))]

    def signal(self, key: str, sig: int) -> None:
        """Send ``sig`` to the attempt's tree: through every heartbeat answer to its
        worker until it ends. An attempt no worker has claimed ends now (nothing ran)."""
        remote = self.attempts.get(key)
        if remote is None:
            return
        if remote.worker is None:
            self.finish(key, Exit(None, sig, reason="ended before a worker started it"))
            return
        now = self.clock.seconds()
        if remote.signal is None:
            remote.signal, remote.asked = sig, now
        elif (sig == signals.SIGKILL and remote.signal != signals.SIGKILL
              and remote.kill_asked is None):
            remote.kill_asked = now

    def _due(self, remote: Remote, now: float) -> Optional[int]:
        """The signal a heartbeat answer carries for ``remote`` now. A SIGKILL that
        follows a TERM is held back as long as the TERM waited for its first heartbeat:
        the worker's processes get the whole kill-grace between the two, as locally,
        however the heartbeats fell."""
        if remote.signal is None:
            return None
        if remote.told is None:
            remote.told = now
        if (remote.kill_asked is not None
                and now >= remote.told + (remote.kill_asked - remote.asked)):
            return signals.SIGKILL
        return remote.signal

    def rss(self, key: str) -> int:
        remote = self.attempts.get(key)
        return remote.rss if remote is not None else 0

    # -- workers ------------------------------------------------------------------------
    def beat(self, worker: str, slots: int, queues: Iterable[str],
             attempts: Iterable[dict[str, Any]]) -> tuple[dict[str, int], list[str]]:
        """A worker's heartbeat: remember it, refresh its attempts; returns the signals
        to send (key -> signal) and the attempts it must kill at once (``refuse``)."""
        now = self.clock.seconds()
        known = self.workers.get(worker)
        entry = Worker(worker, slots, tuple(queues), now)
        self.workers[worker] = entry
        signals_out: dict[str, int] = {}
        refuse: list[str] = []
        for item in attempts:
            key = item["key"]
            remote = self.attempts.get(key)
            if remote is None or remote.worker != worker:
                refuse.append(key)
                continue
            entry.attempts.add(key)
            remote.seen = now
            remote.pid = item.get("pid") or remote.pid
            remote.rss = item.get("rss") or 0
        # its attempts' pending signals (also of one it claimed but did not list: still
        # starting)
        for key, remote in self.attempts.items():
            if remote.worker == worker:
                due = self._due(remote, now)
                if due is not None:
                    signals_out[key] = due
        if known is None or slots > known.slots:
            log.info("worker {name}: {slots} slot(s), queues {queues}", name=worker,
                     slots=slots, queues=",".join(entry.queues))
        self._capacity_changed()
        return signals_out, refuse

    def capacity(self) -> int:
        """The slots of the workers heard from within ``lost_after``."""
        now = self.clock.seconds()
        return sum(w.slots for w in self.workers.values() if now - w.seen <= self.lost_after)

    def _capacity_changed(self) -> None:
        now = self.capacity()
        grew = now > self._last_capacity
        self._last_capacity = now
        if grew:
            self.wake()

    # -- the lost check, every heartbeat seconds ------------------------------------------
    def check(self) -> None:
        """End what is lost: attempts not heard of for ``lost_after`` seconds, and
        unclaimed attempts of jobs being canceled. Workers not heard from drop out of
        the capacity."""
        now = self.clock.seconds()
        for key, remote in list(self.attempts.items()):
            if remote.worker is None and self.canceling(remote.attempt.job.id):
                self.finish(key, Exit(None, None, reason="ended before a worker started it"))
                continue
            last = remote.seen if remote.seen is not None else remote.since
            if last is None or now - last < self.lost_after:
                continue
            self.finish(key, self._lost(remote, now - last))
        for name, worker in list(self.workers.items()):
            if now - worker.seen > 10 * self.lost_after:
                del self.workers[name]  # long gone: forgotten
        self._last_capacity = self.capacity()

    def _lost(self, remote: Remote, silent: float) -> Exit:
        job_id = remote.attempt.job.id
        if remote.worker is None:
            reason = f"worker lost: no worker claimed it within {silent:.0f} s"
        else:
            reason = (f"worker lost: no heartbeat for {silent:.0f} s from worker "
                      f"{remote.worker}")
        try:
            held = self.items_held(job_id)
        except OSError:
            held = 1  # unknown: not retried
        log.warn("job {id}: {reason}", id=job_id, reason=reason)
        return Exit(None, None, reason=reason, lost=True, retryable=held == 0)
