"""A worker's heartbeat: one loop per worker, every ``heartbeat`` seconds, idle or not.

Each beat tells the daemon the worker's name, slots and queues and every attempt it has
claimed (key, pid, memory); the daemon's capacity is the slots of the workers it heard
from lately, and an attempt no beat mentions for ``lost_after`` seconds is lost. The
answer carries signals for attempts (cancel: 15, then 9) and the attempts the daemon
refuses (lost, not current), the messages and live screenshot requests for its
browser jobs, handed to the runtime, and the interval to use from now
on (2 s until the first answer). An unreachable daemon is simply tried again next beat:
heartbeats are small and the attempts go on meanwhile.
"""
from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from .daemon_client import Unreachable

log = Logger(namespace="crawld.worker")

FIRST_INTERVAL = 2.0  # seconds between beats until the daemon says otherwise


class Heartbeat:
    """Beats for ``runtime`` (a WorkerRuntime) through ``client`` (a DaemonClient)."""

    def __init__(self, reactor: Any, client: Any, runtime: Any, name: str, slots: int,
                 queues: list[str], interval: float = FIRST_INTERVAL) -> None:
        self.reactor = reactor
        self.client = client
        self.runtime = runtime
        self.name = name
        self.slots = slots
        self.queues = list(queues)
        self.interval = interval
        self.lost_after: Optional[float] = None
        self.timer: Optional[Any] = None
        self.beats = 0       # answered beats (status, tests)
        self.running = False

    def start(self) -> None:
        """Beat now and every ``interval`` seconds until ``stop``."""
        self.running = True
        self.timer = self.reactor.callLater(0, self._tick)

    def stop(self) -> None:
        self.running = False
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    @inlineCallbacks
    def _tick(self):
        self.timer = None
        try:
            yield self.beat()
        except Exception:
            log.failure("a heartbeat failed")
        if self.running:
            self.timer = self.reactor.callLater(self.interval, self._tick)

    @inlineCallbacks
    def beat(self):
        """One heartbeat; applies its answer. Fires True when the daemon answered."""
        attempts = yield self.runtime.attempts()
        try:
            reply = yield self.client.heartbeat(self.name, self.slots, self.queues, attempts)
        except Unreachable as exc:
            log.warn("heartbeat: the daemon is unreachable ({exc})", exc=exc)
            return False
        if not reply.ok:
            log.error("heartbeat refused: HTTP {code} {msg}", code=reply.code,
                      msg=reply.body.get("msg"))
            return False
        body = reply.body
        interval = body.get("heartbeat")
        if isinstance(interval, (int, float)) and interval > 0:
            self.interval = float(interval)
        lost_after = body.get("lost_after")
        if isinstance(lost_after, (int, float)) and lost_after > 0:
            self.lost_after = float(lost_after)
        signal = body.get("signal") if isinstance(body.get("signal"), dict) else {}
        refuse = [k for k in body.get("refuse") or [] if isinstance(k, str)]
        messages = body.get("messages") if isinstance(body.get("messages"), dict) else {}
        shots = body.get("screenshots") if isinstance(body.get("screenshots"), dict) else {}
        self.runtime.apply(signal, refuse, messages, shots)
        self.beats += 1
        return True
