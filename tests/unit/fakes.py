"""Fakes for unit tests: a process reactor on a task.Clock, and synchronous Deferred results."""
from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure


def result(d: Deferred) -> Any:
    """The result of an already-fired Deferred (raises its failure)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


class FakeTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.closed_stdin = False

    def closeStdin(self) -> None:
        self.closed_stdin = True


class FakeProcessReactor(Clock):
    """A Clock that records spawnProcess calls instead of forking."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []
        self._pids = itertools.count(1000)

    def spawnProcess(self, proto: Any, executable: str, args: list, env: dict | None = None,
                     path: str | None = None, childFDs: dict | None = None, **kw: Any) -> Any:
        transport = FakeTransport(next(self._pids))
        proto.makeConnection(transport)
        self.spawned.append(dict(proto=proto, executable=executable, args=args, env=env,
                                 path=path, childFDs=childFDs, pid=transport.pid))
        return transport

    def end(self, index: int, code: int = 0, signal: int | None = None) -> None:
        """Make spawned process ``index`` exit with ``code`` (or die of ``signal``)."""
        proto = self.spawned[index]["proto"]
        if signal is not None:
            reason = Failure(ProcessTerminated(None, signal, None))
        elif code == 0:
            reason = Failure(ProcessDone(0))
        else:
            reason = Failure(ProcessTerminated(code, None, None))
        proto.processEnded(reason)


def scheduler_for(clock: Any, store: Any, **kwargs: Any) -> tuple[Any, list]:
    """A Scheduler whose launched children are recorded: (scheduler, launched Jobs).

    The scheduler publishes each PENDING child to the event list, then enqueues its id;
    the list records the published children, in order."""
    from crawld.events import JobEvents
    from crawld.model import JobStatus
    from crawld.scheduler import Scheduler
    events = JobEvents()
    launched: list = []
    events.subscribe(lambda job: launched.append(job) if job.status is JobStatus.PENDING
                     else None)
    return Scheduler(clock, store, lambda job_id, priority=0.0: None, events, **kwargs), launched
