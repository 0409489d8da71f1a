#!/usr/bin/env python3
"""Side-by-side core benchmark: crawld vs scrapy-do 0.5.0 (and scrapyd 1.6.0).

All daemons run at the same time on loopback, with the same number of job
slots, and are measured on the same work in one run.  Repetitions are
interleaved (the order of the daemons alternates each repetition) so that
machine noise hits them equally; medians are reported.

Measured per daemon:

* ``one_job_s``      - ``POST schedule-job`` (when=now) of a no-op spider until
                       the job shows as SUCCESSFUL (polled every 20 ms);
* ``burst_s``        - N such jobs scheduled back to back until all of them are
                       SUCCESSFUL;
* ``status_rps``     - requests/s on ``GET /status.json``;
* ``list_completed_rps`` - requests/s on ``GET /list-jobs.json?status=COMPLETED``;
* ``burst_daemon_cpu_s`` / ``burst_total_cpu_s`` - CPU time of the daemon
                       process alone / of its whole process tree (jobs included)
                       per burst;
* ``rss_idle_mib``   - daemon RSS right after start-up;
* ``rss_after_burst_mib`` - daemon RSS after each burst;
* ``rss_tree_after_burst_mib`` - summed RSS of the daemon and its live
                       descendants (crawld's zygote) after each burst.

plus a reference: a bare ``scrapy crawl noop`` without any daemon.

scrapy-do and scrapyd run from their own virtualenvs (created on first use in
the cache directory); crawld runs from the current interpreter and, by default,
so do its jobs (``--job-python own``).  See bench/README.md.

Usage::

    python bench/bench_core.py [--runs N] [--out FILE] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import requests

BENCH_DIR = Path(__file__).resolve().parent
POLL_S = 0.02            # job status poll period (one job)
BURST_POLL_S = 0.1       # burst poll period: the COMPLETED list grows, and
                         # polling it too often would load the daemon itself
READY_TIMEOUT_S = 60.0   # daemon start-up
ONE_JOB_TIMEOUT_S = 60.0
BURST_TIMEOUT_S = 300.0
STOP_GRACE_S = 10.0
PROJECT = "benchproj"
SPIDER = "noop"
MIB = 1024.0 * 1024.0

SCRAPY_DO_REQS = ["scrapy-do==0.5.0"]
SCRAPYD_REQS = ["scrapyd==1.6.0", "setuptools<81"]

ALL_TARGETS = ("crawld", "scrapy-do", "scrapyd")

# metric name -> (unit, higher_is_better)
METRICS: dict[str, tuple[str, bool]] = {
    "one_job_s": ("s", False),
    "burst_s": ("s", False),
    "status_rps": ("req/s", True),
    "list_completed_rps": ("req/s", True),
    "burst_daemon_cpu_s": ("s", False),
    "burst_total_cpu_s": ("s", False),
    "rss_idle_mib": ("MiB", False),
    "rss_after_burst_mib": ("MiB", False),
    "rss_tree_after_burst_mib": ("MiB", False),
}


# ---------------------------------------------------------------------------
# Deadlines and small helpers
# ---------------------------------------------------------------------------
class BenchTimeout(Exception):
    """Raised when the global deadline of the whole run passes."""


class JobFailed(Exception):
    """Raised when a benchmark job ends in a state other than success."""


class Deadline:
    """A monotonic deadline shared by every wait loop of the run."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self) -> None:
        if self.remaining() <= 0:
            raise BenchTimeout("global deadline of the benchmark run passed")


GLOBAL_DEADLINE = Deadline(3600.0)


def wait_until(pred: Callable[[], bool], timeout: float, what: str,
               period: float = POLL_S) -> None:
    """Call ``pred`` every ``period`` seconds until it is true or time is up."""
    end = min(time.monotonic() + timeout, GLOBAL_DEADLINE.end)
    while not pred():
        if time.monotonic() >= end:
            GLOBAL_DEADLINE.check()
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(period)


def free_port() -> int:
    """Return a TCP port that is currently free on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(msg: str) -> None:
    """Progress output (stderr, so stdout keeps just the table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_checked(cmd: list[str], cwd: Path | None = None,
                env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run a command to completion; raise with its output tail on failure."""
    timeout = max(1.0, min(timeout, GLOBAL_DEADLINE.remaining()))
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
        raise RuntimeError(f"command failed ({res.returncode}): {' '.join(cmd)}\n{tail}")
    return res.stdout


def tail_file(path: Path, lines: int = 25) -> str:
    """Last lines of a (log) file, or a note if it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


# ---------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------
def ensure_venv(cache_dir: Path, name: str, requirements: list[str]) -> Path:
    """Create (once) a virtualenv ``cache_dir/name`` with ``requirements``."""
    venv = cache_dir / name
    marker = venv / ".bench-requirements"
    wanted = "\n".join(requirements) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return venv
    log(f"creating venv {venv} with {' '.join(requirements)} (one-time)")
    if venv.exists():
        shutil.rmtree(venv)
    cache_dir.mkdir(parents=True, exist_ok=True)
    run_checked([sys.executable, "-m", "venv", str(venv)])
    run_checked([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", *requirements])
    marker.write_text(wanted)
    return venv


def venv_env(venv: Path | None) -> dict[str, str]:
    """Environment whose PATH finds the venv's executables (scrapy, unzip...)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def package_version(python: Path | str, dist: str) -> str | None:
    """Version of distribution ``dist`` as seen by interpreter ``python``."""
    code = ("import importlib.metadata as m,sys\n"
            "try: print(m.version(sys.argv[1]))\n"
            "except m.PackageNotFoundError: print('')")
    try:
        out = subprocess.run([str(python), "-c", code, dist], capture_output=True,
                             text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def ensure_unzip() -> None:
    """scrapy-do 0.5.0 shells out to ``unzip``; install it if we are root."""
    if shutil.which("unzip"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("'unzip' is missing (scrapy-do needs it); installing it with apt-get")
        run_checked(["apt-get", "update", "-q"])
        run_checked(["apt-get", "install", "-y", "-q", "unzip"])
        if shutil.which("unzip"):
            return
    raise RuntimeError("scrapy-do 0.5.0 needs the 'unzip' binary on PATH; "
                       "install it (e.g. 'apt-get install unzip') and re-run")


# ---------------------------------------------------------------------------
# The Scrapy project that is deployed to every daemon
# ---------------------------------------------------------------------------
PROJECT_FILES: dict[str, str] = {
    "scrapy.cfg": f"""\
        [settings]
        default = {PROJECT}.settings

        [deploy]
        project = {PROJECT}
        """,
    f"{PROJECT}/__init__.py": "",
    f"{PROJECT}/settings.py": f"""\
        BOT_NAME = "{PROJECT}"
        SPIDER_MODULES = ["{PROJECT}.spiders"]
        NEWSPIDER_MODULE = "{PROJECT}.spiders"
        TELNETCONSOLE_ENABLED = False
        LOG_LEVEL = "INFO"
        """,
    f"{PROJECT}/spiders/__init__.py": "",
    f"{PROJECT}/spiders/noop.py": f"""\
        import scrapy


        class NoopSpider(scrapy.Spider):
            \"\"\"A spider that requests nothing and finishes at once.\"\"\"

            name = "{SPIDER}"
            start_urls: list = []

            async def start(self):
                return
                yield
        """,
}

SETUP_PY = f"""\
    from setuptools import find_packages, setup

    setup(
        name="{PROJECT}",
        version="1.0",
        packages=find_packages(),
        entry_points={{"scrapy": ["settings = {PROJECT}.settings"]}},
    )
    """


@dataclass
class ProjectArtifacts:
    """The deployable forms of the benchmark project."""

    zip_bytes: bytes
    egg_bytes: bytes | None = None


def write_project(root: Path) -> Path:
    """Write the no-op Scrapy project under ``root/PROJECT``; return that dir."""
    proj = root / PROJECT
    for rel, text in PROJECT_FILES.items():
        path = proj / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return proj


def zip_project(proj: Path) -> bytes:
    """Zip as ``benchproj/scrapy.cfg``, ``benchproj/benchproj/...``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(proj.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, str(path.relative_to(proj.parent)))
    return buf.getvalue()


def build_egg(proj: Path, python: Path, workdir: Path) -> bytes:
    """Build a scrapyd egg of the project with ``setup.py bdist_egg``."""
    src = workdir / "egg-src"
    shutil.copytree(proj, src)
    (src / "setup.py").write_text(textwrap.dedent(SETUP_PY))
    run_checked([str(python), "setup.py", "-q", "bdist_egg", "-d", str(workdir / "dist")],
                cwd=src)
    eggs = sorted((workdir / "dist").glob("*.egg"))
    if not eggs:
        raise RuntimeError("bdist_egg produced no egg")
    return eggs[0].read_bytes()


# ---------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------
STARTED: list[subprocess.Popen] = []   # everything we spawned, for cleanup


def stop_process(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM ``proc`` (by pid), SIGKILL it after ``grace`` s, then its
    leftover children (crawler processes it spawned), also by pid."""
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} ignored SIGTERM for {grace:.0f}s; sending SIGKILL")
        proc.kill()
        proc.wait(timeout=grace)
    for child in children:
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass


def stop_all() -> None:
    """Stop every process this run started, newest first."""
    for proc in reversed(STARTED):
        try:
            stop_process(proc)
        except Exception as exc:  # keep stopping the others
            log(f"error while stopping pid {proc.pid}: {exc!r}")


class Daemon:
    """A daemon under test: how to start it, deploy to it and drive jobs."""

    name = "?"
    supports_rps = True
    #: Period of the daemon's internal poll loop, if any; the idle gap before
    #: each one-job measurement is spread over it (see ``phase_gap``).
    tick_period = 1.0
    #: How many finished jobs the daemon keeps (crawld/scrapy-do ``completed-cap``,
    #: scrapyd ``finished_to_keep``); bench_hotpath raises it to hold its seeded jobs.
    completed_cap = 1000

    def __init__(self, job_slots: int, workdir: Path) -> None:
        self.job_slots = job_slots
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "daemon.log"
        self.http = requests.Session()
        self.versions: dict[str, str | None] = {}

    # -- lifecycle ----------------------------------------------------------
    def prepare(self, cache_dir: Path) -> None:
        """Install what the daemon needs (venvs...)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return venv_env(None)

    def ready_path(self) -> str:
        return "/status.json"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Spawn the daemon on a free loopback port and wait until it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.write_config()
        cmd = self.command()
        log(f"starting {self.name}: {' '.join(cmd)}")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env(),
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        STARTED.append(self.proc)
        wait_until(self._answers, READY_TIMEOUT_S, f"{self.name} to answer", period=0.1)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.proc.returncode};"
                               f" log tail:\n{tail_file(self.log_path)}")
        try:
            return self.http.get(self.base_url + self.ready_path(), timeout=2).ok
        except requests.RequestException:
            return False

    def write_config(self) -> None:
        """Write the daemon's configuration into its work dir."""

    def job_interpreter(self) -> str | None:
        """The Python interpreter the daemon's jobs run with."""
        venv = getattr(self, "venv", None)
        return str(venv / "bin" / "python") if venv is not None else None

    def rss_mib(self) -> float:
        """RSS of the daemon process alone."""
        return psutil.Process(self.pid).memory_info().rss / MIB

    def tree_rss_mib(self) -> float:
        """Summed RSS of the daemon and its live descendants (e.g. crawld's
        zygote); shared pages are counted once per process, so an upper bound."""
        root = psutil.Process(self.pid)
        total = root.memory_info().rss
        for proc in root.children(recursive=True):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total / MIB

    def cpu_s(self) -> tuple[float, float]:
        """(CPU s of the daemon process alone, CPU s of its whole process tree).

        The tree counts every descendant, live or already reaped: a live
        process's own time plus the times of the children it reaped.  So jobs
        are counted whether the daemon spawned them itself or a helper process
        (crawld's zygote) forked and reaped them.  Exact when sampled with no
        job running, as it is around a burst.
        """
        root = psutil.Process(self.pid)
        t = root.cpu_times()
        own = t.user + t.system
        total = own + t.children_user + t.children_system
        for proc in root.children(recursive=True):
            try:
                c = proc.cpu_times()
            except psutil.Error:
                continue
            total += c.user + c.system + c.children_user + c.children_system
        return own, total

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"{self.name} is not running (exit code {code}); "
                               f"log tail:\n{tail_file(self.log_path)}")

    # -- API ----------------------------------------------------------------
    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = self.http.request(method, self.base_url + path, timeout=30, **kw)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code != 200 or not isinstance(data, dict) or data.get("status") != "ok":
            raise RuntimeError(f"{self.name}: {method} {path} -> HTTP {resp.status_code}: "
                               f"{resp.text[:500]!r}")
        return data

    def deploy(self, project: ProjectArtifacts) -> None:
        raise NotImplementedError

    def schedule(self) -> str:
        """Schedule one run of the no-op spider now; return its identifier."""
        raise NotImplementedError

    def job_done(self, job_id: str) -> bool:
        """True once the job succeeded; raise JobFailed if it ended otherwise."""
        raise NotImplementedError

    def done_ids(self, job_ids: set[str]) -> set[str]:
        """Which of ``job_ids`` are finished successfully (JobFailed if any failed)."""
        raise NotImplementedError

    def completed_count(self) -> int | None:
        return None


class ScrapyDoAPI(Daemon):
    """The scrapy-do 0.5.0 JSON API (spoken by scrapy-do and by crawld)."""

    def deploy(self, project: ProjectArtifacts) -> None:
        files = {"archive": (f"{PROJECT}.zip", project.zip_bytes, "application/zip")}
        data = self._json("POST", "/push-project.json", files=files)
        if SPIDER not in data.get("spiders", []):
            raise RuntimeError(f"{self.name}: push-project did not list spider "
                               f"{SPIDER!r}: {data}")

    def schedule(self) -> str:
        data = self._json("POST", "/schedule-job.json",
                          data={"project": PROJECT, "spider": SPIDER, "when": "now"})
        return str(data["identifier"])

    def job_done(self, job_id: str) -> bool:
        jobs = self._json("GET", "/list-jobs.json", params={"id": job_id})["jobs"]
        status = jobs[0]["status"] if jobs else None
        if status in ("FAILED", "CANCELED"):
            raise JobFailed(f"{self.name}: job {job_id} ended {status}")
        return status == "SUCCESSFUL"

    def _completed(self) -> list[dict[str, Any]]:
        return self._json("GET", "/list-jobs.json", params={"status": "COMPLETED"})["jobs"]

    def done_ids(self, job_ids: set[str]) -> set[str]:
        done: set[str] = set()
        for job in self._completed():
            ident = job.get("identifier")
            if ident in job_ids:
                if job.get("status") != "SUCCESSFUL":
                    raise JobFailed(f"{self.name}: job {ident} ended {job.get('status')}")
                done.add(ident)
        return done

    def completed_count(self) -> int | None:
        return len(self._completed())


class ScrapyDo(ScrapyDoAPI):
    """scrapy-do 0.5.0 from PyPI, in its own venv."""

    name = "scrapy-do"

    def __init__(self, job_slots: int, workdir: Path) -> None:
        super().__init__(job_slots, workdir)
        self.venv: Path | None = None

    def prepare(self, cache_dir: Path) -> None:
        ensure_unzip()
        self.venv = ensure_venv(cache_dir, "scrapy-do-0.5.0", SCRAPY_DO_REQS)
        py = self.venv / "bin" / "python"
        self.versions = {d: package_version(py, d) for d in ("scrapy-do", "scrapy", "twisted")}

    def write_config(self) -> None:
        (self.workdir / "scrapy-do.conf").write_text(textwrap.dedent(f"""\
            [scrapy-do]
            project-store = {self.workdir / 'projects'}
            job-slots = {self.job_slots}
            completed-cap = {self.completed_cap}

            [web]
            interfaces = 127.0.0.1:{self.port}
            https = off
            auth = off
            """))

    def command(self) -> list[str]:
        assert self.venv is not None
        return [str(self.venv / "bin" / "scrapy-do"), "-n",
                "--pidfile", str(self.workdir / "twistd.pid"),
                "-l", str(self.workdir / "twistd.log"),
                "scrapy-do", "-c", str(self.workdir / "scrapy-do.conf")]

    def env(self) -> dict[str, str]:
        return venv_env(self.venv)


class Crawld(ScrapyDoAPI):
    """crawld from the current interpreter (``pip install -e .``)."""

    name = "crawld"

    def __init__(self, job_slots: int, workdir: Path) -> None:
        super().__init__(job_slots, workdir)
        #: Interpreter for crawld's jobs (``[crawld] python``); None: crawld's own.
        self.job_python: str | None = None
        #: ``[crawld] preload``: fork jobs from the zygote (yes) or spawn each (no).
        self.preload = "yes"
        #: ``[web]`` options to write (bench_load: connection caps above its clients);
        #: none by default, so that a crawld from before they existed starts too.
        self.web: dict[str, str] = {}

    def prepare(self, cache_dir: Path) -> None:
        try:
            self.versions = {"crawld": importlib.metadata.version("crawld")}
        except importlib.metadata.PackageNotFoundError:
            raise RuntimeError("crawld is not installed in this interpreter "
                               f"({sys.executable}); run 'pip install -e .' first") from None
        for dist in ("scrapy", "twisted"):
            self.versions[dist] = package_version(sys.executable, dist)

    def write_config(self) -> None:
        lines = ["[crawld]", f"job-slots = {self.job_slots}",
                 f"completed-cap = {self.completed_cap}", f"preload = {self.preload}"]
        if self.job_python:
            lines.append(f"python = {self.job_python}")
        if self.web:
            lines += ["[web]", *(f"{k} = {v}" for k, v in self.web.items())]
        (self.workdir / "crawld.ini").write_text("\n".join(lines) + "\n")

    def job_interpreter(self) -> str | None:
        return self.job_python or sys.executable

    #: The interpreter crawld is installed for (bench_hotpath's ``--baseline`` sets
    #: another one).
    crawld_python = sys.executable

    def command(self) -> list[str]:
        script = Path(self.crawld_python).parent / "crawld"
        prefix = [str(script)] if script.exists() else [self.crawld_python, "-m", "crawld"]
        return prefix + ["serve", "--listen", f"127.0.0.1:{self.port}",
                         "--data-dir", str(self.workdir / "data"),
                         "--config", str(self.workdir / "crawld.ini")]


class Scrapyd(Daemon):
    """scrapyd 1.6.0 from PyPI, in its own venv (default poll_interval)."""

    name = "scrapyd"
    supports_rps = False   # no equivalent endpoints; only jobs and RSS

    def __init__(self, job_slots: int, workdir: Path, poll_interval: float) -> None:
        super().__init__(job_slots, workdir)
        self.venv: Path | None = None
        self.poll_interval = poll_interval
        self.tick_period = poll_interval

    def prepare(self, cache_dir: Path) -> None:
        self.venv = ensure_venv(cache_dir, "scrapyd-1.6.0", SCRAPYD_REQS)
        py = self.venv / "bin" / "python"
        self.versions = {d: package_version(py, d) for d in ("scrapyd", "scrapy", "twisted")}

    def ready_path(self) -> str:
        return "/daemonstatus.json"

    def write_config(self) -> None:
        (self.workdir / "scrapyd.conf").write_text(textwrap.dedent(f"""\
            [scrapyd]
            bind_address = 127.0.0.1
            http_port = {self.port}
            max_proc = {self.job_slots}
            poll_interval = {self.poll_interval}
            finished_to_keep = {self.completed_cap}
            eggs_dir = {self.workdir / 'eggs'}
            logs_dir = {self.workdir / 'logs'}
            dbs_dir = {self.workdir / 'dbs'}
            """))

    def command(self) -> list[str]:
        assert self.venv is not None
        return [str(self.venv / "bin" / "scrapyd"),
                "--pidfile", str(self.workdir / "twistd.pid"),
                "-l", str(self.workdir / "twistd.log")]

    def env(self) -> dict[str, str]:
        return venv_env(self.venv)

    def deploy(self, project: ProjectArtifacts) -> None:
        assert project.egg_bytes is not None
        data = self._json("POST", "/addversion.json",
                          data={"project": PROJECT, "version": "1"},
                          files={"egg": (f"{PROJECT}.egg", project.egg_bytes)})
        if data.get("spiders") != 1:
            raise RuntimeError(f"scrapyd: addversion found no spider: {data}")

    def schedule(self) -> str:
        data = self._json("POST", "/schedule.json", data={"project": PROJECT, "spider": SPIDER})
        return str(data["jobid"])

    def _finished(self) -> set[str]:
        data = self._json("GET", "/listjobs.json", params={"project": PROJECT})
        return {job["id"] for job in data["finished"]}

    def job_done(self, job_id: str) -> bool:
        return job_id in self._finished()

    def done_ids(self, job_ids: set[str]) -> set[str]:
        return job_ids & self._finished()

    def completed_count(self) -> int | None:
        return len(self._finished())


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------
def phase_gap(rep: int, period: float) -> float:
    """Idle gap before repetition ``rep``'s one-job measurement.

    A daemon that polls its queue every ``period`` s would otherwise always
    be sampled at the same phase (just after a tick, as the previous job was
    seen finishing right after one).  The gaps follow a golden-ratio sequence
    over ``[0, period)`` so the repetitions sample the phase evenly; the gap
    itself is not measured.
    """
    return ((rep * 0.6180339887 + 0.5) % 1.0) * period


def measure_one_job(d: Daemon) -> float:
    """Seconds from scheduling one no-op job until it shows SUCCESSFUL."""
    t0 = time.perf_counter()
    job_id = d.schedule()
    wait_until(lambda: d.job_done(job_id), ONE_JOB_TIMEOUT_S, f"{d.name} job {job_id}")
    return time.perf_counter() - t0


def measure_burst(d: Daemon, count: int) -> float:
    """Seconds from scheduling ``count`` jobs back to back until all succeeded."""
    t0 = time.perf_counter()
    ids = {d.schedule() for _ in range(count)}
    if len(ids) != count:
        raise RuntimeError(f"{d.name}: {count} schedule calls gave {len(ids)} distinct ids")
    wait_until(lambda: d.done_ids(ids) == ids, BURST_TIMEOUT_S,
               f"{d.name} burst of {count} jobs", period=BURST_POLL_S)
    return time.perf_counter() - t0


@dataclass
class BareCrawl:
    """How to run the no-op spider directly, without any daemon."""

    python: str
    proj_dir: Path

    def measure(self) -> float:
        """Wall time of ``python -m scrapy crawl noop`` in the project.

        This is the floor under ``one_job_s``: what is above it is the
        daemon's own overhead (queueing, polling, process set-up, bookkeeping).
        """
        t0 = time.perf_counter()
        run_checked([self.python, "-m", "scrapy", "crawl", SPIDER], cwd=self.proj_dir,
                    env=venv_env(None), timeout=60)
        return time.perf_counter() - t0


def _rps_worker(port: int, path: str, count: int, end: float,
                done: list[int], errors: list[str], slot: int) -> None:
    """Issue up to ``count`` keep-alive GETs until ``end``; count the 200s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(count):
            if time.perf_counter() >= end:
                break
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            if resp.status == 200:
                done[slot] += 1
            else:
                errors.append(f"HTTP {resp.status}")
            if resp.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    finally:
        conn.close()


def measure_rps(d: Daemon, path: str, total: int, threads: int, max_s: float) -> float:
    """Successful requests per second on ``GET path`` (bounded count and time)."""
    return measure_load(d, path, total, threads, max_s)[0]


def measure_load(d: Daemon, path: str, total: int, threads: int, max_s: float
                 ) -> tuple[float, float]:
    """(successful requests per second, the daemon's CPU seconds per request) on
    ``GET path`` (bounded count and time). The CPU is the daemon process's own over
    the timed part: on a shared machine it moves far less than the rate does."""
    warm = [0]
    _rps_worker(d.port, path, 20, time.perf_counter() + 5, warm, [], 0)
    done = [0] * threads
    errors: list[str] = []
    per_thread = total // threads
    cpu0 = d.cpu_s()[0]
    t0 = time.perf_counter()
    end = t0 + min(max_s, max(1.0, GLOBAL_DEADLINE.remaining() - 30))
    workers = [threading.Thread(target=_rps_worker,
                                args=(d.port, path, per_thread, end, done, errors, i))
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    cpu = d.cpu_s()[0] - cpu0
    if errors:
        raise RuntimeError(f"{d.name}: {len(errors)} failed requests on {path}, "
                           f"first: {errors[0]}")
    return sum(done) / elapsed, cpu / max(1, sum(done))


@dataclass
class Results:
    """Samples per daemon and metric, plus errors and extra facts."""

    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, daemon: str, metric: str, value: float) -> None:
        self.samples.setdefault(daemon, {}).setdefault(metric, []).append(value)

    def median(self, daemon: str, metric: str) -> float | None:
        values = self.samples.get(daemon, {}).get(metric)
        return statistics.median(values) if values else None


def guarded(d: Daemon, res: Results, broken: set[str], what: str,
            fn: Callable[[], None], check_alive: bool = True) -> None:
    """Run one measurement; on failure record it and stop measuring ``d``."""
    if d.name in broken:
        return
    try:
        if check_alive:
            d.check_alive()
        fn()
    except BenchTimeout:
        raise
    except Exception as exc:  # a daemon's failure must not stop the others
        msg = f"{what}: {exc}"
        log(f"{d.name} FAILED {msg}")
        res.errors.setdefault(d.name, []).append(msg)
        broken.add(d.name)


def interleaved(daemons: list[Daemon], rep: int) -> Iterator[Daemon]:
    """The daemons in an order that alternates with each repetition."""
    return iter(daemons if rep % 2 == 0 else list(reversed(daemons)))


def start_and_deploy(daemons: list[Daemon], res: Results, broken: set[str],
                     project: ProjectArtifacts) -> None:
    """Start each daemon, sample its idle RSS, deploy, run one warm-up job."""
    for d in daemons:
        def step(d: Daemon = d) -> None:
            d.start()
            time.sleep(1.0)
            res.add(d.name, "rss_idle_mib", d.rss_mib())
            d.deploy(project)
            measure_one_job(d)   # warm-up, not recorded
        guarded(d, res, broken, "start/deploy/warm-up", step, check_alive=False)


RPS_PATHS = (("status_rps", "/status.json"),
             ("list_completed_rps", "/list-jobs.json?status=COMPLETED"))


def run_repetition(daemons: list[Daemon], res: Results, broken: set[str],
                   args: argparse.Namespace, rep: int, bare: BareCrawl | None) -> None:
    """One repetition: one-job, burst, then RPS, each across all daemons."""
    tag = f"(rep {rep + 1})"
    if bare is not None:
        try:
            res.add("reference", "bare_crawl_s", bare.measure())
        except (RuntimeError, subprocess.SubprocessError) as exc:
            res.errors.setdefault("reference", []).append(f"bare crawl {tag}: {exc}")
    for d in interleaved(daemons, rep):
        def one_job(d: Daemon = d) -> None:
            time.sleep(phase_gap(rep, d.tick_period))
            res.add(d.name, "one_job_s", measure_one_job(d))
        guarded(d, res, broken, f"one job {tag}", one_job)
    for d in interleaved(daemons, rep):
        def burst(d: Daemon = d) -> None:
            own0, total0 = d.cpu_s()
            res.add(d.name, "burst_s", measure_burst(d, args.burst))
            own1, total1 = d.cpu_s()
            res.add(d.name, "burst_daemon_cpu_s", own1 - own0)
            res.add(d.name, "burst_total_cpu_s", total1 - total0)
            res.add(d.name, "rss_after_burst_mib", d.rss_mib())
            res.add(d.name, "rss_tree_after_burst_mib", d.tree_rss_mib())
        guarded(d, res, broken, f"burst {tag}", burst)
    for d in interleaved(daemons, rep):
        if not d.supports_rps:
            continue
        for metric, path in RPS_PATHS:
            def rps(d: Daemon = d, metric: str = metric, path: str = path) -> None:
                res.add(d.name, metric, measure_rps(d, path, args.rps_requests,
                                                    args.rps_threads, args.rps_seconds))
            guarded(d, res, broken, f"{metric} {tag}", rps)
    for d in daemons:
        if d.name not in broken:
            log(f"  {d.name}: " + ", ".join(
                f"{m}={v[-1]:.3f}" for m, v in res.samples.get(d.name, {}).items()))


def run_benchmark(daemons: list[Daemon], args: argparse.Namespace,
                  project: ProjectArtifacts, bare: BareCrawl | None) -> Results:
    """Start, deploy, measure (interleaved) and return the samples.

    If the global deadline passes, what was measured so far is returned with
    an error entry saying the results are partial.
    """
    res = Results()
    broken: set[str] = set()
    try:
        start_and_deploy(daemons, res, broken, project)
        for rep in range(args.runs):
            GLOBAL_DEADLINE.check()
            log(f"repetition {rep + 1}/{args.runs}")
            run_repetition(daemons, res, broken, args, rep, bare)
    except BenchTimeout as exc:
        log(str(exc))
        res.errors.setdefault("run", []).append(f"{exc}; results are partial")

    for d in daemons:
        extra = res.extra.setdefault(d.name, {})
        extra["versions"] = d.versions
        extra["port"] = d.port
        extra["job_slots"] = d.job_slots
        extra["job_python"] = d.job_interpreter()
        if d.name not in broken and d.proc is not None:
            try:
                extra["completed_jobs_at_end"] = d.completed_count()
            except Exception as exc:
                extra["completed_jobs_at_end"] = f"error: {exc}"
    return res


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """nproc, CPU model, Python, OS and date of this run."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 1024 ** 3, 1),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def ratio(metric: str, crawld: float | None, other: float | None) -> float | None:
    """> 1 means crawld is better (faster, more req/s, less memory)."""
    if crawld is None or other is None or crawld == 0 or other == 0:
        return None
    return crawld / other if METRICS[metric][1] else other / crawld


def summarize(res: Results, names: list[str]) -> dict[str, Any]:
    """Medians and ratios per metric, JSON-ready."""
    out: dict[str, Any] = {}
    for metric, (unit, higher) in METRICS.items():
        row: dict[str, Any] = {"unit": unit, "higher_is_better": higher}
        for name in names:
            row[name] = {"median": res.median(name, metric),
                         "samples": res.samples.get(name, {}).get(metric, [])}
        for other in names:
            if other != "crawld" and "crawld" in names:
                row[f"ratio_vs_{other}"] = ratio(metric, res.median("crawld", metric),
                                                 res.median(other, metric))
        out[metric] = row
    return out


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "req/s":
        return f"{value:,.0f}"
    return f"{value:.3f}" if value < 100 else f"{value:,.1f}"


def render_table(summary: dict[str, Any], names: list[str]) -> str:
    """A plain-text table: metric, one median column per daemon, ratios."""
    others = [n for n in names if n != "crawld"] if "crawld" in names else []
    header = ["metric", *[f"{n} median" for n in names], *[f"ratio vs {o}" for o in others]]
    rows = [header]
    for metric, row in summary.items():
        unit = row["unit"]
        cells = [f"{metric} [{unit}]"]
        cells += [fmt(row[n]["median"], unit) for n in names]
        cells += [("n/a" if row[f"ratio_vs_{o}"] is None else f"{row[f'ratio_vs_{o}']:.2f}x")
                  for o in others]
        rows.append(cells)
    return align(rows)


def align(rows: list[list[str]]) -> str:
    """Rows of cells as a plain-text table: the first column left-aligned, the others
    right-aligned, a rule under the first row (the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="repetitions (medians reported)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results-core.json",
                   help="JSON results file")
    p.add_argument("--only", action="append", choices=ALL_TARGETS,
                   help="benchmark only this daemon (repeatable); default: all")
    p.add_argument("--skip", action="append", choices=ALL_TARGETS, default=[],
                   help="leave this daemon out (repeatable)")
    p.add_argument("--cache-dir", type=Path, default=BENCH_DIR / ".venvs",
                   help="where the scrapy-do / scrapyd venvs are kept")
    p.add_argument("--job-slots", type=int, default=8,
                   help="job slots given to every daemon (scrapyd: max_proc)")
    p.add_argument("--burst", type=int, default=50, help="jobs per burst")
    p.add_argument("--rps-requests", type=int, default=2000,
                   help="requests per RPS measurement")
    p.add_argument("--rps-threads", type=int, default=4, help="client threads for RPS")
    p.add_argument("--rps-seconds", type=float, default=10.0,
                   help="time cap of one RPS measurement")
    p.add_argument("--scrapyd-poll-interval", type=float, default=5.0,
                   help="scrapyd poll_interval (5.0 is scrapyd's default)")
    p.add_argument("--job-python", choices=("own", "shared"), default="own",
                   help="crawld's jobs run with crawld's own interpreter (own: its default "
                        "set-up) or with scrapy-do's venv interpreter (shared: same job "
                        "interpreter as scrapy-do)")
    p.add_argument("--crawld-preload", choices=("yes", "no"), default="yes",
                   help="crawld's [crawld] preload: fork jobs from its zygote (yes, the "
                        "default) or spawn a fresh interpreter per job like scrapy-do (no), "
                        "to compare the daemons with the per-job cost held equal")
    p.add_argument("--deadline", type=float, default=1200.0,
                   help="global time limit of the run, seconds")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the temp dir (daemon logs) even on success")
    return p.parse_args(argv)


def make_daemons(args: argparse.Namespace, tmp: Path) -> list[Daemon]:
    """The daemons selected by --only/--skip, in a fixed order."""
    names = [n for n in (args.only or ALL_TARGETS) if n not in args.skip]
    daemons: list[Daemon] = []
    for name in ALL_TARGETS:
        if name not in names:
            continue
        workdir = tmp / name
        if name == "crawld":
            daemons.append(Crawld(args.job_slots, workdir))
        elif name == "scrapy-do":
            daemons.append(ScrapyDo(args.job_slots, workdir))
        else:
            daemons.append(Scrapyd(args.job_slots, workdir, args.scrapyd_poll_interval))
    return daemons


def choose_job_python(daemons: list[Daemon], mode: str) -> str | None:
    """Interpreter for crawld's jobs and for the bare reference crawl.

    ``own``: crawld's own interpreter, as crawld runs jobs by default;
    ``shared``: scrapy-do's venv interpreter, so crawld's and scrapy-do's jobs
    run the very same Python and packages (crawld's zygote runs from its own
    source, so it starts there too; ``--crawld-preload no`` turns it off).
    """
    if mode == "shared":
        for d in daemons:
            if isinstance(d, ScrapyDo) and d.venv is not None:
                return str(d.venv / "bin" / "python")
    if importlib.util.find_spec("scrapy") is not None:
        return sys.executable
    for d in daemons:
        venv = getattr(d, "venv", None)
        if venv is not None:
            return str(venv / "bin" / "python")
    return None


def _on_signal(signum: int, _frame: Any) -> None:
    if signum == signal.SIGALRM:
        raise BenchTimeout("global deadline of the benchmark run passed")
    raise SystemExit(128 + signum)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write a run's JSON results (creating the folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults written to {path}")


def bounded_run(deadline: float, prefix: str, keep_tmp: bool,
                body: Callable[[Path], bool]) -> int:
    """Run ``body(tmp)`` within ``deadline`` seconds (SIGALRM backs the wait loops'
    deadline), with a fresh temp dir; every process started is stopped by pid at the
    end, whatever happens. The temp dir (daemon logs) is kept when ``body`` fails
    (returns False or raises) or with ``keep_tmp``. Returns the exit code."""
    global GLOBAL_DEADLINE
    GLOBAL_DEADLINE = Deadline(deadline)
    signal.signal(signal.SIGALRM, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.alarm(int(deadline) + 60)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    ok = False
    try:
        ok = body(tmp)
        return 0 if ok else 1
    finally:
        signal.alarm(0)
        stop_all()
        if not ok or keep_tmp:
            log(f"daemon work dirs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    global GLOBAL_DEADLINE
    args = parse_args(argv)
    GLOBAL_DEADLINE = Deadline(args.deadline)
    signal.signal(signal.SIGALRM, _on_signal)      # hard backstop
    signal.signal(signal.SIGTERM, _on_signal)
    signal.alarm(int(args.deadline) + 60)
    tmp = Path(tempfile.mkdtemp(prefix="crawld-bench-"))
    failed = True
    try:
        daemons = make_daemons(args, tmp)
        prepared: list[Daemon] = []
        prep_errors: dict[str, str] = {}
        for d in daemons:
            try:
                d.prepare(args.cache_dir)
                prepared.append(d)
            except Exception as exc:
                log(f"skipping {d.name}: {exc}")
                prep_errors[d.name] = str(exc)
        if not prepared:
            raise RuntimeError("no daemon could be prepared")

        proj_dir = write_project(tmp / "project")
        artifacts = ProjectArtifacts(zip_bytes=zip_project(proj_dir))
        for d in prepared:
            if isinstance(d, Scrapyd) and d.venv is not None:
                artifacts.egg_bytes = build_egg(proj_dir, d.venv / "bin" / "python", tmp / "egg")

        job_python = choose_job_python(prepared, args.job_python)
        for d in prepared:
            if isinstance(d, Crawld) and job_python != sys.executable:
                d.job_python = job_python
            if isinstance(d, Crawld):
                d.preload = args.crawld_preload
        bare = BareCrawl(job_python, proj_dir) if job_python else None
        res = run_benchmark(prepared, args, artifacts, bare)
        stop_all()
        for name, err in prep_errors.items():
            res.errors.setdefault(name, []).append(f"prepare: {err}")

        names = [d.name for d in prepared]
        summary = summarize(res, names)
        table = render_table(summary, names)
        print(f"\ncrawld bench (core): runs={args.runs} burst={args.burst} "
              f"job_slots={args.job_slots} job_python={args.job_python} crawld_preload={args.crawld_preload}; ratio > 1 means "
              "crawld is better (faster / more req/s / less CPU or memory)\n")
        print(table)
        bare_median = res.median("reference", "bare_crawl_s")
        if bare is not None and bare_median is not None:
            print(f"\nreference: a bare 'scrapy crawl {SPIDER}' without any daemon takes "
                  f"{bare_median:.3f} s (median; floor under one_job_s)")
        for name, errs in res.errors.items():
            print(f"\n{name} errors:\n  " + "\n  ".join(errs))
        report = {
            "benchmark": "core",
            "machine": machine_info(),
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()},
            "daemons": res.extra,
            "metrics": summary,
            "reference": {
                "bare_crawl_s": {"median": res.median("reference", "bare_crawl_s"),
                                 "samples": res.samples.get("reference", {})
                                 .get("bare_crawl_s", []),
                                 "python": bare.python if bare else None},
            },
            "errors": res.errors,
            "table": table,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nresults written to {args.out}")
        failed = bool(res.errors)
        return 1 if failed else 0
    finally:
        signal.alarm(0)
        stop_all()
        if failed or args.keep_tmp:
            log(f"daemon work dirs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
