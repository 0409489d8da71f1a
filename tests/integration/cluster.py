"""A crawld cluster of real processes for the integration tests (issue 14): Debian's
``redis-server`` as the broker, a daemon with ``[cluster] launcher = celery`` and
``crawld worker`` processes, each in a network namespace of its own when that works.

Layout (netns mode: root and ``ip netns`` work)::

    root namespace: redis-server  127.0.0.1:R, 10.237.a.1:R, 10.237.b.1:R ...
                    crawld serve  127.0.0.1:P, 10.237.a.1:P, 10.237.b.1:P ...
    netns crawld-<pid>-1: crawld worker w1  --broker redis://10.237.a.1:R/0
                                           --daemon http://10.237.a.1:P
    netns crawld-<pid>-2: crawld worker w2  ... 10.237.b.1 ...

so a worker reaches the daemon and the broker through its own veth and nothing else
(tests/integration/test_netns.py shows that isolation with plain processes). Otherwise
(loopback mode) everything listens on 127.0.0.1 only. ``Cluster.isolation`` says which.

Ports are picked once per cluster, so a restarted daemon or Redis comes back on the same
address and the workers' URLs stay valid. Auth is required: the tests use an operator key
(``Cluster.daemon.session`` sends it), each worker a key of the ``worker`` role, all made
with ``crawld keys add`` before the daemon starts. ``Cluster.close()`` stops everything it
started, by pid (workers, the jobs they left, the daemon, Redis, namespaces), also after
a failure half-way through ``start()``.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import sys
from typing import Any, Optional, Sequence

import psutil

from tests.conftest import wait_for
from tests.integration import netns, project
from tests.integration.broker import RedisServer, free_port
from tests.integration.conftest import DaemonProcess
from tests.integration.pki import ServerTLS, make_server_tls
from tests.integration.worker import WorkerProcess, send_signal

#: Spiders the cluster tests add to the demo project (tests/integration/project.py).
CLUSTER_SPIDERS = r'''

class Ticker(scrapy.Spider):
    """Prints ``tick N`` every 0.1 s until the file ``until`` (payload) exists, then
    ``ticker done after N ticks`` on stdout and ends successfully."""
    name = "ticker"

    async def start(self):
        until = json.loads(self.payload)["until"]
        say(pid=os.getpid(), ppid=os.getppid())
        n = 0
        while not os.path.exists(until):
            print(f"tick {n}", flush=True)
            n += 1
            await asyncio.sleep(0.1)
        print(f"ticker done after {n} ticks", flush=True)
        return
        yield


class Items(scrapy.Spider):
    """Yields ``count`` (payload) items ``{"n": i}`` and ends."""
    name = "items"

    async def start(self):
        for n in range(json.loads(getattr(self, "payload", "{}")).get("count", 3)):
            yield {"n": n}
'''


def cluster_project(name: str = "demo", extra: Optional[dict[str, str]] = None) -> bytes:
    """The integration tests' demo project plus ``ticker`` and ``items`` (and the files
    ``extra``: path in the zip -> text)."""
    return project.build(name, spiders=project.SPIDERS + CLUSTER_SPIDERS, extra=extra)

def access_lines(daemon: DaemonProcess, request: str, code: Optional[int] = None,
                 source: Optional[str] = None, since: int = 0) -> list[str]:
    """The daemon's access log lines for ``request`` (e.g. ``POST /cluster/claim``),
    answered ``code`` to ``source``, in its log from offset ``since``."""
    pattern = re.compile(
        r'crawld\.access: "(?P<source>[^"]+)" - - \[[^]]+\] "(?P<request>[^"]*)" '
        r'(?P<code>\d{3}) ')
    found = []
    for line in daemon.log()[since:].splitlines():
        m = pattern.search(line)
        if (m and m.group("request").startswith(request + " ")
                and (code is None or int(m.group("code")) == code)
                and (source is None or m.group("source") == source)):
            found.append(line)
    return found


class Cluster:
    """Redis, a daemon with the celery launcher and ``workers`` workers (see module doc).

    ``queues``: every worker's ``--queues``, or a list of one per worker.

    ``config``: more daemon options, placed in its ``[crawld]`` section first (so start
    it with ``[crawld]`` options, then other sections). ``isolation``: ``"auto"``
    (namespaces when root and ``ip netns`` work), ``"netns"`` or ``"loopback"``; by
    default ``$CRAWLD_TEST_CLUSTER_ISOLATION``, else ``"auto"``.
    """

    def __init__(self, tmp_path: Any, workers: int = 2, concurrency: int = 1,
                 queues: str | Sequence[str] = "spider,browser", config: str = "",
                 heartbeat: float = 1,
                 lost_after: float = 6, isolation: Optional[str] = None,
                 tls: bool = False) -> None:
        """``tls``: Redis speaks only TLS (``rediss://``) and the daemon only HTTPS, both
        with certificates of a private CA that the daemon and workers are given."""
        self.root = str(tmp_path)
        self.tls_wanted = tls
        self.tls: Optional[ServerTLS] = None
        self.count, self.concurrency = workers, concurrency
        self.queues = [queues] * workers if isinstance(queues, str) else list(queues)
        assert len(self.queues) == workers, "one --queues per worker"
        self.heartbeat, self.lost_after = heartbeat, lost_after
        isolation = isolation or os.environ.get("CRAWLD_TEST_CLUSTER_ISOLATION", "auto")
        why_not = netns.unavailable() if isolation != "loopback" else "loopback asked"
        if isolation == "netns" and why_not:
            raise RuntimeError(f"network namespaces asked for but unusable: {why_not}")
        self.isolation = "netns" if not why_not else "loopback"
        self.why_loopback = why_not
        self.extra_config = config
        self.namespaces: list[netns.Namespace] = []
        self.workers: list[WorkerProcess] = []
        self.redis: Optional[RedisServer] = None
        self.daemon: Optional[DaemonProcess] = None
        self.operator_key = ""
        self.port = 0

    def describe(self) -> str:
        """One line saying how the workers are isolated (printed by the tests)."""
        if self.isolation == "netns":
            spaces = ", ".join(f"{s.name} ({s.ns_ip})" for s in self.namespaces)
            return f"cluster isolation: netns, one per worker: {spaces}"
        return f"cluster isolation: loopback ({self.why_loopback})"

    # -- start-up ---------------------------------------------------------------------
    def start(self) -> "Cluster":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        if self.isolation == "netns":
            netns.sweep_stale()
            for _ in range(self.count):
                self.namespaces.append(netns.Namespace())
                self.namespaces[-1].create()
        hosts = ["127.0.0.1", *(s.host_ip for s in self.namespaces)]
        if self.tls_wanted:
            self.tls = make_server_tls(os.path.join(self.root, "pki"), hosts)
        self.redis = RedisServer(os.path.join(self.root, "redis"), hosts,
                                 tls=self.tls).start()
        self.port = free_port()
        os.makedirs(os.path.join(self.root, "daemon"), exist_ok=True)
        self.daemon = DaemonProcess(pathlib.Path(self.root, "daemon"), self._daemon_config())
        self.daemon.listen = [f"{host}:{self.port}" for host in hosts]
        os.makedirs(self.daemon.data_dir, exist_ok=True)
        self.operator_key = self.add_key("operator", "tests")
        keys = [self.add_key("worker", f"w{i + 1}") for i in range(self.count)]
        self.daemon.session.headers["Authorization"] = f"Bearer {self.operator_key}"
        if self.tls is not None:
            self.daemon.session.verify = self.tls.ca
            self.daemon.session.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify
        self.daemon.start()
        for i in range(self.count):
            space = self.namespaces[i] if self.namespaces else None
            host = space.host_ip if space is not None else "127.0.0.1"
            self.workers.append(WorkerProcess(
                f"w{i + 1}", os.path.join(self.root, f"worker{i + 1}"),
                self.redis.url(host), f"{self.scheme}://{host}:{self.port}", keys[i],
                self.concurrency, self.queues[i], space,
                ca_file=self.tls.ca if self.tls is not None else None))
        for worker in self.workers:
            worker.start(len(self.daemon.log()))
        for worker in self.workers:
            self.wait_worker(worker)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def _daemon_config(self) -> str:
        assert self.redis is not None
        https = ("" if self.tls is None else
                 f"https = on\ncert = {self.tls.cert}\nkey = {self.tls.key}\n")
        return (f"{self.extra_config}\n[cluster]\nlauncher = celery\n"
                f"broker = {self.redis.url()}\nheartbeat = {self.heartbeat:g}\n"
                f"lost-after = {self.lost_after:g}\n"
                f"[web]\nauth = required\n{https}")

    def add_key(self, role: str, name: str) -> str:
        """``crawld keys add --role ROLE --name NAME`` in the daemon's data dir: the key."""
        assert self.daemon is not None
        r = subprocess.run([sys.executable, "-m", "crawld", "keys", "--data-dir",
                            self.daemon.data_dir, "add", "--role", role, "--name", name],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (role, name, r.stdout, r.stderr)
        return r.stdout.strip()

    def wait_worker(self, worker: WorkerProcess, timeout: float = 60) -> None:
        """Until the daemon has answered a heartbeat of ``worker`` (netns: from its own
        address; loopback: any heartbeat since it started, and it holds a connection to
        Redis, i.e. its Celery consumer is up)."""
        assert self.daemon is not None and self.redis is not None

        def ready() -> bool:
            if not worker.alive():
                raise AssertionError(f"worker {worker.name} exited "
                                     f"{worker.proc.returncode}:\n{worker.log()[-4000:]}")
            heard = access_lines(self.daemon, "POST /cluster/heartbeat", 200,
                                 worker.address, since=worker.started_at_log)
            if not heard:
                return False
            if worker.namespace is not None:
                return True
            return any(c.raddr and c.raddr[1] == self.redis.port
                       for c in psutil.Process(worker.proc.pid).net_connections("tcp"))
        wait_for(ready, timeout, 0.2, what=f"worker {worker.name} to be heard")

    # -- what the tests do ------------------------------------------------------------
    def restart_worker(self, worker: WorkerProcess, wait: bool = True) -> None:
        """Start ``worker`` again with the same name, data dir and namespace."""
        assert self.daemon is not None
        worker.start(len(self.daemon.log()))
        if wait:
            self.wait_worker(worker)

    def restart_daemon(self) -> None:
        """SIGTERM the daemon (it must exit 0) and start it again on the same addresses."""
        assert self.daemon is not None
        assert self.daemon.stop() == 0, self.daemon.log()[-3000:]
        self.daemon.start()

    def row(self, job_id: str) -> dict:
        """The job's row in the daemon's store (read-only), e.g. ``attempt``, ``host``."""
        assert self.daemon is not None
        path = os.path.join(self.daemon.data_dir, "crawld.db")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        finally:
            db.close()
        assert row is not None, f"no job {job_id} in the store"
        return dict(row)

    def worker_of(self, job_id: str) -> WorkerProcess:
        """The worker that claimed the job's current attempt (its ``host``)."""
        host = wait_for(lambda: self.row(job_id)["host"], 30, what=f"{job_id} claimed")
        return next(w for w in self.workers if w.name == host)

    def celery(self) -> Any:
        """A Celery client app on the broker (the root namespace's side): what the
        daemon's launcher would send, for the tests that forge messages."""
        from celery import Celery
        assert self.redis is not None
        app = Celery("crawld-tests", broker=self.redis.url(), set_as_current=False)
        app.conf.update(task_serializer="json", accept_content=["json"],
                        result_backend=None, broker_connection_retry_on_startup=True)
        return app

    def send_run(self, job_id: str, attempt: int, kind: str = "spider") -> None:
        """Send the ``crawld.run`` message for attempt ``job_id``/``attempt`` (task id
        ``<job>.<attempt>``, queue by kind) as the daemon does."""
        app = self.celery()
        try:
            app.send_task("crawld.run", args=[{"job": job_id, "attempt": attempt,
                                               "kind": kind}],
                          task_id=f"{job_id}.{attempt}",
                          queue="crawld.spider" if kind == "spider" else "crawld.browser")
        finally:
            app.close()

    def queued(self) -> dict[str, int]:
        """Messages waiting in the broker per crawld queue."""
        assert self.redis is not None
        client = self.redis.client()
        try:
            return {q: int(client.llen(q)) for q in ("crawld.spider", "crawld.browser")}
        finally:
            client.close()

    # -- the end ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything started, by pid, whatever state it is in."""
        job_ids = self._job_ids()
        for worker in self.workers:
            if worker.alive():
                send_signal(worker.proc.pid, signal.SIGCONT)  # a paused one must hear TERM
            try:
                worker.stop(timeout=5)
            finally:
                worker.sweep()
        if self.daemon is not None and self.daemon.proc is not None:
            if self.daemon.proc.poll() is None:
                try:
                    self.daemon.stop()
                except subprocess.TimeoutExpired:
                    self.daemon.kill()
        for proc in job_processes(job_ids):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if self.redis is not None:
            self.redis.stop()
        for space in self.namespaces:
            space.close()

    def _job_ids(self) -> list[str]:
        if self.daemon is None:
            return []
        try:
            db = sqlite3.connect(f"file:{self.daemon.data_dir}/crawld.db?mode=ro", uri=True)
            try:
                return [r[0] for r in db.execute("SELECT id FROM jobs")]
            finally:
                db.close()
        except sqlite3.Error:
            return []


def process_title(proc: psutil.Process) -> str:
    """What ``ps`` shows for ``proc`` (a set title, or its argv joined by spaces)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def job_processes(job_ids: Sequence[str]) -> list[psutil.Process]:
    """Every live process whose title names one of ``job_ids`` (``crawld: job ID ...``),
    wherever it runs (daemon, worker, orphaned)."""
    wanted = tuple(f"crawld: job {job_id}" for job_id in job_ids)
    if not wanted:
        return []
    found = []
    for proc in psutil.process_iter(["status"]):
        if (proc.info["status"] != psutil.STATUS_ZOMBIE
                and process_title(proc).startswith(wanted)):
            found.append(proc)
    return found


def said_lines(daemon: DaemonProcess, job_id: str) -> list[dict]:
    """Every CRAWLD-TEST line of the job's .out as the daemon holds it."""
    path = os.path.join(daemon.data_dir, "logs", f"{job_id}.out")
    try:
        with open(path, errors="replace") as fh:
            return [json.loads(line[len("CRAWLD-TEST "):]) for line in fh
                    if line.startswith("CRAWLD-TEST ")]
    except FileNotFoundError:
        return []
