"""Jobs run by ``crawld worker`` processes through Celery and Redis (issue 14), with real
processes only: Debian's redis-server, a daemon with ``[cluster] launcher = celery``,
two workers (each in a network namespace of its own when the tests run as root; see
tests/integration/cluster.py), real Scrapy jobs. First the core flows as a client sees
them, then each failure of docs/cluster.md's failure model.
"""
from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import uuid
from typing import Any, Callable, Iterator

import psutil
import pytest
import requests

from tests.conftest import wait_for
from tests.integration import netns
from tests.integration.cluster import (Cluster, access_lines, cluster_project, job_processes,
                                       process_title, said_lines)
from tests.integration.conftest import gone

TICK = re.compile(r"^tick (\d+)$", re.M)


@pytest.fixture
def make_cluster(tmp_path: Any, request: Any) -> Iterator[Callable[..., Cluster]]:
    """Start clusters (``Cluster`` arguments); all are closed at the end, whatever
    happened. Each says on the terminal how its workers are isolated."""
    made: list[Cluster] = []
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def make(**options: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(made)}", **options)
        made.append(cluster)
        cluster.start()
        request.node.user_properties.append(("isolation", cluster.isolation))
        if reporter is not None:
            reporter.write_line(f"{request.node.name}: {cluster.describe()}")
        cluster.daemon.push(cluster_project())
        return cluster

    yield make
    for cluster in made:
        cluster.close()


def ticker(d: Any, tmp_path: Any) -> tuple[str, str]:
    """Schedule a ``ticker`` job: (its id, the file whose creation ends it)."""
    go = str(tmp_path / f"go-{uuid.uuid4().hex}")
    return d.schedule("ticker", payload=json.dumps({"until": go})), go


def held(d: Any, job_id: str) -> str:
    """What the daemon holds of a running job's .out (its file: get-log would follow it
    until the job ends)."""
    try:
        with open(os.path.join(d.data_dir, "logs", f"{job_id}.out"), errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def ticks(text: str) -> list[int]:
    return [int(n) for n in TICK.findall(text)]


def complete_ticker_log(text: str) -> int:
    """Assert a ticker's .out is whole (ticks 0..N-1 in order, then its last line) and
    return N: no byte lost or written twice on the way home."""
    found = ticks(text)
    done = re.findall(r"^ticker done after (\d+) ticks$", text, re.M)
    assert done, f"the last line is missing: {text[-300:]!r}"
    assert found == list(range(int(done[0]))), f"ticks not contiguous: {found[:5]}..."
    return int(done[0])


def ancestors(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).parents()]


def assert_runs_on(cluster: Cluster, job_id: str, pid: int) -> None:
    """The job's process ``pid`` runs under the worker that claimed it, in its namespace,
    not under the daemon."""
    worker = cluster.worker_of(job_id)
    assert worker.proc.pid in ancestors(pid), "the job is a descendant of its worker"
    assert cluster.daemon.proc.pid not in ancestors(pid)
    if worker.namespace is not None:
        assert netns.net_namespace_of(pid) == worker.namespace.inode()


# -- the core flows, run by workers -------------------------------------------------------
def test_spider_jobs_run_on_workers_and_their_outcome_logs_stats_and_items_come_home(
        make_cluster):
    cluster = make_cluster()
    d = cluster.daemon
    assert "ticker" in d.ok(d.get("/list-spiders.json", project="demo"))["spiders"]
    ok = d.schedule("ok", payload='{"pages": [1]}', description="remote")
    items = d.schedule("items", payload='{"count": 5}')
    fail = d.schedule("fail")
    job = d.wait_status(ok, "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL" and job["exit-code"] == 0, d.log_text(ok, "err")
    said = d.said(ok)
    assert (said["job"], said["project"], said["spider"]) == (ok, "demo", "ok")
    assert json.loads(said["payload"]) == {"pages": [1]} and said["telnet"] is False
    assert said["sid"] == said["ppid"], "the job leads its own session on the worker too"
    assert "Spider closed (finished)" in d.log_text(ok, "err")
    row = cluster.row(ok)
    assert row["host"] in {w.name for w in cluster.workers} and row["attempt"] is not None
    job = d.wait_status(items, "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL" and job["stats"]["item_scraped_count"] == 5
    page = d.ok(d.get("/job-items.json", id=items))
    assert page["total"] == 5 and [i["n"] for i in page["items"]] == list(range(5))
    job = d.wait_status(fail, "SUCCESSFUL", "FAILED")
    assert (job["status"], job["exit-code"], job["reason"]) == ("FAILED", 3, "exit code 3")
    assert "about to fail" in d.log_text(fail, "err")
    status = d.ok(d.get("/status.json"))
    assert status["jobs-run"] == 3 and status["jobs-failed"] == 1


def test_a_cluster_over_tls_to_redis_and_to_the_daemon(make_cluster):
    """docs/cluster.md's set-up: Redis speaks only TLS (rediss://, the private CA's
    certificate required) and the daemon only HTTPS; the worker trusts that CA
    (--ca-file) and a job runs on it with its logs home."""
    cluster = make_cluster(workers=1, tls=True)
    d = cluster.daemon
    assert d.url.startswith("https://") and cluster.workers[0].daemon_url.startswith("https://")
    assert cluster.workers[0].broker.startswith("rediss://")
    job_id = d.schedule("ok", payload='{"pages": [1]}')
    job = d.wait_status(job_id, "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL", d.log_text(job_id, "err")
    assert cluster.row(job_id)["host"] == "w1"
    assert "Spider closed (finished)" in d.log_text(job_id, "err")
    # nothing answers in clear: Redis refuses a plain PING, the daemon plain HTTP
    with socket.create_connection(("127.0.0.1", cluster.redis.port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        try:
            answer = sock.recv(64)
        except OSError:
            answer = b""
    assert not answer.startswith(b"+PONG")
    with pytest.raises(requests.ConnectionError):
        requests.get(d.url.replace("https://", "http://") + "/status.json", timeout=5)


def test_a_scheduled_job_fires_onto_a_worker(make_cluster):
    cluster = make_cluster(workers=1)
    d = cluster.daemon
    template = d.schedule("ok", when="every 1 hours")
    child = d.ok(d.post("/run-job.json", id=template))["identifier"]
    job = d.wait_status(child, "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL" and job["parent"] == template
    assert cluster.row(child)["host"] == "w1"
    assert d.job(template)["status"] == "SCHEDULED"


def test_get_log_follows_a_remote_job_until_it_ends_with_every_byte(make_cluster, tmp_path):
    cluster = make_cluster()
    d = cluster.daemon
    job_id, go = ticker(d, tmp_path)
    assert_runs_on(cluster, job_id, d.said(job_id)["pid"])
    received: list[bytes] = []
    done = threading.Event()

    def follow() -> None:
        with requests.get(f"{d.url}/get-log/data/{job_id}.out", stream=True, timeout=120,
                          headers={"Authorization": f"Bearer {cluster.operator_key}"}) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(None):
                received.append(chunk)
        done.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_for(lambda: len(ticks(b"".join(received).decode())) >= 20, 30,
             what="ticks shipped home and followed")
    assert not done.is_set(), "the response stays open while the job runs"
    open(go, "w").close()
    assert done.wait(60), "the followed log ends when the remote job ends"
    job = d.job(job_id)
    assert job["status"] == "SUCCESSFUL"
    text = b"".join(received).decode()
    assert complete_ticker_log(text) >= 20
    assert text == d.log_text(job_id), "what was followed is the whole file"


def test_cancel_reaches_the_worker_and_ends_the_tree_with_complete_logs(make_cluster):
    cluster = make_cluster()
    d = cluster.daemon
    polite, stubborn = d.schedule("sleep"), d.schedule("stubborn")
    said = d.said(polite)
    assert_runs_on(cluster, polite, said["pid"])
    stubborn_pid = d.said(stubborn)["pid"]
    body = d.ok(d.post("/cancel-job.json", id=polite))
    assert body["job-status"] == "CANCELED"
    job = d.wait_status(polite, "CANCELED")
    assert job["reason"] == "canceled by user"
    for pid in (said["ppid"], said["pid"], said["group_child"], said["session_child"]):
        wait_for(lambda: gone(pid), 20, what=f"pid {pid} on the worker to be gone")
    assert job_processes([polite]) == []
    err = d.log_text(polite, "err")
    assert err.rstrip().endswith("Spider closed (shutdown)"), "written after TERM, shipped"
    assert job["stats"]["finish_reason"] == "shutdown"
    d.ok(d.post("/cancel-job.json", id=stubborn))
    job = d.wait_status(stubborn, "CANCELED")
    assert job["signal"] == "SIGKILL", "TERM ignored: KILL after kill-grace, as locally"
    wait_for(lambda: gone(stubborn_pid), 20, what="the stubborn spider to be killed")
    assert d.ok(d.get("/status.json"))["jobs-canceled"] == 2


def test_the_daemon_dispatches_only_what_the_workers_slots_hold(make_cluster):
    cluster = make_cluster(workers=2, concurrency=1)
    d = cluster.daemon
    first, second, third = (d.schedule("sleep") for _ in range(3))
    for job_id in (first, second):
        d.said(job_id)
    assert {cluster.worker_of(first).name, cluster.worker_of(second).name} == {"w1", "w2"}
    # two heartbeats of each worker later, the third is still waiting in crawld's queue
    for worker in cluster.workers:
        since = len(d.log())
        wait_for(lambda: len(access_lines(d, "POST /cluster/heartbeat", 200, worker.address,
                                          since)) >= 2, 30, what="two more heartbeats")
    assert d.job(third)["status"] == "PENDING" and cluster.row(third)["attempt"] is None
    assert cluster.queued() == {"crawld.spider": 0, "crawld.browser": 0}, "nothing sent"
    freed = cluster.worker_of(second)
    d.ok(d.post("/cancel-job.json", id=second))
    d.said(third)
    assert cluster.worker_of(third) is freed
    assert d.job(third)["started"] >= d.job(second)["finished"]


BROWSER_SCRIPT = '''
async def run(page, job):
    await page.set_content("<title>from a worker</title><h1>hi</h1>")
    print("title:", await page.title(), flush=True)
    return {"ok": True}
'''


def test_each_kind_of_job_goes_to_a_worker_that_takes_its_queue(make_cluster):
    cluster = make_cluster(workers=2, queues=["spider", "browser"])
    d = cluster.daemon
    d.push(cluster_project(extra={"demo/scripts/hello.py": BROWSER_SCRIPT}))
    script = d.ok(d.post("/schedule-job.json", project="demo", script="hello",
                         when="now"))["identifier"]
    spider = d.schedule("ok")
    job = d.wait_status(script, "SUCCESSFUL", "FAILED", timeout=120)
    assert job["status"] == "SUCCESSFUL", d.log_text(script, "err")
    assert job["kind"] == "script" and cluster.row(script)["host"] == "w2"
    assert "title: from a worker" in d.log_text(script), "its log came home"
    assert d.wait_status(spider, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    assert cluster.row(spider)["host"] == "w1"


LIVE_SCRIPT = '''
import os

async def run(page, job):
    await page.set_content("<title>live</title><h1>hi</h1>")
    job.progress(0.5, "loaded")
    job.save("data.json", '{"saved": true}')
    await page.screenshot(path=os.path.join(os.environ["CRAWLD_FILES_DIR"], "page.png"))
    job.post({"waiting": True})
    async for message in job.messages():
        job.post({"script got": message})
        break
    job.progress(1.0, "done")
    return {"ok": True}
'''


def remote_script(make_cluster: Callable[..., Any], name: str, source: str
                  ) -> tuple[Any, Any, str]:
    """A one-worker cluster running browser script ``name`` (``source``): the cluster,
    its daemon and the job's id."""
    cluster = make_cluster(workers=1)
    d = cluster.daemon
    d.push(cluster_project(extra={f"demo/scripts/{name}.py": source}))
    job_id = d.ok(d.post("/schedule-job.json", project="demo", script=name,
                         when="now"))["identifier"]
    return cluster, d, job_id


def test_a_remote_browser_jobs_events_files_and_messages_come_home(make_cluster):
    cluster, d, job_id = remote_script(make_cluster, "live", LIVE_SCRIPT)

    def output(**params: Any) -> dict:
        return d.ok(d.get("/job-output.json", id=job_id, **params))

    def posted() -> list:
        return d.ok(d.get("/job-posts.json", id=job_id))["posts"]
    [first] = wait_for(posted, 120, what="the remote job's post in job-posts.json")
    assert first["data"] == {"waiting": True}
    assert cluster.row(job_id)["host"] == "w1"
    live = output()
    assert live["running"] is True and live["progress"] == 0.5, "events come home live"
    assert {"waiting": True} in [m["data"] for m in live["messages"]]
    assert png_size(d.get("/job-screenshot.png", id=job_id))[0] > 0, "relayed live"
    d.ok(d.post("/job-message.json", id=job_id, data=json.dumps({"reply": 42})))
    job = d.wait_status(job_id, "SUCCESSFUL", "FAILED", timeout=60)
    assert job["status"] == "SUCCESSFUL", d.log_text(job_id, "err")
    assert [p["data"] for p in posted()] == [{"script got": {"reply": 42}}]
    assert posted() == [], "each post handed out once"
    out = output()
    posts = [m["data"] for m in out["messages"] if m["type"] == "post"]
    assert posts == [{"waiting": True}, {"script got": {"reply": 42}}]
    assert [m["id"] for m in out["messages"]] == list(range(1, len(out["messages"]) + 1))
    assert (out["progress"], out["result"]) == (1.0, {"ok": True})
    files = {f["name"]: f for f in d.ok(d.get("/job-files.json", id=job_id))["files"]}
    assert sorted(files) == ["data.json", "page.png"]
    r = d.session.get(d.url + files["data.json"]["url"], timeout=30)
    assert r.status_code == 200 and r.json() == {"saved": True}
    r = d.session.get(d.url + files["page.png"]["url"], timeout=30)
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n") and len(r.content) > 1000
    assert len(r.content) == files["page.png"]["size"]


TALL_SCRIPT = '''
async def run(page, job):
    await page.set_content('<body style="margin:0"><div style="height:3000px">tall</div>')
    job.post({"ready": True})
    async for message in job.messages():
        break
    return {"ok": True}
'''


def png_size(r: requests.Response) -> tuple[int, int]:
    """The width and height of a PNG answer (its IHDR), after checking it is one."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n") and r.content[12:16] == b"IHDR"
    return struct.unpack(">II", r.content[16:24])


def test_a_live_screenshot_of_a_remote_browser_job_comes_through_its_worker(make_cluster):
    cluster, d, job_id = remote_script(make_cluster, "tall", TALL_SCRIPT)
    wait_for(lambda: d.ok(d.get("/job-posts.json", id=job_id))["posts"], 120,
             what="the remote job's page to be ready")
    assert cluster.row(job_id)["host"] == "w1"
    width, height = png_size(d.get("/job-screenshot.png", id=job_id))
    assert (width, height) == (1280, 720), "the viewport"
    width, full = png_size(d.get("/job-screenshot.png", id=job_id, **{"full-page": "1"}))
    assert width == 1280 and full >= 3000, "full_page travels to the worker"
    d.ok(d.post("/job-message.json", id=job_id, data="1"))
    job = d.wait_status(job_id, "SUCCESSFUL", "FAILED", timeout=60)
    assert job["status"] == "SUCCESSFUL", d.log_text(job_id, "err")
    r = d.get("/job-screenshot.png", id=job_id)
    assert r.status_code == 404, "the job ended: nothing to ask"
    assert d.ok(d.get("/job-files.json", id=job_id))["files"] == [], \
        "live screenshots leave no file behind"


# -- failures -----------------------------------------------------------------------------
def test_a_duplicated_celery_message_runs_nothing_twice(make_cluster):
    cluster = make_cluster()
    d = cluster.daemon
    job_id = d.schedule("sleep")
    said = d.said(job_id)
    attempt = cluster.row(job_id)["attempt"]
    titles = sorted(process_title(p) for p in job_processes([job_id]))
    assert len(titles) == 2, titles  # the keeper and Scrapy
    claims = len(access_lines(d, "POST /cluster/claim"))
    cluster.send_run(job_id, attempt)  # the same task id, as a redelivery would
    wait_for(lambda: access_lines(d, "POST /cluster/claim", 409), 30,
             what="the duplicate's claim to be refused")
    assert len(access_lines(d, "POST /cluster/claim")) == claims + 1
    assert cluster.queued()["crawld.spider"] == 0, "the duplicate was consumed"
    assert len(said_lines(d, job_id)) == 1
    assert sorted(process_title(p) for p in job_processes([job_id])) == titles
    assert not gone(said["pid"]) and d.job(job_id)["status"] == "RUNNING"
    d.ok(d.post("/cancel-job.json", id=job_id))
    d.wait_status(job_id, "CANCELED")
    cluster.send_run(job_id, attempt)  # and once more after the end
    wait_for(lambda: len(access_lines(d, "POST /cluster/claim", 409)) >= 2, 30,
             what="the late duplicate's claim to be refused")
    assert job_processes([job_id]) == [] and len(said_lines(d, job_id)) == 1
    assert d.job(job_id)["status"] == "CANCELED"
    assert d.ok(d.get("/status.json"))["jobs-run"] == 1


def test_a_dead_worker_host_fails_its_job_as_lost_and_the_other_worker_carries_on(
        make_cluster, tmp_path):
    cluster = make_cluster(workers=2, concurrency=1, heartbeat=1, lost_after=5)
    d = cluster.daemon
    doomed = d.schedule("sleep")
    survivor, go = ticker(d, tmp_path)
    said = d.said(doomed)
    d.said(survivor)
    dead, alive = cluster.worker_of(doomed), cluster.worker_of(survivor)
    assert dead is not alive
    attempt = cluster.row(doomed)["attempt"]
    killed = dead.die()
    assert said["pid"] in killed
    job = d.wait_status(doomed, "FAILED", "SUCCESSFUL", "CANCELED", timeout=60)
    assert job["status"] == "FAILED" and "worker lost" in job["reason"], job["reason"]
    assert dead.name in job["reason"]
    assert cluster.row(doomed)["attempt"] == attempt, "not re-run (retry-lost not asked)"
    assert d.job(survivor)["status"] == "RUNNING"
    before = len(ticks(held(d, survivor)))
    wait_for(lambda: len(ticks(held(d, survivor))) > before + 10, 30,
             what="the other worker's job to go on shipping its log")
    open(go, "w").close()
    assert d.wait_status(survivor, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    complete_ticker_log(d.log_text(survivor))
    after = d.schedule("ok")
    assert d.wait_status(after, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    assert cluster.worker_of(after) is alive
    assert len(said_lines(d, doomed)) == 1 and job_processes([doomed]) == []
    listed = {j["identifier"] for j in d.jobs("COMPLETED") + d.jobs("ACTIVE")}
    assert listed == {doomed, survivor, after}


def test_retry_lost_puts_a_lost_job_without_items_back_in_the_queue(make_cluster):
    cluster = make_cluster(workers=2, concurrency=1, heartbeat=1, lost_after=5)
    d = cluster.daemon
    job_id = d.schedule("sleep", **{"retry-lost": "1"})
    first_pid = d.said(job_id)["pid"]
    first = cluster.worker_of(job_id)
    attempt = cluster.row(job_id)["attempt"]
    first.die()
    second = wait_for(lambda: [line for line in said_lines(d, job_id)
                               if line["pid"] != first_pid], 60,
                      what="the second attempt to run")
    assert len(second) == 1, "the new attempt ran once"
    row = cluster.row(job_id)
    assert row["attempt"] > attempt and row["host"] != first.name
    assert gone(first_pid) and not gone(second[0]["pid"])
    assert d.job(job_id)["status"] == "RUNNING"
    d.ok(d.post("/cancel-job.json", id=job_id))
    assert d.wait_status(job_id, "CANCELED")["status"] == "CANCELED"


def test_a_frozen_worker_is_lost_and_when_it_wakes_its_attempt_is_refused_and_killed(
        make_cluster, tmp_path):
    cluster = make_cluster(workers=1, heartbeat=1, lost_after=4)
    d = cluster.daemon
    job_id, go = ticker(d, tmp_path)
    said = d.said(job_id)
    worker = cluster.worker_of(job_id)
    worker.pause()
    try:
        job = d.wait_status(job_id, "FAILED", "SUCCESSFUL", timeout=60)
        assert job["status"] == "FAILED" and "worker lost" in job["reason"]
        assert not gone(said["pid"]), "the job itself still runs on the frozen worker"
    finally:
        worker.resume()
    wait_for(lambda: gone(said["pid"]) and gone(said["ppid"]), 30,
             what="the woken worker to kill the refused attempt's tree")
    assert job_processes([job_id]) == []
    assert d.job(job_id)["status"] == "FAILED", "nothing it says afterwards changes the end"
    open(go, "w").close()
    later = d.schedule("ok")
    assert d.wait_status(later, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"


def test_a_restarted_worker_sweeps_the_jobs_it_left_and_reports_them(make_cluster):
    cluster = make_cluster(workers=1, heartbeat=1, lost_after=30)
    d = cluster.daemon
    job_id = d.schedule("sleep")
    said = d.said(job_id)
    worker = cluster.worker_of(job_id)
    worker.kill()  # the worker alone: its job's tree goes on
    pids = (said["ppid"], said["pid"], said["group_child"], said["session_child"])
    assert not any(gone(pid) for pid in pids)
    cluster.restart_worker(worker)
    job = d.wait_status(job_id, "FAILED", "SUCCESSFUL", "CANCELED", timeout=60)
    assert job["status"] == "FAILED" and "the worker restarted" in job["reason"]
    for pid in pids:
        wait_for(lambda: gone(pid), 20, what=f"left-over pid {pid} to be swept")
    assert "CRAWLD-TEST" in d.log_text(job_id), "what it had written came home"
    wait_for(lambda: os.listdir(os.path.join(worker.data_dir, "attempts")) == [], 20,
             what="the worker to forget the attempt once its end was accepted")
    after = d.schedule("ok")
    assert d.wait_status(after, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"


def test_a_broker_restart_pauses_dispatch_and_spares_running_jobs(make_cluster, tmp_path):
    cluster = make_cluster(workers=2, concurrency=1, heartbeat=1, lost_after=15)
    d = cluster.daemon
    running, go = ticker(d, tmp_path)
    said = d.said(running)
    assert cluster.redis.stop() == 0
    accepted = [d.schedule("ok") for _ in range(2)]
    before = len(ticks(held(d, running)))
    wait_for(lambda: len(ticks(held(d, running))) > before + 10, 30,
             what="the running job's log to come home without the broker")
    assert d.job(running)["status"] == "RUNNING" and not gone(said["pid"])
    assert all(d.job(j)["status"] in ("PENDING", "RUNNING") for j in accepted)
    cluster.redis.start()
    for job_id in accepted:
        job = d.wait_status(job_id, "SUCCESSFUL", "FAILED", timeout=90)
        assert job["status"] == "SUCCESSFUL", job["reason"]
    open(go, "w").close()
    assert d.wait_status(running, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    complete_ticker_log(d.log_text(running))
    assert all(len(said_lines(d, j)) == 1 for j in accepted), "each ran once"


def test_a_daemon_restart_leaves_remote_jobs_running_and_they_end_normally(
        make_cluster, tmp_path):
    cluster = make_cluster(workers=1, heartbeat=1, lost_after=10)
    d = cluster.daemon
    job_id, go = ticker(d, tmp_path)
    said = d.said(job_id)
    assert d.stop() == 0
    assert not gone(said["pid"]) and not gone(said["ppid"]), "not killed with the daemon"
    before = len(ticks(held(d, job_id)))
    d.start()
    assert d.job(job_id)["status"] == "RUNNING"
    wait_for(lambda: len(ticks(held(d, job_id))) > before + 10, 30,
             what="the log to resume after the restart")
    open(go, "w").close()
    job = d.wait_status(job_id, "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL", job["reason"]
    complete_ticker_log(d.log_text(job_id))
    assert len(said_lines(d, job_id)) == 1
