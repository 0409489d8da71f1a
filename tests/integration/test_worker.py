"""``crawld worker`` as a real process: a real redis-server, real Celery messages, the real
fixture Scrapy project run through the zygote, and a fake daemon (fake_cluster_daemon.py,
a twisted.web process implementing the worker's side of the /cluster/* contract).

The daemon side of the cluster is tested with the real daemon elsewhere; these tests show
the worker keeps its half: it claims before it starts (a duplicate message starts
nothing), fetches each code hash once, ships .out/.err/items by offset, heartbeats,
applies a signal from a heartbeat answer to the whole tree, and after a SIGKILL and a
restart sweeps the attempt it left.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from typing import Any, Optional

import psutil
import pytest
import requests

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.conftest import gone

celery = pytest.importorskip("celery")

from crawld.launch.worker import make_app, queue_for, task_id  # noqa: E402
from crawld.model import Actor, Job, JobStatus  # noqa: E402

REDIS = "/usr/bin/redis-server"
KEY = "worker-key-for-tests"
HERE = os.path.dirname(os.path.abspath(__file__))

ITEMS_SPIDER = '''
import scrapy


class Items(scrapy.Spider):
    name = "items"

    async def start(self):
        for n in range(3):
            yield {"n": n, "text": "item %d" % n}
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def version_zip() -> bytes:
    """The fixture project's version files as the daemon serves them: the contents of
    ``demo/`` (scrapy.cfg at the top), sorted names, fixed timestamps."""
    pushed = zipfile.ZipFile(io.BytesIO(project.build(
        "demo", extra={"demo/spiders/items_spider.py": ITEMS_SPIDER})))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(pushed.namelist()):
            info = zipfile.ZipInfo(name[len("demo/"):], (1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, pushed.read(name))
    return out.getvalue()


@pytest.fixture
def redis_url(tmp_path: Any):
    """A real redis-server on a free loopback port (no persistence)."""
    if not os.access(REDIS, os.X_OK):
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
    try:
        wait_for(up, 20, what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


class FakeDaemon:
    """fake_cluster_daemon.py in a process of its own, and the code it serves."""

    def __init__(self, tmp_path: Any, tls: tuple[str, ...] = ()) -> None:
        """``tls``: (certificate, key) PEM files: serve https."""
        self.code_dir = str(tmp_path / "daemon-code")
        os.makedirs(self.code_dir)
        data = version_zip()
        self.hash = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.code_dir, f"{self.hash}.zip"), "wb") as fh:
            fh.write(data)
        self.log = open(tmp_path / "fake-daemon.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fake_cluster_daemon.py"), self.code_dir,
             KEY, "0.5", *tls], stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        self.url = re.search(r"https?://\S+", line).group(0)
        self.http = requests.Session()

    def state(self) -> dict:
        return self.http.get(self.url + "/test/state", timeout=10).json()["state"]

    def control(self, what: str, **body: Any) -> None:
        self.http.post(f"{self.url}/test/{what}", json=body, timeout=10).raise_for_status()

    def add_job(self, spider: str, attempt: int = 1, code: Optional[str] = "",
                kind: str = "spider", payload: str = "{}") -> str:
        now = time.time()
        job = Job(str(uuid.uuid4()), JobStatus.RUNNING, Actor.USER, "now", "demo", spider,
                  now, now, started=now, kind=kind, payload=payload)
        wire = {**dataclasses.asdict(job), "status": job.status.value,
                "actor": job.actor.value}
        self.control("job", job=wire, attempt=attempt,
                     code=self.hash if code == "" else code)
        return job.id

    def held(self, key: str, stream: str) -> str:
        return self.state()["held"].get(f"{key} {stream}", "")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Worker:
    """``crawld worker`` as a process; restartable on the same data directory."""

    def __init__(self, tmp_path: Any, broker: str, daemon: str, *extra: str) -> None:
        self.data_dir = str(tmp_path / "worker")
        self.log_path = str(tmp_path / "worker.log")
        self.argv = [sys.executable, "-m", "crawld", "worker", "--broker", broker,
                     "--daemon", daemon, "--data-dir", self.data_dir, "--concurrency", "2",
                     "--name", "w1", "--kill-grace", "2", *extra]
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Worker":
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL,
                                         env={**os.environ, "CRAWLD_KEY": KEY})
        wait_for(lambda: "crawld@w1 ready" in self.log() or self.dead(), 60,
                 what="the worker to consume")
        assert not self.dead(), self.log()
        return self

    def dead(self) -> bool:
        return self.proc.poll() is not None

    def log(self) -> str:
        with open(self.log_path) as fh:
            return fh.read()

    def zygote(self) -> int:
        found = wait_for(lambda: re.findall(r"zygote ready \(pid (\d+)", self.log()), 60,
                         what="the worker's zygote")
        return int(found[-1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def cluster(tmp_path: Any, redis_url: str):
    daemon = FakeDaemon(tmp_path)
    worker = Worker(tmp_path, redis_url, daemon.url)
    sender = make_app(redis_url)
    try:
        yield daemon, worker, sender
    finally:
        worker.stop()
        daemon.stop()


def send(sender: Any, job_id: str, attempt: int = 1, kind: str = "spider") -> None:
    """What the daemon's celery launcher sends: the task, its id, its queue."""
    sender.send_task("crawld.run", args=[{"job": job_id, "attempt": attempt, "kind": kind}],
                     task_id=task_id(job_id, attempt), queue=queue_for(kind))


def said(text: str) -> dict:
    """The fixture spiders' ``CRAWLD-TEST {...}`` line."""
    return json.loads(re.search(r"CRAWLD-TEST (\{.*\})", text).group(1))


def sleeping(daemon: FakeDaemon, worker: Worker, sender: Any) -> tuple[str, str, list]:
    """Start the worker and a ``sleep`` job on it; its id, key and pids once it runs
    (the keeper, Scrapy, a child in Scrapy's group, one in a session of its own)."""
    worker.start()
    job = daemon.add_job("sleep")
    key = f"{job}/1"
    send(sender, job)
    out = wait_for(lambda: "CRAWLD-TEST" in daemon.held(key, "out") and
                   daemon.held(key, "out"), 120, what="the sleep spider's report")
    report = said(out)
    return job, key, [daemon.state()["started"][key]["pid"], report["pid"],
                      report["group_child"], report["session_child"]]


def test_worker_runs_spiders_and_ships_their_output_home(cluster: Any) -> None:
    daemon, worker, sender = cluster
    worker.start()
    ok = daemon.add_job("ok")
    send(sender, ok)
    key = f"{ok}/1"
    end = wait_for(lambda: daemon.state()["ends"].get(key), 120, what="the job's end")
    assert end["code"] == 0 and end["signal"] is None
    out, err = daemon.held(key, "out"), daemon.held(key, "err")
    assert end["offsets"]["out"] == len(out.encode("latin-1")) > 0
    assert end["offsets"]["err"] == len(err.encode("latin-1")) > 0
    report = said(out)  # the job's own environment, as locally
    assert report["job"] == ok and report["project"] == "demo" and report["spider"] == "ok"
    assert report["telnet"] is False and report["remote"] is False
    assert "Spider closed (finished)" in err
    state = daemon.state()
    assert state["claims"][key] == "w1" and state["started"][key]["pid"] > 0
    # a spider that yields items: they come home as the items stream
    items = daemon.add_job("items")
    send(sender, items)
    ikey = f"{items}/1"
    wait_for(lambda: daemon.state()["ends"].get(ikey), 120, what="the items job's end")
    lines = [json.loads(line) for line in daemon.held(ikey, "items").splitlines()]
    assert [item["n"] for item in lines] == [0, 1, 2]
    stats = daemon.state()["stats"].get(ikey)
    assert stats and stats.get("item_scraped_count") == 3
    # the same code hash is fetched once; the spool is gone once the end was accepted
    assert daemon.state()["fetches"] == {daemon.hash: 1}
    assert not os.listdir(os.path.join(worker.data_dir, "attempts"))
    assert not [n for n in os.listdir(os.path.join(worker.data_dir, "logs"))
                if n.startswith((ok, items))]
    # heartbeats came, idle or not, with the worker's slots and queues
    beat = daemon.state()["last_beats"][-1]
    assert beat["worker"] == "w1" and beat["slots"] == 2
    assert sorted(beat["queues"]) == ["browser", "spider"]
    # a redelivered message for a claimed attempt starts nothing (409 on claim)
    send(sender, ok)
    wait_for(lambda: daemon.state()["claim_calls"][key] == 2, 60, what="the second claim")
    assert f"{key}: not started (attempt {key} is not the job's current attempt)" in \
        wait_for(lambda: re.search(rf"{re.escape(key)}: not started.*", worker.log()) and
                 worker.log(), 30, what="the refusal in the log")
    assert daemon.state()["end_calls"][key] == 1


def test_a_signal_in_the_heartbeat_answer_ends_the_whole_tree(cluster: Any) -> None:
    daemon, worker, sender = cluster
    job, key, pids = sleeping(daemon, worker, sender)
    leader = pids[0]
    assert psutil.Process(leader).ppid() == worker.zygote()  # the zygote fast path
    assert not any(gone(pid) for pid in pids)
    # its memory and pid travel with the heartbeats
    wait_for(lambda: any(a["key"] == key and a["pid"] == leader and a["rss"] > 0
                         for b in daemon.state()["last_beats"] for a in b["attempts"]),
             30, what="a heartbeat naming the attempt")
    daemon.control("signal", key=key, sig=15)
    end = wait_for(lambda: daemon.state()["ends"].get(key), 60, what="the job's end")
    assert end["code"] is not None or end["signal"] is not None
    wait_for(lambda: all(gone(pid) for pid in pids), 30, what="the whole tree to end")
    assert end["offsets"]["out"] == len(daemon.held(key, "out").encode("latin-1"))


def test_a_refused_attempt_is_killed_at_once(cluster: Any) -> None:
    daemon, worker, sender = cluster
    worker.start()
    job = daemon.add_job("stubborn")   # ignores SIGTERM: only a KILL ends it
    key = f"{job}/1"
    send(sender, job)
    out = wait_for(lambda: "CRAWLD-TEST" in daemon.held(key, "out") and
                   daemon.held(key, "out"), 120, what="the stubborn spider's report")
    pids = [daemon.state()["started"][key]["pid"], said(out)["pid"]]
    daemon.control("refuse", key=key)
    wait_for(lambda: all(gone(pid) for pid in pids), 20, what="the refused tree to die")
    wait_for(lambda: key in worker.log() and "refused by the daemon" in worker.log(), 30,
             what="the worker to drop the attempt")
    assert key not in daemon.state()["ends"]
    wait_for(lambda: not os.listdir(os.path.join(worker.data_dir, "attempts")), 30,
             what="the record to go")


def test_a_killed_worker_sweeps_its_attempt_when_it_restarts(cluster: Any) -> None:
    daemon, worker, sender = cluster
    job, key, pids = sleeping(daemon, worker, sender)
    leader = pids[0]
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(10)
    assert not any(gone(pid) for pid in pids)  # the job outlived its worker
    record = os.path.join(worker.data_dir, "attempts", f"{job}.json")
    assert json.load(open(record))["pid"] == leader
    worker.start()
    end = wait_for(lambda: daemon.state()["ends"].get(key), 60, what="the swept end")
    assert end["reason"] == "the worker restarted"
    assert all(gone(pid) for pid in pids)
    assert "CRAWLD-TEST" in daemon.held(key, "out")
    wait_for(lambda: not os.path.exists(record), 30, what="the record to go")


def test_a_stopped_worker_ends_its_jobs_and_reports_them(cluster: Any) -> None:
    daemon, worker, sender = cluster
    job, key, pids = sleeping(daemon, worker, sender)
    worker.proc.send_signal(signal.SIGTERM)    # systemctl stop
    assert worker.proc.wait(60) == 0
    end = daemon.state()["ends"].get(key)
    assert end is not None, worker.log()
    assert all(gone(pid) for pid in pids)
    assert end["offsets"]["err"] == len(daemon.held(key, "err").encode("latin-1")) > 0
    assert not os.listdir(os.path.join(worker.data_dir, "attempts"))


@pytest.mark.skipif(not os.access("/usr/lib/chromium/chromium", os.X_OK),
                    reason="no Chromium")
def test_a_browse_job_runs_on_the_browser_queue(cluster: Any) -> None:
    pytest.importorskip("playwright")
    daemon, worker, sender = cluster
    worker.start()
    job = daemon.add_job("browse", code=None, kind="browse",
                         payload=json.dumps({"html": "<title>from a worker</title>"}))
    key = f"{job}/1"
    send(sender, job, kind="browse")
    end = wait_for(lambda: daemon.state()["ends"].get(key), 120, what="the browse job's end")
    assert end["code"] == 0, daemon.held(key, "err")
    assert daemon.state()["fetches"] == {}   # a browse job needs no code
    # the worker keeps nothing of it once its end was accepted
    wait_for(lambda: not os.listdir(os.path.join(worker.data_dir, "attempts")), 30,
             what="the record to go")
    assert not os.path.exists(os.path.join(worker.data_dir, "files", job))
    assert not [n for n in os.listdir(os.path.join(worker.data_dir, "logs"))
                if n.startswith(job)]


def run_one(tmp_path: Any, redis_url: str, spider: str, tls: tuple[str, ...] = (),
            flags: tuple[str, ...] = ()) -> tuple[FakeDaemon, Worker, str, dict]:
    """A fake daemon (https with ``tls``) and a worker started with ``flags`` run one
    ``spider`` job; both, its key and its end (the caller stops both)."""
    daemon = FakeDaemon(tmp_path, tls)
    daemon.http.verify = False  # the test's own control calls; the worker verifies
    daemon.http.trust_env = False  # (else REQUESTS_CA_BUNDLE would override verify)
    worker = Worker(tmp_path, redis_url, daemon.url, *flags)
    try:
        worker.start()
        job = daemon.add_job(spider)
        send(make_app(redis_url), job)
        key = f"{job}/1"
        return daemon, worker, key, wait_for(lambda: daemon.state()["ends"].get(key), 120,
                                             what="the job's end")
    except BaseException:
        worker.stop()
        daemon.stop()
        raise


def test_an_https_daemon_with_a_private_ca(tmp_path: Any, redis_url: str) -> None:
    from tests.integration.test_tls import make_cert
    cert, key = make_cert(tmp_path, "daemon", 1)
    daemon, worker, job_key, end = run_one(tmp_path, redis_url, "ok", (cert, key),
                                           ("--ca-file", cert))
    try:
        assert daemon.url.startswith("https://")
        assert end["code"] == 0
        assert said(daemon.held(job_key, "out"))["job"] == job_key.split("/")[0]
    finally:
        worker.stop()
        daemon.stop()


def test_without_the_zygote_jobs_start_directly_and_are_reaped(tmp_path: Any,
                                                               redis_url: str) -> None:
    """A direct spawn is the reactor's child: with no SIGCHLD handler in the reactor's
    thread, the worker's reaping loop is what sees it end."""
    daemon, worker, key, end = run_one(tmp_path, redis_url, "fail", flags=("--no-preload",))
    try:
        assert end["code"] == 3
        assert "about to fail" in daemon.held(key, "err")
        assert "zygote ready" not in worker.log()
    finally:
        worker.stop()
        daemon.stop()


def test_output_is_spooled_while_the_daemon_is_down_and_resent_from_its_offset(
        cluster: Any) -> None:
    daemon, worker, sender = cluster
    job, key, pids = sleeping(daemon, worker, sender)
    first = daemon.held(key, "out")
    daemon.control("down", down=True)          # every /cluster call: 503
    calls = daemon.state()["output_calls"]
    daemon.control("forget", key=key)          # and it comes back without that output
    wait_for(lambda: worker.log().count("the daemon is unreachable") >= 2, 30,
             what="the worker to notice")
    assert not any(gone(pid) for pid in pids)  # the job runs on meanwhile
    daemon.control("down", down=False)
    wait_for(lambda: daemon.state()["beats"] and daemon.state()["last_beats"], 30,
             what="heartbeats again")
    # the end: the daemon lacks the bytes it forgot, answers 409 with its offsets (0),
    # and the worker sends them again from its spool before the end is recorded
    daemon.control("signal", key=key, sig=15)
    end = wait_for(lambda: daemon.state()["ends"].get(key), 60, what="the job's end")
    assert daemon.state()["end_calls"][key] >= 2 and daemon.state()["output_calls"] > calls
    assert daemon.held(key, "out").startswith(first)
    for stream in ("out", "err"):
        assert end["offsets"][stream] == len(daemon.held(key, stream).encode("latin-1"))
    wait_for(lambda: all(gone(pid) for pid in pids), 30, what="the tree to end")
