"""What the scrapyd listener receives: ``ScrapydServices``, and a Protocol for each
service as the listener uses it (the real classes: jobs.Jobs, projects.Projects,
auth.Authenticator)."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence, Union

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from ..logs import StreamGate
from ..model import Project, Version
from ..seams import Clock
from .view import JobsView


class ScrapydJobs(Protocol):
    """jobs.Jobs as the scrapyd listener uses it."""

    def schedule(self, project: str, spider: str, when: str, description: str = "",
                 payload: Optional[str] = None, policies: Optional[dict[str, Any]] = None,
                 kind: str = "spider", args: Sequence[tuple[str, str]] = (),
                 settings: Sequence[tuple[str, str]] = (), priority: float = 0.0,
                 job_id: Optional[str] = None, version: Optional[str] = None
                 ) -> Deferred: ...

    def get(self, job_id: str) -> Deferred: ...

    def list(self, status: str, limit: int = -1, offset: int = 0,
             project: Optional[str] = None, spider: Optional[str] = None) -> Deferred: ...

    def pending(self) -> Deferred: ...

    def ran_spider_jobs(self, project: Optional[str] = None) -> Deferred: ...

    def status_counts(self) -> Deferred: ...

    def cancel(self, job_id: str) -> Deferred: ...


class ScrapydProjects(Protocol):
    """projects.Projects as the scrapyd listener uses it."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Project: ...

    def version_names(self, name: str) -> list[str]: ...

    def get_version(self, name: str, version: str) -> Version: ...

    def add_egg(self, name: str, version: str, data: bytes,
                max_size: Optional[int] = None) -> Deferred: ...

    def delete_version(self, name: str, version: str) -> Deferred: ...

    def remove(self, name: str) -> Deferred: ...


class ScrapydAuthenticator(Protocol):
    """auth.Authenticator: who sent a request (see http/services.AuthenticatorApi)."""

    mode: str

    def authenticate(self, headers: Mapping[str, str], query_key: Optional[str],
                     method: str, uri: str, client_host: str) -> Union[Any, Deferred]: ...


@dataclass(frozen=True)
class ScrapydSettings:
    """The options the scrapyd listener applies: ``[scrapyd]`` and the ``[web]`` ones
    it shares with the native API."""

    node_name: str = field(default_factory=socket.gethostname)
    max_body: int = 50 * 1024 * 1024      # request body (413 past it)
    max_archive: int = 16 * 1024 * 1024   # an uploaded egg
    allowed_origins: frozenset[str] = frozenset()
    hostnames: frozenset[str] = frozenset()
    trusted_proxies: tuple[Any, ...] = ()
    realm: str = "Scrapyd"                # scrapyd's Basic realm


@dataclass(frozen=True)
class ScrapydServices:
    """Everything the scrapyd listener uses, wired once by service.py or a test."""

    reactor: Clock
    jobs: ScrapydJobs
    projects: ScrapydProjects
    authenticator: ScrapydAuthenticator
    log_dir: str
    settings: ScrapydSettings = ScrapydSettings()
    to_thread: Callable[..., Deferred] = deferToThread
    #: spider jobs' items files (items.py); None when crawld keeps none ([crawld] items)
    items_dir: Optional[str] = None
    #: scrapyd's jobs in memory, kept by the job events (status.json, listjobs.json,
    #: the pages): loaded by the composition root before the listener listens
    view: JobsView = field(kw_only=True)
    #: the count of open log and file streams, shared with the native API ([web]
    #: max-streams): a /logs/ or /items/ download counts as a get-log does
    streams: StreamGate = field(kw_only=True)


PROTOCOLS: Sequence[type] = (ScrapydJobs, ScrapydProjects, ScrapydAuthenticator)
