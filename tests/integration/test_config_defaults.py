"""What docs/configuration.md tells a new user, tried with a real daemon: the file that
``crawld config --defaults`` prints starts crawld, and the jobs' interpreter (``python``)
needs Scrapy but not crawld, zygote included."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import psutil

from tests.conftest import wait_for


def test_the_printed_defaults_are_a_config_file_crawld_starts_with(make_daemon, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # not the source tree: nothing to copy from
    elsewhere.mkdir()
    printed = subprocess.run([sys.executable, "-m", "crawld", "config", "--defaults"],
                             cwd=elsewhere, capture_output=True, text=True, timeout=60,
                             check=True)
    assert "[crawld]" in printed.stdout and printed.stderr == ""
    daemon = make_daemon()
    with open(daemon.config_path, "w") as fh:
        fh.write(printed.stdout)
    daemon.start()  # --listen and --data-dir flags override the file, as documented
    status = daemon.ok(daemon.get("/status.json"))
    assert status["status"] == "ok"
    assert daemon.stop() == 0


def test_the_zygote_runs_in_an_interpreter_that_cannot_import_crawld(make_daemon, tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "crawld.py").write_text("raise ImportError('crawld is not installed here')\n")
    python = tmp_path / "python-without-crawld"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={hidden}${{PYTHONPATH:+:$PYTHONPATH}} '
                      f'exec {sys.executable} "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    probe = subprocess.run([str(python), "-c", "import crawld"], capture_output=True,
                           text=True, timeout=60)
    assert probe.returncode != 0 and "crawld is not installed here" in probe.stderr
    assert subprocess.run([str(python), "-c", "import scrapy"], timeout=60).returncode == 0

    daemon = make_daemon(f"python = {python}\npreload = yes\n").start()
    daemon.push()
    found = wait_for(lambda: re.findall(r"zygote ready \(pid (\d+)", daemon.log()), 30,
                     what="the zygote to be ready")
    zygote = psutil.Process(int(found[-1]))
    assert zygote.ppid() == daemon.proc.pid
    assert os.path.realpath(zygote.exe()) == os.path.realpath(sys.executable)
    sleeper = daemon.schedule("sleep")
    keeper = daemon.said(sleeper)["ppid"]  # the job's process: Scrapy runs below it
    assert psutil.Process(keeper).ppid() == zygote.pid, "forked by it"
    daemon.ok(daemon.post("/cancel-job.json", id=sleeper))
    job_id = daemon.schedule("ok")
    assert daemon.said(job_id)["job"] == job_id
    assert daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    assert "zygote ended" not in daemon.log() and "jobs start directly" not in daemon.log()
