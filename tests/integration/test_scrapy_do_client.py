"""scrapy-do's own client, scrapy-do-cl, runs every one of its commands against crawld."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.integration import project

CLIENT = shutil.which("scrapy-do-cl")  # installed by the test extra: a hard requirement


def cl(daemon, *args: str, cwd: str | None = None, ok: bool = True) -> str:
    assert CLIENT, "scrapy-do-cl must be installed (pip install -e '.[test]')"
    r = subprocess.run([sys.executable, CLIENT, "--url", daemon.url, "--print-format", "simple",
                        *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                       env={**os.environ, "HOME": cwd or os.environ.get("HOME", "/")})
    if ok:
        assert r.returncode == 0 and "[!]" not in r.stdout, (args, r.stdout, r.stderr)
    return r.stdout


def test_every_scrapy_do_cl_command(daemon, tmp_path):
    src = project.write_tree(str(tmp_path / "src"))
    out = cl(daemon, "push-project", cwd=src)
    assert "demo" in out and "sleep" in out

    assert "demo" in cl(daemon, "list-projects")
    assert "stubborn" in cl(daemon, "list-spiders", "--project", "demo")

    out = cl(daemon, "schedule-job", "--project", "demo", "--spider", "ok",
             "--payload", '{"k": "v"}', "--description", "from the client")
    job_id = out.split()[-1]
    daemon.wait_status(job_id, "SUCCESSFUL")
    out = cl(daemon, "list-jobs", "--job-id", job_id)
    assert job_id in out and "SUCCESSFUL" in out and '{"k": "v"}' in out
    assert job_id in cl(daemon, "list-jobs", "--status", "COMPLETED")
    assert "Spider closed" in cl(daemon, "get-log", "--job-id", job_id)
    assert "CRAWLD-TEST" in cl(daemon, "get-log", "--job-id", job_id, "--log-type", "out")

    out = cl(daemon, "schedule-job", "--project", "demo", "--spider", "ok",
             "--when", "every 2 hours")
    template = out.split()[-1]
    assert template in cl(daemon, "list-jobs")  # default: ACTIVE
    assert template in cl(daemon, "list-jobs", "--status", "SCHEDULED")

    running = cl(daemon, "schedule-job", "--project", "demo", "--spider", "sleep").split()[-1]
    daemon.said(running)
    assert running in cl(daemon, "list-jobs", "--status", "RUNNING")
    assert "Canceled." in cl(daemon, "cancel-job", "--job-id", running)
    assert "Canceled." in cl(daemon, "cancel-job", "--job-id", template)
    assert daemon.job(running)["status"] == "CANCELED"

    status = cl(daemon, "status")
    assert "jobs-canceled" in status and "daemon-version" in status

    refused = cl(daemon, "cancel-job", "--job-id", running, ok=False)
    assert "[!] Server responded with an error: job" in refused and "not active" in refused
    bad = cl(daemon, "schedule-job", "--project", "demo", "--spider", "ok",
             "--when", "every 0 minutes", ok=False)
    assert "[!] Server responded with an error" in bad and "positive" in bad

    assert "Removed." in cl(daemon, "remove-project", "--name", "demo")
    assert "demo" not in cl(daemon, "list-projects")
