"""The daemon's status report (status.json), built from memory only, never the database."""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from typing import Any

import psutil

from . import __version__


def format_uptime(seconds: float) -> str:
    """scrapy-do's uptime format: ``1d 2h 12m 24s``, zero parts omitted but the seconds."""
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    return " ".join(parts + [f"{secs}s"])


SAMPLE_PERIOD = 0.5  # seconds between two readings of the process's memory and CPU
_MARK = "\x00time\x00"  # stands for the time while the rest is encoded (see answer)
_MARK_JSON = json.dumps(_MARK)


class StatusReport:
    """Collects what status.json reports.

    Memory and CPU are sampled at most every SAMPLE_PERIOD seconds: monitoring may poll
    hundreds of times a second, and a CPU percentage over a few microseconds is noise.
    """

    def __init__(self, reactor: Any, started: float) -> None:
        self.reactor = reactor
        self.started = started
        self.process = psutil.Process(os.getpid())
        self.process.cpu_percent()  # prime: the next call measures since now
        self.hostname = socket.gethostname()
        self.sampled_at = float("-inf")
        self.sample = (0.0, 0.0)
        self.uptime = (-1, "")  # (whole seconds, as text): made once a second
        self._encoded: tuple[Any, bytes, bytes] = ((), b"", b"")  # see answer()

    def _process_sample(self, now: float) -> tuple[float, float]:
        if now - self.sampled_at >= SAMPLE_PERIOD:
            self.sampled_at = now
            self.sample = (self.process.memory_info().rss / 1024.0 / 1024.0,
                           self.process.cpu_percent())
        return self.sample

    def _state(self, counters: dict[str, int], scheduled: int, projects: int,
               spiders: int, load: tuple[int, int, int]) -> tuple[float, tuple[Any, ...]]:
        """(now, every value of the report but the time, in the report's order)."""
        now = self.reactor.seconds()
        memory, cpu = self._process_sample(now)
        seconds = int(max(0, now - self.started))
        if seconds != self.uptime[0]:
            self.uptime = (seconds, format_uptime(seconds))
        return now, (memory, cpu, f"{time.tzname[0]}; {time.tzname[1]}", self.hostname,
                     self.uptime[1], *(counters.get(name, 0) for name in _COUNTER_KEYS),
                     scheduled, projects, spiders, __version__, *load)

    def build(self, counters: dict[str, int], scheduled: int, projects: int,
              spiders: int, load: tuple[int, int, int] = (0, 0, 0)) -> dict[str, Any]:
        """The report: scrapy-do's keys, in scrapy-do's order, then crawld's: ``load``
        is (job slots, jobs running, jobs waiting for a slot)."""
        now, state = self._state(counters, scheduled, projects, spiders, load)
        return _report(state, str(datetime.fromtimestamp(now)))

    def answer(self, counters: dict[str, int], scheduled: int, projects: int,
               spiders: int, load: tuple[int, int, int] = (0, 0, 0)) -> bytes:
        """status.json's whole body: ``{"status": "ok", **build(...)}`` as JSON and a
        newline, the very bytes ``json.dumps(..., ensure_ascii=False)`` gives.

        Everything but ``time`` changes a few times a second at most (the samples, the
        uptime, the counters), so the JSON around the time is made once per change and
        each answer only puts the time in: building and encoding the report was half
        of the endpoint's own work."""
        now, state = self._state(counters, scheduled, projects, spiders, load)
        if state != self._encoded[0]:
            text = json.dumps({"status": "ok", **_report(state, _MARK)},
                              ensure_ascii=False) + "\n"
            head, _, tail = text.partition(_MARK_JSON)  # the first: time is third
            self._encoded = (state, head.encode("utf-8"), tail.encode("utf-8"))
        # str(datetime) is digits, "-", ":", "." and a space: nothing JSON escapes
        when = str(datetime.fromtimestamp(now)).encode("ascii")
        return b'%s"%s"%s' % (self._encoded[1], when, self._encoded[2])


_COUNTER_KEYS = ("jobs-run", "jobs-successful", "jobs-failed", "jobs-canceled")
_AFTER_TIME = ("timezone", "hostname", "uptime", *_COUNTER_KEYS, "jobs-scheduled",
               "projects", "spiders", "daemon-version",
               # crawld's, for the dashboard: the supervisor's slots and queue
               "job-slots", "jobs-running", "jobs-pending")


def _report(state: tuple[Any, ...], when: str) -> dict[str, Any]:
    """The report's dict from ``_state`` values and the time's text."""
    return {"memory-usage": state[0], "cpu-usage": state[1], "time": when,
            **dict(zip(_AFTER_TIME, state[2:]))}
