#!/usr/bin/env python3
"""The dashboard: time to the first jobs table with 10,000 jobs in the store, and the
page's weight.

A data directory is filled with ``--jobs`` finished jobs (10,000 by default, over 3
projects and 4 spiders, spread over the last 30 hours) and ``--schedules`` schedules,
written with crawld's own Database before the daemon starts (``completed-cap`` is
raised so that retention keeps them). Debian's Chromium (Playwright) then opens
``/#/jobs?tab=completed`` and ``/#/overview``:

* **cold**: a new browser context each time (empty cache): the navigation's start to
  the first row of the completed jobs table (``performance.now()`` when it is there),
  and to the overview's figures and chart;
* **warm**: the same page reloaded in its context (the files revalidated: 304s).

Also the page's weight: the bytes of every file the page loads (HTML, CSS, JS
modules), as they are and gzipped as the daemon sends them, and the bytes the browser
received for a cold load (Resource Timing ``transferSize``: headers included).

Usage::

    python bench/bench_dashboard.py [--runs 10] [--jobs 10000] [--out bench/results-dashboard.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from crawld.database import Database
from crawld.http.routes_dashboard import dashboard_files
from crawld.model import Actor, Job, JobStatus

CHROMIUM = os.environ.get("CRAWLD_TEST_CHROMIUM", "/usr/lib/chromium/chromium")
OUTCOMES = [JobStatus.SUCCESSFUL] * 8 + [JobStatus.FAILED, JobStatus.CANCELED]


def fill(data_dir: Path, jobs: int, schedules: int) -> None:
    """``jobs`` finished jobs and ``schedules`` schedules, straight into the database."""
    data_dir.mkdir(parents=True)
    db = Database(str(data_dir / "crawld.db"))
    now = time.time()
    with db._transaction():
        for i in range(jobs):
            finished = now - 30 * 3600 + i * (30 * 3600 / jobs)
            status = OUTCOMES[i % len(OUTCOMES)]
            db.add_job(Job(
                id=str(uuid.uuid4()), status=status, actor=Actor.USER, schedule="now",
                project=("shop", "news", "books")[i % 3],
                spider=("list", "detail", "sitemap", "api")[i % 4],
                description=f"crawl {i} of the catalogue", created=finished - 40,
                updated=finished, started=finished - 30, finished=finished, exit_code=0,
                reason="exit code 1" if status is JobStatus.FAILED else None,
                stats=json.dumps({"item_scraped_count": i % 500,
                                  "response_received_count": i % 700})))
        for i in range(schedules):
            db.add_job(Job(
                id=str(uuid.uuid4()), status=JobStatus.SCHEDULED, actor=Actor.USER,
                schedule="every day at 03:00", project="shop", spider="list",
                description=f"schedule {i}", created=now, updated=now,
                next_fire=now + 86400 * 365))
    db.close()


def start(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    config = data_dir.parent / "crawld.ini"
    config.write_text("[crawld]\ncompleted-cap = 1000000\ncompleted-max-age-days = 30\n")
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "crawld", "serve", "--config", str(config),
                             "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
                            stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.findall(r"listening on (http://[\d.:]+)", log.read_text())
        if found:
            return proc, found[0]
        if proc.poll() is not None:
            raise SystemExit(f"crawld exited:\n{log.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("crawld did not listen within 60 s")


JOBS_READY = "#jobs-COMPLETED tbody tr[data-id]"
OVERVIEW_READY = "#history svg rect.bar"
#: Put in every page before its own scripts: notes performance.now() when the view's
#: first content is in the document (a MutationObserver: no polling, no round trip to
#: Playwright in the figure).
WATCH = """
new MutationObserver((_, observer) => {
  if (!window.jobsDrawn && document.querySelector('%s')) window.jobsDrawn = performance.now();
  if (!window.overviewDrawn && document.querySelector('%s') &&
      document.querySelector('#fig-uptime')) window.overviewDrawn = performance.now();
}).observe(document, {childList: true, subtree: true});
""" % (JOBS_READY, OVERVIEW_READY)


def measure(browser: Any, url: str, runs: int) -> dict[str, list[float]]:
    """Milliseconds from the navigation's start to the view drawn, cold and warm."""
    found: dict[str, list[float]] = {"jobs_cold_ms": [], "jobs_warm_ms": [],
                                     "overview_cold_ms": [], "transfer_cold_bytes": [],
                                     "modules_loaded_ms": [], "whoami_done_ms": [],
                                     "list_jobs_done_ms": []}
    for _ in range(runs):
        context = browser.new_context()
        context.add_init_script(WATCH)
        page = context.new_page()
        page.goto(url + "/#/jobs?tab=completed")
        page.wait_for_selector(JOBS_READY, timeout=60_000)
        found["jobs_cold_ms"].append(page.evaluate("window.jobsDrawn"))
        # (every module was loaded before app.js ran: they are static imports)
        ends = page.evaluate("""Object.fromEntries(performance.getEntriesByType('resource')
            .map(e => [e.name.split('/').pop().split('?')[0], e.responseEnd]))""")
        found["modules_loaded_ms"].append(max(v for k, v in ends.items() if k.endswith(".js")))
        found["whoami_done_ms"].append(ends["whoami.json"])
        found["list_jobs_done_ms"].append(ends["list-jobs.json"])
        found["transfer_cold_bytes"].append(page.evaluate(
            """performance.getEntriesByType('navigation').concat(
                   performance.getEntriesByType('resource'))
               .filter(e => !/\\.json|events|get-log/.test(e.name))
               .reduce((n, e) => n + e.transferSize, 0)"""))
        page.reload()
        page.wait_for_selector(JOBS_READY, timeout=60_000)
        found["jobs_warm_ms"].append(page.evaluate("window.jobsDrawn"))
        context.close()
        context = browser.new_context()
        context.add_init_script(WATCH)
        page = context.new_page()
        page.goto(url + "/#/overview")
        page.wait_for_function("() => window.overviewDrawn", timeout=60_000)
        found["overview_cold_ms"].append(page.evaluate("window.overviewDrawn"))
        context.close()
    return found


def weight() -> dict[str, int]:
    """Bytes of the files the page loads: as they are and gzipped (as sent)."""
    files = dashboard_files()
    loaded = [f for name, f in files.items() if not name.endswith(".svg")]
    return {"files": len(loaded), "bytes": sum(len(f.body) for f in loaded),
            "gzip_bytes": sum(len(f.gzipped) for f in loaded),
            "html_css_js": {name: len(f.body) for name, f in sorted(files.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--schedules", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results-dashboard.json")))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    tmp = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    proc = None
    try:
        filled = time.monotonic()
        fill(tmp / "data", args.jobs, args.schedules)
        filled = time.monotonic() - filled
        proc, url = start(tmp / "data", tmp / "daemon.log")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM)
            measure(browser, url, 1)  # the daemon's and the browser's first time: not kept
            samples = measure(browser, url, args.runs)
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    worst = {k: max(v) for k, v in samples.items()}
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "load": os.getloadavg()},
        "settings": {"runs": args.runs, "jobs": args.jobs, "schedules": args.schedules,
                     "fill_s": round(filled, 1)},
        "median": medians, "max": worst, "samples": samples, "weight": weight(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    w = result["weight"]
    print(f"{args.jobs} jobs, {args.runs} runs (load {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    for key in ("modules_loaded_ms", "whoami_done_ms", "list_jobs_done_ms", "jobs_cold_ms",
                "jobs_warm_ms", "overview_cold_ms"):
        print(f"  {key:18} median {medians[key]:7.0f}   max {worst[key]:7.0f}")
    print(f"  page weight: {w['files']} files, {w['bytes']} bytes, {w['gzip_bytes']} gzipped; "
          f"cold load received {medians['transfer_cold_bytes']:.0f} bytes")


if __name__ == "__main__":
    main()
