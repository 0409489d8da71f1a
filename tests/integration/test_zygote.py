"""Jobs forked by the preloaded zygote, the direct-spawn fallback, and a zygote that dies."""
from __future__ import annotations

import json
import os
import signal

import psutil
import requests

from tests.conftest import wait_for
from tests.integration.conftest import gone, title, zygote_pid


def test_jobs_are_forked_by_the_zygote_as_their_own_sessions(daemon):
    daemon.push()
    zpid = zygote_pid(daemon)
    assert psutil.Process(zpid).ppid() == daemon.proc.pid
    sleeper = daemon.schedule("sleep")
    said = daemon.said(sleeper)
    assert psutil.Process(said["pid"]).ppid() == said["ppid"], "Scrapy runs under a keeper"
    assert psutil.Process(said["ppid"]).ppid() == zpid, "which the zygote forked"
    daemon.ok(daemon.post("/cancel-job.json", id=sleeper))
    job_id = daemon.schedule("ok", payload='{"z": 1}')
    said = daemon.said(job_id)
    assert said["sid"] == said["ppid"] and said["job"] == job_id, "the keeper leads a session"
    assert json.loads(said["payload"]) == {"z": 1}
    assert daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    assert daemon.wait_status(daemon.schedule("fail"), "FAILED")["exit-code"] == 3


def test_without_preload_jobs_start_directly(make_daemon):
    daemon = make_daemon("preload = no\n").start()
    daemon.push()
    assert "zygote" not in daemon.log()
    job_id = daemon.schedule("ok")
    said = daemon.said(job_id)
    assert said["sid"] == said["ppid"], "its keeper leads a session of its own"
    assert daemon.wait_status(job_id, "SUCCESSFUL")["exit-code"] == 0
    assert daemon.wait_status(daemon.schedule("fail"), "FAILED")["exit-code"] == 3
    running = daemon.schedule("sleep")
    said = daemon.said(running)
    keeper, pid = said["ppid"], said["pid"]
    assert psutil.Process(pid).ppid() == keeper
    assert psutil.Process(keeper).ppid() == daemon.proc.pid
    assert title(keeper) == f"crawld: job {running} demo/sleep"
    assert title(pid) == f"crawld: job {running} demo/sleep (scrapy)"
    assert daemon.job(running)["pid"] == keeper
    daemon.ok(daemon.post("/cancel-job.json", id=running))
    assert daemon.job(running)["status"] == "CANCELED" and gone(pid) and gone(keeper)


def test_ps_tells_the_zygote_and_each_forked_job_apart(daemon):
    daemon.push()
    zpid = zygote_pid(daemon)
    assert title(zpid) == "crawld: zygote", "no source on its command line"
    jobs = [daemon.schedule("sleep"), daemon.schedule("stubborn")]
    said = [daemon.said(job_id) for job_id in jobs]
    keepers, pids = [s["ppid"] for s in said], [s["pid"] for s in said]
    assert [psutil.Process(pid).ppid() for pid in keepers] == [zpid, zpid]
    assert [psutil.Process(pid).ppid() for pid in pids] == keepers
    assert [title(pid) for pid in keepers] == [f"crawld: job {jobs[0]} demo/sleep",
                                               f"crawld: job {jobs[1]} demo/stubborn"]
    assert [title(pid) for pid in pids] == [f"crawld: job {jobs[0]} demo/sleep (scrapy)",
                                            f"crawld: job {jobs[1]} demo/stubborn (scrapy)"]
    assert title(zpid) == "crawld: zygote", "a fork's title is its own"
    # list-jobs names each running job's process: the one ps shows with its title, the
    # root of its tree (its keeper)
    listed = {job["identifier"]: job["pid"] for job in
              daemon.ok(daemon.get("/list-jobs.json", status="RUNNING"))["jobs"]}
    assert listed == dict(zip(jobs, keepers))
    for job_id in jobs:
        daemon.ok(daemon.post("/cancel-job.json", id=job_id))
    assert [daemon.job(job_id)["pid"] for job_id in jobs] == [None, None], \
        "an ended job has no pid to look for"


def test_a_dead_zygote_loses_no_job_and_jobs_keep_starting(daemon):
    daemon.push()
    zpid = zygote_pid(daemon)
    running = daemon.schedule("sleep")
    pid = daemon.said(running)["pid"]
    ends_alone = daemon.schedule("stubborn")
    alone_pid = daemon.said(ends_alone)["pid"]
    psutil.Process(zpid).kill()
    wait_for(lambda: "zygote ended unexpectedly" in daemon.log(), 15, what="the loss logged")
    assert daemon.job(running)["status"] == "RUNNING", "the job outlives its zygote"
    psutil.Process(alone_pid).kill()  # it ends with nobody left to collect its status
    job = daemon.wait_status(ends_alone, "FAILED", "SUCCESSFUL", "CANCELED", timeout=15)
    assert job["status"] == "FAILED" and "exit status unknown" in job["reason"]
    later = daemon.schedule("ok")
    assert daemon.wait_status(later, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    daemon.ok(daemon.post("/cancel-job.json", id=running))
    job = daemon.job(running)
    assert job["status"] == "CANCELED" and gone(pid)
    finished = daemon.schedule("fail")
    assert daemon.wait_status(finished, "FAILED")["exit-code"] == 3, "direct spawns report codes"


def test_a_running_job_has_logs_to_follow_before_the_zygote_forks_it(daemon):
    """The job is RUNNING as soon as the daemon asks the zygote for it; its logs must be
    there from that moment, not from the fork (issue 10, item 12). The zygote is stopped
    so that the fork cannot happen while the logs are read."""
    daemon.push()
    zpid = zygote_pid(daemon)
    os.kill(zpid, signal.SIGSTOP)
    try:
        job_id = daemon.schedule("ok")
        assert daemon.wait_status(job_id, "RUNNING")["pid"] is None, "not forked yet"
        for ext in ("out", "err"):
            r = daemon.session.head(f"{daemon.url}/get-log/data/{job_id}.{ext}", timeout=30)
            assert r.status_code == 200, (ext, r.status_code)
        with requests.get(f"{daemon.url}/get-log/data/{job_id}.err", stream=True,
                          timeout=30) as r:
            assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    finally:
        os.kill(zpid, signal.SIGCONT)
    assert daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    assert "CRAWLD-TEST" in daemon.log_text(job_id, "out")
    assert "Spider closed (finished)" in daemon.log_text(job_id, "err"), "nothing truncated"
