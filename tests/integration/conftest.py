"""Integration fixtures: a real crawld process on a free loopback port, real Scrapy jobs."""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Optional

import psutil
import pytest
import requests

from tests.conftest import wait_for
from tests.integration import project

LISTEN_RE = re.compile(r"crawld listening on (https?://127\.0\.0\.1:\d+)")


class DaemonProcess:
    """A crawld started with ``python -m crawld serve`` in its own data directory."""

    def __init__(self, tmp_path: Any, config: str = "", env: Optional[dict] = None,
                 nofile: Optional[int] = None) -> None:
        """``nofile``: the daemon's open files limit (RLIMIT_NOFILE, soft and hard)."""
        self.data_dir = str(tmp_path / "data")
        self.config_path = str(tmp_path / "crawld.ini")
        defaults = {"kill-grace": "2", "list-timeout": "60"}
        lines = [f"{k} = {v}" for k, v in defaults.items() if f"{k} =" not in config]
        with open(self.config_path, "w") as fh:
            fh.write("[crawld]\n" + "\n".join(lines) + "\n" + config)
        self.env = {**os.environ, **(env or {})}
        self.nofile = nofile
        self.log_path = str(tmp_path / "daemon.log")
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.session = requests.Session()
        self.starts = 0
        # Addresses given as --listen; the first 127.0.0.1 one is ``url``. A cluster sets a
        # fixed port here (workers keep the daemon's URL across its restarts).
        self.listen = ["127.0.0.1:0"]

    def start(self, *flags: str) -> "DaemonProcess":
        """Start ``crawld serve`` (with ``flags`` too) and wait until it listens."""
        self.starts += 1
        log = open(self.log_path, "a")
        log.write(f"---- start {self.starts}\n")
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crawld", "serve", "--config", self.config_path,
             *[arg for address in self.listen for arg in ("--listen", address)],
             "--data-dir", self.data_dir, *flags],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
            preexec_fn=None if self.nofile is None else self._limit_files)
        log.close()

        def listening() -> Optional[str]:
            if self.proc.poll() is not None:
                raise AssertionError(f"crawld exited {self.proc.returncode}:\n{self.log()}")
            found = LISTEN_RE.findall(self.log().split(f"---- start {self.starts}\n")[-1])
            return found[-1] if found else None

        self.url = wait_for(listening, 30, what="crawld to listen")
        return self

    def _limit_files(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    # -- API helpers ------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.url + path, params=params, timeout=30)

    def post(self, path: str, **data: Any) -> requests.Response:
        return self.session.post(self.url + path, data=data, timeout=60)

    def ok(self, response: requests.Response) -> dict:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert body["status"] == "ok", body
        return body

    def push(self, data: Optional[bytes] = None, name: str = "demo") -> dict:
        data = data if data is not None else project.build(name)
        return self.ok(self.session.post(self.url + "/push-project.json",
                                         files={"archive": ("p.zip", data)}, timeout=120))

    def schedule(self, spider: str, when: str = "now", **extra: Any) -> str:
        body = self.ok(self.post("/schedule-job.json", project=extra.pop("project", "demo"),
                                 spider=spider, when=when, **extra))
        return body["identifier"]

    def job(self, job_id: str) -> dict:
        return self.ok(self.get("/list-jobs.json", id=job_id))["jobs"][0]

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 60) -> dict:
        return wait_for(lambda: (lambda j: j if j["status"] in statuses else None)(
            self.job(job_id)), timeout, what=f"job {job_id} to be {statuses}")

    def jobs(self, status: str, **params: Any) -> list[dict]:
        return self.ok(self.get("/list-jobs.json", status=status, **params))["jobs"]

    def log_text(self, job_id: str, ext: str = "out") -> str:
        r = self.get(f"/get-log/data/{job_id}.{ext}")
        assert r.status_code == 200, r.text
        return r.text

    def said(self, job_id: str) -> dict:
        """The CRAWLD-TEST line a test spider printed, once it is there."""
        def find() -> Optional[dict]:
            path = os.path.join(self.data_dir, "logs", f"{job_id}.out")
            try:
                with open(path) as fh:
                    for line in fh:
                        if line.startswith("CRAWLD-TEST "):
                            return json.loads(line[len("CRAWLD-TEST "):])
            except FileNotFoundError:
                return None
            return None
        return wait_for(find, 60, what=f"job {job_id} to report")


def end_process(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM ``proc`` (if it still runs), SIGKILL it after ``timeout`` s; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


def raw_socket(daemon: DaemonProcess, source: str = "127.0.0.1",
               timeout: float = 10.0) -> socket.socket:
    """A TCP connection to ``daemon`` from the local address ``source`` (any of
    127.0.0.0/8 on Linux: another client as the daemon counts them)."""
    host, port = daemon.url.split("://")[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout,
                                    source_address=(source, 0))


def read_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What the server sends on ``sock`` until it closes the connection, or until
    ``timeout`` seconds pass (then what came so far, perhaps b"")."""
    deadline = time.monotonic() + timeout
    got = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return got
        except ConnectionResetError:
            return got
        if not data:
            return got
        got += data


def title(pid: int) -> str:
    """What ``ps`` shows for ``pid``: its /proc/PID/cmdline, arguments joined by spaces.

    A process that set its title has it alone there, padded with NULs (``setproctitle``).
    """
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def zygote_pid(daemon: DaemonProcess) -> int:
    """The pid of the daemon's zygote, once it is ready (from the daemon's log)."""
    found = wait_for(lambda: re.findall(r"zygote ready \(pid (\d+)", daemon.log()), 30,
                     what="the zygote to be ready")
    return int(found[-1])


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def daemon(tmp_path: Any):
    d = DaemonProcess(tmp_path).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


@pytest.fixture
def make_daemon(tmp_path: Any):
    """A factory for daemons with a custom config; all are stopped at the end."""
    made: list[DaemonProcess] = []

    def make(config: str = "", env: Optional[dict] = None,
             nofile: Optional[int] = None) -> DaemonProcess:
        d = DaemonProcess(tmp_path, config, env, nofile)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
