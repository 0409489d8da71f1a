"""The daemon's side of the cluster (issue 14) without a broker or a socket: the real
Supervisor, Store (in memory), CeleryLauncher, RemoteAttempts and Cluster service, a
dispatcher that records its messages, the routes through StubTreq, all on task.Clock."""
from __future__ import annotations

import hashlib
import json
import re
import signal
import uuid
from typing import Any, Optional

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from crawld.bundles import Bundles
from crawld.cluster import Cluster
from crawld.events import JobEvents
from crawld.launch.celery import CeleryLauncher, task_id
from crawld.launch.protocol import Attempt
from crawld.launch.remote import RemoteAttempts
from crawld.model import Actor, Job, JobStatus, Project, Version
from crawld.store import InlineExecutor, Store
from crawld.supervisor import Supervisor
from tests.unit.fakes import result
from tests.unit.http_fakes import FakeJobs, services, stub
from tests.unit.test_api import call_json

HEARTBEAT, LOST_AFTER = 2.0, 15.0
START = 1_800_000_000.0


class FakeDispatcher:
    """Records messages; ``sent`` is called at once (the broker took them)."""

    def __init__(self, sent) -> None:
        self.sent = sent
        self.messages: list[tuple[str, str, str, dict]] = []
        self.stopped = False

    def submit(self, key: str, tid: str, queue: str, body: dict) -> None:
        self.messages.append((key, tid, queue, body))
        self.sent(key)

    def stop(self):
        self.stopped = True
        return succeed(None)


class Projects:
    """One project whose current version is ``1``, in ``path``."""

    def __init__(self, path: str) -> None:
        self.project = Project("demo", 1, path, ("ok",), 0.0)

    def get(self, name: str) -> Project:
        return self.project

    def version_names(self, name: str) -> list[str]:
        return ["1"]

    def get_version(self, name: str, version: str) -> Version:
        return Version("demo", "1", 1, self.project.path)

    def version_path(self, name: str, version: str) -> Optional[str]:
        return self.project.path


class StoreJobs(FakeJobs):
    """The jobs of the World's store, for the routes that look one up."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, job_id: str):
        return self.store.get_job(job_id)


class World:
    """A daemon's cluster side over one store (a restart builds a new World on it)."""

    def __init__(self, tmp_path, store: Optional[Store] = None, clock: Optional[Clock] = None):
        self.clock = clock or Clock()
        if clock is None:
            self.clock.advance(START)
        self.store = store or Store(":memory:", InlineExecutor())
        self.events = JobEvents()
        self.published: list[Job] = []
        self.events.subscribe(self.published.append)
        self.log_dir = tmp_path / "logs"
        self.items_dir = tmp_path / "items"
        for d in (self.log_dir, self.items_dir, tmp_path / "code"):
            d.mkdir(exist_ok=True)
        (tmp_path / "code" / "scrapy.cfg").write_text("[settings]\n")
        self.remote = RemoteAttempts(
            self.clock, HEARTBEAT, LOST_AFTER,
            items_held=lambda job_id: (self.items_dir / f"{job_id}.jl").stat().st_size
            if (self.items_dir / f"{job_id}.jl").exists() else 0,
            canceling=lambda job_id: self.sup.canceling(job_id))
        self.dispatchers: list[FakeDispatcher] = []

        def dispatcher_for(sent):
            self.dispatchers.append(FakeDispatcher(sent))
            return self.dispatchers[-1]
        self.launcher = CeleryLauncher(self.clock, self.remote, dispatcher_for,
                                       lambda job: succeed("settled"))
        self.sup = Supervisor(self.clock, self.store, self.launcher, self.events,
                              str(self.log_dir), slots=99, kill_grace=5)
        self.files_root = tmp_path / "files"
        self.cluster = Cluster(self.store, self.remote, Projects(str(tmp_path / "code")),
                               Bundles(str(tmp_path / "bundles"), to_thread=inline),
                               str(self.log_dir), str(self.items_dir), self.sup.canceling,
                               files_root=str(self.files_root), to_thread=inline)
        self.client = stub(services(self.clock, log_dir=str(self.log_dir),
                                    cluster=self.cluster, jobs=StoreJobs(self.store),
                                    to_thread=inline))

    @property
    def messages(self) -> list[tuple[str, str, str, dict]]:
        return [m for d in self.dispatchers for m in d.messages]

    def job(self, retry_lost: bool = False, kind: str = "spider") -> Job:
        job = Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER,
                  schedule="now", project="demo", spider="ok", created=1, updated=1,
                  retry_lost=retry_lost, kind=kind)
        job = result(self.store.add_job(job))
        self.sup.enqueue(job.id)
        return job

    def get(self, job_id: str) -> Job:
        return result(self.store.get_job(job_id))

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        return call_json(self.client, "post", path, data=json.dumps(body).encode(),
                         headers={"Content-Type": ["application/json"]})

    def beat(self, worker: str = "w1", slots: int = 1, attempts: tuple[str, ...] = ()):
        code, body = self.post("/cluster/heartbeat", {
            "worker": worker, "slots": slots, "queues": ["spider", "browser"],
            "attempts": [{"key": k, "pid": 7, "rss": 1234} for k in attempts]})
        assert code == 200, body
        assert body["heartbeat"] == HEARTBEAT and body["lost_after"] == LOST_AFTER
        return body

    def claim(self, job_id: str, number: int, worker: str = "w1") -> tuple[int, dict]:
        return self.post("/cluster/claim", {"worker": worker, "job": job_id,
                                            "attempt": number})

    def run(self, job: Job, worker: str = "w1") -> str:
        """Claim the job's current attempt and report it started; returns its key."""
        number = self.get(job.id).attempt
        assert self.claim(job.id, number, worker)[0] == 200
        key = f"{job.id}/{number}"
        code, body = self.post("/cluster/started", {"worker": worker, "key": key,
                                                     "pid": 7, "pid_started": 1.0})
        assert code == 200, body
        return key

    def output(self, key: str, stream: str, offset: int, data: bytes) -> tuple[int, dict]:
        return call_json(self.client, "post",
                         f"/cluster/output?key={key}&stream={stream}&offset={offset}",
                         data=data, headers={"Content-Type": ["application/octet-stream"]})

    def end(self, key: str, code: Optional[int] = 0, sig: Optional[int] = None,
            offsets: Optional[dict] = None) -> tuple[int, dict]:
        return self.post("/cluster/ended", {"key": key, "code": code, "signal": sig,
                                            "reason": None, "offsets": offsets or {}})


def inline(fn, *args):
    return succeed(fn(*args))


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_jobs_wait_for_worker_slots_and_attempt_numbers_come_from_the_clock(world):
    first = world.job()
    assert world.get(first.id).status is JobStatus.PENDING, "no worker: no capacity"
    world.beat(slots=1)
    running = world.get(first.id)
    assert running.status is JobStatus.RUNNING and running.host is None
    assert running.attempt >= int(START * 1000)
    attempt = Attempt(running, running.attempt)
    assert world.messages == [(attempt.key, f"{first.id}.{running.attempt}", "crawld.spider",
                               {"job": first.id, "attempt": running.attempt,
                                "kind": "spider"})]
    assert task_id(attempt.job.id, attempt.number) == f"{first.id}.{running.attempt}"
    second = world.job(kind="browse")
    assert world.get(second.id).status is JobStatus.PENDING
    assert world.sup.load() == (1, 1, 1)
    world.beat(worker="w2", slots=1)
    assert world.messages[-1][2] == "crawld.browser"
    assert world.get(second.id).attempt > running.attempt
    world.clock.advance(LOST_AFTER + 1)
    assert world.sup.capacity() == 0, "workers not heard from offer nothing"


def test_the_first_claim_wins_and_others_start_nothing(world):
    world.beat()
    job = world.job()
    number = world.get(job.id).attempt
    code, body = world.claim(job.id, number)
    assert code == 200 and body["job"]["id"] == job.id and body["job"]["host"] == "w1"
    assert body["job"]["status"] == "RUNNING" and len(body["code"]["hash"]) == 64
    assert body["code"]["project"] == "demo" and body["code"]["version"] == "1"
    assert world.launcher.in_use() == {str(world.log_dir.parent / "code")}
    zipped = result(world.cluster.code(body["code"]["hash"]))
    assert hashlib.sha256(zipped).hexdigest() == body["code"]["hash"]
    code, again = world.claim(job.id, number, "w2")
    assert code == 409 and again["msg"].endswith("was already claimed by worker w1")
    code, stale = world.claim(job.id, number - 1, "w2")
    assert code == 409 and stale["msg"].endswith("is not the job's current attempt")
    code, started = world.post("/cluster/started", {"worker": "w2", "key": f"{job.id}/{number}"})
    assert code == 409, "another worker's attempt"


def test_output_lands_at_offsets_and_the_end_waits_for_every_byte(world):
    world.beat()
    job = world.job()
    key = world.run(job)
    assert world.get(job.id).pid == 7
    assert world.output(key, "out", 0, b"abc") == (200, {"status": "ok", "offset": 3,
                                                         "heartbeat": 2.0, "lost_after": 15.0})
    assert world.output(key, "out", 1, b"bc")[1]["offset"] == 3  # a repeat lands on itself
    code, gap = world.output(key, "out", 9, b"x")
    assert code == 409 and gap["offset"] == 3
    assert world.output(key, "items", 0, b'{"a": 1}\n')[1]["offset"] == 9
    code, short = world.end(key, 0, offsets={"out": 5, "err": 0, "items": 9})
    assert code == 409 and short["offsets"] == {"out": 3, "err": 0, "items": 9, "events": 0}
    assert world.get(job.id).status is JobStatus.RUNNING
    assert world.end(key, 0, offsets={"out": 3, "items": 9})[0] == 200
    assert world.end(key, 0, offsets={"out": 3, "items": 9})[0] == 200, "once, answered 200"
    assert world.get(job.id).status is JobStatus.SUCCESSFUL
    assert (world.log_dir / f"{job.id}.out").read_bytes() == b"abc"
    assert (world.items_dir / f"{job.id}.jl").read_bytes() == b'{"a": 1}\n'
    assert world.output(key, "out", 3, b"late")[0] == 409


def test_cancel_travels_in_heartbeat_answers_until_the_attempt_ends(world):
    world.beat()
    job = world.job()
    key = world.run(job)
    ending = world.sup.cancel(job.id)
    assert world.beat(attempts=(key,))["signal"] == {key: signal.SIGTERM}
    assert world.beat(attempts=(key,))["signal"] == {key: signal.SIGTERM}, "repeated"
    world.clock.advance(5)  # the kill grace
    assert world.beat(attempts=(key,))["signal"] == {key: signal.SIGKILL}
    assert world.end(key, None, signal.SIGKILL)[0] == 200
    assert result(ending).status is JobStatus.CANCELED
    assert world.beat()["signal"] == {}


def test_a_silent_worker_loses_its_attempt_and_is_refused_after(world):
    world.beat()
    job = world.job()
    key = world.run(job)
    world.clock.advance(LOST_AFTER - HEARTBEAT)
    world.beat(attempts=(key,))  # still alive
    for _ in range(7):
        world.clock.advance(HEARTBEAT)
    assert world.get(job.id).status is JobStatus.RUNNING, "silent for 14 s: not lost yet"
    world.clock.advance(HEARTBEAT)
    failed = world.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert re.fullmatch(r"worker lost: no heartbeat for 1[5-7] s from worker w1",
                        failed.reason), failed.reason
    assert world.beat(attempts=(key,))["refuse"] == [key]
    assert world.output(key, "out", 0, b"late")[0] == 409
    assert world.end(key, 0)[0] == 409


def test_an_attempt_nobody_claims_is_lost_from_its_dispatch(world):
    world.beat()
    job = world.job()
    for _ in range(8):  # the worker beats on, but never took the message
        world.clock.advance(HEARTBEAT)
        world.beat()
    failed = world.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.reason == "worker lost: no worker claimed it within 16 s"


def test_retry_lost_queues_a_job_that_wrote_no_items_again(world):
    world.beat()
    retried, kept = world.job(retry_lost=True), world.job(retry_lost=True)
    world.beat(slots=2)
    first = world.get(retried.id).attempt
    world.run(retried)
    key_kept = world.run(kept)
    assert world.output(key_kept, "items", 0, b'{"a": 1}\n')[0] == 200
    for _ in range(9):
        world.clock.advance(HEARTBEAT)
        world.beat(slots=2)
    again = world.get(retried.id)
    assert again.status is JobStatus.RUNNING and again.attempt > first and again.host is None
    assert JobStatus.PENDING in [j.status for j in world.published if j.id == retried.id]
    assert world.messages[-1][3] == {"job": retried.id, "attempt": again.attempt,
                                     "kind": "spider"}
    lost = world.get(kept.id)
    assert lost.status is JobStatus.FAILED and lost.reason.startswith("worker lost")


def test_the_kill_comes_a_whole_grace_after_the_term_reached_the_worker(world):
    """The supervisor asks KILL kill-grace (5 s) after TERM; a TERM that waited 1.5 s for
    the worker's next heartbeat holds the KILL back 1.5 s too, so the job's processes get
    their whole grace on the worker (they may be closing feeds, writing their last log)."""
    world.beat()
    job = world.job()
    key = world.run(job)
    ending = world.sup.cancel(job.id)
    world.clock.advance(1.5)  # the worker's next heartbeat
    assert world.beat(attempts=(key,))["signal"] == {key: signal.SIGTERM}
    world.clock.advance(3.5)  # 5 s after the cancel: the supervisor asks KILL now
    assert world.beat(attempts=(key,))["signal"] == {key: signal.SIGTERM}, "1.5 s early"
    world.clock.advance(1.4)
    assert world.beat(attempts=(key,))["signal"] == {key: signal.SIGTERM}
    world.clock.advance(0.1)  # 5 s after the TERM reached the worker
    assert world.beat(attempts=(key,))["signal"] == {key: signal.SIGKILL}
    assert world.end(key, None, signal.SIGKILL)[0] == 200
    assert result(ending).status is JobStatus.CANCELED


def test_a_claim_of_a_job_being_canceled_is_refused_and_ends_it(world):
    world.beat()
    job = world.job()
    ending = world.sup.cancel(job.id)
    code, body = world.claim(job.id, world.get(job.id).attempt)
    assert code == 409 and body["msg"].endswith("the job is canceled")
    world.clock.advance(HEARTBEAT)
    assert result(ending).status is JobStatus.CANCELED


def test_a_daemon_restart_detaches_remote_attempts_and_the_next_adopts_them(world, tmp_path):
    world.beat()
    claimed, unclaimed = world.job(), world.job()
    world.beat(slots=2)
    key = world.run(claimed)
    assert world.output(key, "out", 0, b"before\n")[0] == 200
    stopped = world.sup.stop()
    assert result(stopped) is not None
    result(world.launcher.stop())
    assert world.dispatchers[0].stopped
    assert world.get(claimed.id).status is JobStatus.RUNNING, "left running: detached"
    assert world.get(unclaimed.id).status is JobStatus.RUNNING

    world.clock.advance(60)  # the next daemon starts a minute later
    later = World(tmp_path, world.store, world.clock)
    result(later.sup.recover(result(later.store.list_jobs([JobStatus.RUNNING]))))
    assert later.sup.is_running(claimed.id) and later.sup.is_running(unclaimed.id)
    unclaimed_attempt = later.get(unclaimed.id).attempt
    assert [m[1] for m in later.messages] == [f"{unclaimed.id}.{unclaimed_attempt}"], \
        "the unclaimed attempt is sent again, with the same task id"
    assert later.output(key, "out", 7, b"after\n")[1]["offset"] == 13
    assert later.beat(attempts=(key,))["refuse"] == []
    assert later.end(key, 0, offsets={"out": 13})[0] == 200
    assert later.get(claimed.id).status is JobStatus.SUCCESSFUL
    assert (later.log_dir / f"{claimed.id}.out").read_bytes() == b"before\nafter\n"
    job = later.job()
    later.beat(slots=3)
    assert later.get(job.id).attempt > unclaimed_attempt, "numbers grow across restarts"


def test_a_job_a_local_daemon_left_running_is_settled_not_adopted(world):
    job = result(world.store.add_job(Job(
        id="local-1", status=JobStatus.PENDING, actor=Actor.USER, schedule="now",
        project="demo", spider="ok", created=1, updated=1)))
    result(world.store.transition(job.id, [JobStatus.PENDING], JobStatus.RUNNING, 5.0,
                                  started=5.0, attempt=3, pid=99, pid_started=1.0))
    result(world.sup.recover(result(world.store.list_jobs([JobStatus.RUNNING]))))
    settled = world.get(job.id)
    assert settled.status is JobStatus.FAILED and settled.reason == "settled"


def test_routes_check_their_input_and_answer_404_without_a_cluster(world, tmp_path):
    assert world.post("/cluster/heartbeat", {"worker": "bad name", "slots": 1})[0] == 400
    assert world.post("/cluster/heartbeat", {"worker": "w1", "slots": -1})[0] == 400
    assert world.post("/cluster/claim", {"worker": "w1", "job": "x", "attempt": "1"})[0] == 400
    code, body = call_json(world.client, "post", "/cluster/claim", data=b"{}",
                           headers={"Content-Type": ["text/plain"]})
    assert code == 400 and "application/json" in body["msg"]
    assert world.output("no-such/1", "logs", 0, b"x")[0] == 400
    assert world.output("no-such/1", "out", 0, b"x")[0] == 409
    assert world.post("/cluster/ended", {"key": "x/1", "offsets": {"out": -1}})[0] == 400
    code, _ = call_json(world.client, "get", "/cluster/code/" + "0" * 64 + ".zip")
    assert code == 404
    plain = stub(services(Clock(), log_dir=str(tmp_path)))
    code, body = call_json(plain, "post", "/cluster/heartbeat",
                           data=json.dumps({"worker": "w1", "slots": 1}).encode(),
                           headers={"Content-Type": ["application/json"]})
    assert code == 404 and "launcher = local" in body["msg"]


def test_a_claim_whose_code_is_gone_ends_the_attempt(world, tmp_path):
    world.beat()
    job = world.job()
    (tmp_path / "code" / "scrapy.cfg").unlink()
    (tmp_path / "code").rmdir()  # the version was removed before the claim
    code, body = world.claim(job.id, world.get(job.id).attempt)
    assert code == 409 and "is not available" in body["msg"]
    failed = world.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.reason.startswith("could not start")
