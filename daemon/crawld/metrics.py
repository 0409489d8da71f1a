"""crawld's metrics, for Prometheus: plain counters where things happen, metric families
only when /metrics is scraped.

Recording is kept off the hot path's budget: an HTTP request adds one to a dict entry
keyed by (route pattern, code) and one bucket count (``Metrics.request``, called by the
Site once per request); a job's end and a schedule's firing observe one histogram each.
At scrape time, ``render`` reads what the store counts (``Database.metric_counts``: the
finished jobs and their items by project, spider and status, which a restart keeps, and
the PENDING and RUNNING jobs), copies the in-memory counters on the reactor thread, and
makes the text (prometheus_client's families and exposition, the process' own
``process_*`` metrics from /proc) in a thread.

Across a restart: ``crawld_jobs_finished_total`` and ``crawld_items_scraped_total``
continue (the ``job_totals`` table, kept whatever retention removes); the histograms
(job durations, scheduler lateness, HTTP durations) and the HTTP request counter are the
process' own and start again from zero, as Prometheus expects of a restarted target.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterable, Protocol, Sequence

from prometheus_client import exposition
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.process_collector import ProcessCollector
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from .model import Job
from .seams import EventSource

#: Bucket bounds (upper, inclusive), seconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
               43200.0, 86400.0)
LATENESS_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 600.0, 3600.0)
#: The route label of a request no route took (an unknown path, a URL that is not UTF-8).
UNMATCHED = "unmatched"
CONTENT_TYPE = exposition.CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus reads


class Buckets:
    """A histogram's plain counters: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: past every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def copy(self) -> "Buckets":
        other = Buckets(self.bounds)
        other.counts = list(self.counts)
        other.sum = self.sum
        return other

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus' buckets: (``le``, observations at or below it), ``+Inf`` last."""
        found, total = [], 0
        for bound, count in zip([*map(repr, self.bounds), "+Inf"], self.counts):
            total += count
            found.append((bound, total))
        return found


class CountsStore(Protocol):
    """What /metrics reads of the store (store.Store)."""

    def metric_counts(self) -> "Deferred[tuple[list[tuple], dict[str, int]]]":
        """job_totals rows (project, spider, status, jobs, items), PENDING/RUNNING counts."""


class Snapshot:
    """Everything one scrape shows, copied on the reactor thread; turned into metric
    families in a thread (``collect``), where nothing else touches it."""

    def __init__(self, totals: list[tuple], states: dict[str, int], slots: int,
                 zygote_up: bool, requests: dict[tuple[str, int], int],
                 request_seconds: dict[str, Buckets], job_seconds: dict[tuple[str, str], Buckets],
                 lateness: Buckets, process: Any = None) -> None:
        self.totals = totals
        self.states = states
        self.slots = slots
        self.zygote_up = zygote_up
        self.requests = requests
        self.request_seconds = request_seconds
        self.job_seconds = job_seconds
        self.lateness = lateness
        self.process = process

    def collect(self) -> Iterable[Metric]:
        """The metric families (prometheus_client's collector interface)."""
        finished = CounterMetricFamily(
            "crawld_jobs_finished", "Jobs that ran and ended, by project, spider and "
            "final status (continues across restarts)", labels=("project", "spider", "status"))
        items = CounterMetricFamily(
            "crawld_items_scraped", "Items scraped by jobs that ended (item_scraped_count "
            "of their stats; continues across restarts)", labels=("project", "spider"))
        per_spider: dict[tuple[str, str], int] = {}
        for project, spider, status, jobs, scraped in self.totals:
            finished.add_metric((project, spider, status), jobs)
            per_spider[(project, spider)] = per_spider.get((project, spider), 0) + scraped
        for (project, spider), scraped in per_spider.items():
            items.add_metric((project, spider), scraped)
        yield finished
        yield items
        yield GaugeMetricFamily("crawld_jobs_running", "Jobs RUNNING now",
                                value=self.states.get("RUNNING", 0))
        yield GaugeMetricFamily("crawld_jobs_pending", "Jobs PENDING (queued for a slot)",
                                value=self.states.get("PENDING", 0))
        yield GaugeMetricFamily("crawld_job_slots", "Jobs that may run at once (job-slots)",
                                value=self.slots)
        yield GaugeMetricFamily("crawld_zygote_up", "1 while the zygote that forks spider "
                                "jobs is ready, else 0 (preload = no, or it ended)",
                                value=1 if self.zygote_up else 0)
        durations = HistogramMetricFamily(
            "crawld_job_duration_seconds", "Wall-clock time of the jobs that ended since "
            "the daemon started, from start to end", labels=("project", "spider"))
        for labels, buckets in sorted(self.job_seconds.items()):
            durations.add_metric(labels, buckets.cumulative(), buckets.sum)
        yield durations
        lateness = HistogramMetricFamily(
            "crawld_scheduler_lateness_seconds", "How late each firing of a schedule was, "
            "after its (jittered) due time")
        lateness.add_metric((), self.lateness.cumulative(), self.lateness.sum)
        yield lateness
        requests = CounterMetricFamily("crawld_http_requests", "HTTP requests answered, by "
                                       "route pattern and status code", labels=("route", "code"))
        for (route, code), count in sorted(self.requests.items()):
            requests.add_metric((route, str(code)), count)
        yield requests
        seconds = HistogramMetricFamily(
            "crawld_http_request_duration_seconds", "Time from a request's first line to "
            "its last byte written, by route pattern (streams last as long as they stay "
            "open)", labels=("route",))
        for route, buckets in sorted(self.request_seconds.items()):
            seconds.add_metric((route,), buckets.cumulative(), buckets.sum)
        yield seconds
        if self.process is not None:
            yield from self.process.collect()


class Metrics:
    """crawld's metrics: records as things happen, renders at scrape time.

    ``slots`` and ``zygote_up`` are read at scrape time; ``events`` is the event list
    (a job's end observes its duration); the scheduler calls ``fired`` with each
    firing's lateness and the Site calls ``request`` once per answered request.
    """

    def __init__(self, store: CountsStore, events: EventSource, slots: Callable[[], int],
                 zygote_up: Callable[[], bool],
                 to_thread: Callable[..., Deferred] = deferToThread,
                 process: bool = True) -> None:
        self.store = store
        self.slots = slots
        self.zygote_up = zygote_up
        self.to_thread = to_thread
        self.requests: dict[tuple[str, int], int] = {}
        self.request_seconds: dict[str, Buckets] = {}
        self.job_seconds: dict[tuple[str, str], Buckets] = {}
        self.lateness = Buckets(LATENESS_BUCKETS)
        self.process = ProcessCollector(registry=None) if process else None
        events.subscribe(self.job_changed)

    # -- recording ------------------------------------------------------------------
    def request(self, route: str, code: int, seconds: float) -> None:
        """One HTTP request answered (the hot path: two dict look-ups and a bisect).
        ``route`` is the route's pattern, never the raw path: a bounded label."""
        key = (route, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        buckets = self.request_seconds.get(route)
        if buckets is None:
            buckets = self.request_seconds[route] = Buckets(HTTP_BUCKETS)
        buckets.observe(seconds)

    def fired(self, late: float) -> None:
        """A schedule fired ``late`` seconds after it was due."""
        self.lateness.observe(max(0.0, late))

    def job_changed(self, job: Job) -> None:
        """An observer of the event list: a job that ran and ended adds its duration."""
        if job.status.completed and job.started is not None and job.finished is not None:
            key = (job.project, job.spider)
            buckets = self.job_seconds.get(key)
            if buckets is None:
                buckets = self.job_seconds[key] = Buckets(JOB_BUCKETS)
            buckets.observe(max(0.0, job.finished - job.started))

    # -- scraping -------------------------------------------------------------------
    def render(self) -> "Deferred[tuple[bytes, str]]":
        """The text of a scrape and its content type: the store's counts are read, the
        counters copied here, the text made in a thread."""
        def made(counts: tuple[list[tuple], dict[str, int]]) -> Deferred:
            snapshot = Snapshot(
                counts[0], counts[1], self.slots(), self.zygote_up(), dict(self.requests),
                {k: b.copy() for k, b in self.request_seconds.items()},
                {k: b.copy() for k, b in self.job_seconds.items()}, self.lateness.copy(),
                self.process)
            return self.to_thread(exposition.generate_latest, snapshot)
        d = self.store.metric_counts().addCallback(made)
        return d.addCallback(lambda body: (body, CONTENT_TYPE))
