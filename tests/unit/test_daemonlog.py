"""The daemon's log: event lines at once, access lines queued briefly, order kept."""
from __future__ import annotations

import io
from datetime import datetime

from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher

from crawld.daemonlog import FLUSH_DELAY, DaemonLog

T = 1_800_000_000.0
WHEN = datetime.fromtimestamp(T).isoformat(timespec="seconds")


def make(level: str = "info") -> tuple[DaemonLog, Logger, io.StringIO, Clock]:
    clock = Clock()
    clock.advance(T)
    stream = io.StringIO()
    daemon_log = DaemonLog(level, clock.callLater, stream=stream, clock=clock.seconds)
    publisher = LogPublisher(daemon_log.observer())
    return daemon_log, Logger(namespace="crawld.test", observer=publisher), stream, clock


def test_events_are_written_at_once_in_the_line_format():
    _, log, stream, _ = make()
    log.info("job {id} started", id="j1")
    log.debug("not at info")
    assert stream.getvalue().endswith(" info  crawld.test: job j1 started\n")
    assert stream.getvalue().count("\n") == 1


def test_access_lines_are_written_together_within_the_delay():
    daemon_log, _, stream, clock = make()
    daemon_log.access('"127.0.0.1" - - [x] "GET /a HTTP/1.1" 200 2 "-" "-"')
    daemon_log.access('"127.0.0.1" - - [x] "GET /b HTTP/1.1" 200 2 "-" "-"')
    assert stream.getvalue() == ""
    clock.advance(FLUSH_DELAY)
    assert stream.getvalue() == (
        f'{WHEN} info  crawld.access: "127.0.0.1" - - [x] "GET /a HTTP/1.1" 200 2 "-" "-"\n'
        f'{WHEN} info  crawld.access: "127.0.0.1" - - [x] "GET /b HTTP/1.1" 200 2 "-" "-"\n')


def test_an_event_writes_the_queued_access_lines_first():
    daemon_log, log, stream, clock = make()
    daemon_log.access("first")
    log.warn("second")
    daemon_log.access("third")
    daemon_log.flush()
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["first", "second", "third"]
    assert lines[1].endswith(" warn  crawld.test: second")  # (an event has its own time)
    clock.advance(FLUSH_DELAY)  # the timers find nothing left to write
    assert stream.getvalue().count("\n") == 3


def test_access_lines_follow_the_level():
    assert make("info")[0].logs_access and make("debug")[0].logs_access
    assert not make("warn")[0].logs_access and not make("error")[0].logs_access


def test_an_event_logged_from_inside_a_write_neither_deadlocks_nor_repeats():
    """A signal handler runs between two bytecodes of the main thread, so Twisted's
    SIGTERM handler logs "Received SIGTERM" while the thread may be inside the log's
    write: the daemon deadlocked there and never stopped (seen in CI)."""
    import threading
    from twisted.logger import LogLevel

    def event(text: str) -> dict:
        return {"log_format": text, "log_level": LogLevel.info,
                "log_namespace": "test", "log_time": 0.0}

    class Interrupted(io.StringIO):
        """A stream whose first write is interrupted by a handler that logs."""
        interrupted = False

        def write(self, text: str) -> int:
            if not self.interrupted:
                self.interrupted = True
                log.event(event("Received SIGTERM"))
            return super().write(text)

    stream = Interrupted()
    log = DaemonLog("info", call_later=lambda *a: None, stream=stream)
    writer = threading.Thread(target=log.event, args=(event("first"),), daemon=True)
    writer.start()
    writer.join(10)
    assert not writer.is_alive(), "deadlocked"
    lines = stream.getvalue().splitlines()
    assert sorted(line.split(": ", 1)[1] for line in lines) == ["Received SIGTERM", "first"]
