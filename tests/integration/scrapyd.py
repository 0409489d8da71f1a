"""A crawld with its scrapyd listener on, for the scrapyd tests: scrapyd's test user
(``hello12345`` / ``67890world``, an operator) and a listener on a free port."""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import requests

from tests.conftest import wait_for
from tests.integration.conftest import DaemonProcess

USER, PASSWORD = "hello12345", "67890world"
SCRAPYD_RE = re.compile(r"crawld's scrapyd listener on (https?://127\.0\.0\.1:\d+)")


class ScrapydDaemon(DaemonProcess):
    """A DaemonProcess whose scrapyd listener's URL is ``scrapyd_url``; ``sd`` is a
    requests session logged in as scrapyd's test user."""

    scrapyd_url = ""

    def start(self, *flags: str) -> "ScrapydDaemon":
        super().start("--scrapyd-listen", "127.0.0.1:0", *flags)
        self.session.auth = (USER, PASSWORD)
        self.sd = requests.Session()
        self.sd.auth = (USER, PASSWORD)
        self.scrapyd_url = wait_for(
            lambda: (SCRAPYD_RE.findall(self.log().split(f"---- start {self.starts}\n")[-1])
                     or [None])[-1], 30, what="the scrapyd listener")
        return self

    def sd_get(self, path: str, **params: Any) -> dict:
        """A scrapyd GET: 200 and JSON, whatever its status."""
        r = self.sd.get(self.scrapyd_url + path, params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def sd_post(self, path: str, files: Any = None, **data: Any) -> dict:
        r = self.sd.post(self.scrapyd_url + path, data=data, files=files, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()


def scrapyd_daemon(tmp_path: Any, config: str = "", env: Optional[dict] = None
                   ) -> ScrapydDaemon:
    """Started, with scrapyd's test user created first (so auth is required)."""
    d = ScrapydDaemon(tmp_path, config, env)
    r = subprocess.run([sys.executable, "-m", "crawld", "users", "--data-dir", d.data_dir,
                        "add", USER, "--role", "operator", "--password-stdin"],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return d.start()


def tool_venv(name: str, requirements: list[str]) -> Path:
    """A virtualenv of its own for a tool of the scrapyd world (ScrapydWeb, Gerapy:
    their pins clash with crawld's test environment) with ``requirements`` installed,
    made the first time under a cache folder (``CRAWLD_TEST_CACHE``, else
    ``~/.cache/crawld-tests``), under a lock: test runs on one machine share it."""
    cache = Path(os.environ.get("CRAWLD_TEST_CACHE")
                 or Path.home() / ".cache" / "crawld-tests")
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / name
    marker = venv / ".requirements"
    wanted = "\n".join(requirements) + "\n"
    with open(cache / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == wanted:
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        for argv in ([sys.executable, "-m", "venv", str(venv)],
                     [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                      "--disable-pip-version-check", *requirements]):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, (argv, done.stdout, done.stderr)
        marker.write_text(wanted)
    return venv


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: Optional[subprocess.Popen]) -> None:
    """End a tool's server this test started (SIGTERM, SIGKILL after 30 s), if any."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
