"""The celery launcher (issue 14): job attempts run by ``crawld worker``s on other hosts.

Celery with a Redis broker carries one message per attempt, ``crawld.run`` with
``{"job", "attempt", "kind"}``, nothing else: the worker claims the attempt from the
daemon over HTTP (the first claim wins), fetches the project's code by its hash, runs
it and sends its logs, stats, heartbeats and end back over HTTP (cluster.py and
http/routes_cluster.py). The daemon's store stays the only truth; Redis holds only
messages in flight.

Messages are sent by one dispatcher thread (``send_task`` blocks on the network; never
on the reactor), in the order the supervisor started the attempts. While the broker is
down, dispatch pauses and retries the same message (backoff up to 5 s), keeping the
order. The Celery task id is ``<job id>.<number>``, so a message sent twice is one task;
acks are early and nothing is ever revoked (a late ack re-delivers running tasks, and a
revoke kills the pool thread, not the job's tree): cancel goes through heartbeats.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from ..model import Job
from ..seams import Clock
from .protocol import Attempt, Reporter, Started
from .remote import RemoteAttempts

log = Logger(namespace="crawld.cluster")

TASK_NAME = "crawld.run"
#: ``crawld worker --queues`` names -> Celery queues; a job's kind picks one (queue_for).
QUEUES = {"spider": "crawld.spider", "browser": "crawld.browser"}
#: The Celery settings both sides use (the worker adds its own, worker.py).
CELERY_SETTINGS: dict[str, Any] = {
    "task_acks_late": False,
    "worker_prefetch_multiplier": 1,
    "task_reject_on_worker_lost": False,
    "broker_connection_retry_on_startup": True,
    "task_serializer": "json",
    "accept_content": ["json"],
    "result_backend": None,
    "task_ignore_result": True,
    "task_default_queue": QUEUES["spider"],
}
MAX_BACKOFF = 5.0


def queue_for(kind: str) -> str:
    """The Celery queue of a job kind: spiders on ``crawld.spider``, browser jobs
    (script, browse) on ``crawld.browser``."""
    return QUEUES["spider"] if kind == "spider" else QUEUES["browser"]


def task_id(job_id: str, number: int) -> str:
    """``<job id>.<number>``: derived, so a duplicate send of an attempt is one task."""
    return f"{job_id}.{number}"


def message(attempt: Attempt) -> dict[str, Any]:
    """The task's one argument: all that travels through the broker."""
    return {"job": attempt.job.id, "attempt": attempt.number, "kind": attempt.job.kind}


def celery_app(broker: str) -> Any:
    """A Celery app for ``broker`` with crawld's settings (ImportError without the
    ``cluster`` extra)."""
    from celery import Celery
    import redis  # noqa: F401  (the broker's client: missing, nothing could be sent)
    app = Celery("crawld", broker=broker, set_as_current=False)
    app.conf.update(CELERY_SETTINGS)
    # a publish fails fast when the broker is down: the dispatcher retries it
    app.conf.broker_transport_options = {"socket_connect_timeout": 2, "socket_timeout": 5}
    return app


class Dispatcher:
    """Sends attempts' messages from one thread, in order, retrying while the broker is
    down. ``send(task_id, queue, body)`` runs in that thread (Celery's ``send_task``);
    ``sent(key)`` is called on the reactor once a message is in the broker."""

    def __init__(self, reactor: Any, send: Callable[[str, str, dict], None],
                 sent: Callable[[str], None], backoff: float = 0.5) -> None:
        self.reactor = reactor
        self.send = send
        self.sent = sent
        self.backoff = backoff
        self.queue: "queue.Queue[Optional[tuple[str, str, str, dict]]]" = queue.Queue()
        self.stopped = threading.Event()
        self.down = False
        self.thread = threading.Thread(target=self._run, name="crawld-dispatch", daemon=True)
        self.thread.start()

    def submit(self, key: str, tid: str, queue_name: str, body: dict) -> None:
        """Queue one message (from the reactor)."""
        self.queue.put((key, tid, queue_name, body))

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            key, tid, queue_name, body = item
            delay = self.backoff
            while not self.stopped.is_set():
                try:
                    self.send(tid, queue_name, body)
                except Exception as exc:  # the broker is down: retry this one, in order
                    if not self.down:
                        self.down = True
                        log.warn("dispatch paused: the broker does not take messages "
                                 "({exc}); retrying", exc=exc)
                    self.stopped.wait(delay)
                    delay = min(MAX_BACKOFF, delay * 2)
                    continue
                if self.down:
                    self.down = False
                    log.info("dispatch resumed: the broker takes messages again")
                self.reactor.callFromThread(self.sent, key)
                break

    def stop(self) -> "Deferred[None]":
        """Stop sending (what is not sent stays with the next daemon: it re-dispatches
        the attempts it adopts that no worker claimed)."""
        self.stopped.set()
        self.queue.put(None)
        return deferToThread(self.thread.join, 10)


class CeleryLauncher:
    """The Launcher protocol over Celery: dispatch here, bookkeeping in RemoteAttempts."""

    def __init__(self, reactor: Clock, attempts: RemoteAttempts,
                 dispatcher_for: Callable[[Callable[[str], None]], Dispatcher],
                 orphans: Callable[[Job], "Deferred[str]"]) -> None:
        """``dispatcher_for(sent)`` makes the dispatcher (a real one sends through
        Celery: ``celery_dispatcher``); ``orphans`` settles jobs a previous daemon ran
        locally (LocalLauncher.settle_orphan)."""
        self.reactor = reactor
        self.remote = attempts
        self.dispatcher = dispatcher_for(attempts.sent)
        self.orphans = orphans
        self.checker = LoopingCall(attempts.check)
        self.checker.clock = reactor
        self.checker.start(attempts.heartbeat, now=False)

    def start(self, attempt: Attempt, reporter: Reporter) -> "Deferred[Started]":
        """Queue the attempt's message; fires at once (the worker reports ``started``
        once it has claimed and spawned it)."""
        self.remote.add(attempt, reporter)
        self._dispatch(attempt)
        return succeed(Started(None, None, "dispatched"))

    def _dispatch(self, attempt: Attempt) -> None:
        self.dispatcher.submit(attempt.key, task_id(attempt.job.id, attempt.number),
                                   queue_for(attempt.job.kind),
                               message(attempt))

    def signal(self, attempt: Attempt, sig: int) -> None:
        self.remote.signal(attempt.key, sig)

    def rss(self, attempt: Attempt) -> "Deferred[int]":
        return succeed(self.remote.rss(attempt.key))

    def activity(self, attempt: Attempt) -> int:
        return 0  # a browser job's live events stay on its worker (not sent home)

    def in_use(self) -> set[str]:
        """The version dirs of claimed attempts' code (kept while they run: a bundle
        is built from there, and a worker that restarts fetches it again)."""
        return {r.cwd for r in self.remote.attempts.values() if r.cwd}

    def settle_orphan(self, job: Job) -> "Deferred[str]":
        return self.orphans(job)

    def capacity(self) -> Optional[int]:
        return self.remote.capacity()

    def watch_capacity(self, wake: Callable[[], None]) -> None:
        self.remote.wake = wake

    def adopt(self, job: Job, reporter: Reporter) -> "Deferred[Optional[Attempt]]":
        """A RUNNING job of a previous daemon that went to a worker (claimed, or
        dispatched and maybe still in the broker: sent again, the same task id)."""
        if job.attempt is None or (job.host is None and job.pid is not None):
            return succeed(None)  # it ran locally
        attempt = Attempt(job, job.attempt)
        self.remote.add(attempt, reporter, worker=job.host, adopted=True)
        if job.host is None:
            self._dispatch(attempt)
        return succeed(attempt)

    def detach(self, attempt: Attempt) -> bool:
        return self.remote.current(attempt.key) is not None

    def stop(self) -> "Deferred[None]":
        if self.checker.running:
            self.checker.stop()
        return self.dispatcher.stop()


def celery_dispatcher(reactor: Any, broker: str
                      ) -> Callable[[Callable[[str], None]], Dispatcher]:
    """``dispatcher_for`` for CeleryLauncher: a Dispatcher over Celery's ``send_task``
    to ``broker``."""
    app = celery_app(broker)

    def send(tid: str, queue_name: str, body: dict) -> None:
        app.send_task(TASK_NAME, args=[body], task_id=tid, queue=queue_name,
                      retry=False, ignore_result=True)
    return lambda sent: Dispatcher(reactor, send, sent)
