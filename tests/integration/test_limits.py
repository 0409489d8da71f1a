"""Per-job limits on real processes: max-log-size and memory-limit end a job FAILED."""
from __future__ import annotations

from typing import Any

from tests.conftest import wait_for
from tests.integration.conftest import gone


def test_a_job_over_its_memory_limit_is_failed_and_its_tree_killed(daemon: Any) -> None:
    daemon.push()
    job_id = daemon.schedule("hog", payload='{"megabytes": 300}', **{"memory-limit": "150MB"})
    said = daemon.said(job_id)
    job = daemon.wait_status(job_id, "FAILED", "SUCCESSFUL", "CANCELED", timeout=60)
    assert job["status"] == "FAILED", job
    assert job["reason"].startswith("memory-limit exceeded: its processes use ")
    assert job["reason"].endswith("> 150 MiB") and job["memory-limit"] == 150 * 1024 * 1024
    wait_for(lambda: gone(said["hog"]) and gone(said["pid"]), 30,
             what="the job and its helper (own session) to be killed")


def test_a_job_whose_logs_pass_max_log_size_is_failed(daemon: Any) -> None:
    daemon.push()
    job_id = daemon.schedule("flood", payload='{"megabytes": 8}', **{"max-log-size": "1MB"})
    job = daemon.wait_status(job_id, "FAILED", "SUCCESSFUL", timeout=60)
    assert job["status"] == "FAILED"
    assert job["reason"].startswith("its logs passed max-log-size (")
    assert job["reason"].endswith(" > 1048576 bytes)")
    bad = daemon.post("/schedule-job.json", project="demo", spider="ok", when="now",
                      **{"memory-limit": "lots"})
    assert bad.status_code == 400 and "'memory-limit'" in bad.json()["msg"]
