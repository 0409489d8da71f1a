#!/usr/bin/env python3
"""Load: many concurrent API clients polling crawld while jobs run (issue 5).

Acceptance: "Under load (bounded, loopback only): 200 concurrent clients polling
status and listings while 20 jobs run: no errors, p99 latency recorded."

What it does, in one run:

1. raises the soft ``RLIMIT_NOFILE`` if it is below what ``--clients`` connections need
   (the daemon, started afterwards, inherits it) and stops if the hard limit is too low;
2. starts crawld (``bench_core.Crawld``, from the current interpreter, on a free
   ``127.0.0.1`` port, fresh data dir) with ``--job-slots`` slots (default 4), and
   pushes the benchmark project plus a ``sleepy`` spider whose ``async def start()``
   waits ``--job-seconds`` (default 5) on a Twisted timer and requests nothing;
   one no-op warm-up job is run (not measured);
3. opens ``--clients`` (default 200) keep-alive ``http.client`` connections, one per
   client thread (connection set-up is timed apart, not in the latencies);
4. at the start of the window schedules ``--jobs`` (default 20) runs of ``sleepy``
   (``when=now``); with 4 slots they run in 5 waves of 4, so jobs are running for
   (nearly) the whole default window;
5. for ``--seconds`` (default 30) every client loops over ``GET /status.json``,
   ``/list-jobs.json?status=ACTIVE``, ``/list-jobs.json?status=COMPLETED`` and
   ``/list-projects.json`` (each client starts at a different endpoint, so the mix
   is even), sending the next request as soon as the previous answer is read
   (``--think-ms`` 0: closed loop, the worst case). Every latency is recorded, and
   every error: connection errors and timeouts (``--timeout``, 10 s), non-200
   answers, bodies that are not JSON or not ``{"status": "ok", ...}`` of the
   expected shape;
6. waits for the jobs to end and checks that every one of them is ``SUCCESSFUL``;
7. prints a Markdown table (requests, req/s, errors, p50/p95/p99/max latency per
   endpoint and overall), the jobs' outcome and the CPU use of the client process,
   of the daemon and of the whole machine; writes the JSON results (``--out``,
   default ``bench/results-load.json``), including a per-second timeline.

Exit code: 0 if there was no request error and every job succeeded, 1 otherwise.

Caveat: the clients run on the same machine as the daemon (and its jobs). On a
2-core machine 200 Python client threads take CPU the daemon would otherwise
have, and a latency measured by a client includes the time its thread waits for
the GIL and a core. The figures are an upper bound of what remote clients would
see; the client's own CPU use is reported so that the share can be judged. With
a closed loop, mean latency ~= clients / throughput (Little's law): the latencies
say how long a poll waits when 200 pollers saturate a single-threaded daemon.

Usage::

    python bench/bench_load.py [--clients 200] [--seconds 30] [--jobs 20] \\
        [--job-slots 4] [--job-seconds 5] [--out bench/results-load.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402  (shares the daemon class and the project)

SPIDER = "sleepy"
ENDPOINTS = ("/status.json",
             "/list-jobs.json?status=ACTIVE",
             "/list-jobs.json?status=COMPLETED",
             "/list-projects.json")
FD_MARGIN = 256          # descriptors besides the clients' sockets (logs, db, pipes...)
HANDOVER_SLACK_S = 0.05  # see jobs_report: a slot hand-over is not an overlap
MAX_ERROR_SAMPLES = 50   # error messages kept verbatim in the JSON (all are counted)

SLEEPY_SPIDER = f'''\
import scrapy
from scrapy.utils.defer import maybe_deferred_to_future


class SleepySpider(scrapy.Spider):
    """Requests nothing; its start() waits SLEEP_SECONDS on a Twisted timer."""

    name = "{SPIDER}"
    start_urls: list = []

    async def start(self):
        # Imported here, not at module level: the reactor must be the one Scrapy
        # installed (importing it while spiders load would install the default).
        from twisted.internet import reactor, task
        seconds = self.settings.getfloat("SLEEP_SECONDS", 5.0)
        await maybe_deferred_to_future(task.deferLater(reactor, seconds, lambda: None))
        return
        yield
'''


# ---------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------
def ensure_fd_limit(clients: int) -> dict[str, int]:
    """Make the soft RLIMIT_NOFILE cover ``clients`` sockets plus a margin.

    The daemon is our child, so it inherits the raised limit; it needs one
    descriptor per client connection too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = clients + FD_MARGIN
    info = {"soft_before": soft, "hard": hard, "needed": need}
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise RuntimeError(f"ulimit -n: hard limit {hard} < {need} descriptors needed "
                               f"for {clients} clients; raise it or use fewer --clients")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        core.log(f"raised the soft RLIMIT_NOFILE from {soft} to {need}")
    info["soft"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return info


def build_project(root: Path, job_seconds: float) -> core.ProjectArtifacts:
    """bench_core's project plus the sleepy spider; SLEEP_SECONDS in its settings."""
    proj = core.write_project(root)
    pkg = proj / core.PROJECT
    (pkg / "spiders" / f"{SPIDER}.py").write_text(SLEEPY_SPIDER)
    settings = pkg / "settings.py"
    settings.write_text(settings.read_text() + f"SLEEP_SECONDS = {job_seconds!r}\n")
    return core.ProjectArtifacts(core.zip_project(proj))


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------
def check_body(path: str, body: bytes) -> Optional[str]:
    """None if ``body`` is the JSON ``path`` should answer, else what is wrong."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"bad JSON: {body[:120]!r}"
    if not isinstance(data, dict) or data.get("status") != "ok":
        return f"not status ok: {body[:120]!r}"
    if path == "/status.json":
        if not isinstance(data.get("jobs-run"), int):
            return f"no jobs-run counter: {body[:120]!r}"
    elif path == "/list-projects.json":
        if core.PROJECT not in data.get("projects", ()):
            return f"project {core.PROJECT} not listed: {body[:120]!r}"
    elif not isinstance(data.get("jobs"), list):
        return f"no jobs list: {body[:120]!r}"
    return None


class Client(threading.Thread):
    """One polling client: one keep-alive connection, requests in a closed loop.

    Records ``(t, latency, endpoint)`` per good answer and ``(t, endpoint,
    message)`` per error, ``t`` being the send time relative to the window start.
    Lists are per thread (no lock); merged after the join.
    """

    def __init__(self, index: int, port: int, timeout: float, think_s: float,
                 window: dict[str, float], go: threading.Event, stop: threading.Event) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.port = port
        self.timeout = timeout
        self.think_s = think_s
        self.window = window
        self.go = go
        self.stop = stop
        self.ok: list[tuple[float, float, int]] = []
        self.errors: list[tuple[float, int, str]] = []
        self.connect_s: list[float] = []
        self.reconnects = 0
        self.ready = threading.Event()
        self.conn: Optional[http.client.HTTPConnection] = None

    def _connect(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        t0 = time.perf_counter()
        self.conn.connect()
        self.connect_s.append(time.perf_counter() - t0)

    def run(self) -> None:
        try:
            self._connect()
        except OSError as exc:
            self.errors.append((0.0, -1, f"connect: {exc!r}"))
            self.conn = None
        self.ready.set()
        self.go.wait()
        if self.stop.is_set():  # the run failed before the window opened
            return
        start, end = self.window["start"], self.window["end"]
        k = self.index
        try:
            while not self.stop.is_set():
                t_send = time.perf_counter()
                if t_send >= end:
                    break
                ep = k % len(ENDPOINTS)
                k += 1
                path = ENDPOINTS[ep]
                try:
                    if self.conn is None:
                        self.reconnects += 1
                        self._connect()
                        t_send = time.perf_counter()
                    assert self.conn is not None
                    self.conn.request("GET", path)
                    resp = self.conn.getresponse()
                    body = resp.read()
                    latency = time.perf_counter() - t_send
                except (OSError, http.client.HTTPException) as exc:
                    self.errors.append((t_send - start, ep, f"{type(exc).__name__}: {exc}"))
                    if self.conn is not None:
                        self.conn.close()
                    self.conn = None
                    continue
                if resp.status != 200:
                    self.errors.append((t_send - start, ep, f"HTTP {resp.status}: {body[:120]!r}"))
                else:
                    problem = check_body(path, body)
                    if problem is None:
                        self.ok.append((t_send - start, latency, ep))
                    else:
                        self.errors.append((t_send - start, ep, problem))
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                if self.think_s:
                    self.stop.wait(self.think_s)
        finally:
            if self.conn is not None:
                self.conn.close()


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------
def percentile(sorted_values: list[float], p: float) -> Optional[float]:
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_stats(latencies: list[float], errors: int, seconds: float) -> dict[str, Any]:
    lat = sorted(latencies)
    ms = (lambda v: None if v is None else v * 1000.0)
    return {
        "requests_ok": len(lat),
        "errors": errors,
        "rps": len(lat) / seconds if seconds > 0 else None,
        "mean_ms": ms(statistics.fmean(lat)) if lat else None,
        "p50_ms": ms(percentile(lat, 50)),
        "p95_ms": ms(percentile(lat, 95)),
        "p99_ms": ms(percentile(lat, 99)),
        "p999_ms": ms(percentile(lat, 99.9)),
        "max_ms": ms(lat[-1]) if lat else None,
    }


def timeline(ok: list[tuple[float, float, int]], errs: list[tuple[float, int, str]],
             seconds: float) -> list[dict[str, Any]]:
    """Per second of the window: answers, errors, p50 and p99 latency (by send time)."""
    buckets: list[list[float]] = [[] for _ in range(max(1, math.ceil(seconds)))]
    err_count = [0] * len(buckets)
    for t, lat, _ in ok:
        buckets[min(len(buckets) - 1, max(0, int(t)))].append(lat)
    for t, _, _ in errs:
        err_count[min(len(buckets) - 1, max(0, int(t)))] += 1
    out = []
    for i, b in enumerate(buckets):
        b.sort()
        out.append({"second": i, "ok": len(b), "errors": err_count[i],
                    "p50_ms": None if not b else round(percentile(b, 50) * 1000, 2),
                    "p99_ms": None if not b else round(percentile(b, 99) * 1000, 2)})
    return out


def jobs_report(jobs: list[dict[str, Any]], w_start: float, w_end: float) -> dict[str, Any]:
    """Outcome of the jobs and how much they overlapped the load window (epoch s)."""
    def ts(value: Optional[str]) -> Optional[float]:
        return None if value is None else dt.datetime.fromisoformat(value).timestamp()

    intervals = []
    for j in jobs:
        s, f = ts(j.get("started")), ts(j.get("finished"))
        if s is not None:
            intervals.append((s, f if f is not None else w_end))
    def peak_running(slack: float) -> int:
        """Most jobs running at once, each end taken ``slack`` s early."""
        events = sorted([(s, 1) for s, _ in intervals] + [(f - slack, -1) for _, f in intervals],
                        key=lambda e: (e[0], e[1]))
        running = peak = 0
        for _, delta in events:
            running += delta
            peak = max(peak, running)
        return peak
    job_seconds_in_window = sum(max(0.0, min(f, w_end) - max(s, w_start))
                                for s, f in intervals)
    # fraction of the window during which at least one job was running
    covered = 0.0
    cur_s = cur_f = None
    for s, f in sorted(intervals):
        s, f = max(s, w_start), min(f, w_end)
        if f <= s:
            continue
        if cur_f is None or s > cur_f:
            if cur_f is not None:
                covered += cur_f - cur_s
            cur_s, cur_f = s, f
        else:
            cur_f = max(cur_f, f)
    if cur_f is not None:
        covered += cur_f - cur_s
    window = w_end - w_start
    durations = sorted(f - s for s, f in intervals)
    statuses = Counter(j.get("status") for j in jobs)
    return {
        "count": len(jobs),
        "statuses": dict(statuses),
        "all_successful": bool(jobs) and statuses.get("SUCCESSFUL", 0) == len(jobs),
        # crawld frees a slot and starts the next job in the same reactor turn, and reads
        # the clock for the old job's "finished" after the new one's "started"; so a
        # hand-over shows as a ~1 ms overlap.  peak_running ignores overlaps < 50 ms.
        "peak_running": peak_running(HANDOVER_SLACK_S),
        "peak_running_raw": peak_running(0.0),
        "mean_running_in_window": job_seconds_in_window / window if window > 0 else None,
        "window_fraction_with_jobs_running": covered / window if window > 0 else None,
        "finished_within_window": sum(1 for _, f in intervals if f <= w_end),
        "run_s_min": durations[0] if durations else None,
        "run_s_max": durations[-1] if durations else None,
        "detail": [{k: j.get(k) for k in ("identifier", "status", "created", "started",
                                            "finished", "exit-code")} for j in jobs],
        "not_successful": [{"id": j.get("identifier"), "status": j.get("status"),
                            "exit-code": j.get("exit-code"), "reason": j.get("reason")}
                           for j in jobs if j.get("status") != "SUCCESSFUL"],
    }


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------
def cpu_of(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def machine_busy() -> tuple[float, float]:
    """(busy CPU s, total CPU s) summed over all cores, since boot."""
    t = psutil.cpu_times()
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def wait_jobs(d: core.Crawld, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Wait until every job has ended (COMPLETED group); return their list entries."""
    wanted = set(ids)

    def completed() -> list[dict[str, Any]]:
        jobs = d._json("GET", "/list-jobs.json", params={"status": "COMPLETED"})["jobs"]
        return [j for j in jobs if j.get("identifier") in wanted]

    core.wait_until(lambda: len(completed()) == len(wanted), timeout,
                    f"{len(wanted)} jobs to end", period=0.5)
    return [d._json("GET", "/list-jobs.json", params={"id": i})["jobs"][0] for i in ids]


def run(args: argparse.Namespace, tmp: Path, results: dict[str, Any]) -> None:
    d = core.Crawld(args.job_slots, tmp / "crawld")
    # every client is 127.0.0.1: the connection caps (32 per client by default) must
    # hold them all, with room for the bench's own requests
    d.web = {"max-connections": str(args.clients + 64),
             "max-connections-per-client": str(args.clients + 32)}
    d.prepare(core.BENCH_DIR / ".venvs")  # crawld needs no venv
    results["versions"] = d.versions
    d.start()
    artifacts = build_project(tmp / "project", args.job_seconds)
    d.deploy(artifacts)
    spiders = d._json("GET", "/list-spiders.json", params={"project": core.PROJECT})["spiders"]
    if SPIDER not in spiders:
        raise RuntimeError(f"push-project did not list spider {SPIDER!r}: {spiders}")
    core.measure_one_job(d)  # warm-up (no-op spider), not measured
    results["daemon"] = {"pid": d.pid, "port": d.port, "job_slots": d.job_slots,
                         "job_python": d.job_interpreter(), "preload": d.preload}

    window: dict[str, float] = {}
    go, stop = threading.Event(), threading.Event()
    clients = [Client(i, d.port, args.timeout, args.think_ms / 1000.0, window, go, stop)
               for i in range(args.clients)]
    try:
        core.log(f"opening {args.clients} client connections")
        for c in clients:
            c.start()
        for c in clients:
            c.ready.wait(args.timeout + 5)
        me, daemon = psutil.Process(), psutil.Process(d.pid)
        cpu0 = (cpu_of(me), cpu_of(daemon), d.cpu_s()[1], machine_busy())
        wall0 = time.time()
        window["start"] = time.perf_counter()
        window["end"] = window["start"] + args.seconds
        go.set()
        core.log(f"window of {args.seconds:.0f} s started; scheduling {args.jobs} "
                 f"'{SPIDER}' jobs ({args.job_seconds:g} s each, {args.job_slots} slots)")
        schedule_s, ids = [], []
        for _ in range(args.jobs):
            t0 = time.perf_counter()
            data = d._json("POST", "/schedule-job.json",
                           data={"project": core.PROJECT, "spider": SPIDER, "when": "now"})
            schedule_s.append(time.perf_counter() - t0)
            ids.append(str(data["identifier"]))
        time.sleep(max(0.0, window["end"] - time.perf_counter()))
        for c in clients:
            c.join(args.timeout + 5)
        elapsed = time.perf_counter() - window["start"]
        wall1 = wall0 + elapsed
        cpu1 = (cpu_of(me), cpu_of(daemon), d.cpu_s()[1], machine_busy())
    finally:
        stop.set()
        go.set()
    late = [c.name for c in clients if c.is_alive()]
    if late:
        raise RuntimeError(f"{len(late)} client threads still running after the window")
    d.check_alive()

    ok = [r for c in clients for r in c.ok]
    errs = [e for c in clients for e in c.errors]
    results["window_s"] = elapsed  # --seconds + draining the last in-flight answers
    results["overall"] = latency_stats([lat for _, lat, _ in ok], len(errs), elapsed)
    results["endpoints"] = {
        path: latency_stats([lat for _, lat, ep in ok if ep == i],
                            sum(1 for _, ep, _ in errs if ep == i), elapsed)
        for i, path in enumerate(ENDPOINTS)}
    results["errors"] = {
        "count": len(errs),
        "by_kind": dict(Counter(msg.split(":")[0] for _, _, msg in errs)),
        "samples": [{"t": round(t, 3), "endpoint": ENDPOINTS[ep] if ep >= 0 else "connect",
                     "msg": msg} for t, ep, msg in errs[:MAX_ERROR_SAMPLES]],
    }
    conn_s = sorted(s for c in clients for s in c.connect_s)
    results["connections"] = {
        "opened": len(conn_s), "reconnects": sum(c.reconnects for c in clients),
        "connect_p50_ms": None if not conn_s else percentile(conn_s, 50) * 1000,
        "connect_max_ms": None if not conn_s else conn_s[-1] * 1000}
    results["schedule_ms"] = {"p50": statistics.median(schedule_s) * 1000,
                              "max": max(schedule_s) * 1000} if schedule_s else None
    busy = cpu1[3][0] - cpu0[3][0]
    total = cpu1[3][1] - cpu0[3][1]
    results["cpu"] = {
        "client_process_pct_of_core": 100.0 * (cpu1[0] - cpu0[0]) / elapsed,
        "daemon_pct_of_core": 100.0 * (cpu1[1] - cpu0[1]) / elapsed,
        "daemon_tree_pct_of_core": 100.0 * (cpu1[2] - cpu0[2]) / elapsed,
        "machine_busy_pct": 100.0 * busy / total if total > 0 else None,
        "note": "percent of one core over the window; daemon_tree = daemon + zygote + "
                "jobs (reaped or still running); machine_busy = all cores, 100 = all busy",
    }
    results["timeline"] = timeline(ok, errs, args.seconds)

    core.log(f"window over: {len(ok)} answers, {len(errs)} errors; waiting for the jobs")
    job_timeout = args.jobs / max(1, args.job_slots) * (args.job_seconds + 10) + 60
    jobs = wait_jobs(d, ids, job_timeout)
    results["jobs"] = jobs_report(jobs, wall0, wall1)
    results["status_at_end"] = d._json("GET", "/status.json")


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    def f(v: Optional[float], spec: str = "{:.1f}") -> str:
        return "-" if v is None else spec.format(v)

    rows = [("**all**", results["overall"])] + [(f"`{p}`", s)
                                              for p, s in results["endpoints"].items()]
    out = [f"crawld load: {args.clients} clients (closed loop, think {args.think_ms:g} ms), "
           f"{results['window_s']:.1f} s window, {args.jobs} jobs x {args.job_seconds:g} s "
           f"on {args.job_slots} slots", "",
           "| endpoint | answers | req/s | errors | p50 ms | p95 ms | p99 ms | max ms |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in rows:
        out.append(f"| {name} | {s['requests_ok']} | {f(s['rps'], '{:.0f}')} | {s['errors']} | "
                   f"{f(s['p50_ms'])} | {f(s['p95_ms'])} | {f(s['p99_ms'])} | "
                   f"{f(s['max_ms'])} |")
    j = results["jobs"]
    out += ["",
            f"jobs: {j['count']} scheduled, statuses {j['statuses']}; all SUCCESSFUL: "
            f"{'yes' if j['all_successful'] else 'NO'}; peak running {j['peak_running']} "
            f"(slots {args.job_slots}), "
            f"mean running during the window {f(j['mean_running_in_window'], '{:.2f}')}, "
            f"jobs running during {f(100 * (j['window_fraction_with_jobs_running'] or 0), '{:.0f}')}% "
            f"of the window, {j['finished_within_window']} ended inside it; "
            f"run time {f(j['run_s_min'], '{:.2f}')}-{f(j['run_s_max'], '{:.2f}')} s",
            ]
    c = results["cpu"]
    out.append(f"CPU over the window (% of one core): client process "
               f"{c['client_process_pct_of_core']:.0f}%, daemon "
               f"{c['daemon_pct_of_core']:.0f}%, daemon+zygote+jobs "
               f"{c['daemon_tree_pct_of_core']:.0f}%; machine busy "
               f"{f(c['machine_busy_pct'], '{:.0f}')}% of {results['machine']['nproc']} cores")
    conn = results["connections"]
    out.append(f"connections: {conn['opened']} opened (set-up p50 "
               f"{f(conn['connect_p50_ms'], '{:.2f}')} ms, max {f(conn['connect_max_ms'])} ms, "
               f"not in the latencies), {conn['reconnects']} reconnects; schedule-job under "
               f"load: p50 {f((results['schedule_ms'] or {}).get('p50'))} ms, "
               f"max {f((results['schedule_ms'] or {}).get('max'))} ms")
    if results["errors"]["count"]:
        out.append(f"ERRORS: {results['errors']['count']} {results['errors']['by_kind']}; "
                   f"first: {results['errors']['samples'][0]}")
    out += ["",
            f"caveat: the {args.clients} client threads share the machine "
            f"({results['machine']['nproc']} cores) with the daemon and its jobs; a client's "
            "latency includes its own wait for the GIL and a core, so these are upper "
            "bounds. Closed loop: mean latency ~= clients / throughput (Little's law)."]
    return "\n".join(out)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clients", type=int, default=200, help="concurrent polling clients")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the load window")
    p.add_argument("--jobs", type=int, default=20, help="jobs scheduled at the window start")
    p.add_argument("--job-slots", type=int, default=4, help="crawld [crawld] job-slots")
    p.add_argument("--job-seconds", type=float, default=5.0,
                   help="how long each job's spider waits before finishing")
    p.add_argument("--think-ms", type=float, default=0.0,
                   help="pause of each client between two requests (0: closed loop)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="per-request socket timeout; a slower answer counts as an error")
    p.add_argument("--deadline", type=float, default=300.0,
                   help="hard time limit of the whole run, seconds")
    p.add_argument("--out", type=Path, default=core.BENCH_DIR / "results-load.json",
                   help="JSON results file")
    p.add_argument("--keep-tmp", action="store_true", help="keep the daemon's work dir")
    args = p.parse_args(argv)
    for name in ("clients", "jobs", "job_slots"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seconds <= 0 or args.job_seconds < 0 or args.timeout <= 0:
        p.error("--seconds and --timeout must be > 0, --job-seconds >= 0")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    core.GLOBAL_DEADLINE = core.Deadline(args.deadline)
    signal.signal(signal.SIGALRM, core._on_signal)   # hard backstop
    signal.signal(signal.SIGTERM, core._on_signal)
    signal.alarm(int(args.deadline) + 30)
    results: dict[str, Any] = {
        "benchmark": "load",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": core.machine_info(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="crawld-bench-load-"))
    failed = True
    try:
        results["fd_limit"] = ensure_fd_limit(args.clients)
        run(args, tmp, results)
        core.stop_all()
        table = render(results, args)
        results["table"] = table
        print(table)
        failed = bool(results["errors"]["count"]) or not results["jobs"]["all_successful"]
        results["passed"] = not failed
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        core.log(f"results written to {args.out}")
        print(f"\nresult: {'PASS' if not failed else 'FAIL'} (criteria: no request error, "
              f"every job SUCCESSFUL)")
        return 1 if failed else 0
    finally:
        signal.alarm(0)
        core.stop_all()
        if failed or args.keep_tmp:
            core.log(f"daemon work dir and log kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
