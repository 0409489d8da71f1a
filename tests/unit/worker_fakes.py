"""Fakes for the worker's unit tests: the fake daemon of the integration tests
(tests/integration/fake_cluster_daemon.py) served without a socket through treq's
RequestTraversalAgent, an agent that can be "down", and a launcher that starts nothing
but records what it was told."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import time
import uuid
import zipfile
from typing import Any, Optional

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock

from crawld.launch.codecache import CodeCache
from crawld.launch.daemon_client import DaemonClient
from crawld.launch.protocol import Attempt, Reporter, Started
from crawld.launch.runtime import WorkerDirs, WorkerRuntime
from crawld.launch.shipper import Shipper
from crawld.model import Actor, Job, JobStatus
from tests.integration.fake_cluster_daemon import Api, State

KEY = "k"


def now_thread(f: Any, *args: Any, **kw: Any) -> Deferred:
    """to_thread for unit tests: run at once."""
    try:
        return succeed(f(*args, **kw))
    except Exception as exc:
        return fail(exc)


class SwitchAgent:
    """The fake daemon's agent, or connection refused while ``down``."""

    def __init__(self, agent: RequestTraversalAgent) -> None:
        self.agent = agent
        self.down = False
        self.refused = 0

    def request(self, *args: Any, **kw: Any) -> Deferred:
        if self.down:
            self.refused += 1
            return fail(ConnectionRefusedError("daemon down"))
        return self.agent.request(*args, **kw)


class FakeLauncher:
    """Starts nothing: records starts and signals; the test ends attempts itself."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[Attempt, Reporter]] = {}
        self.signals: list[tuple[str, int]] = []
        self.stopped = False
        self.hold: Optional[Deferred] = None  # set: start() fires when the test says

    def start(self, attempt: Attempt, reporter: Reporter) -> Deferred:
        self.started[attempt.key] = (attempt, reporter)
        info = Started(4000 + len(self.started), 123.0, "local")
        if self.hold is not None:
            return self.hold.addCallback(lambda _: info)
        return succeed(info)

    def signal(self, attempt: Attempt, sig: int) -> None:
        self.signals.append((attempt.key, sig))

    def rss(self, attempt: Attempt) -> Deferred:
        return succeed(1000)

    def stop(self) -> Deferred:
        self.stopped = True
        return succeed(None)


class Rig:
    """A runtime over the fake daemon, a Clock and a FakeLauncher."""

    def __init__(self, tmp_path: Any) -> None:
        self.code_dir = str(tmp_path / "daemon-code")
        os.makedirs(self.code_dir)
        self.state = State(self.code_dir, KEY, 0.5)
        self.traversal = RequestTraversalAgent(Api(self.state))
        self.agent = SwitchAgent(self.traversal)
        self.clock = Clock()
        self.client = DaemonClient(self.clock, "http://daemon", KEY, agent=self.agent)
        self.dirs = WorkerDirs(str(tmp_path / "worker"))
        self.dirs.make()
        self.code = CodeCache(self.dirs.code, self.client.code, to_thread=now_thread)
        self.launcher = FakeLauncher()
        self.runtime = WorkerRuntime(
            self.clock, self.client, self.launcher, self.code, self.dirs, "w1",
            kill_grace=2.0, to_thread=now_thread,
            shipper_factory=lambda key, paths: Shipper(self.clock, self.client, key, paths,
                                                       to_thread=now_thread))

    def flush(self) -> None:
        """Deliver every pending request and answer."""
        for _ in range(20):
            self.traversal.flush()

    def settle(self, d: Deferred, seconds: float = 0.0, step: float = 0.1) -> Any:
        """Pump answers (and advance the clock up to ``seconds``) until ``d`` fired."""
        results: list = []
        d.addBoth(results.append)
        waited = 0.0
        self.flush()
        while not results and waited < seconds:
            self.clock.advance(step)
            waited += step
            self.flush()
        assert results, f"nothing after {seconds} s"
        if hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]

    def publish(self, files: dict[str, str]) -> str:
        """Serve a version with ``files``; returns its hash."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for name in sorted(files):
                zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), files[name])
        data = out.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.code_dir, f"{digest}.zip"), "wb") as fh:
            fh.write(data)
        return digest

    def add_job(self, spider: str = "ok", attempt: int = 1, code: Optional[str] = "",
                kind: str = "spider") -> str:
        """A RUNNING job whose current attempt is ``attempt``, running version ``code``
        ("": a small version published for it; None: no code, a browse job's)."""
        if code == "":
            code = self.publish({"scrapy.cfg": "[settings]\ndefault = demo.settings\n"})
        t = time.time()
        job = Job(str(uuid.uuid4()), JobStatus.RUNNING, Actor.USER, "now", "demo", spider,
                  t, t, kind=kind)
        wire = {**dataclasses.asdict(job), "status": job.status.value,
                "actor": job.actor.value, "attempt": attempt, "host": None}
        self.state.jobs[job.id] = {"job": wire, "attempt": attempt, "code": code}
        return job.id

    def write(self, job_id: str, stream: str, data: bytes) -> None:
        with open(self.dirs.streams(job_id)[stream], "ab") as fh:
            fh.write(data)

    def held(self, key: str, stream: str) -> bytes:
        return bytes(self.state.held.get(f"{key} {stream}", b""))
