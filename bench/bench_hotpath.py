#!/usr/bin/env python3
"""The HTTP hot path, side by side: crawld, scrapy-do 0.5.0, scrapyd 1.6.0 and a bare
twisted.web resource, loaded with ``wrk`` in one run (issue 9, "A lean hot path").

Two questions, each answered with alternating rounds (default 3) and medians:

* **status**: requests/s on crawld's and scrapy-do's ``GET /status.json``, scrapyd's
  ``GET /daemonstatus.json`` and a bare twisted.web JSON resource (bench/bare_twisted.py,
  the framework's floor). Target: crawld at least 1.5x the best peer.
* **listing 10,000 finished jobs**: crawld and scrapy-do each start with the same
  10,000 SUCCESSFUL jobs in their store (seeded before start, see ``seed_crawld`` and
  ``seed_scrapy_do``). Requests/s on crawld's ``list-jobs.json?status=COMPLETED&limit=100``
  (the first page; also the last one, ``offset=9900``) against scrapy-do's
  ``list-jobs.json?status=COMPLETED``, which has no paging and always answers with all
  10,000 (target: at least 5x), and crawld's whole list against the same.

Every load is ``wrk -t1 -c4 -dN --timeout T --latency`` against 127.0.0.1 (``--wrk``
picks a Python keep-alive client instead when wrk is missing and cannot be installed).
After each load the script waits for the daemon's process tree to go idle, so a slow
request still in flight when wrk stopped does not eat into the next measurement.

Usage::

    python bench/bench_hotpath.py [--rounds 3] [--seconds 5] [--list-seconds 10]
        [--jobs 10000] [--out bench/results-hotpath.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402  (daemon classes, venvs, deadlines, clean-up)

BENCH_DIR = core.BENCH_DIR
PAGE = 100

#: (metric, daemon, path, what the answer must hold) — measured in this order, each
#: metric's daemons in an order that alternates with the round.
BEFORE = "crawld-before"  # --baseline: crawld from another checkout, same run
STATUS_PATHS = {"crawld": "/status.json", BEFORE: "/status.json",
                "scrapy-do": "/status.json", "scrapyd": "/daemonstatus.json",
                "twisted.web": "/"}
LIST_ALL = "/list-jobs.json?status=COMPLETED"
LIST_CASES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("list_page_rps", ("crawld", BEFORE), f"{LIST_ALL}&limit={PAGE}"),
    ("list_last_page_rps", ("crawld", BEFORE), f"{LIST_ALL}&limit={PAGE}&offset={{last}}"),
    ("list_all_rps", ("crawld", BEFORE, "scrapy-do"), LIST_ALL),
)
METRICS = ("status_rps", "list_page_rps", "list_last_page_rps", "list_all_rps")


class BareTwisted(core.Daemon):
    """bench/bare_twisted.py: one leaf resource on a default Site, crawld's Twisted."""

    name = "twisted.web"

    def command(self) -> list[str]:
        return [sys.executable, str(BENCH_DIR / "bare_twisted.py"), str(self.port)]

    def ready_path(self) -> str:
        return "/"


# ---------------------------------------------------------------------------
# Seeding: the same 10,000 finished jobs in crawld's and scrapy-do's store
# ---------------------------------------------------------------------------
def job_times(count: int, now: float) -> list[tuple[float, float, float]]:
    """(created, started, finished) of ``count`` jobs, one a second, the last just
    before ``now``: within every retention age, in a well-defined order."""
    return [(now - (count - i) - 0.9, now - (count - i) - 0.8, now - (count - i))
            for i in range(count)]


#: Runs with the daemon's interpreter: crawld's own Database (its schema and
#: migrations) and add_job write the rows.
SEED_CRAWLD = """\
import sys, uuid
from crawld.model import Actor, Job, JobStatus
from crawld.store import Database

path = sys.argv[1]
times = [tuple(map(float, t.split(","))) for t in sys.stdin.read().split()]
db = Database(path)
db.conn.execute("BEGIN IMMEDIATE")  # add_job's own transactions join this one
for created, started, finished in times:
    db.add_job(Job(id=str(uuid.uuid4()), status=JobStatus.SUCCESSFUL, actor=Actor.USER,
                   schedule="now", project=sys.argv[2], spider=sys.argv[3], created=created,
                   updated=finished, started=started, finished=finished, exit_code=0))
db.conn.execute("COMMIT")
db.close()
"""


def seed_crawld(python: str, data_dir: Path, count: int, now: float) -> None:
    """Write ``count`` SUCCESSFUL jobs into a fresh crawld database with that crawld's
    own ``store.Database`` (schema, migrations, ``add_job``), in one transaction."""
    data_dir.mkdir(parents=True, exist_ok=True)
    times = "\n".join(f"{c},{s},{f}" for c, s, f in job_times(count, now))
    subprocess.run([python, "-c", SEED_CRAWLD, str(data_dir / "crawld.db"), core.PROJECT,
                    core.SPIDER], input=times, text=True, check=True, capture_output=True,
                   timeout=300, env=core.venv_env(None))


#: Runs in scrapy-do's venv: its own Schedule and Job classes write the rows.
SEED_SCRAPY_DO = """\
import sys
from datetime import datetime
from scrapy_do.schedule import Actor, Job, Schedule, Status

path = sys.argv[1]
times = [tuple(map(float, t.split(","))) for t in sys.stdin.read().split()]
schedule = Schedule(path)
real = schedule.db

class OneCommit:
    # Schedule.add_job commits each row: one transaction for all of them instead
    def execute(self, *args):
        return real.execute(*args)
    def commit(self):
        pass

schedule.db = OneCommit()
for created, started, finished in times:
    schedule.add_job(Job(status=Status.SUCCESSFUL, actor=Actor.USER, schedule="now",
                         project=sys.argv[2], spider=sys.argv[3],
                         timestamp=datetime.fromtimestamp(finished),
                         duration=int(finished - started)))
real.commit()
real.close()
"""


def seed_scrapy_do(python: Path, store_dir: Path, count: int, now: float) -> None:
    """Write ``count`` SUCCESSFUL jobs into scrapy-do's ``schedule.db`` with scrapy-do's
    own ``Schedule.add_job`` (its schema and row shape), in one transaction."""
    store_dir.mkdir(parents=True, exist_ok=True)
    times = "\n".join(f"{c},{s},{f}" for c, s, f in job_times(count, now))
    subprocess.run([str(python), "-c", SEED_SCRAPY_DO, str(store_dir / "schedule.db"),
                    core.PROJECT, core.SPIDER], input=times, text=True, check=True,
                   capture_output=True, timeout=300, env=core.venv_env(None))


class CrawldFrom(core.Crawld):
    """crawld installed in another interpreter's environment (``--baseline``: a
    checkout from before a change), measured in the same run as the current one."""

    name = BEFORE

    def __init__(self, python: str, job_slots: int, workdir: Path) -> None:
        super().__init__(job_slots, workdir)
        self.crawld_python = python

    def prepare(self, cache_dir: Path) -> None:
        self.versions = {d: core.package_version(self.crawld_python, d)
                         for d in ("crawld", "scrapy", "twisted")}
        if not self.versions["crawld"]:
            raise RuntimeError(f"crawld is not installed for {self.crawld_python}")

    def job_interpreter(self) -> Optional[str]:
        return self.crawld_python


# ---------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> dict[str, Any]:
    """requests/s, request count, latency percentiles (s) and errors from wrk's report."""
    def num(pattern: str) -> Optional[float]:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None
    found: dict[str, Any] = {"rps": num(r"Requests/sec:\s+([\d.]+)"),
                             "requests": num(r"(\d+) requests in"),
                             "non_2xx": num(r"Non-2xx or 3xx responses:\s+(\d+)") or 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                  text)
    found["socket_errors"] = sum(map(int, m.groups())) if m else 0
    for pct in ("50", "99"):
        m = re.search(rf"\b{pct}%\s+([\d.]+)(us|ms|s|m)\b", text)
        found[f"p{pct}_s"] = float(m.group(1)) * _UNITS[m.group(2)] if m else None
    return found


def run_wrk(port: int, path: str, seconds: float, connections: int, threads: int,
            timeout: float) -> dict[str, Any]:
    """One bounded wrk run on 127.0.0.1; raises if any request failed."""
    url = f"http://127.0.0.1:{port}{path}"
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
           f"--timeout={timeout:g}s", "--latency", url]
    res = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=seconds + timeout + 30)
    found = parse_wrk(res.stdout)
    if res.returncode != 0 or found["rps"] is None:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stdout[-500:]}"
                           f"{res.stderr[-500:]}")
    if found["non_2xx"] or found["socket_errors"]:
        raise RuntimeError(f"{path}: {found['non_2xx']:.0f} non-2xx answers and "
                           f"{found['socket_errors']} socket errors:\n{res.stdout}")
    return found


def run_python_client(d: core.Daemon, path: str, seconds: float,
                      connections: int) -> dict[str, Any]:
    """The fallback when wrk cannot be had: bench_core's keep-alive client threads."""
    rps = core.measure_rps(d, path, 10 ** 9, connections, seconds)
    return {"rps": rps, "requests": None, "p50_s": None, "p99_s": None}


def ensure_wrk(choice: str) -> str:
    """``wrk`` if it is on PATH or can be installed (root, apt-get); else ``python``."""
    if choice == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        core.log("wrk is missing; installing the Debian package with apt-get")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True,
                       timeout=600)
        if shutil.which("wrk"):
            return "wrk"
    if choice == "wrk":
        raise RuntimeError("wrk is not installed ('apt-get install wrk') and could not be")
    core.log("wrk is not available: falling back to Python keep-alive client threads")
    return "python"


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by one process, all its threads."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def settle(d: core.Daemon, limit: float = 60.0, window: float = 0.25) -> None:
    """Wait (at most ``limit`` s) until the daemon's tree uses under 10 % of a core over
    ``window``: a request still in flight when the load stopped finishes first."""
    end = time.monotonic() + limit
    before = tree_cpu_s(d.pid)
    while time.monotonic() < end:
        time.sleep(window)
        now = tree_cpu_s(d.pid)
        if now - before < 0.1 * window:
            return
        before = now
    core.log(f"{d.name} was still busy {limit:.0f} s after the load; measuring anyway")


def check_answer(d: core.Daemon, path: str, jobs: Optional[int]) -> None:
    """One request before any load: 200, JSON, ``status: ok``, the expected job count."""
    resp = requests.get(d.base_url + path, timeout=120)
    data = resp.json()
    if resp.status_code != 200 or data.get("status") not in ("ok", None):
        raise RuntimeError(f"{d.name} {path}: HTTP {resp.status_code} {resp.text[:300]!r}")
    if jobs is not None and len(data.get("jobs", ())) != jobs:
        raise RuntimeError(f"{d.name} {path}: {len(data.get('jobs', ()))} jobs, "
                           f"expected {jobs}")


def idle_cpu_pct(d: core.Daemon, seconds: float) -> float:
    """The daemon tree's CPU use, in % of one core, over ``seconds`` of no requests."""
    before = tree_cpu_s(d.pid)
    time.sleep(seconds)
    return 100.0 * (tree_cpu_s(d.pid) - before) / seconds


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------
def make_daemons(args: argparse.Namespace, tmp: Path) -> list[core.Daemon]:
    """The selected targets, fixed order; crawld and scrapy-do keep every seeded job."""
    made: dict[str, core.Daemon] = {
        "crawld": core.Crawld(args.job_slots, tmp / "crawld"),
        **({BEFORE: CrawldFrom(args.baseline, args.job_slots, tmp / BEFORE)}
           if args.baseline else {}),
        "scrapy-do": core.ScrapyDo(args.job_slots, tmp / "scrapy-do"),
        "scrapyd": core.Scrapyd(args.job_slots, tmp / "scrapyd", 5.0),
        "twisted.web": BareTwisted(args.job_slots, tmp / "twisted.web"),
    }
    names = [n for n in (args.only or made) if n not in args.skip]
    daemons = [made[n] for n in made if n in names]
    for d in daemons:
        d.completed_cap = max(1000, 2 * args.jobs)
    return daemons


def build_project(daemons: list[core.Daemon], tmp: Path) -> core.ProjectArtifacts:
    """bench_core's no-op project as a zip, and as an egg when scrapyd is in the run."""
    proj_dir = core.write_project(tmp / "project")
    project = core.ProjectArtifacts(zip_bytes=core.zip_project(proj_dir))
    for d in daemons:
        if isinstance(d, core.Scrapyd) and d.venv is not None:
            project.egg_bytes = core.build_egg(proj_dir, d.venv / "bin" / "python",
                                               tmp / "egg")
    return project


def start_all(daemons: list[core.Daemon], args: argparse.Namespace, res: core.Results,
              broken: set[str], tmp: Path) -> None:
    """Prepare (venvs), seed, start, deploy the project to and check every target;
    failures are recorded and that target left out."""
    for d in daemons:
        core.guarded(d, res, broken, "prepare", lambda d=d: d.prepare(args.cache_dir),
                     check_alive=False)
    project = build_project([d for d in daemons if d.name not in broken], tmp)
    now = time.time()
    for d in daemons:
        def step(d: core.Daemon = d) -> None:
            t0 = time.perf_counter()
            if isinstance(d, core.Crawld):
                seed_crawld(d.job_interpreter() or sys.executable, d.workdir / "data",
                            args.jobs, now)
            elif isinstance(d, core.ScrapyDo):
                assert d.venv is not None
                seed_scrapy_do(d.venv / "bin" / "python", d.workdir / "projects",
                               args.jobs, now)
            if isinstance(d, (core.Crawld, core.ScrapyDo)):
                core.log(f"seeded {d.name} with {args.jobs} finished jobs in "
                         f"{time.perf_counter() - t0:.1f} s")
            d.start()
            if not isinstance(d, BareTwisted):
                d.deploy(project)  # the state bench_core measures them in: one project
        core.guarded(d, res, broken, "seed/start/deploy", step, check_alive=False)
    for d in daemons:
        def check(d: core.Daemon = d) -> None:
            check_answer(d, STATUS_PATHS[d.name], None)
            for _, names, path in LIST_CASES:
                if d.name in names:
                    page = path.format(last=max(0, args.jobs - PAGE))
                    check_answer(d, page, min(PAGE, args.jobs) if "limit" in page
                                 else args.jobs)
            settle(d)
            res.extra.setdefault(d.name, {})["idle_cpu_pct"] = idle_cpu_pct(d, args.idle)
        core.guarded(d, res, broken, "check answers", check)


def measure(d: core.Daemon, path: str, seconds: float, args: argparse.Namespace,
            client: str) -> dict[str, Any]:
    """One load on ``path``, then wait for the daemon to go idle. Adds ``cpu_us``: the
    daemon process's CPU time per answered request (requests in flight when the load
    stopped are finished first, and counted in the time but not in the requests)."""
    cpu0 = process_cpu_s(d.pid)
    if client == "wrk":
        found = run_wrk(d.port, path, seconds, args.connections, args.wrk_threads,
                        args.timeout)
    else:
        found = run_python_client(d, path, seconds, args.connections)
    settle(d)
    if found.get("requests"):
        found["cpu_us"] = 1e6 * (process_cpu_s(d.pid) - cpu0) / found["requests"]
    return found


def run_rounds(daemons: list[core.Daemon], args: argparse.Namespace, client: str,
               res: core.Results, broken: set[str]) -> None:
    """``args.rounds`` rounds: status on every target, then the listings."""
    latencies: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}

    def record(d: core.Daemon, metric: str, found: dict[str, Any]) -> None:
        res.add(d.name, metric, found["rps"])
        for key, per_metric in (("p50_s", latencies), ("cpu_us", cpu)):
            if found.get(key) is not None:
                per_metric.setdefault(d.name, {}).setdefault(metric, []).append(found[key])

    for rnd in range(args.rounds):
        core.GLOBAL_DEADLINE.check()
        core.log(f"round {rnd + 1}/{args.rounds}")
        slices = max(1, round(args.seconds / args.slice))
        parts: dict[str, list[dict[str, Any]]] = {}
        for k in range(slices):  # the targets take turns, slice by slice
            for d in core.interleaved(daemons, rnd + k):
                def status(d: core.Daemon = d) -> None:
                    parts.setdefault(d.name, []).append(measure(
                        d, STATUS_PATHS[d.name], args.seconds / slices, args, client))
                core.guarded(d, res, broken, f"status (round {rnd + 1})", status)
        for d in daemons:
            if d.name not in broken and parts.get(d.name):
                record(d, "status_rps", combine(parts[d.name]))
        cases = () if args.status_only else (
            LIST_CASES if rnd % 2 == 0 else tuple(reversed(LIST_CASES)))
        for metric, names, path in cases:
            seconds = args.all_seconds if metric == "list_all_rps" else args.list_seconds
            for d in core.interleaved([d for d in daemons if d.name in names], rnd):
                def listing(d: core.Daemon = d, metric: str = metric, path: str = path,
                            seconds: float = seconds) -> None:
                    record(d, metric, measure(d, path.format(last=max(0, args.jobs - PAGE)),
                                              seconds, args, client))
                core.guarded(d, res, broken, f"{metric} (round {rnd + 1})", listing)
        for d in daemons:
            if d.name not in broken:
                core.log(f"  {d.name}: " + ", ".join(
                    f"{m}={v[-1]:,.1f}" for m, v in res.samples.get(d.name, {}).items()))
    for key, found in (("p50_latency_s", latencies), ("cpu_us_per_request", cpu)):
        for name, per_metric in found.items():
            res.extra.setdefault(name, {})[key] = {
                m: statistics.median(v) for m, v in per_metric.items()}


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One load's figures from its slices: the requests over the time they took, CPU
    per request weighted by requests, the median of the slices' p50 latencies."""
    if any(p.get("requests") is None for p in parts):  # the Python client: rates only
        return {"rps": statistics.mean(p["rps"] for p in parts)}
    requests = sum(p["requests"] for p in parts)
    seconds = sum(p["requests"] / p["rps"] for p in parts if p["rps"])
    found: dict[str, Any] = {"rps": requests / seconds if seconds else 0.0,
                             "requests": requests}
    cpu = [(p["cpu_us"], p["requests"]) for p in parts if p.get("cpu_us") is not None]
    if cpu:
        found["cpu_us"] = sum(c * n for c, n in cpu) / sum(n for _, n in cpu)
    p50 = [p["p50_s"] for p in parts if p.get("p50_s") is not None]
    if p50:
        found["p50_s"] = statistics.median(p50)
    return found


def ratios(res: core.Results) -> dict[str, Optional[float]]:
    """The ratios the issue's targets are stated in (None where a side is missing)."""
    def div(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return a / b if a and b else None
    crawld = res.median("crawld", "status_rps")
    peers = [v for v in (res.median("scrapy-do", "status_rps"),
                         res.median("scrapyd", "status_rps")) if v]
    scrapy_do_all = res.median("scrapy-do", "list_all_rps")
    return {
        "status_vs_best_peer": div(crawld, max(peers) if peers else None),
        "status_vs_scrapy_do": div(crawld, res.median("scrapy-do", "status_rps")),
        "status_vs_scrapyd": div(crawld, res.median("scrapyd", "status_rps")),
        "status_vs_twisted_web": div(crawld, res.median("twisted.web", "status_rps")),
        "list_page_vs_scrapy_do_all": div(res.median("crawld", "list_page_rps"),
                                          scrapy_do_all),
        "list_last_page_vs_scrapy_do_all": div(res.median("crawld", "list_last_page_rps"),
                                               scrapy_do_all),
        "list_all_vs_scrapy_do_all": div(res.median("crawld", "list_all_rps"),
                                         scrapy_do_all),
        **{f"{m.removesuffix('_rps')}_vs_{BEFORE}": div(res.median("crawld", m),
                                                       res.median(BEFORE, m))
           for m in METRICS if res.median(BEFORE, m)},
    }


def render(res: core.Results, names: list[str], ratio: dict[str, Optional[float]],
           args: argparse.Namespace) -> str:
    """The medians (req/s) per metric and target, then the ratios and the targets."""
    rows = [["metric [req/s]", *names]]
    for metric in METRICS:
        rows.append([metric, *[core.fmt(res.median(n, metric), "req/s") for n in names]])
    for metric in METRICS:
        cells = [res.extra.get(n, {}).get("cpu_us_per_request", {}).get(metric)
                 for n in names]
        if any(c is not None for c in cells):
            rows.append([f"{metric.removesuffix('_rps')} [CPU us/req]",
                         *["n/a" if c is None else f"{c:,.0f}" for c in cells]])
    rows.append(["idle CPU [% core]", *[
        f"{res.extra.get(n, {}).get('idle_cpu_pct', float('nan')):.1f}" for n in names]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    goals = {"status_vs_best_peer": 1.5, "list_page_vs_scrapy_do_all": 5.0}
    lines.append("")
    for key, value in ratio.items():
        text = "n/a" if value is None else f"{value:.2f}x"
        goal = goals.get(key)
        if goal is not None and value is not None:
            text += f"   (target >= {goal:g}x: {'met' if value >= goal else 'NOT met'})"
        lines.append(f"{key:<34} {text}")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    names = ("crawld", BEFORE, "scrapy-do", "scrapyd", "twisted.web")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds of each status load")
    p.add_argument("--slice", type=float, default=1.0,
                   help="a status load is made of slices this long, the targets taking "
                        "turns slice by slice")
    p.add_argument("--list-seconds", type=float, default=10.0,
                   help="seconds of each load on a page of jobs")
    p.add_argument("--all-seconds", type=float, default=30.0,
                   help="seconds of each load on a whole list (scrapy-do's take seconds)")
    p.add_argument("--jobs", type=int, default=10000,
                   help="finished jobs seeded into crawld's and scrapy-do's store")
    p.add_argument("--status-only", action="store_true",
                   help="measure status only, no listings (the stores are seeded anyway)")
    p.add_argument("--connections", type=int, default=4, help="keep-alive connections")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk -t")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="a request slower than this counts as failed (wrk --timeout)")
    p.add_argument("--idle", type=float, default=5.0,
                   help="seconds over which each target's idle CPU is sampled")
    p.add_argument("--wrk", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator: wrk (installed with apt-get when root and "
                        "missing), or the Python keep-alive client; auto: wrk if it can "
                        "be had")
    p.add_argument("--only", action="append", choices=names, help="only this target")
    p.add_argument("--skip", action="append", choices=names, default=[],
                   help="leave this target out")
    p.add_argument("--baseline", metavar="PYTHON",
                   help=f"also run crawld installed for this interpreter (e.g. a venv of a "
                        f"checkout before a change) as '{BEFORE}', in the same rounds")
    p.add_argument("--job-slots", type=int, default=4, help="given to every daemon")
    p.add_argument("--cache-dir", type=Path, default=BENCH_DIR / ".venvs",
                   help="where the scrapy-do / scrapyd venvs are kept")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results-hotpath.json")
    p.add_argument("--deadline", type=float, default=1200.0,
                   help="global time limit of the run, seconds")
    p.add_argument("--keep-tmp", action="store_true", help="keep the daemons' work dirs")
    return p.parse_args(argv)


def run(args: argparse.Namespace, tmp: Path) -> bool:
    """The whole benchmark in ``tmp``: True when nothing failed."""
    client = ensure_wrk(args.wrk)
    daemons = make_daemons(args, tmp)
    res, broken = core.Results(), set()
    start_all(daemons, args, res, broken, tmp)
    try:
        run_rounds(daemons, args, client, res, broken)
    except core.BenchTimeout as exc:
        res.errors.setdefault("run", []).append(f"{exc}; results are partial")
    for d in daemons:
        res.extra.setdefault(d.name, {})["versions"] = d.versions
    core.stop_all()
    names = [d.name for d in daemons]
    ratio = ratios(res)
    table = render(res, names, ratio, args)
    wrk_version = (subprocess.run(["wrk", "--version"], capture_output=True, text=True)
                   .stdout.splitlines()[:1] if client == "wrk" else [])
    print(f"\ncrawld bench (hot path): rounds={args.rounds} client={client} "
          f"connections={args.connections}; per load: status {args.seconds:g} s (in "
          f"{args.slice:g} s slices), pages {args.list_seconds:g} s, whole lists "
          f"{args.all_seconds:g} s; {args.jobs} finished jobs seeded\n")
    print(table)
    for name, errs in res.errors.items():
        print(f"\n{name} errors:\n  " + "\n  ".join(errs))
    core.write_report(args.out, {
        "benchmark": "hotpath",
        "machine": core.machine_info(),
        "client": client, "wrk": wrk_version[0] if wrk_version else None,
        "settings": {k: (str(v) if isinstance(v, Path) else v)
                     for k, v in vars(args).items()},
        "metrics": {m: {n: {"median": res.median(n, m),
                            "samples": res.samples.get(n, {}).get(m, [])}
                        for n in names if res.samples.get(n, {}).get(m)}
                    for m in METRICS},
        "ratios": ratio, "daemons": res.extra, "errors": res.errors, "table": table,
    })
    return not res.errors


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    return core.bounded_run(args.deadline, "crawld-hotpath-", args.keep_tmp,
                            lambda tmp: run(args, tmp))


if __name__ == "__main__":
    sys.exit(main())
