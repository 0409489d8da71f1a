#!/usr/bin/env python3
"""What crawld's stats extension costs a spider job: CPU and wall time, side by side
with it off.

Each job runs exactly as crawld runs a freshly spawned one (``preload = no``): the
runner's bootstrap, ``spider crawl <name>`` in the project's directory, a keeper over
Scrapy's process. Only what crawld adds differs between the variants:

* ``off``   - no stats channel, no items file: plain ``scrapy crawl`` under the keeper;
* ``stats`` - ``CRAWLD_STATS_FD=3`` (a pipe this script drains, as the daemon drains
              the job's FIFO) and ``CRAWLD_STATS_INTERVAL`` (``--interval``, default 5,
              crawld's default; ``--fast-interval``, default 1, as a second variant
              ``stats@1s``): the extension reports at start, every interval, at the end;
* ``stats+items`` - the same and ``CRAWLD_ITEMS`` (crawld's items feed, its unbuffered
              storage): what a default crawld job gets.

Workloads: ``noop`` (a spider that requests nothing: the fixed cost of loading the
extension and the first and last reports) and ``pages`` (``--pages`` pages, default
400, from a local HTTP server, one item per page, 8 requests at a time: a crawl of a
few seconds, several periodic reports).

Measured per run: ``wall_s`` (spawn to exit, including the interpreter's start) and
``cpu_s`` (user + system CPU of the job's whole tree: the keeper and Scrapy, from
``wait4``). Runs are interleaved (off, stats, stats@1s, stats+items, then the next
repetition, the order rotating) so that machine noise hits every variant alike;
medians are reported, and each variant's difference to ``off``.

Also measured, in CPU µs, for the final stats of a ``pages`` run (a few small loops,
much less at the mercy of a loaded machine than whole jobs): the job's side of one
report (``report_line`` and the write to a pipe) and of the settings crawld adds once
per job; the daemon's side of one report (decoding the line, encoding it for the store,
``Database.set_stats`` on a file database in WAL mode).

Usage::

    python bench/bench_stats.py [--runs N] [--pages N] [--out FILE]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "daemon"))

import bench_core as core  # noqa: E402  (machine_info)

from crawld import runner  # noqa: E402
from crawld.database import Database  # noqa: E402
from crawld.model import Actor, Job, JobStatus  # noqa: E402
from crawld.stats import decode_report, encode  # noqa: E402

PROJECT = "benchstats"
VARIANTS = ("off", "stats", "stats@1s", "stats+items")

SPIDERS = """\
    import json
    import scrapy


    class Noop(scrapy.Spider):
        name = "noop"

        async def start(self):
            return
            yield


    class Pages(scrapy.Spider):
        name = "pages"
        custom_settings = {"CONCURRENT_REQUESTS": 8, "LOG_LEVEL": "INFO"}

        async def start(self):
            options = json.loads(self.payload)
            for i in range(options["pages"]):
                yield scrapy.Request(f"{options['url']}/page/{i}")

        def parse(self, response):
            yield {"url": response.url, "title": response.css("title::text").get(),
                   "words": len(response.text.split())}
    """


def write_project(root: Path) -> Path:
    """The benchmark's Scrapy project under ``root/PROJECT``; returns its directory."""
    files = {
        "scrapy.cfg": f"[settings]\ndefault = {PROJECT}.settings\n",
        f"{PROJECT}/__init__.py": "",
        f"{PROJECT}/settings.py": f'BOT_NAME = "{PROJECT}"\nSPIDER_MODULES = '
                                  f'["{PROJECT}.spiders"]\nTELNETCONSOLE_ENABLED = False\n'
                                  'LOG_LEVEL = "INFO"\n',
        f"{PROJECT}/spiders/__init__.py": "",
        f"{PROJECT}/spiders/bench.py": textwrap.dedent(SPIDERS),
    }
    project = root / PROJECT
    for rel, text in files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return project


class Site:
    """Pages with a title and some text, on 127.0.0.1, served by threads."""

    def __init__(self) -> None:
        body = ("<html><head><title>page</title></head><body>"
                + "<p>" + "word " * 200 + "</p>" * 5 + "</body></html>").encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def drain(fd: int, sink: list[bytes]) -> None:
    """Read the stats pipe until every writer closed it (the daemon's part)."""
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        sink.append(data)
    os.close(fd)


def run_job(project: Path, spider: str, variant: str, payload: str, interval: float,
            fast: float, items_dir: Path) -> dict[str, Any]:
    """One job, as crawld spawns it; returns its wall time, CPU and reports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLD_")}
    env.update(CRAWLD_JOB_ID="bench", CRAWLD_PROJECT=PROJECT, CRAWLD_SPIDER=spider)
    args = ["crawl", spider, "-s", "TELNETCONSOLE_ENABLED=0", "-a", f"payload={payload}"]
    reports: list[bytes] = []
    reader = None
    pass_fds: tuple[int, ...] = ()
    if variant != "off":
        r, w = os.pipe()  # crawld hands the job a FIFO's write end, as fd 3
        pass_fds = (w,)
        env.update(CRAWLD_STATS_FD=str(w),
                   CRAWLD_STATS_INTERVAL=f"{fast if variant == 'stats@1s' else interval:g}")
        reader = threading.Thread(target=drain, args=(r, reports))
        reader.start()
    if variant == "stats+items":
        items = items_dir / f"{time.monotonic_ns()}.jl"
        items.write_bytes(b"")
        env["CRAWLD_ITEMS"] = str(items)
    started = time.monotonic()
    proc = subprocess.Popen(list(runner.argv(sys.executable, "spider", *args)), cwd=project,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, pass_fds=pass_fds)
    if variant != "off":
        os.close(pass_fds[0])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if reader is not None:
        reader.join(30)
    if proc.returncode != 0:
        raise RuntimeError(f"{spider} ({variant}) exited {proc.returncode}")
    lines = b"".join(reports).splitlines()
    if variant != "off" and not lines:
        raise RuntimeError(f"{spider} ({variant}) reported no stats")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "reports": len(lines), "last": lines[-1] if lines else None}


def job_side(line: bytes, repeat: int) -> dict[str, float]:
    """CPU µs per report in the job: the stats made JSON-safe and encoded
    (``report_line``), and written to a pipe another thread drains; and the settings
    crawld adds to a crawl (``add_extension``, ``add_feed``), once per job."""
    from scrapy.settings import Settings

    from crawld.runner import crawl as crawl_settings, stats as extension
    found = json.loads(line)["stats"]
    for key in ("start_time", "finish_time"):  # datetimes again, as Scrapy holds them
        if isinstance(found.get(key), str):
            found[key] = dt.datetime.fromisoformat(found[key])
    r, w = os.pipe()
    os.set_blocking(w, False)
    sink: list[bytes] = []
    reader = threading.Thread(target=drain, args=(r, sink))
    reader.start()
    channel = extension.Channel(w)
    started = time.thread_time()
    for _ in range(repeat):
        channel.send(extension.report_line(found))
    report_us = (time.thread_time() - started) / repeat * 1e6
    os.close(w)
    reader.join(30)
    started = time.process_time()
    for _ in range(repeat // 10):
        settings = Settings()
        crawl_settings.add_extension(settings)
        crawl_settings.add_feed(settings, "/data/items/j.jl")
    settings_us = (time.process_time() - started) / (repeat // 10) * 1e6
    return {"report_cpu_us": report_us, "settings_cpu_us": settings_us}


def daemon_side(line: bytes, repeat: int, tmp: Path) -> dict[str, float]:
    """µs per report on the daemon: decode the line, encode for the store, store it."""
    db = Database(str(tmp / "bench.db"))
    db.add_job(Job(id="j", status=JobStatus.RUNNING, actor=Actor.USER, schedule="now",
                   project="p", spider="s", created=1, updated=1))
    started = time.process_time()
    for _ in range(repeat):
        decode_report(line)
    decode_us = (time.process_time() - started) / repeat * 1e6
    stats = decode_report(line)
    started = time.process_time()
    for _ in range(repeat):
        encode(stats)
    encode_us = (time.process_time() - started) / repeat * 1e6
    text = encode(stats)
    started, wall = time.process_time(), time.perf_counter()
    for i in range(repeat):
        db.set_stats("j", text + " " * (i % 2))  # a change each time: a real write
    store_us = (time.process_time() - started) / repeat * 1e6
    store_wall_us = (time.perf_counter() - wall) / repeat * 1e6
    db.close()
    return {"report_bytes": len(line), "decode_us": decode_us, "encode_us": encode_us,
            "store_cpu_us": store_us, "store_wall_us": store_wall_us}


def machine_info() -> dict[str, Any]:
    """bench_core's, with the load average and Scrapy's version."""
    import scrapy
    return {**core.machine_info(), "load_avg": os.getloadavg(), "scrapy": scrapy.__version__}


def quartiles(values: list[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles: how far the runs of one variant spread."""
    if len(values) < 2:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=4)
    return cuts[0], cuts[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="repetitions (default 7)")
    parser.add_argument("--pages", type=int, default=400, help="pages of the pages crawl")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between reports (crawld's default 5)")
    parser.add_argument("--fast-interval", type=float, default=1.0,
                        help="the stats@1s variant's interval (stats-interval's minimum)")
    parser.add_argument("--out", default=str(BENCH_DIR / "results-stats.json"))
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="crawld-bench-stats-"))
    site = Site()
    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    last_line = None
    try:
        project = write_project(tmp)
        items_dir = tmp / "items"
        items_dir.mkdir()
        workloads = {"noop": "{}", "pages": json.dumps({"url": site.url,
                                                          "pages": args.pages})}
        for run in range(args.runs):
            order = VARIANTS[run % len(VARIANTS):] + VARIANTS[:run % len(VARIANTS)]
            for spider, payload in workloads.items():
                for variant in order:
                    got = run_job(project, spider, variant, payload, args.interval,
                                  args.fast_interval, items_dir)
                    slot = samples.setdefault(spider, {}).setdefault(variant, {})
                    for key in ("wall_s", "cpu_s", "reports"):
                        slot.setdefault(key, []).append(got[key])
                    if spider == "pages" and variant == "stats":
                        last_line = got["last"]
                    print(f"[bench] run {run + 1}/{args.runs} {spider:5} {variant:11} "
                          f"wall {got['wall_s']:.3f} s cpu {got['cpu_s']:.3f} s "
                          f"reports {got['reports']}", file=sys.stderr, flush=True)
        per_report = {**job_side(last_line, 2000), **daemon_side(last_line, 2000, tmp)}
    finally:
        site.close()
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {spider: {variant: {key: statistics.median(values)
                                  for key, values in slot.items()}
                        for variant, slot in variants.items()}
               for spider, variants in samples.items()}
    print(f"\nmedians of {args.runs} runs (pages: {args.pages}; interval "
          f"{args.interval:g} s, stats@1s {args.fast_interval:g} s)")
    print(f"{'workload':9} {'variant':12} {'wall s':>8} {'Δ wall':>8} {'cpu s':>8} "
          f"{'Δ cpu':>8} {'cpu p25-p75':>13} {'reports':>8}")
    for spider, variants in medians.items():
        base = variants["off"]
        for variant in VARIANTS:
            m = variants[variant]
            low, high = quartiles(samples[spider][variant]["cpu_s"])
            print(f"{spider:9} {variant:12} {m['wall_s']:8.3f} "
                  f"{m['wall_s'] - base['wall_s']:+8.3f} {m['cpu_s']:8.3f} "
                  f"{m['cpu_s'] - base['cpu_s']:+8.3f} {low:6.3f}-{high:6.3f} "
                  f"{m['reports']:8.0f}")
    print(f"\njob side: {per_report['report_cpu_us']:.1f} µs of CPU per report, "
          f"{per_report['settings_cpu_us']:.1f} µs for the settings crawld adds, once")
    print(f"daemon side, per report of {per_report['report_bytes']} bytes: decode "
          f"{per_report['decode_us']:.1f} µs, encode {per_report['encode_us']:.1f} µs, "
          f"store {per_report['store_cpu_us']:.1f} µs CPU ({per_report['store_wall_us']:.1f}"
          " µs wall)")
    result = {"settings": vars(args), "machine": machine_info(), "medians": medians,
              "samples": samples, "per_report": per_report}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
