"""The daemon's status report (status.json), built from memory only, never the database."""
from __future__ import annotations

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
