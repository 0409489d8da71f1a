"""The ``crawld`` client commands against a real daemon: push a folder, schedule, list,
read and follow logs, cancel, wait, with the exit codes scripts rely on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.integration import project
from tests.integration.test_auth import add_key


def crawld(d: Any, *args: str, env: dict | None = None, url: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m crawld <args>`` pointed at ``d`` through CRAWLD_URL (or ``url``)."""
    environ = {**os.environ, "CRAWLD_URL": url or d.url, **(env or {})}
    environ.pop("CRAWLD_KEY", None) if "CRAWLD_KEY" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", "crawld", *args], capture_output=True,
                          text=True, timeout=timeout, env=environ, stdin=subprocess.DEVNULL)


def test_push_schedule_wait_logs_and_jobs(daemon: Any, tmp_path: Any) -> None:
    folder = project.write_tree(str(tmp_path / "src"), "clientdemo")
    os.makedirs(os.path.join(folder, ".git"))  # a checkout's own files are not pushed
    with open(os.path.join(folder, ".git", "HEAD"), "w") as fh:
        fh.write("ref: refs/heads/main\n")
    pushed = crawld(daemon, "push", folder)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("pushed clientdemo: spiders:") and " ok" in pushed.stdout
    assert "clientdemo" in daemon.ok(daemon.get("/list-projects.json"))["projects"]

    ran = crawld(daemon, "schedule", "clientdemo", "ok", "--description", "from the cli",
                 "--wait")
    job_id = ran.stdout.splitlines()[0]
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    assert ran.stdout.splitlines()[1] == f"{job_id}: SUCCESSFUL"
    assert daemon.job(job_id)["description"] == "from the cli"

    out = crawld(daemon, "logs", job_id)
    assert out.returncode == 0 and "CRAWLD-TEST " in out.stdout
    assert out.stdout == daemon.log_text(job_id)
    err = crawld(daemon, "logs", job_id, "--err", "--tail", "200")
    full = daemon.log_text(job_id, "err")
    assert err.returncode == 0 and len(full) > 200 and err.stdout == full[-200:]

    listed = crawld(daemon, "jobs", "--status", "COMPLETED", "--project", "clientdemo")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:4] == ["ID", "STATUS", "PROJECT", "SPIDER"]
    assert row.split()[:4] == [job_id, "SUCCESSFUL", "clientdemo", "ok"]
    as_json = json.loads(crawld(daemon, "jobs", "--status", "COMPLETED", "--json").stdout)
    assert [j["identifier"] for j in as_json["jobs"]] == [job_id]
    status = json.loads(crawld(daemon, "status", "--json").stdout)
    assert status["status"] == "ok" and status["jobs-successful"] >= 1


def test_wait_exit_codes_follow_and_cancel(daemon: Any) -> None:
    daemon.push()
    failed = crawld(daemon, "schedule", "demo", "fail", "--wait")
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert failed.stdout.splitlines()[1].endswith(": FAILED (exit code 3)")

    job_id = crawld(daemon, "schedule", "demo", "sleep").stdout.strip()
    daemon.wait_status(job_id, "RUNNING")
    late = crawld(daemon, "wait", job_id, "--timeout", "1")
    assert late.returncode == 6 and "had not ended" in late.stderr
    follower = subprocess.Popen(
        [sys.executable, "-m", "crawld", "logs", job_id, "-f", "--url", daemon.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ)
    try:
        daemon.said(job_id)  # the spider runs and has written its line
        assert follower.poll() is None  # still following: the job runs
        canceled = crawld(daemon, "cancel", job_id)
        assert canceled.returncode == 0 and canceled.stdout.startswith(f"{job_id}: ")
        out, _ = follower.communicate(timeout=60)  # ends by itself with the job
        assert follower.returncode == 0 and b"CRAWLD-TEST" in out
    finally:
        if follower.poll() is None:
            follower.kill()
    waited = crawld(daemon, "wait", job_id)
    assert waited.returncode == 5 and waited.stdout.startswith(f"{job_id}: CANCELED")


def test_errors_have_their_own_exit_codes(daemon: Any) -> None:
    unknown = crawld(daemon, "wait", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 3
    assert unknown.stderr == "crawld: unknown job '00000000-0000-4000-8000-000000000000'\n"
    bad = crawld(daemon, "schedule", "demo", "ok", "--when", "whenever")
    expected = daemon.post("/schedule-job.json", project="demo", spider="ok",
                           when="whenever").json()["msg"]
    assert bad.returncode == 3 and bad.stderr == f"crawld: {expected}\n"
    usage = crawld(daemon, "schedule", "demo", "ok", "--arg", "novalue")
    assert usage.returncode == 2 and "NAME=VALUE" in usage.stderr
    gone = crawld(daemon, "status", url="http://127.0.0.1:9")
    assert gone.returncode == 4 and "cannot reach crawld" in gone.stderr


def test_the_key_comes_from_the_environment(make_daemon: Any) -> None:
    d = make_daemon()
    os.makedirs(d.data_dir, exist_ok=True)
    d.start()
    key = add_key(d, "reader", "cli")
    d.stop()
    d.start()  # keys present at start: auth is on
    refused = crawld(d, "status")
    assert refused.returncode == 3 and "authentication required" in refused.stderr
    allowed = crawld(d, "status", env={"CRAWLD_KEY": key})
    assert allowed.returncode == 0 and "uptime" in allowed.stdout
    flag = crawld(d, "status", "--key", key)
    assert flag.returncode == 0
    denied = crawld(d, "cancel", "00000000-0000-4000-8000-000000000000",
                    env={"CRAWLD_KEY": key})
    assert denied.returncode == 3 and "role" in denied.stderr
