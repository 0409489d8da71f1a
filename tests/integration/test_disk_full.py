"""A full disk under a real daemon: a small tmpfs holds its data directory.

The API answers 507 and changes nothing, a job that cannot write its logs ends FAILED
with the reason, the database stays consistent, and everything works again once space
returns, without a restart.
"""
from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from typing import Any, Iterator

import pytest

from tests.conftest import wait_for
from tests.integration.conftest import DaemonProcess

SIZE_MB = 48


@pytest.fixture
def small_disk(tmp_path: Any) -> Iterator[Any]:
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {r.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: str) -> None:
    """Write zeros to ``path`` until the disk says it is full."""
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(path, "ab", buffering=0) as fh:  # the last partial block
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_gets_507_fails_the_job_and_recovers(small_disk: Any, tmp_path: Any) -> None:
    d = DaemonProcess(tmp_path)
    d.data_dir = str(small_disk / "data")
    d.start()
    try:
        d.push()
        filler = str(small_disk / "filler")
        fill(filler)
        r = d.post("/schedule-job.json", project="demo", spider="ok", when="now")
        assert r.status_code == 507, r.text
        assert "disk" in r.json()["msg"] and r.headers["Content-Type"] == "application/json"
        r = d.session.post(d.url + "/push-project.json", timeout=60,
                           files={"archive": ("p.zip", open_project())})
        assert r.status_code == 507, r.text
        assert d.get("/status.json").status_code == 200
        assert not os.listdir(os.path.join(d.data_dir, "projects", ".staging") if
                              os.path.isdir(os.path.join(d.data_dir, "projects", ".staging"))
                              else [])

        os.unlink(filler)
        # a job that writes more than the disk holds
        flood = d.schedule("flood", payload='{"megabytes": %d}' % (SIZE_MB * 2))

        wait_for(lambda: f"job {flood} ended" in d.log(), 90, interval=0.2,
                 what="the flood job to end")
        # the disk is full now (its end may not even be recorded yet): free it, as an
        # operator would, and the daemon catches up by itself
        os.truncate(os.path.join(d.data_dir, "logs", f"{flood}.out"), 0)
        job = d.wait_status(flood, "FAILED", "SUCCESSFUL", timeout=30)
        assert job["status"] == "FAILED", job
        assert "disk" in job["reason"] and "full" in job["reason"], job["reason"]
        ok = d.schedule("ok")
        assert d.wait_status(ok, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    finally:
        d.stop()
    db = sqlite3.connect(os.path.join(d.data_dir, "crawld.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    statuses = dict(db.execute("SELECT id, status FROM jobs"))
    assert statuses[flood] == "FAILED" and statuses[ok] == "SUCCESSFUL"


def open_project() -> bytes:
    from tests.integration import project
    return project.build("other")
