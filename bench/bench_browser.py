#!/usr/bin/env python3
"""Browser jobs: crawld vs the same Playwright script run by hand (the floor).

The work, both ways: launch Debian's Chromium with crawld's flags and a fresh profile,
open a page served on 127.0.0.1 by this script, take a screenshot, save it, close.

* by hand: ``python hand.py`` (Playwright, nothing else), timed from spawning the
  process to the screenshot file's mtime (first screenshot) and to its exit (done);
* through crawld: ``POST /schedule-job.json?script=shot``, timed from the request to
  the artifact's ``modified`` time (job-files.json) and to the job's ``finished``
  time (list-jobs.json), both stamped by the daemon to the millisecond.

Single jobs are timed from those timestamps, not by polling: on a 2-core machine a
client polling every few ms takes CPU that Chromium needs, and would slow the very
thing measured (it did: 15 % instead of 8 %). Batches are timed by the client, which
polls every 20 ms for the end of its jobs.

Then 20 jobs one after another, and 4 at the same time (4 job slots), both ways.
Repetitions alternate between the two so that machine noise hits both; medians and
ratios (crawld / by hand) are printed.

Usage::

    python bench/bench_browser.py [--runs 10] [--out bench/results-browser.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable


sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core as core  # noqa: E402

PAGE = (b"<html><head><title>bench</title></head><body><h1>Benchmark page</h1>"
        + b"<p>" + b"lorem ipsum " * 200 + b"</p></body></html>")
POLL_S = 0.02  # for the end of batch jobs; single jobs are timed from timestamps

SHOT_SCRIPT = '''
async def run(page, job):
    await page.goto(job.argument["url"])
    job.save("shot.png", await page.screenshot())
'''

HAND_SCRIPT = '''
"""The floor: the same work as the crawld job, with Playwright and nothing else."""
import asyncio, os, sys, tempfile
from playwright.async_api import async_playwright

FLAGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"] + (["--no-sandbox"] if os.geteuid() == 0 else [])

async def main(url, out, executable):
    with tempfile.TemporaryDirectory(prefix="hand-") as tmp:
        async with async_playwright() as p:
            context = await p.chromium.launch_persistent_context(
                os.path.join(tmp, "profile"), executable_path=executable, headless=True,
                args=FLAGS)
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(url)
            data = await page.screenshot()
            with open(out + ".part", "wb") as f:
                f.write(data)
            os.replace(out + ".part", out)
            await context.close()

asyncio.run(main(*sys.argv[1:4]))
'''


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        pass


def poll(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(POLL_S)
    raise core.BenchTimeout(f"timed out waiting for {what}")


class Hand:
    """Runs the floor script as a fresh process."""

    def __init__(self, workdir: Path, executable: str, url: str) -> None:
        self.workdir = workdir
        self.script = workdir / "hand.py"
        self.script.write_text(HAND_SCRIPT)
        self.executable = executable
        self.url = url
        self.n = 0

    def start(self) -> tuple[subprocess.Popen, Path]:
        self.n += 1
        out = self.workdir / f"shot-{self.n}.png"
        proc = subprocess.Popen([sys.executable, str(self.script), self.url, str(out),
                                 self.executable], stdin=subprocess.DEVNULL)
        return proc, out

    def one(self) -> tuple[float, float]:
        t0 = time.time()
        proc, out = self.start()
        if proc.wait(60) != 0:
            raise RuntimeError("hand.py failed")
        done = time.time() - t0
        return out.stat().st_mtime - t0, done

    def batch(self, count: int, concurrent: bool) -> float:
        t0 = time.perf_counter()
        if concurrent:
            procs = [self.start()[0] for _ in range(count)]
            if any(p.wait(120) != 0 for p in procs):
                raise RuntimeError("hand.py failed")
        else:
            for _ in range(count):
                self.one()
        return time.perf_counter() - t0


class Through:
    """Runs the job through crawld's API."""

    def __init__(self, d: core.Crawld, url: str) -> None:
        self.d = d
        self.url = url

    def schedule(self) -> str:
        return self.d._json("POST", "/schedule-job.json", data={
            "project": "benchbrowser", "script": "shot", "when": "now",
            "payload": json.dumps({"url": self.url})})["identifier"]

    def status(self, job_id: str) -> str:
        status = self.d._json("GET", "/list-jobs.json", params={"id": job_id})["jobs"][0]["status"]
        if status in ("FAILED", "CANCELED"):
            raise core.JobFailed(f"job {job_id} ended {status}")
        return status

    def one(self) -> tuple[float, float]:
        t0 = time.time()
        job_id = self.schedule()
        poll(lambda: self.status(job_id) == "SUCCESSFUL", 60, "the crawld job")
        job = self.d._json("GET", "/list-jobs.json", params={"id": job_id})["jobs"][0]
        files = self.d._json("GET", "/job-files.json", params={"id": job_id})["files"]
        [shot] = [f for f in files if f["name"] == "shot.png"]
        return (_epoch(shot["modified"]) - t0, _epoch(job["finished"]) - t0)

    def batch(self, count: int, concurrent: bool) -> float:
        t0 = time.perf_counter()
        if concurrent:
            ids = [self.schedule() for _ in range(count)]
            poll(lambda: all(self.status(i) == "SUCCESSFUL" for i in ids), 120,
                 "the crawld batch")
        else:
            for _ in range(count):
                self.one()
        return time.perf_counter() - t0


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def project_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("benchbrowser/scripts/shot.py", textwrap.dedent(SHOT_SCRIPT))
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="single-job repetitions")
    p.add_argument("--batch-runs", type=int, default=3, help="repetitions of each batch")
    p.add_argument("--out", type=Path, default=core.BENCH_DIR / "results-browser.json")
    args = p.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    figures: dict[str, dict[str, list[float]]] = {"hand": {}, "crawld": {}}
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp:
        root = Path(tmp)
        d = core.Crawld(4, root / "crawld")
        try:
            d.prepare(core.BENCH_DIR / ".venvs")
            d.start()
            d._json("POST", "/push-project.json",
                    files={"archive": ("b.zip", project_zip(), "application/zip")})
            browsers = d._json("GET", "/browsers.json")["browsers"]
            if not browsers:
                raise RuntimeError("crawld found no Chromium")
            executable = browsers[0]["executable"]
            hand = Hand(root, executable, url)
            through = Through(d, url)
            runners = {"hand": hand, "crawld": through}
            for name in runners:  # warm both (page cache, first Chromium start)
                runners[name].one()
            for rep in range(args.runs):
                order = list(runners) if rep % 2 == 0 else list(runners)[::-1]
                for name in order:
                    first, done = runners[name].one()
                    figures[name].setdefault("first_screenshot_s", []).append(first)
                    figures[name].setdefault("job_s", []).append(done)
                core.log(f"run {rep + 1}/{args.runs}: " + ", ".join(
                    f"{n} {figures[n]['first_screenshot_s'][-1]:.3f}/{figures[n]['job_s'][-1]:.3f} s"
                    for n in runners))
            for rep in range(args.batch_runs):
                order = list(runners) if rep % 2 == 0 else list(runners)[::-1]
                for name in order:
                    for key, count, concurrent in (("sequential_20_s", 20, False),
                                                   ("concurrent_4_s", 4, True)):
                        figures[name].setdefault(key, []).append(
                            runners[name].batch(count, concurrent))
                core.log(f"batch {rep + 1}/{args.batch_runs}: " + ", ".join(
                    f"{n} 20 seq {figures[n]['sequential_20_s'][-1]:.2f} s, "
                    f"4 conc {figures[n]['concurrent_4_s'][-1]:.2f} s" for n in runners))
        finally:
            core.stop_all()
            server.shutdown()
    summary = {name: {k: statistics.median(v) for k, v in f.items()}
               for name, f in figures.items()}
    lines = ["| | by hand (floor) | crawld | crawld / floor |", "|---|---|---|---|"]
    for key, label in (("first_screenshot_s", "launch to first screenshot"),
                       ("job_s", "whole job"), ("sequential_20_s", "20 jobs, sequential"),
                       ("concurrent_4_s", "4 jobs, concurrent")):
        h, c = summary["hand"][key], summary["crawld"][key]
        lines.append(f"| {label} | {h:.3f} s | {c:.3f} s | {c / h:.3f} |")
    print("\n".join(lines))
    args.out.write_text(json.dumps({"machine": core.machine_info(), "args": vars(args) | {
        "out": str(args.out)}, "runs": figures, "medians": summary}, indent=2) + "\n")
    core.log(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
