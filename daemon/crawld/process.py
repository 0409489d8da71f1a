"""The job's ProcessProtocol: it only reports how the process ended.

The child writes its output straight into its log files (the supervisor hands it the file
descriptors), so this protocol sees no bytes at all; every decision is the supervisor's.
"""
from __future__ import annotations

import os
import signal as signals
from dataclasses import dataclass
from typing import Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure


def signal_name(number: Optional[int]) -> Optional[str]:
    """``SIGKILL`` for 9; None stays None."""
    if number is None:
        return None
    try:
        return signals.Signals(number).name
    except ValueError:
        return str(number)


@dataclass(frozen=True)
class Exit:
    """How a process ended: an exit code, or the signal that killed it, and the reason
    the job itself gave for failing, when it gave one (a browser job's ``error``).

    ``lost``: a remote attempt whose worker stopped answering (its end is unknown);
    ``retryable``: ... and it had written no items, so running it again duplicates
    nothing (the supervisor queues it again when the job asked ``retry-lost=1``)."""

    code: Optional[int]
    signal: Optional[int]
    reason: Optional[str] = None
    lost: bool = False
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.code == 0


def exit_from_reason(reason: Failure) -> Exit:
    """Translate Twisted's ProcessDone/ProcessTerminated into an Exit."""
    value = reason.value
    if isinstance(value, ProcessDone):
        return Exit(0, None)
    if isinstance(value, ProcessTerminated):
        status = value.status
        if status is not None and os.WIFSIGNALED(status):
            return Exit(None, os.WTERMSIG(status))
        if value.signal is not None:
            return Exit(None, value.signal)
        return Exit(value.exitCode, None)
    return Exit(None, None)


class JobProcessProtocol(ProcessProtocol):
    """Fires ``ended`` with an Exit once the process is gone and reaped."""

    def __init__(self) -> None:
        self.ended: Deferred[Exit] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(exit_from_reason(reason))


class CollectingProtocol(ProcessProtocol):
    """Collects a short-lived helper's stdout and the tail of its stderr, bounded in size.

    Used for ``scrapy list``: its output is small, but a broken project can print a lot
    of errors, and only the tail is worth reporting.
    """

    def __init__(self, max_out: int = 1024 * 1024, max_err: int = 16 * 1024) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.max_out = max_out
        self.max_err = max_err
        self.exited: Deferred[Exit] = Deferred()  # the process is gone (and reaped)
        self.ended: Deferred[None] = Deferred()   # ... and its pipes are closed

    def outReceived(self, data: bytes) -> None:
        if len(self.out) < self.max_out:
            self.out += data[: self.max_out - len(self.out)]

    def errReceived(self, data: bytes) -> None:
        self.err += data
        if len(self.err) > self.max_err:
            del self.err[: len(self.err) - self.max_err]

    def processExited(self, reason: Failure) -> None:
        self.exited.callback(exit_from_reason(reason))

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


@dataclass
class Spawned:
    """A started job process."""

    pid: int
    ended: Deferred
