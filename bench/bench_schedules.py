#!/usr/bin/env python3
"""Many schedules: crawld vs scrapy-do 0.5.0, holding the same 100,000 recurring jobs.

What it does, in one run:

1. starts crawld and scrapy-do (each on a free loopback port, fresh data dirs) and
   pushes the same one-spider project to both;
2. creates ``--schedules`` recurring jobs in each, **through the API**
   (``POST /schedule-job.json``, ``--clients`` connections at a time), crawld first,
   then scrapy-do; reports the creation rate;
3. restarts both (SIGTERM, start again) and times the start-up: from spawning the
   process to the first answer from ``status.json``, with those rows in the database;
4. waits ``--settle`` seconds, then samples the CPU time of both daemons over the same
   ``--idle-seconds`` window, side by side, and their RSS (crawld's zygote, the process
   that preloads Scrapy for jobs, is reported separately);
5. crawld only: creates ``--due`` more schedules (cron, UTC) that all fall due in the
   same second, 30 s ahead, waits for them to fire and reads each child's ``created`` time (the
   moment its firing's transaction made it PENDING) from ``list-jobs.json``: lateness
   is ``created - due``; reports p50, p99 and max.

The schedules never fire during the idle window: each is ``every <weekday> at HH:MM``
on a weekday that is neither today nor tomorrow (UTC), which both daemons accept.

Usage::

    python bench/bench_schedules.py [--schedules 100000] [--idle-seconds 60] \\
        [--due 1000] [--clients 8] [--only crawld|scrapy-do] [--out FILE]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402  (shares the daemons and the project)

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
LATE_PROJECT = "benchlate"
MAX_SCRAPY_DO_CREATE_S = 3600.0


def quiet_specs(count: int, today: dt.date) -> list[str]:
    """``count`` weekly specs on days other than today and tomorrow (so none fires soon)."""
    skip = {today.weekday(), (today.weekday() + 1) % 7}
    days = [d for i, d in enumerate(DAYS) if i not in skip]
    slots = [(d, h, m) for d in days for h in range(24) for m in range(60)]
    return [f"every {d} at {h:02d}:{m:02d}" for d, h, m in
            (slots[i % len(slots)] for i in range(count))]


def create_schedules(d: core.Daemon, project: str, specs: list[str], clients: int,
                     extra: Optional[dict[str, str]] = None,
                     budget_s: float = MAX_SCRAPY_DO_CREATE_S) -> float:
    """POST one schedule-job per spec, ``clients`` at a time; returns schedules/s."""
    local = threading.local()
    deadline = time.monotonic() + budget_s
    done = [0]
    lock = threading.Lock()

    def one(spec: str) -> None:
        if time.monotonic() > deadline:
            raise core.BenchTimeout(f"{d.name}: creating schedules took over {budget_s:.0f} s")
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        data = {"project": project, "spider": core.SPIDER, "when": spec, **(extra or {})}
        resp = session.post(d.base_url + "/schedule-job.json", data=data, timeout=120)
        if resp.status_code != 200 or resp.json().get("status") != "ok":
            raise RuntimeError(f"{d.name}: schedule-job {spec!r} -> {resp.status_code} "
                               f"{resp.text[:300]!r}")
        with lock:
            done[0] += 1
            if done[0] % 10000 == 0:
                core.log(f"{d.name}: {done[0]} schedules created")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(one, spec) for spec in specs]:
            future.result()
    return len(specs) / (time.perf_counter() - t0)


def restart(d: core.Daemon) -> float:
    """Stop the daemon (SIGTERM) and start it again; seconds from spawn to first answer."""
    assert d.proc is not None
    core.stop_process(d.proc)
    core.STARTED.remove(d.proc)
    port = d.port
    core_free_port, core.free_port = core.free_port, lambda: port  # same port again
    try:
        t0 = time.perf_counter()
        d.start()
        return time.perf_counter() - t0
    finally:
        core.free_port = core_free_port


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def zygote_pids(d: core.Daemon) -> list[int]:
    """crawld's live descendants (its zygote), if any."""
    try:
        return [p.pid for p in psutil.Process(d.pid).children(recursive=True)]
    except psutil.Error:
        return []


def measure_idle(daemons: list[core.Daemon], seconds: float) -> dict[str, dict[str, float]]:
    """CPU use of each daemon (and of its helpers) over the same window; RSS at its end."""
    helpers = {d.name: zygote_pids(d) for d in daemons}
    start = {d.name: (cpu_seconds(d.pid), sum(cpu_seconds(p) for p in helpers[d.name]))
             for d in daemons}
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:  # the window itself is the measurement
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    elapsed = time.monotonic() - t0
    out: dict[str, dict[str, float]] = {}
    for d in daemons:
        d.check_alive()
        own = cpu_seconds(d.pid) - start[d.name][0]
        helper = sum(cpu_seconds(p) for p in helpers[d.name]) - start[d.name][1]
        out[d.name] = {
            "idle_cpu_percent": 100.0 * own / elapsed,
            "idle_helper_cpu_percent": 100.0 * helper / elapsed,
            "rss_mib": d.rss_mib(),
            "rss_tree_mib": d.tree_rss_mib(),
            "window_s": elapsed,
        }
    return out


def measure_lateness(d: core.Crawld, count: int, clients: int,
                     lead_s: float = 30.0) -> dict[str, float]:
    """``count`` cron schedules due in the same second; lateness of their firings."""
    now = dt.datetime.now(dt.timezone.utc)
    due = (now + dt.timedelta(seconds=lead_s)).replace(microsecond=0)
    spec = f"cron:{due.second} {due.minute} {due.hour} * * *"  # 6 fields: seconds first
    core.log(f"crawld: {count} schedules '{spec}' (UTC) due at {due.isoformat()}")
    create_schedules(d, LATE_PROJECT, [spec] * count, clients, {"tz": "UTC"})
    wait = (due - dt.datetime.now(dt.timezone.utc)).total_seconds()
    core.log(f"crawld: waiting {wait:.0f} s for them to fire")

    def children() -> list[dict[str, Any]]:
        found = []
        for status in ("ACTIVE", "COMPLETED"):
            jobs = d._json("GET", "/list-jobs.json",
                           params={"status": status, "project": LATE_PROJECT})["jobs"]
            found += [j for j in jobs if j.get("parent")]
        return found

    def all_fired() -> bool:
        return dt.datetime.now(dt.timezone.utc) > due and len(children()) >= count

    core.wait_until(all_fired, wait + 120, f"{count} firings", period=1.0)
    kids = children()
    late = sorted(dt.datetime.fromisoformat(j["created"]).timestamp() - due.timestamp()
                  for j in kids)
    if len(kids) != count or len({j["parent"] for j in kids}) != count:
        raise RuntimeError(f"expected one child per schedule, got {len(kids)} children of "
                           f"{len({j['parent'] for j in kids})} schedules")
    return {
        "firings": len(late),
        "lateness_p50_s": statistics.median(late),
        "lateness_p99_s": late[max(0, int(round(0.99 * len(late))) - 1)],
        "lateness_max_s": late[-1],
        "lateness_min_s": late[0],
    }


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schedules", type=int, default=100_000)
    p.add_argument("--idle-seconds", type=float, default=60.0)
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds to wait after the restart before the idle window")
    p.add_argument("--due", type=int, default=1000,
                   help="crawld schedules due in the same second (0: skip lateness)")
    p.add_argument("--clients", type=int, default=8, help="concurrent API connections")
    p.add_argument("--only", choices=("crawld", "scrapy-do"))
    p.add_argument("--cache-dir", type=Path, default=core.BENCH_DIR / ".venvs")
    p.add_argument("--out", type=Path, default=core.BENCH_DIR / "results-schedules.json")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, core._on_signal)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()},
                               "machine": core.machine_info(), "daemons": {}}
    with tempfile.TemporaryDirectory(prefix="bench-schedules-") as tmp:
        root = Path(tmp)
        proj = core.write_project(root / "src")
        artifacts = core.ProjectArtifacts(core.zip_project(proj))
        daemons: list[core.Daemon] = []
        if args.only in (None, "crawld"):
            daemons.append(core.Crawld(2, root / "crawld"))
        if args.only in (None, "scrapy-do"):
            daemons.append(core.ScrapyDo(2, root / "scrapy-do"))
        try:
            specs = quiet_specs(args.schedules, dt.datetime.now(dt.timezone.utc).date())
            for d in daemons:
                d.prepare(args.cache_dir)
                d.start()
                d.deploy(artifacts)
                core.log(f"{d.name}: creating {len(specs)} schedules through the API")
                rate = create_schedules(d, core.PROJECT, specs, args.clients)
                core.log(f"{d.name}: {rate:.0f} schedules/s")
                results["daemons"][d.name] = {"versions": d.versions,
                                              "create_per_s": rate,
                                              "rss_after_create_mib": d.rss_mib()}
            for d in daemons:
                startup = restart(d)
                core.log(f"{d.name}: start-up with {len(specs)} schedules: {startup:.2f} s")
                results["daemons"][d.name]["startup_s"] = startup
            core.log(f"settling {args.settle:.0f} s, then {args.idle_seconds:.0f} s idle window")
            time.sleep(args.settle)  # not a measurement: let start-up work finish
            idle = measure_idle(daemons, args.idle_seconds)
            for name, figures in idle.items():
                results["daemons"][name].update(figures)
                core.log(f"{name}: idle CPU {figures['idle_cpu_percent']:.2f}% "
                         f"(helpers {figures['idle_helper_cpu_percent']:.2f}%), "
                         f"RSS {figures['rss_mib']:.0f} MiB")
            crawld = next((d for d in daemons if isinstance(d, core.Crawld)), None)
            if crawld is not None and args.due:
                late_src = core.write_project(root / "late")
                late_src = late_src.rename(late_src.parent / LATE_PROJECT)
                cfg = late_src / "scrapy.cfg"  # [deploy] project names the project
                cfg.write_text(cfg.read_text().replace(f"project = {core.PROJECT}",
                                                       f"project = {LATE_PROJECT}"))
                files = {"archive": (f"{LATE_PROJECT}.zip", core.zip_project(late_src),
                                     "application/zip")}
                crawld._json("POST", "/push-project.json", files=files)
                late = measure_lateness(crawld, args.due, args.clients)
                results["daemons"]["crawld"].update(late)
                core.log(f"crawld: lateness of {args.due} firings: p50 "
                         f"{late['lateness_p50_s']:.3f} s, p99 {late['lateness_p99_s']:.3f} s, "
                         f"max {late['lateness_max_s']:.3f} s")
        finally:
            core.stop_all()
    print(render(results))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    core.log(f"results written to {args.out}")
    return 0


def render(results: dict[str, Any]) -> str:
    """A Markdown table of the figures, with ratios against crawld."""
    d = results["daemons"]
    rows = [("schedules created per s", "create_per_s", "{:.0f}"),
            ("start-up with the rows (s)", "startup_s", "{:.2f}"),
            ("idle CPU, daemon (% of a core)", "idle_cpu_percent", "{:.2f}"),
            ("idle CPU, helper processes (%)", "idle_helper_cpu_percent", "{:.2f}"),
            ("RSS, daemon (MiB)", "rss_mib", "{:.0f}"),
            ("RSS, with helpers (MiB)", "rss_tree_mib", "{:.0f}")]
    names = list(d)
    out = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, key, fmt in rows:
        cells = [fmt.format(d[n][key]) if key in d[n] else "-" for n in names]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    if "lateness_p50_s" in d.get("crawld", {}):
        c = d["crawld"]
        out.append("")
        out.append(f"crawld, {c['firings']} firings due in the same second: lateness p50 "
                   f"{c['lateness_p50_s']:.3f} s, p99 {c['lateness_p99_s']:.3f} s, "
                   f"max {c['lateness_max_s']:.3f} s")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
