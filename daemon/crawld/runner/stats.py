"""The stats extension: what crawld adds to every spider job so that the daemon knows
what the crawl did (stdlib only here; Scrapy is imported inside functions).

``StatsReporter`` is a Scrapy extension (crawl.py adds it to the job's settings). It
sends the crawler's stats, made JSON-safe, as one JSON line ``{"stats": {...}}``: when
the engine starts, every ``CRAWLD_STATS_INTERVAL`` seconds (default 5), when the spider
closes and, last, when the engine stops (after Scrapy's own stats are final). It writes
to the fd named by ``CRAWLD_STATS_FD``: the write end of a FIFO the daemon reads (see
crawld's launch/statspipe.py), a channel of its own, so stdout and stderr stay the
spider's. Without that variable (``scrapy crawl`` run by hand) the extension is off.

The crawl never waits on the daemon: the fd is non-blocking, and a report that does not
fit in the pipe is finished at the next tick, or dropped for a fresher one if none of it
was written. Only the last report waits for the pipe, a bounded time (``FINAL_WAIT``).
A report stays within ``MAX_LINE`` bytes (the daemon's bound): larger values are
replaced by a note, biggest first.
"""
from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import os
import select
import stat
import sys
import time
from typing import Any, Mapping, Optional

FD_ENV = "CRAWLD_STATS_FD"
INTERVAL_ENV = "CRAWLD_STATS_INTERVAL"
DEFAULT_INTERVAL = 5.0
MAX_LINE = 64 * 1024      # bytes of one report, newline included (the daemon drops more)
MAX_DEPTH = 20            # nesting kept in a stat value; deeper parts become text
FINAL_WAIT = 2.0          # seconds the last report may wait for room in the pipe
UTC = datetime.timezone.utc


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as something ``json.dumps`` writes as standard JSON.

    Datetimes become ISO 8601 text (a naive one is taken as UTC, as Scrapy's own
    ``start_time`` was before Scrapy 2.11), dates and times too, timedeltas seconds,
    Decimals floats, bytes text (UTF-8, bad bytes replaced), sets and tuples lists,
    mapping keys text; NaN and infinities null (JSON has no such numbers); anything
    else its ``str()``. Nesting past ``MAX_DEPTH`` becomes text as well.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or bool-like subclass as a plain number
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime.datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return json_safe(float(value))
    if isinstance(value, enum.Enum):
        return json_safe(value.value, depth + 1)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if depth >= MAX_DEPTH:
        return str(value)
    if isinstance(value, Mapping):
        return {(k if isinstance(k, str) else str(json_safe(k, depth + 1))):
                json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, depth + 1) for v in value]
    return str(value)


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 (a lone surrogate, which UTF-8 cannot hold, becomes "?")."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8", "replace")


def report_line(stats: Mapping[str, Any], limit: int = MAX_LINE) -> bytes:
    """One report: ``{"stats": {...}}`` and a newline, at most ``limit`` bytes.

    Values too big to fit are replaced, biggest first, by ``"(omitted: N bytes)"``;
    should the names alone be too many, the report is ``{"stats": {}}`` plus a note."""
    safe = json_safe(stats)
    if not isinstance(safe, dict):
        safe = {}
    line = dumps({"stats": safe}) + b"\n"
    if len(line) <= limit:
        return line
    sizes = sorted(((len(dumps(v)), k) for k, v in safe.items()), reverse=True)
    for size, key in sizes:
        safe[key] = f"(omitted: {size} bytes)"
        line = dumps({"stats": safe}) + b"\n"
        if len(line) <= limit:
            return line
    return dumps({"stats": {"crawld/omitted": f"{len(safe)} stats over {limit} bytes"}}) + b"\n"


def note(message: str) -> None:
    """A line on the job's stderr (its .err log), where the user looks for problems."""
    print(f"crawld-stats: {message}", file=sys.stderr, flush=True)


class Channel:
    """The job's end of the stats channel: a non-blocking fd, one line at a time."""

    def __init__(self, fd: int) -> None:
        self.fd: Optional[int] = fd
        self.pending = b""       # what is left to write of the current line
        self.partial = False     # some of the current line is written already

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Optional["Channel"]:
        """The channel ``CRAWLD_STATS_FD`` names, if it is an open pipe (else None)."""
        text = env.get(FD_ENV, "").strip()
        if not text:
            return None
        try:
            fd = int(text)
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise OSError(f"fd {fd} is not a pipe")
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)  # not for programs the spider runs
        except (ValueError, OSError) as exc:
            note(f"{FD_ENV}={text!r} is unusable ({exc}); no stats are reported")
            return None
        return cls(fd)

    def send(self, line: bytes, final: bool = False) -> None:
        """Write ``line``, or as much of it as the pipe takes now; ``final``: wait for
        room, FINAL_WAIT seconds at most. A line half written goes out first (the
        daemon must get whole lines), and ``line`` is dropped if it cannot follow it
        now; a line not started is simply replaced by the newer one."""
        if self.fd is None:
            return
        deadline = time.monotonic() + FINAL_WAIT if final else None
        if self.partial and not self._flush(deadline):
            return
        self.pending, self.partial = line, False
        self._flush(deadline)

    def _flush(self, deadline: Optional[float] = None) -> bool:
        """Write what is pending, waiting for room until ``deadline`` if one is given;
        True once all of it is written."""
        while self.pending and self.fd is not None:
            try:
                written = os.write(self.fd, self.pending)
            except BlockingIOError:
                left = deadline - time.monotonic() if deadline is not None else 0
                if left <= 0:
                    if deadline is not None:
                        note("the daemon did not take the last stats report in time")
                    return False
                select.select([], [self.fd], [], left)
                continue
            except OSError as exc:  # EPIPE: nobody reads any more (the daemon is gone)
                note(f"stats channel closed ({exc.strerror}); no more reports")
                self.fd = None
                return False
            self.pending = self.pending[written:]
            self.partial = bool(self.pending)
        return not self.pending and self.fd is not None


def interval_from_env(env: Mapping[str, str] = os.environ) -> float:
    """Seconds between reports: ``CRAWLD_STATS_INTERVAL``, else DEFAULT_INTERVAL."""
    try:
        value = float(env.get(INTERVAL_ENV) or DEFAULT_INTERVAL)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value > 0 else DEFAULT_INTERVAL


def looping_call(function: Any) -> Any:
    """A repeating call on the crawl's event loop (Scrapy's helper, Scrapy 2.13+, which
    also works without a Twisted reactor), or None on an older Scrapy: then only the
    reports at the start and the end are sent."""
    try:
        from scrapy.utils.asyncio import create_looping_call
    except ImportError:
        note("this Scrapy has no create_looping_call (2.13+): stats are reported at "
             "the start and the end of the crawl only")
        return None
    return create_looping_call(function)


class StatsReporter:
    """The Scrapy extension: reports the crawler's stats to crawld (see the module)."""

    def __init__(self, stats: Any, channel: Channel, interval: float) -> None:
        self.stats = stats
        self.channel = channel
        self.interval = interval
        self.task: Any = None
        self.failed = False

    @classmethod
    def from_crawler(cls, crawler: Any) -> "StatsReporter":
        """Scrapy's constructor of extensions: off (NotConfigured) without a channel."""
        from scrapy import signals
        from scrapy.exceptions import NotConfigured
        channel = Channel.from_env()
        if channel is None:
            raise NotConfigured(f"{FD_ENV} names no stats channel")
        reporter = cls(crawler.stats, channel, interval_from_env())
        crawler.signals.connect(reporter.engine_started, signal=signals.engine_started)
        crawler.signals.connect(reporter.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(reporter.engine_stopped, signal=signals.engine_stopped)
        return reporter

    def engine_started(self) -> None:
        """The first report, and the repeating ones from now on."""
        self.report()
        self.task = looping_call(self.report)
        if self.task is not None:
            self.task.start(self.interval, now=False)

    def spider_closed(self, spider: Any, reason: str) -> None:
        """A report with ``finish_reason`` (CoreStats, an earlier extension, set it)."""
        self.report()

    def engine_stopped(self) -> None:
        """The stats are final (Scrapy closed them before this signal): the last report."""
        if self.task is not None and self.task.running:
            self.task.stop()
        self.report(final=True)

    def report(self, final: bool = False) -> None:
        """Send the stats now; a failure is noted once and never stops the crawl."""
        try:
            self.channel.send(report_line(self.stats.get_stats()), final)
        except Exception as exc:
            if not self.failed:
                self.failed = True
                note(f"cannot report the stats: {type(exc).__name__}: {exc}")
