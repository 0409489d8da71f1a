"""Fakes of the services the HTTP layer uses (each implements its Protocol in
crawld.http.services), and StubTreq over an app built from them with crawld's own
request class: the HTTP layer without a socket."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.web.server import Site

from crawld import auth
from crawld.errors import NotFound
from crawld import server
from crawld.events import JobEvents
from crawld.feed import JobFeed
from crawld.metrics import Metrics
from crawld.http.app import build_app
from crawld.events import JobEvents
from crawld.http.services import (AuthenticatorApi, JobsApi, ProjectsApi, Services,
                                  StatusApi, SupervisorApi, WaitsApi, WebSettings)
from crawld.model import Project, Version
from crawld.status import StatusReport
from crawld.waits import JobWaits

MAX_WAITS = 8  # [web] max-waits of the fakes' app


class FakeSupervisor:
    """A supervisor that queues job ids and runs nothing."""

    kill_grace = 1.0

    def __init__(self) -> None:
        self.queued: list[str] = []

    def enqueue(self, job_id: str, priority: float = 0.0) -> None:
        self.queued.append(job_id)

    def is_running(self, job_id: str) -> bool:
        return False

    def load(self) -> tuple[int, int, int]:
        return 4, 0, len(self.queued)

    def cancel(self, job_id: str) -> Optional[Deferred]:
        return None


class FakeProjects:
    """One project, ``demo``, with the spiders ``ok`` and ``slow``."""

    def __init__(self) -> None:
        self.cache = {"demo": Project("demo", 1, "/nowhere", ("ok", "slow"), 0.0)}
        self.pushed: list[bytes] = []

    def names(self) -> list[str]:
        return sorted(self.cache)

    def get(self, name: str) -> Project:
        if name not in self.cache:
            raise NotFound(f"unknown project {name!r}")
        return self.cache[name]

    def spider_count(self) -> int:
        return sum(len(p.spiders) for p in self.cache.values())

    def push(self, data: bytes, max_size: Optional[int] = None) -> Deferred:
        self.pushed.append(data)
        return succeed(self.cache["demo"])

    def remove(self, name: str) -> Deferred:
        try:
            self.get(name)
        except NotFound as exc:
            return fail(exc)
        del self.cache[name]
        return succeed(None)

    def version_names(self, name: str) -> list[str]:
        return [str(self.cache[name].version)] if name in self.cache else []

    def get_version(self, name: str, version: str) -> Version:
        project = self.get(name)
        if version != str(project.version):
            raise NotFound(f"unknown version {version!r} of project {name!r}")
        return Version(name, version, project.version, project.path, project.spiders,
                       project.pushed, "archive", project.scripts)

    def delete_version(self, name: str, version: str) -> Deferred:
        """Deleting the only version deletes the project (as Projects does)."""
        try:
            self.get_version(name, version)
        except NotFound as exc:
            return fail(exc)
        del self.cache[name]
        return succeed(None)


class NoAuth:
    """The authenticator of mode none (a loopback install without credentials)."""

    mode = "none"
    session_ttl = 3600.0

    def authenticate(self, headers: Mapping[str, str], query_key: Optional[str],
                     method: str, uri: str, client_host: str) -> auth.Identity:
        return auth.ANONYMOUS

    def login(self, name: str, password: str, client_host: str) -> Deferred:
        return fail(AssertionError("routes never log in with auth = none"))

    def logout(self, headers: Mapping[str, str]) -> bool:
        return False


class FakeJobs:
    """Jobs with no job at all: enough for routes that only read counts or fail."""

    counters: Mapping[str, int] = {}

    def _none(self, *given: Any, **named: Any) -> Deferred:
        return fail(NotFound("no such job"))

    schedule = browse = get = cancel = pause = resume = run_now = update = _none

    def list(self, status: str, limit: int = -1, offset: int = 0,
             project: Optional[str] = None, spider: Optional[str] = None,
             text: Optional[str] = None) -> Deferred:
        return succeed([])

    def history(self, first_hour: int, hours: int) -> Deferred:
        return succeed([])

    def zone(self, name: Optional[str]) -> Any:
        return None

    def timezone_name(self) -> str:
        return "local"

    def schedule_count(self) -> int:
        return 0


class FakeCounts:
    """The store as /metrics reads it: finished-job totals and the active counts."""

    def __init__(self, totals: Optional[list[tuple]] = None,
                 states: Optional[dict[str, int]] = None) -> None:
        self.totals = totals or []
        self.states = states or {}

    def metric_counts(self) -> Deferred:
        return succeed((list(self.totals), dict(self.states)))


def inline(fn: Any, *args: Any, **kwargs: Any) -> Deferred:
    """A to_thread that runs ``fn`` at once (unit tests: deterministic)."""
    try:
        return succeed(fn(*args, **kwargs))
    except Exception:
        return fail()


def services(clock: Optional[Clock] = None, jobs: Optional[JobsApi] = None,
             projects: Optional[ProjectsApi] = None,
             supervisor: Optional[SupervisorApi] = None,
             status: Optional[StatusApi] = None,
             authenticator: Optional[AuthenticatorApi] = None, log_dir: str = "/nonexistent",
             web: WebSettings = WebSettings(max_body=1 << 20, max_archive=1 << 20),
             waits: Optional[WaitsApi] = None, events: Optional[JobEvents] = None,
             **kw: Any) -> Services:
    """Services of fakes; any of them may be given instead. The event feed and the
    metrics are the real ones, over ``events`` (a new event list by default); the
    default ``waits`` hears that list too."""
    clock = clock or Clock()
    events = events if events is not None else JobEvents()
    kw.setdefault("feed", JobFeed(clock, events, boot="t"))
    kw.setdefault("metrics", Metrics(FakeCounts(), events, lambda: 4, lambda: False,
                                     to_thread=inline, process=False))
    return Services(clock, jobs or FakeJobs(), projects or FakeProjects(),
                    supervisor or FakeSupervisor(),
                    status or StatusReport(clock, clock.seconds()),
                    authenticator or NoAuth(), log_dir, web=web,
                    waits=waits or JobWaits(clock, events, MAX_WAITS), **kw)


def with_web(s: Services, **changes: Any) -> Services:
    """The same services with some [web] settings changed (a new app must be built)."""
    return dataclasses.replace(s, web=dataclasses.replace(s.web, **changes))


def stub(s: Services) -> StubTreq:
    """StubTreq over ``build_app(s)``, its requests of crawld's own class (body limit and
    form decoding, as server.make_site serves them)."""
    return stub_resource(build_app(s), s.web.max_body)


def stub_resource(resource: Any, max_body: int) -> StubTreq:
    """StubTreq over ``resource`` with crawld's request class (bodies up to ``max_body``)."""
    client = StubTreq(resource)
    site = client._agent._serverFactory  # treq (pinned <27) keeps its in-memory Site here
    assert isinstance(site, Site), "treq.testing changed: give its Site our request class"
    site.requestFactory = server.request_class(max_body)
    return client
