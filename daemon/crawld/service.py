"""The composition root: builds store, projects, jobs, scheduler, supervisor and API.

``Daemon.start()`` brings them up in dependency order (store, projects, orphans, queue,
scheduler, listening ports); ``Daemon.stop()`` takes them down in reverse, letting running
jobs end within the grace period, so SIGTERM leaves every status recorded.
"""
from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import socket
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from twisted.internet import endpoints
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from . import archive, auth, datadir, items as item_files
from .bundles import Bundles
from .cluster import Cluster
from .launch.remote import RemoteAttempts
from . import spec as specs
from .browser import Browsers, Settings as BrowserSettings, find_browser
from .config import Listen, Settings
from .commands import RunAs
from .errors import ConfigError
from .http.app import app_resource, build_router
from .connections import ConnectionLimits, ensure_descriptors, open_descriptors
from .http.helpers import header_gate
from .http.routes_dashboard import dashboard_files
from .http.routes_meta import openapi_json
from .server import make_site
from .http.services import Services, WebSettings
from .scrapyd import (JobsView, ScrapydServices, ScrapydSettings, build_scrapyd_app,
                      error_answer, scrapyd_gate)
from .jobs import Jobs
from .projects import Projects
from .scheduler import Scheduler
from .launch.spawner import DirectSpawner, ZygoteSpawner
from .status import StatusReport
from .events import JobEvents
from .feed import JobFeed
from .metrics import Metrics
from .launch import statspipe
from .launch.local import LocalLauncher, LocalSettings
from .limits import Defaults
from .stats import JobStats
from .store import Store, ThreadExecutor
from .supervisor import Supervisor
from .tls import ReloadingCertificate
from .http.views import job_dict
from .webhooks import Webhooks, settings_of as webhook_settings
from .waits import JobWaits

log = Logger(namespace="crawld")


def broker_origin(url: str) -> str:
    """A broker URL as logs show it: scheme, host and port (never its password)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


class Daemon:
    """One crawld: every service wired together over one data directory."""

    def __init__(self, settings: Settings, reactor: Any, reinit: bool = False,
                 access_log: Optional[Callable[[str], None]] = None) -> None:
        """``reinit``: crawld serve --reinit, rebuild a lost database (datadir).
        ``access_log`` takes one line per HTTP request (``[web] access-log``); cli passes
        the daemon log's writer, None logs no requests."""
        self.settings = settings
        self.reactor = reactor
        self.reinit = reinit
        self.access_log = access_log if settings.access_log else None
        self.root = settings.data_path
        self.log_dir = os.path.join(self.root, "logs")
        self.items_dir = os.path.join(self.root, "items")   # spider jobs' items files
        self.run_dir = os.path.join(self.root, "run")       # spider jobs' stats FIFOs
        self.ports: list[Any] = []
        self.addresses: list[str] = []
        self.scrapyd_addresses: list[str] = []
        self.lock_fd: Optional[int] = None
        self.store: Optional[Store] = None
        self.tls: Optional[ReloadingCertificate] = None

    def _prepare_dirs(self) -> None:
        for path in (self.root, self.log_dir, os.path.join(self.root, "projects"),
                     os.path.join(self.root, "files"), self.items_dir):
            os.makedirs(path, mode=0o750, exist_ok=True)
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)  # FIFOs: the daemon's alone
        self.lock_fd = os.open(os.path.join(self.root, "crawld.lock"),
                               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"[crawld] data-dir = {self.root}: another crawld is using "
                              "this data directory") from None

    def _build(self, run_as: Optional[RunAs]) -> None:
        """Wire the services, each given what it uses in its constructor: the event list
        first, then the store, the launcher, the supervisor and the services above it."""
        s = self.settings
        # launcher = celery: checked first, so that a refusal leaves nothing to stop
        dispatcher_for = self._celery_dispatcher() if s.launcher == "celery" else None
        self.events = JobEvents()
        self.store = Store(os.path.join(self.root, "crawld.db"), ThreadExecutor(self.reactor))
        # (with launcher = celery, jobs run on workers: no zygote here)
        self.spawner = (ZygoteSpawner(self.reactor, s.python, self.root)
                        if s.preload and s.launcher == "local" else DirectSpawner(self.reactor))
        self.browsers = Browsers(self.reactor, self.root, self.log_dir,
                                 BrowserSettings(find_browser(s.browser_executable),
                                                 s.kill_grace, s.screenshot_timeout),
                                 s.python, run_as=run_as)
        self.launcher = LocalLauncher(
            LocalSettings(s.python, self.log_dir, self._project_dir, self._script_path,
                          run_as=run_as, version_dir=self._version_dir,
                          run_dir=self.run_dir, stats_interval=s.stats_interval,
                          items_dir=self.items_dir if s.items else None),
            self.spawner, self.browsers, reactor=self.reactor)
        self.remote: Optional[RemoteAttempts] = None
        if dispatcher_for is not None:
            self.launcher, self.remote = self._celery(self.launcher, dispatcher_for)
        self.supervisor = Supervisor(
            self.reactor, self.store, self.launcher, self.events, self.log_dir, s.slots,
            s.kill_grace, Defaults(job_timeout=s.job_timeout, browser_timeout=s.browser_timeout,
                                   max_log_size=s.max_log_size, memory_limit=s.memory_limit),
            job_stats=JobStats(self.reactor, self.store, self.events), fail_on=s.fail_on)
        self.projects = Projects(self.reactor, self.store, os.path.join(self.root, "projects"),
                                 s.python, archive.Limits(s.max_archive_files,
                                                          s.max_unpacked_size),
                                 s.list_timeout, self.launcher.in_use, run_as=run_as)
        self.cluster = (Cluster(self.store, self.remote, self.projects,
                                Bundles(os.path.join(self.root, "bundles")), self.log_dir,
                                self.items_dir if s.items else None,
                                self.supervisor.canceling,
                                files_root=self.browsers.files_root)
                        if self.remote is not None else None)
        self.webhooks = Webhooks(self.reactor, self.store, self.events, webhook_settings(s),
                                 view=job_dict)
        # the event stream's feed and the metrics observe the event list from the start
        self.feed = JobFeed(self.reactor, self.events, backlog=s.event_backlog)
        self.metrics = Metrics(self.store, self.events, lambda: self.supervisor.capacity(),
                               self.spawner.up)
        zone = specs.zone(s.timezone) if s.timezone else None
        self.scheduler = Scheduler(self.reactor, self.store, self.supervisor.enqueue,
                                   self.events, tz=zone, lateness=self.metrics.fired)
        self.jobs = Jobs(self.reactor, self.store, self.projects, self.scheduler,
                         self.supervisor, self.events, self.log_dir, s.completed_cap,
                         s.completed_max_age_days, files=self.browsers,
                         vet_webhook=self.webhooks.vet, items_dir=self.items_dir)
        self.events.subscribe(self._collect_versions)
        self.credentials = auth.Credentials(auth.credentials_path(self.root),
                                            clock=self.reactor.seconds)
        self.services = Services(
            self.reactor, self.jobs, self.projects, self.supervisor,
            StatusReport(self.reactor, self.reactor.seconds()), self._check_auth(),
            self.log_dir, browsers=self.browsers, webhooks=self.webhooks,
            waits=JobWaits(self.reactor, self.events, s.max_waits),
            web=WebSettings(allowed_origins=frozenset(s.allowed_origins),
                            hostnames=frozenset(s.hostnames), max_streams=s.max_streams,
                            # scrapy-do-cl url-encodes the zip: up to 3 bytes per byte
                            max_body=3 * s.max_archive_size + 64 * 1024,
                            max_archive=s.max_archive_size,
                            trusted_proxies=s.trusted_proxies,
                            max_event_streams=s.event_streams, keep_alive=s.keep_alive),
            feed=self.feed, metrics=self.metrics, items_dir=self.items_dir,
            cluster=self.cluster)
        self.router = build_router(self.services)
        self.app = app_resource(self.router)
        web = self.services.web
        self.scrapyd_view: Optional[JobsView] = None
        self.scrapyd_services: Optional[ScrapydServices] = None
        if s.scrapyd_listen:
            # subscribed now, before jobs.start() publishes orphans' ends; loaded in start()
            items_dir = self.items_dir if s.items else None
            self.scrapyd_view = JobsView(self.events, self.supervisor, items_dir,
                                         deferToThread)
            self.scrapyd_services = ScrapydServices(
                self.reactor, self.jobs, self.projects, self.services.authenticator,
                self.log_dir, ScrapydSettings(
                    node_name=s.scrapyd_node_name or socket.gethostname(),
                    max_body=web.max_body, max_archive=web.max_archive,
                    allowed_origins=web.allowed_origins, hostnames=web.hostnames,
                    trusted_proxies=web.trusted_proxies),
                items_dir=items_dir, view=self.scrapyd_view, streams=self.services.streams)

    def _celery_dispatcher(self) -> Callable[..., Any]:
        """``[cluster] launcher = celery``: what sends its messages (celery's
        ``dispatcher_for``). Refuses to start without a broker or without Celery."""
        s = self.settings
        if not s.broker:
            raise ConfigError("[cluster] launcher = celery needs [cluster] broker = "
                              "redis://HOST:PORT/DB (the Redis that carries the jobs' "
                              "messages to the workers)")
        try:
            from .launch.celery import celery_dispatcher
            return celery_dispatcher(self.reactor, s.broker)
        except ImportError as exc:
            raise ConfigError("[cluster] launcher = celery needs Celery and redis-py: "
                              f"pip install 'crawld[cluster]' ({exc})") from None

    def _celery(self, local: LocalLauncher, dispatcher_for: Callable[..., Any]
                ) -> tuple[Any, RemoteAttempts]:
        """``[cluster] launcher = celery``: the celery launcher and its attempts' books
        (jobs a previous daemon ran here are settled by ``local``)."""
        from .launch.celery import CeleryLauncher
        s = self.settings
        # the supervisor is built after the launcher: asked through it, once it exists
        canceling = lambda job_id: self.supervisor.canceling(job_id)  # noqa: E731
        attempts = RemoteAttempts(
            self.reactor, s.heartbeat, s.lost_after,
            items_held=lambda job_id: (item_files.size(self.items_dir, job_id)
                                       if s.items else 0),
            canceling=canceling)
        launcher = CeleryLauncher(self.reactor, attempts, dispatcher_for,
                                  local.settle_orphan)
        log.info("jobs run on crawld workers through {broker} (heartbeat {hb:g} s, lost "
                 "after {lost:g} s){url}", broker=broker_origin(s.broker), hb=s.heartbeat,
                 lost=s.lost_after,
                 url=f"; workers reach this daemon at {s.daemon_url}" if s.daemon_url else "")
        return launcher, attempts

    def _run_as(self) -> Optional[RunAs]:
        """``[crawld] run-as``: jobs (and ``scrapy list``) run as that user. crawld must
        start as root to switch users; the data directory's folders on the way to a
        job's project, files and temp dirs become traversable (not listable) for it."""
        name = self.settings.run_as
        if not name:
            return None
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfigError(f"[crawld] run-as = {name}: no such user") from None
        if os.geteuid() != 0:
            raise ConfigError(f"[crawld] run-as = {name}: crawld must start as root to "
                              "run jobs as another user")
        if entry.pw_uid == 0:
            raise ConfigError(f"[crawld] run-as = {name}: that is root; leave run-as "
                              "unset instead")
        # (browser jobs' files and tmp roots: Browsers.spawn, as it recreates them)
        for path in (self.root, os.path.join(self.root, "projects"), self.items_dir):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o711)
        log.info("jobs run as {name} (uid {uid})", name=name, uid=entry.pw_uid)
        return RunAs(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def _check_auth(self) -> auth.Authenticator:
        """Load the credentials and decide the auth mode, once, before anything listens;
        returns the authenticator of that mode.

        Refuses to start on a non-loopback address without authentication."""
        s = self.settings
        try:
            has_any = bool(self.credentials.load())  # ConfigError if the file is invalid
        except OSError as exc:  # e.g. created by root with 0600: say so, not a traceback
            raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}; it must be "
                              "readable by crawld's user (create keys as that user)") from exc
        hosts = [listen.host for listen in s.listen + s.scrapyd_listen]
        refusal = auth.must_refuse_start(hosts, s.auth, has_any)
        if refusal:
            raise ConfigError(refusal)
        warning = auth.start_warning(hosts, s.auth, has_any)
        if warning:
            log.warn("{warning}", warning=warning)
        mode = auth.resolve_mode(s.auth, has_any)
        log.info("authentication: {mode}", mode=mode)
        return auth.Authenticator(self.credentials, mode=mode, realm=s.auth_realm,
                                  clock=self.reactor.seconds,
                                  max_password_checks=s.max_password_checks,
                                  session_ttl=s.session_ttl)

    def _project_dir(self, name: str) -> Optional[str]:
        return self.projects.path(name)

    def _version_dir(self, name: str, version: str) -> Optional[str]:
        return self.projects.version_path(name, version)

    def _script_path(self, project: str, script: str) -> str:
        return self.projects.script_path(project, script)

    def _collect_versions(self, job: Any) -> None:
        """A job ended: its project's old versions may be unused now (an observer)."""
        if job.status.completed and job.project and not self.jobs.stopped:
            self.projects.collect(job.project).addErrback(
                lambda f: log.failure("removing old versions of {p} failed", f, p=job.project))

    @inlineCallbacks
    def start(self):
        """Open everything and start listening; fires with the listening addresses."""
        self._prepare_dirs()
        state = yield deferToThread(datadir.assess, self.root)
        refusal = datadir.refusal(state, self.reinit)
        if refusal:  # the database of an earlier crawld is gone: never start empty
            raise ConfigError(refusal)
        rebuild = self.reinit and state.lost
        if rebuild:
            log.warn("--reinit: the database {db} is {problem}; making a new one",
                     db=state.db_path, problem=state.problem)
            for kept in (yield deferToThread(datadir.set_aside, state, self.reactor.seconds())):
                log.warn("--reinit: kept {kept} aside", kept=kept)
        elif self.reinit:
            log.info("--reinit: the database is there; nothing to rebuild")
        self._build(self._run_as())  # the auth mode is decided there, before the app
        if self.browsers.settings.executable is None:
            log.warn("no Chromium found ([browser] executable = {exe}): browser jobs will "
                     "fail until Debian's chromium package is installed or the option set",
                     exe=self.settings.browser_executable)
        if self.settings.https:  # ConfigError now, not at the first connection
            s = self.settings
            self.tls = ReloadingCertificate(s.tls_cert, s.tls_key, s.tls_chain or None,
                                            clock=self.reactor.seconds)
        yield self.store.ready()
        yield self.projects.load()
        if rebuild:
            yield datadir.rebuild(self.projects, self.root, deferToThread)
        yield deferToThread(statspipe.clear, self.run_dir)  # a previous daemon's FIFOs
        yield self.webhooks.start()  # before orphans are settled: their ends are events
        yield self.jobs.start()
        # browser jobs of a previous daemon are settled by now: their temp dirs can go
        yield deferToThread(shutil.rmtree, self.browsers.tmp_root, True)
        yield deferToThread(openapi_json)  # parsed once, off the reactor (~75 ms)
        yield deferToThread(dashboard_files)  # read and gzipped once, off the reactor
        s = self.settings
        raised = ensure_descriptors(open_descriptors(), s.slots, s.max_connections)
        if raised:  # (ConfigError when even the hard limit is too low)
            log.info("{raised}", raised=raised)
        limits = ConnectionLimits(s.max_connections, s.max_connections_per_client,
                                  s.trusted_proxies, clock=self.reactor.seconds)
        site = make_site(self.app, self.services.web.max_body,
                         header_timeout=s.header_timeout, idle_timeout=s.idle_timeout,
                         access_log=self.access_log, clock=self.reactor.seconds,
                         record=self.metrics.request,
                         body_timeout=s.body_timeout, body_min_rate=s.body_min_rate,
                         gate=header_gate(self.services, self.router.is_public),
                         limits=limits)
        scheme = "https" if self.tls is not None else "http"
        for listen in self.settings.listen:
            address = yield self._listen(listen, site)
            self.addresses.append(address)
            log.info("crawld listening on {scheme}://{address}", address=address,
                     scheme=scheme)
        if self.scrapyd_services is not None and self.scrapyd_view is not None:
            yield self.scrapyd_view.load(self.jobs)  # scrapyd's jobs, in memory from now
            # the same deadlines, connection caps (shared with the native listener) and
            # decision on a body's headers (Host, credentials, role, declared length),
            # refusals in scrapyd's shape (its 401 Unauthorized)
            sd = self.scrapyd_services
            scrapyd_site = make_site(build_scrapyd_app(sd), self.services.web.max_body,
                                     header_timeout=s.header_timeout,
                                     idle_timeout=s.idle_timeout,
                                     access_log=self.access_log, clock=self.reactor.seconds,
                                     body_timeout=s.body_timeout,
                                     body_min_rate=s.body_min_rate, limits=limits,
                                     gate=scrapyd_gate(sd),
                                     refusal=lambda request, error: error_answer(
                                         sd, error, transport=True))
            for listen in self.settings.scrapyd_listen:
                address = yield self._listen(listen, scrapyd_site)
                self.scrapyd_addresses.append(address)
                log.info("crawld's scrapyd listener on {scheme}://{address}",
                         address=address, scheme=scheme)
        log.info("crawld ready: data in {root}, {slots} job slot(s), {n} schedule(s)",
                 root=self.root, slots=self.settings.slots, n=len(self.scheduler))
        return self.addresses

    @inlineCallbacks
    def _listen(self, listen: Listen, site: Any):
        """Listen on ``listen`` for ``site`` (over TLS when configured); fires with the
        address listened on (the port chosen, for port 0)."""
        if self.tls is not None:
            endpoint = endpoints.SSL4ServerEndpoint(self.reactor, listen.port, self.tls,
                                                    interface=listen.host)
        elif ":" in listen.host:
            endpoint = endpoints.TCP6ServerEndpoint(self.reactor, listen.port,
                                                    interface=listen.host)
        else:
            endpoint = endpoints.TCP4ServerEndpoint(self.reactor, listen.port,
                                                    interface=listen.host)
        port = yield endpoint.listen(site)
        self.ports.append(port)
        host = port.getHost()
        return str(Listen(host.host, host.port))

    @inlineCallbacks
    def stop(self):
        """Graceful stop: no new firings or requests, end running jobs, close the store."""
        log.info("crawld stopping")
        if self.store is None:
            return
        self.scheduler.stop()
        self.jobs.stop()
        for port in self.ports:
            yield port.stopListening()
        yield self.supervisor.stop()
        self.feed.stop()  # after the jobs' ends: event streams end cleanly, all told
        yield self.launcher.stop()
        yield self.webhooks.stop()  # attempts in flight are recorded; the rest wait
        yield self.store.close()
        log.info("crawld stopped")

