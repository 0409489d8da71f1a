"""The HTTP API: scrapy-do's endpoints, same paths, parameters and keys, on Klein.

Each route parses its input, calls one service method and encodes JSON. Errors from the
CrawldError tree become ``{"status": "error", "msg": ...}`` with their HTTP code, in one
place; anything else is a 500 whose traceback goes to the daemon's log only.
"""
from __future__ import annotations

import ipaddress
import json
import re
from functools import lru_cache, partial, wraps
from importlib import resources
from urllib.parse import parse_qs, urlsplit
from typing import Any, Callable, Optional

import yaml
from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as RouteMethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound

from . import auth, logs
from . import spec as specs
from .errors import (BadRequest, CrawldError, Forbidden, NotFound, TooLarge, TooManyStreams,
                     is_disk_full)
from .jobs import validate_policies
from .jobview import display_zone, iso, iso_ms, job_dict  # noqa: F401 (api_browser's)
from .web import ExactRouter

log = Logger(namespace="crawld.api")

POLICY_PARAMS = ("tz", "jitter", "misfire", "misfire-grace", "overlap", "timeout",
                 "no-output-timeout", "max-log-size", "memory-limit")

#: GETs that make something happen (a post handed out, a screenshot taken): a page on
#: another site must not trigger them with an <img> either.
ACTING_GETS = {"/job-posts.json", "/job-screenshot.png"}


def acts(request: Any) -> bool:
    """Whether a GET is one of ACTING_GETS, however its path is spelled (the router
    percent-decodes: /job-posts%2Ejson is /job-posts.json)."""
    return _acting_path(request.path)


@lru_cache(maxsize=1024)
def _acting_path(path: bytes) -> bool:
    """``acts`` for one path, kept: the few paths clients use are decoded once."""
    return bool(auth.path_forms(path.decode("latin-1")) & ACTING_GETS)


@lru_cache(maxsize=1024)
def _required_role(method: str, path: str) -> str:
    """auth.required_role, kept per (method, path): its regexes run once per path."""
    return auth.required_role(method, path)


ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LOG_NAME_RE = re.compile(rf"({UUID_RE.pattern})\.(out|err)")


#: json.dumps(..., ensure_ascii=False) without building an encoder for every answer
_JSON = json.JSONEncoder(ensure_ascii=False)


def write_json(request: Any, code: int, body: dict[str, Any]) -> bytes:
    data = (_JSON.encode(body) + "\n").encode("utf-8")
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return data


#: Reason phrases Twisted does not know (it would send "429 Unknown Status").
PHRASES = {429: b"Too Many Requests", 507: b"Insufficient Storage"}


def error_body(request: Any, code: int, msg: str) -> bytes:
    body = write_json(request, code, {"status": "error", "msg": msg})
    if code in PHRASES:
        request.setResponseCode(code, PHRASES[code])
    return body


def arg(request: Any, name: str, required: bool = True, default: Optional[str] = None
        ) -> Optional[str]:
    """One request parameter (query string or form body) as text."""
    values = request.args.get(name.encode())
    if not values:
        if required:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"parameter {name!r} is not valid UTF-8") from None


#: The largest whole number a parameter may be: SQLite's and a file offset's limit.
MAX_INT = 2 ** 63 - 1


def int_arg(request: Any, name: str, default: int, minimum: int = 0,
            maximum: int = MAX_INT) -> int:
    text = arg(request, name, required=False)
    if text is None:
        return default
    if (not re.fullmatch(r"[0-9]{1,19}", text) or not minimum <= int(text) <= maximum):
        raise BadRequest(f"parameter {name!r} must be a whole number from {minimum} to "
                         f"{maximum}")
    return int(text)


def allow_origin(request: Any, allowed: frozenset[str]) -> bool:
    """CORS for the origins the operator listed (``[web] allowed-origins``), none else.

    Adds the response headers that let a dashboard on such an origin read responses
    (credentials included); returns whether the request's Origin is one of them."""
    origin = request.getHeader(b"origin")
    if origin is None or origin.decode("latin-1").strip().lower() not in allowed:
        return False
    request.setHeader(b"Access-Control-Allow-Origin", origin.strip())
    request.setHeader(b"Access-Control-Allow-Credentials", b"true")
    request.setHeader(b"Vary", b"Origin")
    return True


def host_allowed(request: Any, names: frozenset[str]) -> bool:
    """Whether the Host header names this server: an IP literal, localhost, or one of
    ``[web] hostnames``. A DNS-rebinding page reaches 127.0.0.1 under its own name."""
    return _host_name_allowed(request.getHeader(b"host") or b"", names)


@lru_cache(maxsize=256)
def _host_name_allowed(value: bytes, names: frozenset[str]) -> bool:
    """``host_allowed`` for one Host value, kept (an IP literal is parsed once)."""
    raw = value.decode("latin-1").strip().lower()
    host = raw[1:raw.index("]")] if raw.startswith("[") and "]" in raw else raw.split(":")[0]
    if host in ("localhost", "localhost.") or host in names:
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def refuse_cross_site(request: Any) -> None:
    """Refuse a state-changing request that a browser says comes from another site.

    A web page can POST forms to 127.0.0.1 without any CORS approval; since pushing a
    project runs code, such requests must not reach the API. curl and scrapy-do-cl send
    neither header and are unaffected.
    """
    fetch_site = request.getHeader(b"sec-fetch-site")
    if fetch_site is not None and fetch_site.strip().lower() == b"cross-site":
        raise Forbidden("cross-site requests may not change anything (Sec-Fetch-Site)")
    origin = request.getHeader(b"origin")
    if origin is not None:
        host = (request.getHeader(b"host") or b"").strip().lower()
        _, _, origin_host = origin.strip().lower().partition(b"://")
        if origin_host != host:
            raise Forbidden("cross-origin requests may not change anything (Origin "
                            f"{origin.decode('latin-1')!r} is not this server)")


def policy_args(request: Any) -> dict[str, Any]:
    """The schedule policy parameters of a request, validated, as Job fields."""
    return validate_policies(**{name.replace("-", "_"): arg(request, name, required=False)
                                for name in POLICY_PARAMS})


def endpoint(*methods: str) -> Callable:
    """Wrap a route: method check (405), body size check (413), JSON success body."""
    def decorate(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(self: "Api", request: Any, *args: Any, **kwargs: Any) -> Any:
            method = request.method.decode("ascii", "replace")
            if method == "HEAD" and "GET" in methods:
                method = "GET"  # Twisted sends the headers and drops the body
            allowed = self.allowed_origins
            listed = bool(allowed) and allow_origin(request, allowed)
            if (listed and method == "OPTIONS"
                    and request.getHeader(b"access-control-request-method") is not None):
                # a preflight carries no credentials: answer it before authentication
                request.setHeader(b"Access-Control-Allow-Methods", ", ".join(methods).encode())
                request.setHeader(b"Access-Control-Allow-Headers",
                                  b"Authorization, X-Api-Key, Content-Type")
                request.setHeader(b"Access-Control-Max-Age", b"600")
                request.setResponseCode(204)
                return b""
            if not self.host_ok(request):
                raise Forbidden("this server is not known by the name in the Host header; "
                                "add it to [web] hostnames (a guard against DNS rebinding)")
            self.authenticate(request)
            if method not in methods:
                request.setHeader(b"Allow", ", ".join(methods).encode())
                return error_body(request, 405, f"method {method} not allowed; use "
                                  f"{' or '.join(methods)}")
            if (method != "GET" or acts(request)) and not listed:
                refuse_cross_site(request)
            if getattr(request, "body_too_large", False):
                raise TooLarge(f"request body over the {self.max_body} byte limit "
                               "(max-archive-size)")
            parse = getattr(request, "parse_body", None)  # LimitedRequest; absent in tests
            parsing = parse() if parse is not None else None
            if parsing is None:  # no body to decode: answer in this call, no Deferred
                return ok_body(request, fn(self, request, *args, **kwargs))
            shielded: Deferred = Deferred()  # see ok_body
            parsing.addCallback(lambda _: fn(self, request, *args, **kwargs))
            parsing.chainDeferred(shielded)
            return shielded.addCallback(lambda result: ok_body(request, result))
        return wrapper
    return decorate


def ok_body(request: Any, result: Any) -> Any:
    """A route's result as its answer: a dict becomes ``{"status": "ok", ...}`` JSON,
    bytes and None pass as they are, a Deferred fires with that later.

    A client that goes away makes Klein cancel the Deferred it was given; the work (a
    row written, a process spawned) must still finish, so Klein gets a Deferred with no
    canceller, fed by the real one."""
    if isinstance(result, Deferred):
        shielded: Deferred = Deferred()
        result.chainDeferred(shielded)
        return shielded.addCallback(lambda done: ok_body(request, done))
    if isinstance(result, bytes) or result is None:
        return result
    return write_json(request, 200, {"status": "ok", **result})


_app = Klein()

#: path -> the methods its endpoint accepts; the source of truth for the OpenAPI spec.
ROUTES: dict[str, tuple[str, ...]] = {}
#: path -> the wrapped endpoint of every route without variables (see Api.resource).
EXACT: dict[str, Callable] = {}


def route(path: str, *methods: str) -> Callable:
    """Register an endpoint for every method (so that a wrong one gets a JSON 405)."""
    def decorate(fn: Callable) -> Callable:
        ROUTES[path] = methods
        wrapped = endpoint(*methods)(fn)
        if "<" not in path:
            EXACT[path] = wrapped
        return _app.route(path, methods=ALL_METHODS)(wrapped)
    return decorate


def route_methods(path: bytes) -> tuple[str, ...]:
    """The methods the endpoint at ``path`` accepts (empty when there is none)."""
    try:
        rule, _ = _app.url_map.bind("localhost").match(
            path.decode("latin-1"), method="GET", return_rule=True)
    except HTTPException:  # no such route, or a redirect werkzeug would suggest
        return ()
    return ROUTES.get(rule.rule, ())


@lru_cache(maxsize=1)
def openapi_json() -> bytes:
    """The API's OpenAPI 3.1 description as JSON: ``openapi.yaml`` of this package (the
    file docs/openapi.yaml links to), parsed once and kept."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text("utf-8")
    spec = yaml.safe_load(text)
    return (json.dumps(spec, ensure_ascii=False) + "\n").encode("utf-8")


class Api:
    """Klein routes over the services. ``Api(...).app.resource()`` is the root resource."""

    app = _app

    def __init__(self, reactor: Any, jobs: Any, projects: Any, supervisor: Any,
                 status: Any, log_dir: str, max_body: int, max_archive: int,
                 browsers: Any = None, to_thread: Callable[..., Deferred] = deferToThread
                 ) -> None:
        self.reactor = reactor
        self.jobs = jobs
        self.projects = projects
        self.supervisor = supervisor
        self.status_report = status
        self.log_dir = log_dir
        self.max_body = max_body
        self.max_archive = max_archive
        self.browsers = browsers
        self.to_thread = to_thread
        self.authenticator: Any = None  # auth.Authenticator; None: no checks (unit tests)
        self.allowed_origins: frozenset[str] = frozenset()  # [web] allowed-origins
        self.hostnames: frozenset[str] = frozenset()        # [web] hostnames
        self.max_streams = 64      # [web] max-streams: followed logs and downloads at once
        self.streams = 0

    def resource(self) -> Resource:
        """The root resource: routes without variables are found by their exact path
        and called directly (web.ExactRouter), every other request goes through Klein;
        both run the same endpoints and give the same answers."""
        return ExactRouter({path.encode(): partial(fn, self) for path, fn in EXACT.items()},
                           self.app.resource(), self.error_response,
                           frozenset(m.encode() for m in ALL_METHODS))

    # -- auth -------------------------------------------------------------------------
    def host_ok(self, request: Any) -> bool:
        """With authentication off, only requests that name this server by an IP, by
        localhost or by a configured hostname are served: DNS rebinding would otherwise
        let any web page drive a loopback daemon. With authentication on, a rebinding
        page has no credentials, and names are not checked (reverse proxies vary)."""
        if self.authenticator is None or self.authenticator.mode != "none":
            return True
        return host_allowed(request, self.hostnames)

    def authenticate(self, request: Any) -> None:
        """Who is asking, and may they: 401 (with challenges), 429 or 403, else nothing.

        Every route goes through here before anything else, logs and streams included.
        """
        if self.authenticator is None or self.authenticator.mode == "none":
            return  # everyone is the anonymous operator, who may do anything
        headers = {}
        for name in (b"authorization", b"x-api-key"):  # all the authenticator reads
            values = request.requestHeaders.getRawHeaders(name)
            if values:
                headers[name.decode("ascii")] = values[-1].decode("latin-1")
        uri = request.uri.decode("latin-1")
        # the URL's key, never the body's
        query = parse_qs(urlsplit(uri).query).get("key") if "?" in uri else None
        method = request.method.decode("ascii", "replace")
        identity = self.authenticator.authenticate(
            headers, query[0] if query else None, method, uri,
            request.getClientAddress().host)
        auth.authorize(identity, _required_role(method, request.path.decode("latin-1")))

    # -- errors -----------------------------------------------------------------------
    def error_response(self, request: Any, failure: Any) -> bytes:
        """The answer to an endpoint's failure, as Klein's handlers below give it."""
        if failure.check(CrawldError):
            return self.crawld_error(request, failure)
        return self.internal(request, failure)

    @app.handle_errors(CrawldError)
    def crawld_error(self, request: Any, failure: Any) -> bytes:
        extra = getattr(failure.value, "response_headers", None)
        for name, values in (extra() if extra else {}).items():
            request.responseHeaders.setRawHeaders(name, [str(v) for v in values])
        return error_body(request, failure.value.code, failure.value.msg)

    @app.handle_errors(RouteNotFound)
    def not_found(self, request: Any, failure: Any) -> bytes:
        return error_body(request, 404, f"no such endpoint: {request.path.decode('latin-1')}")

    @app.handle_errors(RouteMethodNotAllowed)
    def bad_method(self, request: Any, failure: Any) -> bytes:
        """A method no route takes at all (TRACE, CONNECT, ...): 405 with ``Allow`` too."""
        methods = route_methods(request.path)
        if methods:
            request.setHeader(b"Allow", ", ".join(methods).encode())
        method = request.method.decode("ascii", "replace")
        return error_body(request, 405, f"method {method} not allowed" + (
            f"; use {' or '.join(methods)}" if methods else ""))

    @app.handle_errors(Exception)
    def internal(self, request: Any, failure: Any) -> bytes:
        if is_disk_full(failure.value):
            log.error("{path}: the disk is full ({exc})", path=request.path, exc=failure.value)
            return error_body(request, 507, "the disk of the data directory is full; "
                              "nothing was changed. Free some space and retry")
        log.failure("unhandled error on {path}", failure, path=request.path)
        return error_body(request, 500, "internal error; see the daemon's log")

    # -- the API's own description ----------------------------------------------------
    @route("/openapi.json", "GET")
    def openapi(self, request: Any) -> bytes:
        """This API in OpenAPI 3.1 (what docs/openapi.yaml says), for clients and tools."""
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return openapi_json()

    # -- scrapy-do endpoints ----------------------------------------------------------
    @route("/status.json", "GET")
    def status(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return self.status_report.answer(self.jobs.counters, len(self.jobs.scheduler),
                                         len(self.projects.cache),
                                         self.projects.spider_count())

    @route("/push-project.json", "POST")
    @inlineCallbacks
    def push_project(self, request: Any):
        values = request.args.get(b"archive")
        if not values:
            raise BadRequest("missing parameter 'archive' (a zip, as a file or form field)")
        project = yield self.projects.push(values[0], self.max_archive)
        return {"name": project.name, "spiders": list(project.spiders),
                "scripts": list(project.scripts)}

    @route("/list-projects.json", "GET")
    def list_projects(self, request: Any) -> dict[str, Any]:
        return {"projects": self.projects.names()}

    @route("/list-spiders.json", "GET")
    def list_spiders(self, request: Any) -> dict[str, Any]:
        name = arg(request, "project")
        return {"project": name, "spiders": list(self.projects.get(name).spiders)}

    @route("/schedule-job.json", "POST")
    @inlineCallbacks
    def schedule_job(self, request: Any):
        policies = policy_args(request)
        spider = arg(request, "spider", required=False)
        script = arg(request, "script", required=False)
        if (spider is None) == (script is None):
            raise BadRequest("give exactly one of 'spider' and 'script'" if spider else
                             "missing parameter 'spider' (or 'script' for a browser script)")
        job = yield self.jobs.schedule(
            arg(request, "project"), spider or script, arg(request, "when"),
            description=arg(request, "description", required=False, default=""),
            payload=arg(request, "payload", required=False), policies=policies,
            kind="spider" if spider is not None else "script")
        return {"identifier": job.id}

    @route("/pause-job.json", "POST")
    @inlineCallbacks
    def pause_job(self, request: Any):
        job = yield self._job(arg(request, "id"))
        job = yield self.jobs.pause(job.id)
        return {"identifier": job.id, "job-status": job.status.value}

    @route("/resume-job.json", "POST")
    @inlineCallbacks
    def resume_job(self, request: Any):
        job = yield self._job(arg(request, "id"))
        job = yield self.jobs.resume(job.id)
        return {"identifier": job.id, "job-status": job.status.value,
                "next-run": iso(job.next_fire, display_zone(job.tz))}

    @route("/run-job.json", "POST")
    @inlineCallbacks
    def run_job(self, request: Any):
        job = yield self._job(arg(request, "id"))
        child = yield self.jobs.run_now(job.id)
        return {"identifier": child.id, "parent": job.id}

    @route("/update-job.json", "POST")
    @inlineCallbacks
    def update_job(self, request: Any):
        job = yield self._job(arg(request, "id"))
        policies = policy_args(request)
        job = yield self.jobs.update(
            job.id, when=arg(request, "when", required=False),
            description=arg(request, "description", required=False),
            payload=arg(request, "payload", required=False), policies=policies)
        return {"job": job_dict(job)}

    @route("/preview-schedule.json", "GET")
    def preview_schedule(self, request: Any) -> dict[str, Any]:
        when = arg(request, "when")
        tz_name = arg(request, "tz", required=False)
        count = int_arg(request, "count", 5, 1, 100)
        parsed = specs.parse(when)
        zone = self.jobs.scheduler.zone(tz_name)
        times = specs.preview(parsed, self.reactor.seconds(), count, zone)
        return {"when": when, "tz": tz_name or self.timezone_name(),
                "next": [iso(t, zone) for t in times]}

    def timezone_name(self) -> str:
        zone = self.jobs.scheduler.tz
        return str(zone) if zone is not None else "local"

    @route("/list-jobs.json", "GET")
    @inlineCallbacks
    def list_jobs(self, request: Any):
        job_id = arg(request, "id", required=False)
        if job_id is not None:
            job = yield self._job(job_id)
            return {"jobs": [job_dict(job)]}
        status = arg(request, "status", required=False)
        if status is None:
            raise BadRequest("give 'status' (SCHEDULED, PAUSED, PENDING, RUNNING, SUCCESSFUL, "
                             "FAILED, CANCELED, ACTIVE, COMPLETED) or 'id'")
        jobs = yield self.jobs.list(status, limit=int_arg(request, "limit", -1, 1),
                                    offset=int_arg(request, "offset", 0),
                                    project=arg(request, "project", required=False),
                                    spider=arg(request, "spider", required=False))
        return {"jobs": [job_dict(job) for job in jobs]}

    @route("/cancel-job.json", "POST")
    @inlineCallbacks
    def cancel_job(self, request: Any):
        job = yield self._job(arg(request, "id"))
        job = yield self.jobs.cancel(job.id)
        return {"identifier": job.id, "job-status": job.status.value}

    @route("/remove-project.json", "POST")
    @inlineCallbacks
    def remove_project(self, request: Any):
        yield self.projects.remove(arg(request, "name"))
        return {}

    @route("/get-log/<string:anything>/<string:filename>", "GET")
    @inlineCallbacks
    def get_log(self, request: Any, anything: str, filename: str):
        m = LOG_NAME_RE.fullmatch(filename)
        if not m:
            raise NotFound(f"no such log {filename!r}; logs are <job-id>.out or .err")
        job = yield self._job(m.group(1))
        try:
            fh = open(logs.path(self.log_dir, job.id, m.group(2)), "rb")
        except FileNotFoundError:
            raise NotFound(f"job {job.id} has no {m.group(2)} log "
                           f"({'it has not started' if job.started is None else 'removed'})"
                           ) from None
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        if request.method == b"HEAD":
            fh.close()
            return b""
        yield self.stream(request, fh, lambda: self.supervisor.is_running(job.id))
        return None

    # -- helpers ----------------------------------------------------------------------
    @inlineCallbacks
    def _job(self, job_id: str):
        if not UUID_RE.fullmatch(job_id or ""):
            raise NotFound(f"unknown job {job_id!r}")
        return (yield self.jobs.get(job_id))

    def stream(self, request: Any, fh: Any, still_running: Callable[[], bool]) -> Deferred:
        """Stream a file to the client (following it while ``still_running()``), within
        the cap on concurrent streams: past ``max_streams`` the client gets 429."""
        if self.streams >= self.max_streams:
            fh.close()
            raise TooManyStreams(f"{self.streams} log and file streams are open, the most "
                                 f"[web] max-streams allows; retry later")
        self.streams += 1
        follower = logs.Follower(self.reactor, request, fh, still_running)

        def closed(result: Any) -> Any:
            self.streams -= 1
            return result
        return follower.done.addBoth(closed)

    def _channel(self, job_id: str) -> Any:
        """The control channel of a running browser job (404 otherwise)."""
        if self.browsers is None:
            raise NotFound("browser jobs are not available in this daemon")
        return self.browsers.channel(job_id)


from . import api_browser  # noqa: E402,F401  (registers the browser routes on the app)
