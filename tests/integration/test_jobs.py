"""A real daemon running real Scrapy jobs: outcomes, environment, logs, cancel, slots."""
from __future__ import annotations

import json
import os
import threading
import time

import psutil
import requests

from tests.conftest import wait_for
from tests.integration.conftest import gone
from tests.integration.project import SPIDER_NAMES


def test_successful_job_gets_env_payload_and_hardened_settings(daemon):
    assert daemon.push()["spiders"] == SPIDER_NAMES
    job_id = daemon.schedule("ok", payload='{"pages": [1, 2]}', description="first run")
    job = daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL", daemon.log_text(job_id, "err")
    assert job["exit-code"] == 0 and job["actor"] == "USER" and job["schedule"] == "now"
    assert job["description"] == "first run"
    assert json.loads(job["payload"]) == {"pages": [1, 2]}
    said = daemon.said(job_id)
    assert said["job"] == job_id and said["project"] == "demo" and said["spider"] == "ok"
    assert json.loads(said["payload"]) == {"pages": [1, 2]}
    assert said["telnet"] is False and said["remote"] is False
    assert said["sid"] == said["ppid"], "a job (its keeper) leads its own session"
    assert "Spider closed (finished)" in daemon.log_text(job_id, "err")


def test_child_inherits_daemon_environment(make_daemon):
    daemon = make_daemon(env={"CRAWLD_TEST_MARKER": "inherited"}).start()
    daemon.push()
    job_id = daemon.schedule("ok")
    assert daemon.said(job_id)["marker"] == "inherited"


def test_failing_job_records_exit_code(daemon):
    daemon.push()
    job_id = daemon.schedule("fail")
    job = daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")
    assert job["status"] == "FAILED"
    assert job["exit-code"] == 3 and job["reason"] == "exit code 3"
    assert "about to fail" in daemon.log_text(job_id, "err")
    status = daemon.ok(daemon.get("/status.json"))
    assert status["jobs-run"] == 1 and status["jobs-failed"] == 1


def test_cancel_running_job_ends_its_whole_tree(daemon):
    daemon.push()
    job_id = daemon.schedule("sleep")
    said = daemon.said(job_id)
    running = daemon.job(job_id)
    assert running["status"] == "RUNNING" and running["duration"] is None
    body = daemon.ok(daemon.post("/cancel-job.json", id=job_id))
    assert body["job-status"] == "CANCELED"
    job = daemon.job(job_id)
    assert job["status"] == "CANCELED" and job["reason"] == "canceled by user"
    for pid in (said["pid"], said["group_child"], said["session_child"]):
        wait_for(lambda: gone(pid), 10, what=f"pid {pid} to be gone")
    assert "CRAWLD-TEST" in daemon.log_text(job_id, "out"), "logs are kept"
    assert daemon.ok(daemon.get("/status.json"))["jobs-canceled"] == 1


def test_cancel_escalates_to_sigkill_after_grace(daemon):
    daemon.push()
    job_id = daemon.schedule("stubborn")
    pid = daemon.said(job_id)["pid"]
    started = time.monotonic()
    daemon.ok(daemon.post("/cancel-job.json", id=job_id))
    elapsed = time.monotonic() - started
    job = daemon.job(job_id)
    assert job["status"] == "CANCELED" and job["signal"] == "SIGKILL"
    assert elapsed >= 2.0 - 0.1, "the stubborn spider ignores SIGTERM: KILL comes after the grace"
    assert gone(pid)


def test_cancel_pending_and_completed(make_daemon):
    daemon = make_daemon("job-slots = 1\n").start()
    daemon.push()
    blocker = daemon.schedule("sleep")
    daemon.said(blocker)
    waiting = daemon.schedule("ok")
    assert daemon.job(waiting)["status"] == "PENDING"
    daemon.ok(daemon.post("/cancel-job.json", id=waiting))
    assert daemon.job(waiting)["status"] == "CANCELED"
    daemon.ok(daemon.post("/cancel-job.json", id=blocker))
    again = daemon.post("/cancel-job.json", id=waiting)
    assert again.status_code == 409 and "not active" in again.json()["msg"]
    assert daemon.job(waiting)["started"] is None, "a canceled pending job never runs"
    status = daemon.ok(daemon.get("/status.json"))
    assert status["jobs-run"] == 1 and status["jobs-canceled"] == 1, "only the run one counts"


def test_slots_queue_first_in_first_out(make_daemon):
    daemon = make_daemon("job-slots = 1\n").start()
    daemon.push()
    ids = [daemon.schedule("ok") for _ in range(4)]
    jobs = [daemon.wait_status(i, "SUCCESSFUL") for i in ids]
    starts = [j["started"] for j in jobs]
    assert starts == sorted(starts)
    for earlier, later in zip(jobs, jobs[1:]):
        assert later["started"] >= earlier["finished"], "one slot: never two at once"


def test_get_log_follows_a_running_job_until_it_ends(daemon):
    daemon.push()
    job_id = daemon.schedule("sleep")
    daemon.said(job_id)
    received: list[bytes] = []
    done = threading.Event()

    def follow() -> None:
        with requests.get(f"{daemon.url}/get-log/data/{job_id}.out", stream=True,
                          timeout=60) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            for chunk in r.iter_content(None):
                received.append(chunk)
        done.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_for(lambda: b"CRAWLD-TEST" in b"".join(received), 10, what="first bytes")
    assert not done.is_set(), "the response stays open while the job runs"
    daemon.ok(daemon.post("/cancel-job.json", id=job_id))
    assert done.wait(20), "the response ends when the job ends"


def test_flooding_job_logs_to_file_without_growing_the_daemon(daemon):
    daemon.push()
    rss_before = psutil.Process(daemon.proc.pid).memory_info().rss
    job_id = daemon.schedule("flood", payload="{}")
    job = daemon.wait_status(job_id, "SUCCESSFUL", "FAILED", timeout=120)
    assert job["status"] == "SUCCESSFUL"
    path = os.path.join(daemon.data_dir, "logs", f"{job_id}.out")
    assert os.path.getsize(path) >= 40 * 1024 * 1024
    size = 0
    with requests.get(f"{daemon.url}/get-log/data/{job_id}.out", stream=True, timeout=60) as r:
        for chunk in r.iter_content(1 << 20):
            size += len(chunk)
    assert size == os.path.getsize(path)
    grown = psutil.Process(daemon.proc.pid).memory_info().rss - rss_before
    assert grown < 30 * 1024 * 1024, f"daemon grew by {grown} bytes for a 40 MB log"


def test_unknown_jobs_and_logs_are_404(daemon):
    missing = "00000000-0000-4000-8000-000000000000"
    for r in (daemon.get("/list-jobs.json", id=missing), daemon.get(f"/get-log/x/{missing}.out"),
              daemon.post("/cancel-job.json", id=missing), daemon.get("/get-log/x/nope.out"),
              daemon.get("/list-jobs.json", id="../../etc/passwd")):
        assert r.status_code == 404, r.text
        assert r.headers["Content-Type"] == "application/json"
        assert r.json()["status"] == "error" and r.json()["msg"]


def test_retention_keeps_completed_cap_jobs_and_removes_older_logs(make_daemon):
    daemon = make_daemon("completed-cap = 2\njob-slots = 1\n").start()
    daemon.push()
    ids = [daemon.schedule("ok") for _ in range(4)]
    for job_id in ids:
        daemon.wait_status(job_id, "SUCCESSFUL")
    kept = wait_for(lambda: (lambda js: js if len(js) == 2 else None)(
        daemon.jobs("COMPLETED")), 15, what="retention to prune to 2")
    assert {j["identifier"] for j in kept} == set(ids[2:]), "the newest are kept"
    logs_dir = os.path.join(daemon.data_dir, "logs")
    wait_for(lambda: not any(os.path.exists(os.path.join(logs_dir, f"{i}.out"))
                             for i in ids[:2]), 15, what="old logs to be removed")
    assert all(os.path.exists(os.path.join(logs_dir, f"{i}.out")) for i in ids[2:])
    assert daemon.get("/list-jobs.json", id=ids[0]).status_code == 404
    assert daemon.ok(daemon.get("/status.json"))["jobs-successful"] == 4, "counters keep counting"
