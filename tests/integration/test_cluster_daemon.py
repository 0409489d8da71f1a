"""The daemon's side of the cluster (issue 14) with a real Redis and real Celery messages.

A real ``redis-server`` on a free loopback port, a real daemon with ``launcher = celery``;
the test plays the worker: it takes the Celery message from Redis with kombu (Celery's
own transport) and drives /cluster/* over HTTP as ``crawld worker`` does.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from typing import Any, Optional

import pytest
import requests

from tests.conftest import wait_for
from tests.integration.conftest import DaemonProcess
from tests.integration.test_auth import crawld_cli

kombu = pytest.importorskip("kombu")
REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")

HEARTBEAT = 0.5
LOST_AFTER = 4.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own (no persistence, unless ``aof``)."""

    def __init__(self, tmp_path: Any, aof: bool = False) -> None:
        self.port = free_port()
        self.dir = str(tmp_path / "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.aof = aof
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.aof else "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        wait_for(up, 20, what="redis-server to answer")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


class TestWorker:
    """Plays ``crawld worker``: Celery messages from Redis, /cluster/* over HTTP."""

    __test__ = False

    def __init__(self, daemon: DaemonProcess, broker: str, name: str = "w1",
                 key: Optional[str] = None) -> None:
        self.daemon, self.broker, self.name = daemon, broker, name
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"
        self.attempts: set[str] = set()   # what the heartbeats mention
        self.signals: list[tuple[str, int]] = []
        self.refused: list[str] = []
        self.slots = 1
        self.beating = threading.Event()
        self.heard = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def call(self, path: str, body: dict) -> requests.Response:
        return self.session.post(self.daemon.url + path, json=body, timeout=30)

    def beat(self) -> dict:
        r = self.call("/cluster/heartbeat", {
            "worker": self.name, "slots": self.slots, "queues": ["spider", "browser"],
            "attempts": [{"key": k, "pid": 4242, "rss": 1000} for k in sorted(self.attempts)]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["heartbeat"] == HEARTBEAT and body["lost_after"] == LOST_AFTER
        self.signals += sorted(body["signal"].items())
        self.refused += body["refuse"]
        return body

    def start_beating(self) -> None:
        """Heartbeats every HEARTBEAT seconds in a thread, until ``stop_beating``."""
        self.beating.set()

        def loop() -> None:
            while self.beating.is_set():
                try:
                    self.beat()
                    self.heard.set()
                except (requests.ConnectionError, AssertionError):
                    pass  # the daemon restarts: beat again
                time.sleep(HEARTBEAT)
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        assert self.heard.wait(20), "the daemon did not answer a heartbeat"

    def stop_beating(self) -> None:
        self.beating.clear()
        if self.thread is not None:
            self.thread.join(10)

    def message(self, queue: str = "crawld.spider", timeout: float = 30) -> tuple[dict, dict]:
        """The next Celery message of ``queue``: (its headers, its one argument)."""
        with kombu.Connection(self.broker) as conn:
            q = conn.SimpleQueue(queue)
            try:
                msg = q.get(block=True, timeout=timeout)
                msg.ack()
            finally:
                q.close()
        args, kwargs, _ = msg.decode()
        assert kwargs == {} and len(args) == 1
        return msg.headers, args[0]

    def no_message(self, queue: str = "crawld.spider", within: float = 2.0) -> bool:
        with kombu.Connection(self.broker) as conn:
            q = conn.SimpleQueue(queue)
            try:
                q.get(block=True, timeout=within)
            except q.Empty:
                return True
            finally:
                q.close()
        return False

    def claim(self, job: str, attempt: int) -> requests.Response:
        return self.call("/cluster/claim", {"worker": self.name, "job": job,
                                            "attempt": attempt})

    def run(self, job: str, attempt: int) -> dict:
        """Claim and report started: the attempt runs here."""
        r = self.claim(job, attempt)
        assert r.status_code == 200, r.text
        key = f"{job}/{attempt}"
        self.attempts.add(key)
        r2 = self.call("/cluster/started", {"worker": self.name, "key": key, "pid": 4242,
                                             "pid_started": 1.0})
        assert r2.status_code == 200, r2.text
        return r.json()

    def take(self, job: str) -> str:
        """The job's message, claimed and started here; returns the attempt's key."""
        _, body = self.message()
        assert body["job"] == job
        self.run(job, body["attempt"])
        return f"{job}/{body['attempt']}"

    def output(self, key: str, stream: str, offset: int, data: bytes) -> requests.Response:
        return self.session.post(self.daemon.url + "/cluster/output",
                                 params={"key": key, "stream": stream, "offset": offset},
                                 data=data, timeout=30,
                                 headers={"Content-Type": "application/octet-stream"})

    def end(self, key: str, code: Optional[int], signal: Optional[int] = None,
            offsets: Optional[dict] = None) -> requests.Response:
        r = self.call("/cluster/ended", {"key": key, "code": code, "signal": signal,
                                         "reason": None, "offsets": offsets or {}})
        if r.status_code == 200:
            self.attempts.discard(key)
        return r


def cluster_daemon(tmp_path: Any, broker: str, extra: str = "") -> DaemonProcess:
    return DaemonProcess(tmp_path, "items = yes\n[cluster]\nlauncher = celery\n"
                         f"broker = {broker}\nheartbeat = {HEARTBEAT:g}\n"
                         f"lost-after = {LOST_AFTER:g}\n" + extra)


@pytest.fixture
def cluster(tmp_path, redis_server):
    d = cluster_daemon(tmp_path, redis_server.url).start()
    d.push()
    worker = TestWorker(d, redis_server.url)
    yield d, worker
    worker.stop_beating()
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


def test_a_job_runs_on_the_worker_and_its_logs_come_home(cluster):
    d, worker = cluster
    worker.start_beating()
    first = d.schedule("ok")
    headers, body = worker.message()
    assert headers["task"] == "crawld.run"
    assert body["job"] == first and body["kind"] == "spider"
    assert headers["id"] == f"{first}.{body['attempt']}"
    assert d.job(first)["status"] == "RUNNING"
    # capacity: one worker with one slot; a second job waits for the first
    second = d.schedule("ok")
    assert worker.no_message(within=1.5)
    assert d.job(second)["status"] == "PENDING"

    claimed = worker.run(first, body["attempt"])
    assert claimed["job"]["id"] == first and claimed["job"]["status"] == "RUNNING"
    assert claimed["job"]["attempt"] == body["attempt"] and claimed["job"]["host"] == "w1"
    code = claimed["code"]
    assert code["project"] == "demo" and code["version"] == "1"
    zipped = worker.session.get(f"{d.url}/cluster/code/{code['hash']}.zip", timeout=30)
    assert zipped.status_code == 200 and zipped.headers["Content-Type"] == "application/zip"
    assert hashlib.sha256(zipped.content).hexdigest() == code["hash"]
    assert "scrapy.cfg" in zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    again = TestWorker(d, worker.broker, "w2").claim(first, body["attempt"])
    assert again.status_code == 409
    assert again.json()["msg"].endswith("was already claimed by worker w1")

    key = f"{first}/{body['attempt']}"
    assert worker.output(key, "out", 0, b"hello ").json()["offset"] == 6
    assert worker.output(key, "out", 0, b"hello ").json()["offset"] == 6  # a repeat
    gap = worker.output(key, "out", 100, b"later")
    assert gap.status_code == 409 and gap.json()["offset"] == 6
    assert worker.output(key, "out", 6, b"world\n").json()["offset"] == 12
    assert worker.output(key, "items", 0, b'{"n": 1}\n').json()["offset"] == 9
    stats = worker.call("/cluster/stats", {"key": key, "stats": {"item_scraped_count": 1}})
    assert stats.status_code == 200
    short = worker.end(key, 0, offsets={"out": 20, "err": 0, "items": 9})
    assert short.status_code == 409 and short.json()["offsets"]["out"] == 12
    assert worker.end(key, 0, offsets={"out": 12, "err": 0, "items": 9}).status_code == 200
    assert worker.end(key, 0, offsets={"out": 12, "err": 0, "items": 9}).status_code == 200
    done = d.wait_status(first, "SUCCESSFUL", timeout=30)
    assert done["exit-code"] == 0 and done["stats"]["item_scraped_count"] == 1
    assert d.log_text(first) == "hello world\n"
    items = d.get("/job-items.json", id=first)
    assert d.ok(items)["items"] == [{"n": 1}]
    # the slot is free: the second job is dispatched now
    _, body2 = worker.message()
    assert body2["job"] == second and body2["attempt"] > body["attempt"]


def test_cancel_goes_to_the_worker_in_the_heartbeat_answer(cluster):
    d, worker = cluster
    worker.start_beating()
    job = d.schedule("ok")
    key = worker.take(job)
    answer: dict = {}
    canceling = threading.Thread(
        target=lambda: answer.update(d.ok(d.post("/cancel-job.json", id=job))))
    canceling.start()
    wait_for(lambda: (key, 15) in worker.signals, 20, what="the TERM in a heartbeat")
    worker.output(key, "err", 0, b"terminated\n")
    assert worker.end(key, None, 15, {"out": 0, "err": 11, "items": 0}).status_code == 200
    canceling.join(30)
    assert answer["job-status"] == "CANCELED"
    done = d.job(job)
    assert done["status"] == "CANCELED" and done["signal"] == "SIGTERM"
    assert d.log_text(job, "err") == "terminated\n"


def test_a_silent_worker_is_lost_and_refused_when_it_comes_back(cluster):
    d, worker = cluster
    worker.beat()
    job = d.schedule("ok")
    key = worker.take(job)
    failed = d.wait_status(job, "FAILED", timeout=LOST_AFTER + 20)
    assert failed["reason"].startswith("worker lost: no heartbeat for ")
    assert failed["reason"].endswith(" s from worker w1")
    assert key in worker.beat()["refuse"]
    assert worker.output(key, "out", 0, b"late\n").status_code == 409
    assert worker.end(key, 0).status_code == 409


def test_retry_lost_queues_the_job_again_as_a_new_attempt(cluster):
    d, worker = cluster
    worker.start_beating()
    job = d.schedule("ok", **{"retry-lost": "1"})
    _, body = worker.message()
    worker.claim(job, body["attempt"])  # claimed, then never mentioned: lost
    _, again = worker.message(timeout=LOST_AFTER + 20)
    assert again["job"] == job and again["attempt"] > body["attempt"]
    assert d.job(job)["status"] == "RUNNING"
    worker.run(job, again["attempt"])
    assert worker.end(f"{job}/{again['attempt']}", 0).status_code == 200
    done = d.wait_status(job, "SUCCESSFUL", timeout=30)
    assert done["reason"] is None
    bad = d.post("/schedule-job.json", project="demo", spider="ok", when="now",
                 **{"retry-lost": "maybe"})
    assert bad.status_code == 400 and "retry-lost" in bad.json()["msg"]


def test_a_daemon_restart_leaves_the_remote_job_running(cluster):
    d, worker = cluster
    worker.start_beating()
    job = d.schedule("ok")
    key = worker.take(job)
    assert worker.output(key, "out", 0, b"before\n").status_code == 200
    assert d.stop() == 0
    d.start()
    assert d.job(job)["status"] == "RUNNING"
    assert "attempt" in d.log() and "adopted" in d.log()
    wait_for(lambda: worker.output(key, "out", 7, b"after\n").status_code == 200, 20,
             what="the adopted attempt to take output")
    assert key not in worker.refused
    assert worker.end(key, 0, offsets={"out": 13}).status_code == 200
    d.wait_status(job, "SUCCESSFUL", timeout=30)
    assert d.log_text(job) == "before\nafter\n"


def test_dispatch_waits_for_the_broker_and_keeps_what_was_accepted(tmp_path):
    redis = RedisServer(tmp_path, aof=True).start()
    d = cluster_daemon(tmp_path, redis.url).start()
    worker = TestWorker(d, redis.url)
    try:
        d.push()
        worker.start_beating()
        redis.stop()
        job = d.schedule("ok")  # accepted while the broker is down
        wait_for(lambda: "dispatch paused" in d.log(), 30, what="dispatch to pause")
        redis.start()
        _, body = worker.message(timeout=60)
        assert body["job"] == job
        worker.run(job, body["attempt"])
        assert worker.end(f"{job}/{body['attempt']}", 0).status_code == 200
        d.wait_status(job, "SUCCESSFUL", timeout=30)
        assert "dispatch resumed" in d.log()
    finally:
        worker.stop_beating()
        d.stop()
        redis.stop()


def test_only_worker_keys_reach_the_cluster_routes(tmp_path, redis_server):
    d = cluster_daemon(tmp_path, redis_server.url, "[web]\nauth = required\n")
    os.makedirs(d.data_dir, exist_ok=True)
    worker_key = crawld_cli(d.data_dir, "keys", "add", "--role", "worker").strip()
    operator = crawld_cli(d.data_dir, "keys", "add", "--role", "operator").strip()
    d.start()
    beat = {"worker": "w1", "slots": 1, "attempts": []}
    as_worker = requests.post(d.url + "/cluster/heartbeat", json=beat, timeout=30,
                              headers={"Authorization": f"Bearer {worker_key}"})
    assert as_worker.status_code == 200, as_worker.text
    as_operator = requests.post(d.url + "/cluster/heartbeat", json=beat, timeout=30,
                                headers={"Authorization": f"Bearer {operator}"})
    assert as_operator.status_code == 403
    elsewhere = requests.get(d.url + "/list-jobs.json", timeout=30,
                             headers={"Authorization": f"Bearer {worker_key}"})
    assert elsewhere.status_code == 403 and "worker role" in elsewhere.json()["msg"]
    d.stop()


def test_celery_without_a_broker_refuses_to_start(tmp_path):
    d = cluster_daemon(tmp_path, "")
    proc = subprocess.run([sys.executable, "-m", "crawld", "serve", "--config", d.config_path,
                           "--listen", "127.0.0.1:0", "--data-dir", d.data_dir],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "[cluster] launcher = celery needs [cluster] broker" in proc.stderr
