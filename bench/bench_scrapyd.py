#!/usr/bin/env python3
"""crawld through its scrapyd listener against scrapyd 1.6.0 itself, side by side
(issue 13).

Both daemons are driven by the very same scrapyd client code (bench_core's ``Scrapyd``
methods): the same egg through ``addversion.json``, jobs through ``schedule.json``,
completion seen in ``listjobs.json``. crawld runs with ``--scrapyd-listen`` (its native
API on another port, unused); scrapyd 1.6.0 from its own venv (made by bench_core,
default ``poll_interval`` 5 s). Repetitions interleave the daemons; medians reported.

Measured per daemon:

* ``one_job_s``        - schedule.json of the no-op spider until listjobs.json lists
                         it finished (polled every 20 ms);
* ``burst_s``          - N such jobs back to back until all are finished;
* ``burst_daemon_cpu_s`` - CPU of the daemon process alone per burst;
* ``daemonstatus_rps`` - requests/s on ``daemonstatus.json``;
* ``status_rps``       - requests/s on ``status.json?job=<a finished job>``;
* ``listjobs_rps``     - requests/s on ``listjobs.json?project=...`` (the finished
                         jobs of the run so far, the same number on both);
* ``*_cpu_us``         - the daemon process's CPU per request during each of those
                         loads (microseconds; steadier than req/s on a shared machine,
                         where the client threads compete with the daemons for cores);
* ``rss_idle_mib`` / ``rss_after_burst_mib`` - the daemon's RSS.

Usage::

    python bench/bench_scrapyd.py [--runs 3] [--burst 50] [--job-slots 8]
        [--out bench/results-scrapyd.json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402  (daemon classes, venvs, deadlines, clean-up)

CRAWLD = "crawld-scrapyd"
METRICS: dict[str, tuple[str, bool]] = {
    "one_job_s": ("s", False),
    "burst_s": ("s", False),
    "burst_daemon_cpu_s": ("s", False),
    "daemonstatus_rps": ("req/s", True),
    "status_rps": ("req/s", True),
    "listjobs_rps": ("req/s", True),
    "daemonstatus_cpu_us": ("us", False),
    "status_cpu_us": ("us", False),
    "listjobs_cpu_us": ("us", False),
    "rss_idle_mib": ("MiB", False),
    "rss_after_burst_mib": ("MiB", False),
}


class CrawldScrapyd(core.Crawld):
    """crawld (this interpreter's) spoken to through its scrapyd listener: ``port`` is
    the listener's, so every scrapyd request and the req/s loads go there."""

    name = CRAWLD

    def ready_path(self) -> str:
        return "/daemonstatus.json"

    def command(self) -> list[str]:
        native = core.free_port()
        while native == self.port:
            native = core.free_port()
        cmd = super().command()
        cmd[cmd.index("--listen") + 1] = f"127.0.0.1:{native}"
        return cmd + ["--scrapyd-listen", f"127.0.0.1:{self.port}"]

    # the scrapyd client, exactly as bench_core drives scrapyd
    deploy = core.Scrapyd.deploy
    schedule = core.Scrapyd.schedule
    _finished = core.Scrapyd._finished
    job_done = core.Scrapyd.job_done
    done_ids = core.Scrapyd.done_ids
    completed_count = core.Scrapyd.completed_count


def rps_paths(last_job: str) -> tuple[tuple[str, str], ...]:
    """(metric, path) of each req/s load; status.json asks for ``last_job``."""
    return (("daemonstatus_rps", "/daemonstatus.json"),
            ("status_rps", f"/status.json?job={last_job}"),
            ("listjobs_rps", f"/listjobs.json?project={core.PROJECT}"))


def repetition(daemons: list[core.Daemon], res: core.Results, broken: set[str],
               args: argparse.Namespace, rep: int) -> None:
    """One job, a burst, then the req/s loads, each across both daemons."""
    tag = f"(rep {rep + 1})"
    last: dict[str, str] = {}
    for d in core.interleaved(daemons, rep):
        def one_job(d: core.Daemon = d) -> None:
            time.sleep(core.phase_gap(rep, d.tick_period))
            t0 = time.perf_counter()
            job_id = d.schedule()
            core.wait_until(lambda: d.job_done(job_id), core.ONE_JOB_TIMEOUT_S,
                            f"{d.name} job {job_id}")
            res.add(d.name, "one_job_s", time.perf_counter() - t0)
            last[d.name] = job_id
        core.guarded(d, res, broken, f"one job {tag}", one_job)
    for d in core.interleaved(daemons, rep):
        def burst(d: core.Daemon = d) -> None:
            own0, _ = d.cpu_s()
            res.add(d.name, "burst_s", core.measure_burst(d, args.burst))
            own1, _ = d.cpu_s()
            res.add(d.name, "burst_daemon_cpu_s", own1 - own0)
            res.add(d.name, "rss_after_burst_mib", d.rss_mib())
        core.guarded(d, res, broken, f"burst {tag}", burst)
    for d in core.interleaved(daemons, rep):
        for metric, path in rps_paths(last.get(d.name, "none")):
            def rps(d: core.Daemon = d, metric: str = metric, path: str = path) -> None:
                rate, cpu = core.measure_load(d, path, args.rps_requests, args.rps_threads,
                                              args.rps_seconds)
                res.add(d.name, metric, rate)
                res.add(d.name, metric.replace("_rps", "_cpu_us"), cpu * 1e6)
            core.guarded(d, res, broken, f"{metric} {tag}", rps)
    for d in daemons:
        if d.name not in broken:
            core.log(f"  {d.name}: " + ", ".join(
                f"{m}={v[-1]:.3f}" for m, v in res.samples.get(d.name, {}).items()))


def summarize(res: core.Results, names: list[str]) -> dict[str, Any]:
    """Medians per metric and crawld's ratio to scrapyd (> 1: crawld better)."""
    out: dict[str, Any] = {}
    for metric, (unit, higher) in METRICS.items():
        row: dict[str, Any] = {"unit": unit, "higher_is_better": higher}
        for name in names:
            row[name] = {"median": res.median(name, metric),
                         "samples": res.samples.get(name, {}).get(metric, [])}
        ours, theirs = res.median(CRAWLD, metric), res.median("scrapyd", metric)
        row["ratio_vs_scrapyd"] = (None if not ours or not theirs else
                                   ours / theirs if higher else theirs / ours)
        out[metric] = row
    return out


def table(summary: dict[str, Any], names: list[str]) -> str:
    """The medians and the ratio as a plain-text table."""
    rows = [["metric", *names, "crawld vs scrapyd"]]
    for metric, row in summary.items():
        ratio = row["ratio_vs_scrapyd"]
        rows.append([f"{metric} [{row['unit']}]",
                     *[core.fmt(row[n]["median"], row["unit"]) for n in names],
                     "n/a" if ratio is None else f"{ratio:.2f}x"])
    return core.align(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="repetitions (medians reported)")
    p.add_argument("--out", type=Path, default=core.BENCH_DIR / "results-scrapyd.json")
    p.add_argument("--cache-dir", type=Path, default=core.BENCH_DIR / ".venvs",
                   help="where the scrapyd venv is kept")
    p.add_argument("--job-slots", type=int, default=8,
                   help="job slots of both daemons (scrapyd: max_proc)")
    p.add_argument("--burst", type=int, default=50, help="jobs per burst")
    p.add_argument("--rps-requests", type=int, default=2000)
    p.add_argument("--rps-threads", type=int, default=4)
    p.add_argument("--rps-seconds", type=float, default=10.0)
    p.add_argument("--scrapyd-poll-interval", type=float, default=5.0,
                   help="scrapyd poll_interval (5.0 is scrapyd's default)")
    p.add_argument("--deadline", type=float, default=1800.0,
                   help="global time limit of the run, seconds")
    p.add_argument("--keep-tmp", action="store_true")
    return p.parse_args(argv)


def run(args: argparse.Namespace, tmp: Path) -> bool:
    scrapyd = core.Scrapyd(args.job_slots, tmp / "scrapyd", args.scrapyd_poll_interval)
    crawld = CrawldScrapyd(args.job_slots, tmp / "crawld")
    daemons: list[core.Daemon] = [crawld, scrapyd]
    for d in daemons:
        d.prepare(args.cache_dir)
    proj_dir = core.write_project(tmp / "project")
    assert scrapyd.venv is not None
    project = core.ProjectArtifacts(
        zip_bytes=b"", egg_bytes=core.build_egg(proj_dir, scrapyd.venv / "bin" / "python",
                                                tmp / "egg"))
    res = core.Results()
    broken: set[str] = set()
    core.start_and_deploy(daemons, res, broken, project)
    for rep in range(args.runs):
        core.GLOBAL_DEADLINE.check()
        core.log(f"repetition {rep + 1}/{args.runs}")
        repetition(daemons, res, broken, args, rep)
    names = [d.name for d in daemons]
    summary = summarize(res, names)
    text = table(summary, names)
    print(f"\ncrawld through its scrapyd listener vs scrapyd 1.6.0: runs={args.runs} "
          f"burst={args.burst} job_slots={args.job_slots} scrapyd poll_interval="
          f"{args.scrapyd_poll_interval}\n")
    print(text)
    for name, errs in res.errors.items():
        print(f"\n{name} errors:\n  " + "\n  ".join(errs))
    core.write_report(args.out, {
        "benchmark": "scrapyd",
        "machine": core.machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "daemons": {d.name: {"versions": d.versions, "job_slots": d.job_slots}
                    for d in daemons},
        "metrics": summary,
        "errors": res.errors,
        "table": text,
    })
    return not res.errors


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return core.bounded_run(args.deadline, "crawld-bench-scrapyd-", args.keep_tmp,
                            lambda tmp: run(args, tmp))


if __name__ == "__main__":
    sys.exit(main())
