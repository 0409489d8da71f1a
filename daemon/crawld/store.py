"""The store: the typed, asynchronous face of the database, on a thread of its own.

Services call ``Store`` methods and get Deferreds; each runs the ``Database`` method of
the same name on an ``Executor``: in the daemon one dedicated thread (SQLite has exactly
one writer, the reactor never waits on the disk), in tools and unit tests inline.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Sequence, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from .database import Database, Fired
from .deliveries import Delivery, DeliveryAttempt
from .model import Job, JobStatus, Project, RanJob, Version

T = TypeVar("T")


class Executor(Protocol):
    """Where the store's calls run: one at a time, in submission order."""

    def run(self, name: str, fn: Callable[[], T]) -> "Deferred[T]":
        """Run ``fn`` (the Database method ``name``, bound to its arguments)."""

    def close(self) -> "Deferred[None]":
        """Stop once every call already submitted has run."""


class ThreadExecutor:
    """The daemon's executor: one dedicated thread, so SQLite has exactly one writer
    and the reactor never waits on the disk."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="crawld-store")
        self.pool.start()

    def run(self, name: str, fn: Callable[[], T]) -> "Deferred[T]":
        return deferToThreadPool(self.reactor, self.pool, fn)

    def close(self) -> "Deferred[None]":
        d: Deferred = deferToThreadPool(self.reactor, self.pool, lambda: None)
        return d.addBoth(lambda result: (self.pool.stop(), None)[1])


class InlineExecutor:
    """Runs each call at once, on the caller's thread: for tools and unit tests that
    want synchronous, deterministic results."""

    def run(self, name: str, fn: Callable[[], T]) -> "Deferred[T]":
        return maybeDeferred(fn)

    def close(self) -> "Deferred[None]":
        return succeed(None)


class Store:
    """The typed, asynchronous face of ``Database``: each method runs the Database
    method of the same name on the executor and returns a Deferred of its result."""

    def __init__(self, path: str, executor: Executor) -> None:
        self.executor = executor
        self.db: Optional[Database] = None
        self._error: Optional[BaseException] = None
        executor.run("open", lambda: self._open(path))

    def _open(self, path: str) -> None:
        try:
            self.db = Database(path)
        except Exception as exc:  # reported by every later call, starting with ready()
            self._error = exc

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Deferred:
        def invoke() -> Any:
            if self.db is None:
                raise self._error or RuntimeError("the store is closed")
            return getattr(self.db, name)(*args, **kwargs)
        return self.executor.run(name, invoke)

    def ready(self) -> "Deferred[int]":
        """Fires with the schema version once the database is open and migrated;
        errbacks if it cannot be."""
        return self._call("schema_version")

    def counters(self) -> "Deferred[dict[str, int]]":
        return self._call("counters")

    def projects(self) -> "Deferred[list[Project]]":
        return self._call("projects")

    def put_project(self, project: Project) -> "Deferred[None]":
        return self._call("put_project", project)

    def delete_project(self, name: str) -> "Deferred[None]":
        return self._call("delete_project", name)

    def versions(self) -> "Deferred[list[Version]]":
        return self._call("versions")

    def put_version(self, version: Version, current: Project,
                    drop: Sequence[str] = ()) -> "Deferred[None]":
        return self._call("put_version", version, current, drop)

    def delete_version(self, project: str, name: str, current: Optional[Project]
                       ) -> "Deferred[None]":
        return self._call("delete_version", project, name, current)

    def version_users(self, project: str, name: str) -> "Deferred[list[str]]":
        return self._call("version_users", project, name)

    def status_counts(self) -> "Deferred[dict[str, int]]":
        return self._call("status_counts")

    def scheduled_spiders(self, project: str, kind: str = "spider") -> "Deferred[list[str]]":
        return self._call("scheduled_spiders", project, kind)

    def active_project_names(self) -> "Deferred[set[str]]":
        return self._call("active_project_names")

    def get_job(self, job_id: str) -> "Deferred[Optional[Job]]":
        return self._call("get_job", job_id)

    def list_jobs(self, statuses: Sequence[JobStatus], limit: int = -1, offset: int = 0,
                  project: Optional[str] = None, spider: Optional[str] = None,
                  text: Optional[str] = None) -> "Deferred[list[Job]]":
        return self._call("list_jobs", statuses, limit, offset, project, spider, text)

    def job_history(self, first_hour: int, hours: int
                    ) -> "Deferred[list[tuple[int, str, int]]]":
        return self._call("job_history", first_hour, hours)

    def schedule_rows(self) -> "Deferred[list[tuple]]":
        return self._call("schedule_rows")

    def ran_spider_jobs(self, project: Optional[str] = None
                        ) -> "Deferred[tuple[list[RanJob], list[RanJob]]]":
        return self._call("ran_spider_jobs", project)

    def pending_in_order(self) -> "Deferred[list[Job]]":
        return self._call("pending_in_order")

    def add_job(self, job: Job) -> "Deferred[Job]":
        return self._call("add_job", job)

    def transition(self, job_id: str, allowed: Sequence[JobStatus], status: JobStatus,
                   now: float, **fields: Any) -> "Deferred[Optional[Job]]":
        return self._call("transition", job_id, allowed, status, now, **fields)

    def unstart(self, job_id: str, now: float) -> "Deferred[None]":
        return self._call("unstart", job_id, now)

    def update_job(self, job_id: str, **fields: Any) -> "Deferred[None]":
        return self._call("update_job", job_id, **fields)

    def set_stats(self, job_id: str, stats: str) -> "Deferred[Optional[Job]]":
        return self._call("set_stats", job_id, stats)

    def claim(self, job_id: str, number: int, host: str) -> "Deferred[bool]":
        """A worker claims attempt ``number`` of a RUNNING job: True for the first claim
        (one UPDATE: atomic, and it holds across daemon restarts), False otherwise."""
        return self._call("claim", job_id, number, host)

    def fire_templates(self, firings: Sequence[tuple[str, float, bool]],
                       make_child: Callable[[Job, float], Job],
                       clock: Callable[[], float]) -> "Deferred[list[Fired]]":
        return self._call("fire_templates", firings, make_child, clock)

    def release_queued(self, template_id: str, child: Job, now: float
                       ) -> "Deferred[Optional[Job]]":
        return self._call("release_queued", template_id, child, now)

    def metric_counts(self) -> "Deferred[tuple[list[tuple], dict[str, int]]]":
        """/metrics' rows: job_totals, and the PENDING and RUNNING counts."""
        return self._call("metric_counts")

    def purge(self, cap: int, older_than: float) -> "Deferred[list[str]]":
        return self._call("purge", cap, older_than)

    # -- webhook deliveries (deliveries.DeliveryRows) -----------------------------------
    def add_delivery(self, delivery: Delivery) -> "Deferred[bool]":
        return self._call("add_delivery", delivery)

    def get_delivery(self, delivery_id: str) -> "Deferred[Optional[Delivery]]":
        return self._call("get_delivery", delivery_id)

    def due_deliveries(self) -> "Deferred[list[tuple[str, float]]]":
        return self._call("due_deliveries")

    def record_attempt(self, delivery_id: str, attempt: DeliveryAttempt, state: str,
                       next_attempt: Optional[float]) -> "Deferred[bool]":
        return self._call("record_attempt", delivery_id, attempt, state, next_attempt)

    def job_deliveries(self, job_id: str) -> "Deferred[list[Delivery]]":
        return self._call("job_deliveries", job_id)

    def close(self) -> "Deferred[None]":
        """Close the database after every call already submitted, then the executor."""
        def shut() -> None:
            if self.db is not None:
                self.db.close()
                self.db = None
        def then(result: Any) -> Deferred:
            return self.executor.close().addCallback(lambda _: result)
        return self.executor.run("close", shut).addBoth(then)
