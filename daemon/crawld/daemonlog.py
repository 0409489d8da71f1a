"""The daemon's own log on stderr: one line per event, and one per HTTP request.

Every line reads ``<local time> <level> <component>: <message>``. Events come through
twisted.logger (``DaemonLog.observer``). HTTP access lines do not: at thousands of
requests a second, an event per request (the event dict, the level filter, the format
string, a write and a flush) was 40% of a status.json answer. ``access`` makes the
line's time once a second and queues the line; queued lines are written together
within ``flush_delay`` seconds, and always before the next event's line, so the log
keeps the order in which things happened.
"""
from __future__ import annotations

import sys
import threading
import time
from datetime import datetime
from typing import Any, Callable, Optional, TextIO

from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                            formatEvent)

FLUSH_DELAY = 0.1  # seconds an access line may wait to be written with others


class DaemonLog:
    """Writes the daemon's log to ``stream`` (stderr by default) at ``level`` and above.

    ``call_later(seconds, fn)`` is the reactor's; ``clock`` gives the access lines'
    time. Events may be logged from any thread; access lines come from the reactor's.
    """

    def __init__(self, level: str, call_later: Callable[..., Any],
                 stream: Optional[TextIO] = None, clock: Callable[[], float] = time.time,
                 flush_delay: float = FLUSH_DELAY) -> None:
        self.threshold = LogLevel.levelWithName(level)
        self.stream = stream if stream is not None else sys.stderr
        self.call_later = call_later
        self.clock = clock
        self.flush_delay = flush_delay
        self.pending: list[str] = []
        # reentrant: a signal handler runs between two bytecodes of the main thread, so
        # Twisted's SIGTERM handler may log ("Received SIGTERM") while this thread is
        # inside _write; a plain Lock then deadlocked the daemon, which never stopped
        self.lock = threading.RLock()
        self._second: Optional[int] = None
        self._prefix = ""

    @property
    def logs_access(self) -> bool:
        """Whether access lines pass the level (they are ``info``)."""
        return self.threshold <= LogLevel.info

    def observer(self) -> FilteringLogObserver:
        """The twisted.logger observer of events at the level and above."""
        return FilteringLogObserver(
            self.event, [LogLevelFilterPredicate(defaultLogLevel=self.threshold)])

    def event(self, event: dict) -> None:
        """Write one event's line (and its traceback), after any queued access lines."""
        text = formatEvent(event)
        if event.get("log_failure") is not None:
            text += "\n" + event["log_failure"].getTraceback()
        when = datetime.fromtimestamp(event.get("log_time", 0)).isoformat(timespec="seconds")
        name = event.get("log_namespace", "-")
        lvl = event["log_level"].name if event.get("log_level") else "info"
        with self.lock:
            self.pending.append(f"{when} {lvl:<5} {name}: {text}\n")
            self._write()

    def access(self, line: str) -> None:
        """Queue one HTTP request's line; it is written within ``flush_delay``."""
        second = int(self.clock())
        if second != self._second:
            self._second = second
            when = datetime.fromtimestamp(second).isoformat(timespec="seconds")
            self._prefix = f"{when} info  crawld.access: "
        with self.lock:
            if not self.pending:
                self.call_later(self.flush_delay, self.flush)
            self.pending.append(f"{self._prefix}{line}\n")

    def flush(self) -> None:
        """Write every queued line now."""
        with self.lock:
            self._write()

    def _write(self) -> None:
        # taken out before the write: a line logged from inside it (above) is written
        # by that call, once, not a second time by this one
        lines, self.pending = self.pending, []
        if lines:
            self.stream.write("".join(lines))
        self.stream.flush()
