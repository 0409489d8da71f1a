"""What the HTTP layer receives: ``Services``, and a Protocol for each service in it.

Each Protocol lists exactly what routes use of a service, no more, so a unit test's
fake that implements it stands for the real class (tests/unit/test_http_services.py
checks both against these Protocols). Routes call methods; they never reach through a
service into its parts (``jobs.scheduler``...) nor write to one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from typing import (Any, Callable, Mapping, Optional, Protocol, Sequence, Union,
                    runtime_checkable)

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from ..logs import StreamGate
from ..model import Project, Version
from ..seams import Clock


#: The clock routes use (``task.Clock`` in tests): time now, and timers.
ReactorApi = Clock


@runtime_checkable
class JobsApi(Protocol):
    """jobs.Jobs as the API uses it. Methods returning Deferred fire with a Job (or a
    list of them); a CrawldError is the client's 4xx."""

    counters: Mapping[str, int]

    def schedule(self, project: str, spider: str, when: str, description: str = "",
                 payload: Optional[str] = None, policies: Optional[dict[str, Any]] = None,
                 kind: str = "spider", args: Sequence[tuple[str, str]] = (),
                 settings: Sequence[tuple[str, str]] = (), priority: float = 0.0,
                 job_id: Optional[str] = None, version: Optional[str] = None
                 ) -> Deferred: ...

    def browse(self, params: dict[str, Any], description: str = "",
               timeout: Optional[float] = None) -> Deferred: ...

    def get(self, job_id: str) -> Deferred: ...

    def list(self, status: str, limit: int = -1, offset: int = 0,
             project: Optional[str] = None, spider: Optional[str] = None,
             text: Optional[str] = None) -> Deferred: ...

    def history(self, first_hour: int, hours: int) -> Deferred: ...

    def cancel(self, job_id: str) -> Deferred: ...

    def pause(self, job_id: str) -> Deferred: ...

    def resume(self, job_id: str) -> Deferred: ...

    def run_now(self, job_id: str) -> Deferred: ...

    def update(self, job_id: str, when: Optional[str] = None,
               description: Optional[str] = None, payload: Optional[str] = None,
               policies: Optional[dict[str, Any]] = None) -> Deferred: ...

    def zone(self, name: Optional[str]) -> Optional[tzinfo]: ...

    def timezone_name(self) -> str: ...

    def schedule_count(self) -> int: ...


@runtime_checkable
class ProjectsApi(Protocol):
    """projects.Projects as the API uses it."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Project: ...

    def spider_count(self) -> int: ...

    def push(self, data: bytes, max_size: Optional[int] = None) -> Deferred: ...

    def remove(self, name: str) -> Deferred: ...

    def version_names(self, name: str) -> list[str]: ...

    def get_version(self, name: str, version: str) -> Version: ...

    def delete_version(self, name: str, version: str) -> Deferred: ...


@runtime_checkable
class WaitApi(Protocol):
    """waits.Wait: one place among the waits, for one job."""

    def until(self, job_id: str, timeout: float) -> Deferred: ...

    def release(self) -> None: ...


@runtime_checkable
class WaitsApi(Protocol):
    """waits.JobWaits: requests waiting for jobs to end (``wait=``, ``block=1``). ``take``
    raises TooManyWaits (429) past ``[web] max-waits``; ``until`` fires with the ended Job,
    or None when the time ran out."""

    def take(self, counted: bool = True) -> WaitApi: ...

    def wait(self, job_id: str, timeout: float, counted: bool = True) -> Deferred: ...


@runtime_checkable
class SupervisorApi(Protocol):
    """supervisor.Supervisor as the API uses it: is a job running, its kill grace, and
    its load (slots, running, queued) for status.json."""

    kill_grace: float

    def is_running(self, job_id: str) -> bool: ...

    def load(self) -> tuple[int, int, int]: ...


@runtime_checkable
class ChannelApi(Protocol):
    """browser.Channel: the control pipes of one running browser job."""

    next_shot: int

    def message(self, data: Any) -> None: ...

    def screenshot(self, path: str, full_page: bool) -> Deferred: ...


@runtime_checkable
class BrowsersApi(Protocol):
    """browser.Browsers as the API uses it: channels, posts, paths and the browser."""

    settings: Any  # browser.Settings: screenshot_timeout is read
    tmp_root: str
    files_root: str

    def channel(self, job_id: str) -> ChannelApi: ...

    def take_posts(self, job_id: str) -> list[dict[str, Any]]: ...

    def tmp_dir(self, job_id: str) -> str: ...

    def files_dir(self, job_id: str) -> str: ...

    def describe(self) -> Deferred: ...


@runtime_checkable
class WebhooksApi(Protocol):
    """webhooks.Webhooks as the API uses it: a job's deliveries (deliveries.Delivery,
    each with its attempts), oldest first."""

    def deliveries(self, job_id: str) -> Deferred: ...


@runtime_checkable
class ClusterApi(Protocol):
    """cluster.Cluster: what workers ask (/cluster/*). Each call returns a dict (the
    answer's fields) or a Deferred of one; a 409 is cluster.Refused (with ``extra``)."""

    def timings(self) -> dict[str, float]: ...

    def claim(self, worker: str, job_id: str, number: int) -> Deferred: ...

    def started(self, worker: str, key: str, pid: Optional[int],
                pid_started: Optional[float]) -> dict[str, Any]: ...

    def output(self, key: str, stream: str, offset: int, data: bytes) -> dict[str, Any]: ...

    def file(self, key: str, name: str, offset: int, data: bytes) -> dict[str, Any]: ...

    def message(self, job_id: str, data: Any) -> bool: ...

    def runs_remotely(self, job_id: str) -> bool: ...

    def take_posts(self, job_id: str) -> Deferred: ...

    def stats(self, key: str, stats: dict[str, Any]) -> dict[str, Any]: ...

    def heartbeat(self, worker: str, slots: int, queues: list[str],
                  attempts: list[dict[str, Any]]) -> dict[str, Any]: ...

    def ended(self, key: str, code: Optional[int], signal: Optional[int],
              reason: Optional[str], offsets: dict[str, int]) -> dict[str, Any]: ...

    def code(self, digest: str) -> Deferred: ...


@runtime_checkable
class StatusApi(Protocol):
    """status.StatusReport: status.json's whole body, from counts kept in memory."""

    def answer(self, counters: dict[str, int], scheduled: int, projects: int,
               spiders: int, load: tuple[int, int, int] = (0, 0, 0)) -> bytes: ...


@runtime_checkable
class AuthenticatorApi(Protocol):
    """auth.Authenticator: who sent a request. ``authenticate`` returns an Identity or a
    Deferred firing with one, or raises (fails with) Unauthorized / TooManyAttempts.
    With ``mode`` "none" it answers ANONYMOUS, and the Host header is checked instead.
    ``login`` checks a password once and fires with a session token (sent as Bearer
    from then on); ``logout`` ends the session a request's headers carry."""

    mode: str
    session_ttl: float

    def authenticate(self, headers: Mapping[str, str], query_key: Optional[str],
                     method: str, uri: str, client_host: str) -> Union[Any, Deferred]: ...

    def login(self, name: str, password: str, client_host: str) -> Deferred: ...

    def logout(self, headers: Mapping[str, str]) -> bool: ...


@runtime_checkable
class FeedApi(Protocol):
    """feed.JobFeed: the numbered job events /events streams, and their backlog."""

    last_seq: int

    def event_id(self, seq: int) -> str: ...

    def since(self, last_id: str) -> Optional[list[Any]]: ...

    def after(self, seq: int) -> Optional[list[Any]]: ...

    def keeps(self, seq: int) -> bool: ...

    def listen(self, listener: Callable[[Any], None]) -> Callable[[], None]: ...


@runtime_checkable
class MetricsApi(Protocol):
    """metrics.Metrics: the Prometheus text of /metrics, made at scrape time."""

    def render(self) -> Deferred:
        """Fires with (body, content type)."""


@dataclass(frozen=True)
class WebSettings:
    """The ``[web]`` options the API applies to every request."""

    allowed_origins: frozenset[str] = frozenset()  # CORS for a dashboard there
    hostnames: frozenset[str] = frozenset()        # names this server answers to (auth none)
    max_streams: int = 64          # followed logs and downloads at once
    max_event_streams: int = 32    # /events streams at once ([events] max-streams)
    keep_alive: float = 15.0       # seconds of silence before an event stream's keep-alive
    max_body: int = 50 * 1024 * 1024   # request body (413 past it)
    max_archive: int = 16 * 1024 * 1024  # a pushed project's zip
    trusted_proxies: tuple[Any, ...] = ()  # auth.TrustedProxies: X-Forwarded-For believed


@dataclass(frozen=True)
class Services:
    """Everything routes use, wired once by the composition root (service.py) or a test.

    ``browsers`` is None in a daemon without browser jobs, ``webhooks`` in an app
    without webhooks (no delivery is ever made there). ``streams`` is the app's own
    count of open streams, made from ``web.max_streams``; ``event_streams`` the count of
    /events streams, from ``web.max_event_streams``. ``waits`` (keyword only) must
    hear the same event list as ``jobs`` publishes to; ``feed`` and ``metrics`` (given
    by name) serve /events and /metrics. ``items_dir``: where spider jobs' items files
    are (None: nowhere, every job has none).
    """

    reactor: ReactorApi
    jobs: JobsApi
    projects: ProjectsApi
    supervisor: SupervisorApi
    status: StatusApi
    authenticator: AuthenticatorApi
    log_dir: str
    web: WebSettings = WebSettings()
    browsers: Optional[BrowsersApi] = None
    webhooks: Optional[WebhooksApi] = None
    to_thread: Callable[..., Deferred] = deferToThread
    feed: FeedApi = field(kw_only=True)
    metrics: MetricsApi = field(kw_only=True)
    items_dir: Optional[str] = None   # spider jobs' items files (items.py)
    streams: StreamGate = field(init=False, repr=False, compare=False)
    waits: WaitsApi = field(kw_only=True)
    event_streams: StreamGate = field(init=False, repr=False, compare=False)
    cluster: Optional[ClusterApi] = field(default=None, kw_only=True)  # launcher = celery

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", StreamGate(self.web.max_streams))
        object.__setattr__(self, "event_streams", StreamGate(self.web.max_event_streams))


#: Every Protocol of this module with what implements it in the daemon, for the test
#: that keeps the real classes and the unit tests' fakes in step with them.
PROTOCOLS: Sequence[type] = (ReactorApi, JobsApi, ProjectsApi, SupervisorApi, ChannelApi,
                             BrowsersApi, StatusApi, AuthenticatorApi, WebhooksApi,
                             WaitsApi, WaitApi, FeedApi, MetricsApi, ClusterApi)
