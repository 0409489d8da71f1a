"""Persistence across restarts, SIGKILL recovery, graceful SIGTERM, start-up errors."""
from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time

import psutil

from tests.conftest import wait_for
from tests.integration.conftest import DaemonProcess, gone, title, zygote_pid


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
    assert "orphaned" in job["reason"] and str(said["ppid"]) in job["reason"]
    for pid in (said["ppid"], said["pid"], said["group_child"], said["session_child"]):
        wait_for(lambda: gone(pid), 10, what=f"orphan {pid} to be killed")
    all_jobs = daemon.jobs("ACTIVE") + daemon.jobs("COMPLETED")
    assert [j["identifier"] for j in all_jobs] == [job_id], "nothing was re-run"
    assert daemon.ok(daemon.get("/status.json"))["jobs-failed"] == 1


def unread_bytes(fd: int) -> int:
    """How many bytes wait in the pipe ``fd`` reads from (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]


def test_a_daemon_killed_between_fork_and_pid_record_leaves_no_orphan(daemon):
    """The zygote forks the job while the daemon cannot hear about it; the daemon dies
    without the pid. The job's processes are found again by title at restart."""
    daemon.push()
    zpid = zygote_pid(daemon)
    os.kill(zpid, signal.SIGSTOP)
    try:
        job_id = daemon.schedule("sleep")
        stdin = os.open(f"/proc/{zpid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)  # a 2nd reader
        try:
            wait_for(lambda: unread_bytes(stdin) > 0, 30, what="the spawn request")
        finally:
            os.close(stdin)
        os.kill(daemon.proc.pid, signal.SIGSTOP)  # it will never read "started"
    finally:
        os.kill(zpid, signal.SIGCONT)
    said = daemon.said(job_id)  # the forked job runs (read from its log file)
    assert psutil.Process(said["ppid"]).ppid() == zpid
    assert title(said["ppid"]) == f"crawld: job {job_id} demo/sleep"
    assert title(said["pid"]) == f"crawld: job {job_id} demo/sleep (scrapy)"
    daemon.kill()
    wait_for(lambda: gone(zpid), 10, what="the zygote to see its input close")
    orphans = [said["ppid"], said["pid"], said["group_child"], said["session_child"]]
    assert not any(gone(pid) for pid in orphans), "the job outlives the daemon"
    daemon.start()
    job = daemon.wait_status(job_id, "FAILED", "SUCCESSFUL", "CANCELED")
    assert job["status"] == "FAILED"
    assert job["reason"].startswith("the daemon stopped while the job was starting; pid(s) ")
    assert str(said["ppid"]) in job["reason"] and str(said["pid"]) in job["reason"]
    for pid in orphans:
        wait_for(lambda: gone(pid), 10, what=f"orphan {pid} to be killed")
    assert [j["identifier"] for j in daemon.jobs("ACTIVE")] == [], "nothing was re-run"


def test_sigterm_ends_running_jobs_records_them_and_exits_zero(daemon):
    daemon.push()
    polite = daemon.schedule("sleep")
    stubborn = daemon.schedule("stubborn")
    pids = [daemon.said(job_id)[key] for job_id in (polite, stubborn) for key in ("pid", "ppid")]
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
