"""The parts of the daemon's cluster side (issue 14), each alone: the dispatcher's order
and retries, code bundles, the store's claim, the worker role, the [cluster] options,
the local launcher's trivial answers and the supervisor's lost policy."""
from __future__ import annotations

import io
import os
import threading
import zipfile

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from crawld import bundles, config
from crawld.auth import roles
from crawld.errors import ConfigError, Forbidden
from crawld.events import JobEvents
from crawld.launch.celery import Dispatcher
from crawld.launch.local import LocalLauncher, LocalSettings
from crawld.launch.spawner import DirectSpawner
from crawld.model import Actor, Job, JobStatus
from crawld.process import Exit
from crawld.service import broker_origin
from crawld.store import InlineExecutor, Store
from crawld.supervisor import Supervisor
from tests.conftest import wait_for
from tests.unit.fakes import result
from tests.unit.test_launcher_protocol import FakeLauncher


class ThreadReactor:
    """callFromThread runs the call at once (the test's own thread-safe list)."""

    def callFromThread(self, fn, *args):  # noqa: N802 (Twisted's name)
        fn(*args)


def test_the_dispatcher_sends_in_order_and_retries_while_the_broker_is_down():
    sent_to_broker: list[str] = []
    taken: list[str] = []
    failures = {"n": 3}
    lock = threading.Lock()

    def send(tid: str, queue: str, body: dict) -> None:
        with lock:
            if tid == "b" and failures["n"]:
                failures["n"] -= 1
                raise ConnectionError("redis is down")
            sent_to_broker.append(tid)
    dispatcher = Dispatcher(ThreadReactor(), send, taken.append, backoff=0.01)
    for name in "abc":
        dispatcher.submit(f"key-{name}", name, "crawld.spider", {})
    wait_for(lambda: len(taken) == 3, 10, what="three messages sent")
    assert sent_to_broker == ["a", "b", "c"], "the failed one first, then the rest"
    assert taken == ["key-a", "key-b", "key-c"] and failures["n"] == 0
    assert not dispatcher.down
    dispatcher.stopped.set()
    dispatcher.queue.put(None)
    dispatcher.thread.join(10)
    assert not dispatcher.thread.is_alive()


def test_bundles_are_deterministic_and_skip_caches(tmp_path):
    project = tmp_path / "v1"
    (project / "pkg" / "__pycache__").mkdir(parents=True)
    (project / "scrapy.cfg").write_text("[settings]\ndefault = pkg.settings\n")
    (project / "pkg" / "spiders.py").write_text("X = 1\n")
    (project / "pkg" / "__pycache__" / "spiders.cpython-311.pyc").write_bytes(b"\0")
    first = bundles.build(str(project))
    os.utime(project / "pkg" / "spiders.py", (1, 1))
    assert bundles.build(str(project)) == first, "times do not change the bytes"
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names == ["pkg/spiders.py", "scrapy.cfg"]
    digest = bundles.store(str(tmp_path / "bundles"), first)
    keeper = bundles.Bundles(str(tmp_path / "bundles"), to_thread=lambda f, *a: succeed(f(*a)))
    assert result(keeper.hash_of(str(project))) == digest
    assert result(keeper.read(digest)) == first
    assert result(keeper.read("../etc/passwd")) is None
    (project / "pkg" / "spiders.py").write_text("X = 2\n")
    assert bundles.build(str(project)) != first


def test_a_claim_wins_once_for_the_running_attempt_only():
    store = Store(":memory:", InlineExecutor())
    job = result(store.add_job(Job(id="j1", status=JobStatus.PENDING, actor=Actor.USER,
                                   schedule="now", project="p", spider="s", created=1,
                                   updated=1, retry_lost=True)))
    assert result(store.get_job(job.id)).retry_lost is True
    assert result(store.claim("j1", 5, "w1")) is False, "not running"
    result(store.transition("j1", [JobStatus.PENDING], JobStatus.RUNNING, 2.0, started=2.0,
                            attempt=5))
    assert result(store.claim("j1", 4, "w1")) is False, "not its current attempt"
    assert result(store.claim("j1", 5, "w1")) is True
    assert result(store.claim("j1", 5, "w2")) is False
    assert result(store.get_job("j1")).host == "w1"
    result(store.unstart("j1", 3.0))
    back = result(store.get_job("j1"))
    assert back.status is JobStatus.PENDING and back.host is None and back.started is None


def test_the_worker_role_reaches_the_cluster_routes_and_nothing_else():
    worker = roles.Identity("key", "", roles.WORKER, "ck_1")
    operator = roles.Identity("key", "", roles.OPERATOR, "ck_2")
    for path in ("/cluster/heartbeat", "/cluster/code/ab.zip", "/CLUSTER/claim",
                 "/x/../cluster/ended", "/cluster%2Fended"):
        assert roles.required_role("POST", path) == roles.WORKER, path
        roles.authorize(worker, roles.WORKER)
        with pytest.raises(Forbidden):
            roles.authorize(operator, roles.required_role("POST", path))
    for path, method in (("/list-jobs.json", "GET"), ("/schedule-job.json", "POST")):
        with pytest.raises(Forbidden, match="worker role"):
            roles.authorize(worker, roles.required_role(method, path))
    assert roles.WORKER in roles.KEY_ROLES and roles.WORKER not in roles.ROLES


def test_cluster_options_are_checked(tmp_path):
    ini = tmp_path / "c.ini"
    ini.write_text("[cluster]\nlauncher = celery\nbroker = redis://10.0.0.5:6379/2\n"
                   "heartbeat = 1\nlost-after = 9\n")
    s = config.load(str(ini))
    assert (s.launcher, s.broker, s.heartbeat, s.lost_after) == (
        "celery", "redis://10.0.0.5:6379/2", 1.0, 9.0)
    assert config.load().launcher == "local"
    assert broker_origin("rediss://:secret@redis.example:6380/1") == "rediss://redis.example:6380"
    for bad in ("launcher = kubernetes", "broker = amqp://x", "lost-after = 0"):
        ini.write_text(f"[cluster]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"\[cluster\]"):
            config.load(str(ini))


def test_the_local_launcher_answers_the_remote_questions_trivially(tmp_path):
    clock = Clock()
    launcher = LocalLauncher(LocalSettings("python", str(tmp_path), lambda p: None,
                                           lambda p, s: ""), DirectSpawner(clock))
    job = Job(id="j", status=JobStatus.RUNNING, actor=Actor.USER, schedule="now",
              project="p", spider="s", created=1, updated=1, attempt=3, host="w1")
    assert launcher.capacity() is None
    assert result(launcher.adopt(job, None)) is None
    from crawld.launch.protocol import Attempt
    assert launcher.detach(Attempt(job, 3)) is False
    launcher.watch_capacity(lambda: None)


@pytest.mark.parametrize("canceled", [False, True])
def test_a_lost_attempt_fails_with_its_reason_or_ends_canceled(tmp_path, canceled):
    clock = Clock()
    clock.advance(1000)
    store = Store(":memory:", InlineExecutor())
    launcher = FakeLauncher()
    sup = Supervisor(clock, store, launcher, JobEvents(), str(tmp_path), slots=1,
                     kill_grace=5)
    job = result(store.add_job(Job(id="j", status=JobStatus.PENDING, actor=Actor.USER,
                                   schedule="now", project="p", spider="s", created=1,
                                   updated=1, retry_lost=True)))
    sup.enqueue(job.id)
    attempt, reporter = launcher.attempts[0]
    assert result(store.get_job("j")).attempt == attempt.number == 1_000_000
    waiting = sup.cancel("j") if canceled else None
    reporter.ended(attempt, Exit(None, None, reason="worker lost: gone", lost=True,
                                 retryable=False))
    done = result(store.get_job("j"))
    if canceled:
        assert done.status is JobStatus.CANCELED and result(waiting) is not None
    else:
        assert done.status is JobStatus.FAILED and done.reason == "worker lost: gone"
