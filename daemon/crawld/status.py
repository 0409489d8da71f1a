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

    def build(self, counters: dict[str, int], scheduled: int, projects: int,
              spiders: int) -> dict[str, Any]:
        now = self.reactor.seconds()
        memory, cpu = self._process_sample(now)
        seconds = int(max(0, now - self.started))
        if seconds != self.uptime[0]:
            self.uptime = (seconds, format_uptime(seconds))
        return {
            "memory-usage": memory,
            "cpu-usage": cpu,
            "time": str(datetime.fromtimestamp(now)),
            "timezone": f"{time.tzname[0]}; {time.tzname[1]}",
            "hostname": self.hostname,
            "uptime": self.uptime[1],
            **{name: counters.get(name, 0) for name in
               ("jobs-run", "jobs-successful", "jobs-failed", "jobs-canceled")},
            "jobs-scheduled": scheduled,
            "projects": projects,
            "spiders": spiders,
            "daemon-version": __version__,
        }

    def answer(self, counters: dict[str, int], scheduled: int, projects: int,
               spiders: int) -> bytes:
        """status.json's whole body: ``{"status": "ok", **build(...)}`` as JSON and a
        newline, the very bytes ``json.dumps(..., ensure_ascii=False)`` gives.

        Everything but ``time`` changes a few times a second at most (the samples, the
        uptime, the counters), so the JSON around the time is made once per change and
        each answer only puts the time in: encoding the report was a third of the
        endpoint's own work."""
        report = self.build(counters, scheduled, projects, spiders)
        when = report["time"]
        report["time"] = _MARK
        key = tuple(report.values())
        if key != self._encoded[0]:
            text = json.dumps({"status": "ok", **report}, ensure_ascii=False) + "\n"
            head, _, tail = text.partition(_MARK_JSON)  # the first: time is third
            self._encoded = (key, head.encode("utf-8"), tail.encode("utf-8"))
        # str(datetime) is digits, "-", ":", "." and a space: nothing JSON escapes
        return b'%s"%s"%s' % (self._encoded[1], when.encode("ascii"), self._encoded[2])
