"""``run-as``: crawld started as root runs every job (and ``scrapy list``) as another user.

The jobs' interpreter must be one that user can run: the machine's Python may live under
/root (mode 0700), so this test builds a venv from Debian's /usr/bin/python3 with Scrapy
(from the package index, ~15 s) in a folder every user can traverse.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from typing import Any, Iterator

import pytest

from tests.integration.conftest import DaemonProcess

USER = "nobody"


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("run-as needs the tests to run as root")
    base = tempfile.mkdtemp(prefix="crawld-run-as-", dir="/tmp")
    os.chmod(base, 0o711)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def user_python(shared_dir: str) -> str:
    """A Python with Scrapy that ``nobody`` can run."""
    venv = os.path.join(shared_dir, "venv")
    system = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
    subprocess.run([system, "-m", "venv", venv], check=True, timeout=120)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "scrapy"],
                   check=True, timeout=600)
    return os.path.join(venv, "bin", "python")


@pytest.mark.parametrize("preload", ["yes", "no"])
def test_jobs_and_scrapy_list_run_as_the_configured_user(tmp_path: Any, shared_dir: str,
                                                         user_python: str,
                                                         preload: str) -> None:
    who = pwd.getpwnam(USER)
    d = DaemonProcess(tmp_path, f"python = {user_python}\nrun-as = {USER}\n"
                                f"preload = {preload}\n")
    d.data_dir = os.path.join(shared_dir, f"data-{preload}")
    old = os.umask(0o027)  # as systemd/crawld.service sets it (UMask=0027)
    try:
        d.start()
    finally:
        os.umask(old)
    try:
        assert f"jobs run as {USER}" in d.log()
        assert "ok" in d.push()["spiders"]  # scrapy list ran as nobody
        job_id = d.schedule("ok")
        said = d.said(job_id)
        assert (said["uid"], said["gid"], said["home"]) == (who.pw_uid, who.pw_gid,
                                                            who.pw_dir)
        assert d.wait_status(job_id, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
        # the job cannot read the daemon's database or credentials
        db = os.path.join(d.data_dir, "crawld.db")
        r = subprocess.run(["su", "-s", "/bin/sh", USER, "-c", f"cat {db} > /dev/null"],
                           capture_output=True)
        assert r.returncode != 0
    finally:
        d.stop()


def test_run_as_refuses_an_unknown_user(tmp_path: Any) -> None:
    config = tmp_path / "crawld.ini"
    config.write_text("[crawld]\nrun-as = no-such-user-here\n")
    r = subprocess.run(["python", "-m", "crawld", "serve", "--config", str(config),
                        "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "run-as = no-such-user-here: no such user" in r.stderr
