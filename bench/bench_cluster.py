#!/usr/bin/env python3
"""Cluster: crawld's celery launcher with 1 and 2 workers against the local launcher (issue 14).

Acceptance: "bench/: dispatch latency (schedule -> RUNNING on a worker, p50/p99) and the
50-job burst with 1 and with 2 workers against the local launcher, side by side".

What it does, in one run:

1. starts Debian's ``redis-server`` on a free ``127.0.0.1`` port (no persistence: a
   bench needs none) and three set-ups at the same time, each a crawld from the current
   interpreter on a free loopback port with a fresh data dir:

   | set-up | daemon | workers |
   | --- | --- | --- |
   | ``local`` | the default ``launcher = local``, ``job-slots`` = ``--slots`` | none |
   | ``celery-1w`` | ``launcher = celery``, broker ``redis://.../1`` | 1 ``crawld worker``, ``--concurrency`` = ``--slots`` |
   | ``celery-2w`` | ``launcher = celery``, broker ``redis://.../2`` | 2 workers, ``--slots`` each |

   All listen on loopback only. Each daemon has an operator key (the bench's requests
   carry it) and each worker a key of role ``worker`` (``crawld keys add``), so auth is
   on in every set-up alike; every worker has its own data dir (code cache, spool);
2. pushes bench_core's project plus a ``stamp`` spider, whose ``start()`` prints
   ``BENCH-START <time.time()>`` and ends (a no-op otherwise), and warms each set-up up
   with 2 x its slots jobs at once (not measured: zygotes, code caches, connections);
3. **dispatch latency**: ``--latency-runs`` (50) jobs one after another, the set-ups
   taking turns job by job (so a burst of other load on the machine hits them alike):
   from just before ``POST /schedule-job.json`` to the ``BENCH-START`` time the job
   printed (same machine, same clock), read from the daemon's copy of the job's log
   once the job has ended. That is "schedule -> running on a worker" as a user sees
   it: dispatch, claim, code fetch (cached after the warm-up), the fork from the
   zygote and Scrapy's start-up up to the spider's first line of code. The local
   launcher pays the same fork and start-up, so the difference is what the broker and
   the worker add. Also recorded: the daemon's own ``started - created``, and
   ``end``: from that first line to the daemon's ``finished`` (the no-op crawl closing,
   plus, for a worker, shipping the rest of the logs and reporting the end home: what
   separates one job from the next in a burst);
4. **burst**: ``--burst`` (50) jobs scheduled back to back until all are
   ``SUCCESSFUL`` (bench_core's ``measure_burst``: ``list-jobs.json?status=COMPLETED``
   every 100 ms), ``--runs`` (3) times, set-ups in an order that rotates;
5. prints a Markdown table: latency p50/p99/mean and the burst median per set-up, and
   the ratios ``local / set-up`` (> 1: the cluster set-up is faster; < 1: slower);
   writes the JSON (``--out``, default ``bench/results-cluster.json``) with every
   sample, the settings and machine info.

Caveat: the workers run on the same machine as the daemon (2 cores here), so a second
worker adds slots but no CPU: a burst of CPU-bound crawls cannot get faster with it, and
the ratios say what the cluster's machinery costs, not what more hosts would give.

Safety and bounds: loopback only; every process (redis-server, daemons, workers and
their jobs) is stopped by pid in a ``finally`` (bench_core's ``stop_all``); the run has
a ``SIGALRM``-backed ``--deadline`` (1200 s). Exit code 1 if a job failed or a set-up
could not start (its log tail is printed and the temp dir kept).

Usage::

    python bench/bench_cluster.py [--latency-runs 50] [--burst 50] [--runs 3] \\
        [--slots 2] [--heartbeat 2] [--out bench/results-cluster.json]
"""
from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402  (shares the daemon class, the project, clean-up)

STAMP = "stamp"
STAMP_SPIDER = f'''import time

import scrapy


class StampSpider(scrapy.Spider):
    """Prints when its code first runs, then ends (requests nothing)."""

    name = "{STAMP}"

    async def start(self):
        print("BENCH-START %.6f" % time.time(), flush=True)
        return
        yield
'''
SETUPS = ("local", "celery-1w", "celery-2w")


def build_project(root: Path) -> core.ProjectArtifacts:
    """bench_core's project plus the ``stamp`` spider."""
    proj = core.write_project(root)
    (proj / core.PROJECT / "spiders" / f"{STAMP}.py").write_text(STAMP_SPIDER)
    return core.ProjectArtifacts(core.zip_project(proj))


class Redis:
    """redis-server on a free loopback port, no persistence, stopped by stop_all()."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = core.free_port()
        with open(self.workdir / "redis.log", "ab") as out:
            proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no",
                                     "--dir", str(self.workdir)],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        core.STARTED.append(proc)
        core.wait_until(lambda: self._pong(proc), 30, "redis-server to answer")

    def _pong(self, proc: subprocess.Popen) -> bool:
        import socket
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited {proc.returncode}: "
                               f"{core.tail_file(self.workdir / 'redis.log')}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


class Setup(core.Crawld):
    """One crawld set-up: the local launcher, or the celery launcher with workers."""

    def __init__(self, name: str, slots: int, workdir: Path, workers: int = 0,
                 broker: str = "", heartbeat: float = 2.0) -> None:
        super().__init__(slots, workdir)
        self.name = name
        self.workers = workers
        self.broker = broker
        self.heartbeat = heartbeat
        self.worker_procs: list[subprocess.Popen] = []

    def write_config(self) -> None:
        super().write_config()
        path = self.workdir / "crawld.ini"
        if self.workers:
            extra = (f"[cluster]\nlauncher = celery\nbroker = {self.broker}\n"
                     f"heartbeat = {self.heartbeat:g}\ndaemon-url = {self.base_url}\n")
        else:
            extra = ""  # launcher = local is the default (so this runs on any crawld)
        path.write_text(path.read_text() + extra)

    def add_key(self, role: str, name: str) -> str:
        """``crawld keys add`` in the data dir (before the daemon starts): the key."""
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        return core.run_checked([sys.executable, "-m", "crawld", "keys", "--data-dir",
                                 str(self.workdir / "data"), "add", "--role", role,
                                 "--name", name], timeout=60).strip()

    def start(self) -> None:
        # every set-up has auth on (a worker needs a key of role worker, and with
        # credentials the daemon requires them), so that each pays the same per request
        self.http.headers["Authorization"] = f"Bearer {self.add_key('operator', 'bench')}"
        keys = [self.add_key("worker", f"{self.name}-w{i + 1}") for i in range(self.workers)]
        super().start()
        for i in range(self.workers):
            folder = self.workdir / f"worker{i + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "crawld", "worker", "--broker", self.broker,
                   "--daemon", self.base_url, "--key", keys[i],
                   "--data-dir", str(folder / "data"),
                   "--concurrency", str(self.job_slots), "--queues", "spider,browser",
                   "--name", f"{self.name}-w{i + 1}"]
            core.log(f"starting {self.name} worker {i + 1}: {' '.join(cmd)}")
            with open(folder / "worker.log", "ab") as out:
                proc = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # as under systemd
            core.STARTED.append(proc)
            self.worker_procs.append(proc)

    def check_alive(self) -> None:
        super().check_alive()
        for i, proc in enumerate(self.worker_procs):
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} worker {i + 1} exited {proc.returncode}: "
                                   f"{core.tail_file(self.workdir / f'worker{i + 1}' / 'worker.log')}")

    def schedule(self) -> str:
        data = self._json("POST", "/schedule-job.json",
                          data={"project": core.PROJECT, "spider": STAMP, "when": "now"})
        return str(data["identifier"])

    def stamp(self, job_id: str) -> float:
        """The BENCH-START time the job printed (from the daemon's copy of its log)."""
        text = (self.workdir / "data" / "logs" / f"{job_id}.out").read_text()
        for line in text.splitlines():
            if line.startswith("BENCH-START "):
                return float(line.split()[1])
        raise RuntimeError(f"{self.name}: job {job_id} printed no BENCH-START: {text[-300:]!r}")

    def times(self, job_id: str) -> dict[str, float]:
        """The job's ``created``, ``started`` and ``finished`` as the daemon recorded them
        (epoch seconds; the ones it has)."""
        from datetime import datetime
        job = self._json("GET", "/list-jobs.json", params={"id": job_id})["jobs"][0]
        return {k: datetime.fromisoformat(job[k]).timestamp()
                for k in ("created", "started", "finished") if job.get(k)}


def one_latency(d: Setup) -> dict[str, float]:
    """One job, timed: ``latency_s`` (schedule -> the spider's first line),
    ``daemon_view_s`` (the daemon's started - created) and ``end_s`` (the spider's first
    line -> the daemon's finished: the crawl's own end, plus reporting it home)."""
    t0 = time.time()
    job_id = d.schedule()
    core.wait_until(lambda: d.job_done(job_id), core.ONE_JOB_TIMEOUT_S,
                    f"{d.name} job {job_id}")
    stamp, times = d.stamp(job_id), d.times(job_id)
    got = {"latency_s": stamp - t0}
    if "started" in times and "created" in times:
        got["daemon_view_s"] = times["started"] - times["created"]
    if "finished" in times:
        got["end_s"] = times["finished"] - stamp
    return got


def percentile(values: list[float], q: float) -> Optional[float]:
    """The ``q`` quantile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def summarize(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, got in samples.items():
        lat, burst = got.get("latency_s", []), got.get("burst_s", [])
        out[name] = {
            "latency_p50_s": percentile(lat, 0.50), "latency_p99_s": percentile(lat, 0.99),
            "latency_mean_s": statistics.fmean(lat) if lat else None,
            "daemon_dispatch_p50_s": percentile(got.get("daemon_view_s", []), 0.50),
            "end_p50_s": percentile(got.get("end_s", []), 0.50),
            "burst_median_s": statistics.median(burst) if burst else None,
        }
    return out


def render(summary: dict[str, dict[str, Any]], names: list[str]) -> str:
    """Markdown: one row per metric, one column per set-up, then ``local / set-up``."""
    others = [n for n in names if n != "local"]
    head = ["metric", *names, *(f"local/{n}" for n in others)]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for metric in ("latency_p50_s", "latency_p99_s", "latency_mean_s",
                   "daemon_dispatch_p50_s", "end_p50_s", "burst_median_s"):
        cells = [metric]
        for n in names:
            v = summary.get(n, {}).get(metric)
            cells.append("-" if v is None else f"{v:.3f}")
        base = summary.get("local", {}).get(metric)
        for n in others:
            v = summary.get(n, {}).get(metric)
            cells.append("-" if not base or not v else f"{base / v:.2f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run(args: argparse.Namespace, tmp: Path) -> bool:
    project = build_project(tmp / "project")
    redis = Redis(tmp / "redis")
    redis.start()
    setups = [Setup("local", args.slots, tmp / "local")]
    if "celery-1w" in args.setups:
        setups.append(Setup("celery-1w", args.slots, tmp / "celery-1w", 1, redis.url(1),
                            args.heartbeat))
    if "celery-2w" in args.setups:
        setups.append(Setup("celery-2w", args.slots, tmp / "celery-2w", 2, redis.url(2),
                            args.heartbeat))
    errors: dict[str, list[str]] = {}
    live: list[Setup] = []
    for d in setups:
        try:
            d.prepare(core.BENCH_DIR / ".venvs")
            d.start()
            d.deploy(project)
            core.measure_burst(d, 2 * args.slots * max(1, d.workers))  # warm-up
            d.check_alive()
            live.append(d)
        except Exception as exc:
            core.log(f"{d.name} could not start: {exc}")
            errors.setdefault(d.name, []).append(f"start: {exc}")
    samples: dict[str, dict[str, list[float]]] = {d.name: {} for d in live}
    core.log(f"dispatch latency: {args.latency_runs} jobs per set-up, taking turns")
    for i in range(args.latency_runs):
        for d in live if i % 2 == 0 else list(reversed(live)):
            try:
                got = one_latency(d)
            except Exception as exc:
                errors.setdefault(d.name, []).append(f"latency run {i}: {exc}")
                continue
            for metric, value in got.items():
                samples[d.name].setdefault(metric, []).append(value)
    for rep in range(args.runs):
        order = live[rep % len(live):] + live[:rep % len(live)] if live else []
        for d in order:
            core.log(f"burst {rep + 1}/{args.runs}: {d.name}, {args.burst} jobs")
            try:
                samples[d.name].setdefault("burst_s", []).append(
                    core.measure_burst(d, args.burst))
                d.check_alive()
            except Exception as exc:
                errors.setdefault(d.name, []).append(f"burst {rep + 1}: {exc}")
    names = [d.name for d in setups]
    summary = summarize(samples)
    table = render(summary, names)
    print(f"\ncrawld bench (cluster): latency-runs={args.latency_runs} burst={args.burst} "
          f"runs={args.runs} slots={args.slots} per worker/daemon; local/x > 1 means x "
          "is faster than the local launcher\n")
    print(table)
    for name, errs in errors.items():
        print(f"\n{name} errors:\n  " + "\n  ".join(errs[:20]))
    core.write_report(args.out, {
        "benchmark": "cluster", "machine": core.machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": live[0].versions if live else {},
        "metrics": summary, "samples": samples, "errors": errors, "table": table})
    return not errors


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--latency-runs", type=int, default=50, help="jobs for the latency")
    p.add_argument("--burst", type=int, default=50, help="jobs per burst")
    p.add_argument("--runs", type=int, default=3, help="bursts per set-up (median)")
    p.add_argument("--slots", type=int, default=2,
                   help="job slots of the local daemon, and --concurrency of each worker")
    p.add_argument("--heartbeat", type=float, default=2.0, help="[cluster] heartbeat")
    p.add_argument("--setups", nargs="*", default=list(SETUPS[1:]),
                   choices=SETUPS[1:], help="cluster set-ups beside local (none: local "
                   "alone, a check of the bench itself)")
    p.add_argument("--out", type=Path, default=core.BENCH_DIR / "results-cluster.json")
    p.add_argument("--deadline", type=float, default=1200.0, help="seconds for the run")
    p.add_argument("--keep-tmp", action="store_true", help="keep logs and data dirs")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    return core.bounded_run(args.deadline, "crawld-bench-cluster-", args.keep_tmp,
                            lambda tmp: run(args, tmp))


if __name__ == "__main__":
    sys.exit(main())
