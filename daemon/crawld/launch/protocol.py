"""The seam between the supervisor (policy) and a launcher (mechanism).

The supervisor says "start this attempt of this job", "signal it", "how much memory does
it use", "settle this orphan of a previous daemon". A launcher answers through the
``Reporter`` it was handed with the attempt: started (pid, start time, where), output at
an offset (remote launchers; a local job writes its own log files), a spider's stats
(the latest report wins) and ended (exit code or signal). A remote launcher may report late, from elsewhere and more than once, so
every report names its attempt and the supervisor ignores what does not match the
attempt it is running: the reports are idempotent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from twisted.internet.defer import Deferred

from ..model import Job
from ..process import Exit


@dataclass(frozen=True)
class Attempt:
    """One try at running a job. ``number`` is unique within the daemon's life."""

    job: Job
    number: int

    @property
    def key(self) -> str:
        """``<job id>/<number>``: how a report names its attempt."""
        return f"{self.job.id}/{self.number}"


@dataclass(frozen=True)
class Started:
    """An attempt's process exists: its pid, its start time (clock ticks since boot, which
    with the pid identifies it across restarts) and where it runs ("local" or a host)."""

    pid: Optional[int]
    pid_started: Optional[float]
    where: str = "local"
    cwd: Optional[str] = None  # the project version directory it runs in (local jobs)


class Reporter(Protocol):
    """What a launcher tells the supervisor. Every call is idempotent by attempt."""

    def started(self, attempt: Attempt, info: Started) -> None:
        """The attempt's process runs."""

    def output(self, attempt: Attempt, stream: str, offset: int, data: bytes) -> None:
        """Bytes of the job's ``out`` or ``err`` stream at ``offset`` (remote jobs)."""

    def stats(self, attempt: Attempt, stats: dict[str, Any]) -> None:
        """The crawl's latest stats (a spider job's, JSON-safe), every few seconds while
        it runs; the last report comes before ``ended``."""

    def ended(self, attempt: Attempt, exit: Exit) -> None:
        """The attempt's process tree is gone; how its leader ended."""


class Launcher(Protocol):
    """Starts, signals and measures job attempts (mechanism, no policy)."""

    def start(self, attempt: Attempt, reporter: Reporter) -> "Deferred[Started]":
        """Start the attempt; fires with Started once it runs (also reported), or fails
        when it could not start (nothing then runs, and ``ended`` is not reported)."""

    def signal(self, attempt: Attempt, sig: int) -> None:
        """Send ``sig`` to every process of the attempt (its whole tree)."""

    def rss(self, attempt: Attempt) -> "Deferred[int]":
        """Resident memory of the attempt's processes, in bytes (0 when unknown)."""

    def activity(self, attempt: Attempt) -> int:
        """A counter that moves when the attempt reports something besides its logs
        (a browser job's control events): the no-output watch counts it as output."""

    def in_use(self) -> set[str]:
        """Project version directories running attempts use (kept by project GC)."""

    def settle_orphan(self, job: Job) -> "Deferred[str]":
        """A job a previous daemon left RUNNING: end whatever of it still runs; fires
        with the reason to record (the job then ends FAILED; it is never re-run)."""

    def stop(self) -> "Deferred[None]":
        """The daemon is stopping and every attempt has ended (or was detached): release
        resources."""

    def capacity(self) -> Optional[int]:
        """Slots this launcher offers now; None: the supervisor's own ([crawld] slots)."""

    def watch_capacity(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever capacity may have grown (the supervisor pumps its queue)."""

    def adopt(self, job: Job, reporter: Reporter) -> "Deferred[Optional[Attempt]]":
        """A job a previous daemon left RUNNING that may still run elsewhere: its Attempt
        (its reports resume through ``reporter``), or None: settle it with settle_orphan."""

    def detach(self, attempt: Attempt) -> bool:
        """At daemon stop: True when the attempt goes on without the daemon (remote); the
        supervisor then leaves it RUNNING instead of ending it."""
