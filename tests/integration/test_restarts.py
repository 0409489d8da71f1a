"""Persistence across restarts, SIGKILL recovery, graceful SIGTERM, start-up errors."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

from tests.conftest import wait_for
from tests.integration.conftest import DaemonProcess, gone


def test_schedules_and_counters_survive_a_restart(daemon):
    daemon.push()
    daemon.wait_status(daemon.schedule("ok"), "SUCCESSFUL")
    template = daemon.schedule("ok", when="every 1 hours", description="hourly")
    before = daemon.job(template)
    assert before["status"] == "SCHEDULED" and before["next-run"]
    assert daemon.stop() == 0
    daemon.start()
    after = daemon.job(template)
    assert after["status"] == "SCHEDULED" and after["next-run"] == before["next-run"]
    status = daemon.ok(daemon.get("/status.json"))
    assert status["jobs-run"] == 1 and status["jobs-successful"] == 1
    assert status["jobs-scheduled"] == 1 and status["projects"] == 1
    assert daemon.ok(daemon.get("/list-spiders.json", project="demo"))["spiders"]


def test_missed_firing_runs_once_at_start_and_the_series_continues(daemon):
    daemon.push()
    template = daemon.schedule("ok", when="every 1 hours")
    assert daemon.stop() == 0
    # While the daemon is down, its firing comes due (moved three hours into the past).
    db = sqlite3.connect(os.path.join(daemon.data_dir, "crawld.db"))
    with db:
        db.execute("UPDATE jobs SET next_fire = ? WHERE id = ?", (time.time() - 3 * 3600,
                                                                  template))
    db.close()
    daemon.start()
    children = wait_for(lambda: [j for j in daemon.jobs("COMPLETED") if j["parent"] == template],
                        60, what="the missed firing to run")
    assert len(children) == 1 and children[0]["actor"] == "SCHEDULER"
    assert children[0]["schedule"] == "now"
    nxt = daemon.job(template)["next-run"]
    from datetime import datetime
    assert datetime.fromisoformat(nxt).timestamp() > time.time() + 3000, "next run ~1 h ahead"
    daemon.stop()
    daemon.start()
    assert len([j for j in daemon.jobs("COMPLETED") + daemon.jobs("ACTIVE")
                if j["parent"] == template]) == 1, "a restart does not fire it again"


def test_sigkill_mid_job_kills_orphans_and_never_reruns(daemon):
    daemon.push()
    job_id = daemon.schedule("sleep")
    said = daemon.said(job_id)
    daemon.kill()
    assert not gone(said["pid"]), "the orphan outlives a SIGKILLed daemon"
    daemon.start()
    job = daemon.job(job_id)
    assert job["status"] == "FAILED"
    assert "orphaned" in job["reason"] and str(said["pid"]) in job["reason"]
    for pid in (said["pid"], said["group_child"], said["session_child"]):
        wait_for(lambda: gone(pid), 10, what=f"orphan {pid} to be killed")
    all_jobs = daemon.jobs("ACTIVE") + daemon.jobs("COMPLETED")
    assert [j["identifier"] for j in all_jobs] == [job_id], "nothing was re-run"
    assert daemon.ok(daemon.get("/status.json"))["jobs-failed"] == 1


def test_sigterm_ends_running_jobs_records_them_and_exits_zero(daemon):
    daemon.push()
    polite = daemon.schedule("sleep")
    stubborn = daemon.schedule("stubborn")
    pids = [daemon.said(polite)["pid"], daemon.said(stubborn)["pid"]]
    assert daemon.stop() == 0
    assert all(gone(p) for p in pids)
    daemon.start()
    for job_id in (polite, stubborn):
        job = daemon.job(job_id)
        assert job["status"] == "CANCELED" and job["reason"] == "stopped by daemon shutdown"
    assert daemon.job(stubborn)["signal"] == "SIGKILL"


def test_bad_config_value_stops_startup_naming_the_option(tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text("[crawld]\njob-slots = many\n")
    r = subprocess.run([sys.executable, "-m", "crawld", "serve", "--config", str(cfg),
                        "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "[crawld] job-slots" in r.stderr
    r = subprocess.run([sys.executable, "-m", "crawld", "serve", "--listen", "nowhere",
                        "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--listen" in r.stderr


def test_second_daemon_on_the_same_data_dir_refuses(daemon, tmp_path):
    other = DaemonProcess(tmp_path)
    other.data_dir = daemon.data_dir
    r = subprocess.run([sys.executable, "-m", "crawld", "serve", "--listen", "127.0.0.1:0",
                        "--data-dir", daemon.data_dir], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "another crawld" in r.stderr
    assert daemon.ok(daemon.get("/status.json"))


def test_a_moved_data_directory_keeps_working(daemon, tmp_path):
    daemon.push()
    assert daemon.stop() == 0
    moved = str(tmp_path / "moved-data")
    os.rename(daemon.data_dir, moved)
    daemon.data_dir = moved
    daemon.start()
    job = daemon.wait_status(daemon.schedule("ok"), "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL", job["reason"]
