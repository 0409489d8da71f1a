"""What every route shares: parameters, JSON bodies, errors as HTTP, the endpoint wrapper.

``Router`` registers route functions on one app's Klein instance. Each is wrapped by
``Router.route`` so that, in this order: a CORS preflight from a listed origin is
answered (before authentication: it carries no credentials); with authentication off,
the Host header must name this server; the request is authenticated (the authenticator
may answer later, as a Deferred) and authorized for its role; a method the endpoint does
not take is a 405; a browser's cross-site request that would act is refused; a body
over the limit is a 413; the form body is decoded; then the route runs, and a dict it
returns becomes ``{"status": "ok", ...}``. Errors of the CrawldError tree become
``{"status": "error", "msg": ...}`` with their code, in ``install_error_handlers``;
anything else is a 500 whose traceback goes to the daemon's log only. A ``public``
route (the dashboard's files, login, logout, whoami) skips authentication and nothing
else; a 401 to a request with ``X-Crawld-Client`` carries no challenges.

This module imports no route module: routes import it.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache, wraps
from typing import Any, Callable, Optional

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as RouteMethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import RequestRedirect

from .. import auth, guards, logs
from ..guards import allow_origin, host_allowed, refuse_cross_site
from ..errors import (BadRequest, CrawldError, Forbidden, NotFound, TooLarge,
                      is_disk_full)
from ..channel import PHRASES, too_large
from ..jobs import parse_seconds, validate_policies
from ..model import JOB_ID_RE
from .services import Services

log = Logger(namespace="crawld.api")

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
POLICY_PARAMS = ("tz", "jitter", "misfire", "misfire-grace", "overlap", "timeout",
                 "no-output-timeout", "max-log-size", "memory-limit", "webhook", "fail-on",
                 "retry-lost")
#: GETs that make something happen (a post handed out, a screenshot taken): a page on
#: another site must not trigger them with an <img> either.
ACTING_GETS = {"/job-posts.json", "/job-screenshot.png"}
#: The largest whole number a parameter may be: SQLite's and a file offset's limit.
MAX_INT = 2 ** 63 - 1


# -- JSON bodies ----------------------------------------------------------------------
#: json.dumps(..., ensure_ascii=False) without building an encoder for every answer
_JSON = json.JSONEncoder(ensure_ascii=False)


def write_json(request: Any, code: int, body: dict[str, Any]) -> bytes:
    """``body`` as the API's JSON answer with ``code``: the exact Content-Type, no caching."""
    data = (_JSON.encode(body) + "\n").encode("utf-8")
    request.setResponseCode(code, PHRASES.get(code))
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return data


def error_body(request: Any, code: int, msg: str) -> bytes:
    """The API's error answer: ``{"status": "error", "msg": msg}`` with ``code``."""
    return write_json(request, code, {"status": "error", "msg": msg})


# -- parameters -----------------------------------------------------------------------
def arg(request: Any, name: str, required: bool = True, default: Optional[str] = None
        ) -> Optional[str]:
    """One request parameter (query string or form body) as text; the first value."""
    values = request.args.get(name.encode())
    if not values:
        if required:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"parameter {name!r} is not valid UTF-8") from None


def int_arg(request: Any, name: str, default: int, minimum: int = 0,
            maximum: int = MAX_INT) -> int:
    """A whole-number parameter within [minimum, maximum] (ASCII digits only)."""
    text = arg(request, name, required=False)
    if text is None:
        return default
    if (not re.fullmatch(r"[0-9]{1,19}", text) or not minimum <= int(text) <= maximum):
        raise BadRequest(f"parameter {name!r} must be a whole number from {minimum} to "
                         f"{maximum}")
    return int(text)


def seconds_arg(request: Any, name: str, default: float, top: float) -> float:
    """A number of seconds, more than 0 and at most ``top`` (``default`` when absent)."""
    text = arg(request, name, required=False)
    if text is None or text == "":
        return default
    return parse_seconds(name, text, top, zero=False)


def flag_arg(request: Any, name: str) -> bool:
    """A yes/no parameter: 1, true, yes or 0, false, no (absent: no)."""
    text = (arg(request, name, required=False) or "0").lower()
    if text not in ("0", "1", "true", "false", "yes", "no"):
        raise BadRequest(f"parameter {name!r} must be 1 or 0")
    return text in ("1", "true", "yes")


def policy_args(request: Any) -> dict[str, Any]:
    """The schedule policy parameters of a request, validated, as Job fields."""
    return validate_policies(**{name.replace("-", "_"): arg(request, name, required=False)
                                for name in POLICY_PARAMS})


# -- the request's origin -------------------------------------------------------------
def acts(request: Any) -> bool:
    """Whether a GET is one of ACTING_GETS, however its path is spelled (the router
    percent-decodes: /job-posts%2Ejson is /job-posts.json)."""
    return _acting_path(request.path)


@lru_cache(maxsize=1024)
def _acting_path(path: bytes) -> bool:
    """``acts`` for one path, kept: the few paths clients use are decoded once."""
    return bool(auth.path_forms(path.decode("latin-1")) & ACTING_GETS)


def check_host(s: Services, request: Any) -> None:
    """With authentication off, refuse (403) a Host header that does not name this
    server (``host_allowed``). With it on, a rebinding page has no credentials, and
    names are not checked (reverse proxies vary)."""
    if s.authenticator.mode == "none" and not host_allowed(request, s.web.hostnames):
        raise Forbidden("this server is not known by the name in the Host header; "
                        "add it to [web] hostnames (a guard against DNS rebinding)")


def authenticate(s: Services, request: Any) -> Optional[Deferred]:
    """Who is asking, and may they: raises (or fails with) 401 with challenges, 429 or 403.

    The authenticator may answer at once or later (a password hash checked in a
    thread). At once: this returns None once the identity has the role needed; later:
    a Deferred that fires with None then. (No Deferred on the first path: status.json
    is polled hard, and each one costs.)
    """
    if s.authenticator.mode == "none" or request.authenticated:
        return None  # everyone is the anonymous operator; or checked on the headers
    return guards.authenticate(s.authenticator, s.web.trusted_proxies, request)


def header_gate(s: Services, public: Callable[[bytes], bool] = lambda path: False
                ) -> Callable[[Any], Optional[Deferred]]:
    """What a request with a body must pass on its headers alone, before the channel
    lets its body in (channel.DeadlineChannel, the site's ``gate``): the Host check
    (authentication off), then authentication and the role, as the endpoint wrapper
    checks them. A refusal (401, 403, 429, 503) is answered at once and the connection
    closed, so no body is read from a client without valid credentials. A request that
    passes is marked ``authenticated``: its route does not ask again (a Digest nonce
    count is accepted once, and a password need not be checked twice). A request to a
    ``public`` path (``Router.is_public``: login.json, logout.json) passes on the Host
    check alone: its route looks at its credentials itself."""
    def gate(request: Any) -> Optional[Deferred]:
        check_host(s, request)
        if public(request.path):
            return None
        return guards.let_in(request, authenticate(s, request))
    return gate


# -- what routes share ----------------------------------------------------------------
def find_job(s: Services, job_id: Optional[str]) -> Deferred:
    """The job ``job_id`` (404 for anything that is not a known job's identifier)."""
    if not JOB_ID_RE.fullmatch(job_id or ""):
        raise NotFound(f"unknown job {job_id!r}")
    return s.jobs.get(job_id)


def stream(s: Services, request: Any, fh: Any, still_running: Callable[[], bool]
           ) -> Deferred:
    """Stream a file to the client (following it while ``still_running()``), within
    the cap on concurrent streams: past ``[web] max-streams`` the client gets 429."""
    return logs.stream(s.streams, s.reactor, request, fh, still_running)


def follow_file(s: Services, request: Any, fh: Any, content_type: bytes, job_id: str,
                follow: bool = True) -> Any:
    """A job's file as the answer (a log, its items): ``content_type``, never cached;
    HEAD gets the headers alone, GET the file, followed while the job runs (unless
    ``follow`` is false). Returns b"" or a Deferred that fires with None once it is
    sent (a route returns either)."""
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"Cache-Control", b"no-store")
    if request.method == b"HEAD":
        fh.close()
        return b""
    running = (lambda: s.supervisor.is_running(job_id)) if follow else (lambda: False)
    return stream(s, request, fh, running).addCallback(lambda _: None)


# -- the app --------------------------------------------------------------------------
#: A route function: the services, the request and the path's variables; returns a dict
#: (the JSON answer's keys), bytes (the body, headers set), None (streamed), or a
#: Deferred of one of them.
RouteFn = Callable[..., Any]


class Router:
    """One app's routes on its own Klein instance, and the methods each path takes."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.klein = Klein()
        #: Klein rule (e.g. ``/job-files/<string:job_id>/<string:name>``) -> methods
        self.methods: dict[str, tuple[str, ...]] = {}
        #: the wrapped endpoint of each route without variables, by its exact path
        #: (server.ExactRouter serves those without Klein's dispatch)
        self.exact: dict[bytes, RouteFn] = {}
        #: the rules served without credentials (``route(..., public=True)``)
        self.public: set[str] = set()

    def route(self, path: str, *methods: str, public: bool = False, cors: bool = True
              ) -> Callable[[RouteFn], RouteFn]:
        """Serve ``fn`` at ``path`` for ``methods`` (GET implies HEAD). Every method
        reaches the wrapper, so that a wrong one gets the API's JSON 405.

        ``public``: served without credentials (the dashboard's shell and assets, which
        hold no data; login, logout and whoami, which look at credentials themselves).
        Everything else the wrapper does (the Host check, 405, cross-site refusals, the
        body limit) still applies. ``cors=False``: never CORS headers, whatever
        ``[web] allowed-origins`` lists (the dashboard's own files)."""
        def decorate(fn: RouteFn) -> RouteFn:
            if path in self.methods:
                raise ValueError(f"two routes for {path}")
            self.methods[path] = methods
            if public:
                self.public.add(path)
            wrapped = self._endpoint(fn, methods, path, public, cors)
            if "<" not in path:
                self.exact[path.encode()] = wrapped
            # methods=None: every method, known or not (TRACE, PROPFIND...), reaches the
            # wrapper, which authenticates before it answers 405 (issue 10, item 5)
            self.klein.route(path, methods=None, endpoint=path)(wrapped)
            return fn
        return decorate

    def is_public(self, path: bytes) -> bool:
        """Whether the endpoint at ``path`` (as sent) is served without credentials
        (the header gate's question for a request with a body)."""
        try:
            endpoint, _ = self.klein.url_map.bind("localhost").match(
                path.decode("latin-1"), method="GET")
        except HTTPException:
            return False
        return endpoint in self.public

    def methods_for(self, path: bytes) -> tuple[str, ...]:
        """The methods the endpoint at ``path`` accepts (empty when there is none)."""
        try:
            endpoint, _ = self.klein.url_map.bind("localhost").match(
                path.decode("latin-1"), method="GET")
        except HTTPException:  # no such route, or a redirect werkzeug would suggest
            return ()
        return self.methods.get(endpoint, ())

    def _endpoint(self, fn: RouteFn, methods: tuple[str, ...], path: str,
                  public: bool = False,
                  cors: bool = True) -> RouteFn:
        """``fn`` wrapped as the module docstring says. Requests are server.LimitedRequest
        (in tests too): ``body_too_large`` and ``parse_body()`` are always there."""
        s = self.services
        allow = ", ".join(methods).encode()

        @wraps(fn)
        def endpoint(request: Any, *args: Any, **kwargs: Any) -> Any:
            request.route = path  # the metrics' label: the pattern, not the raw path
            method = request.method.decode("ascii", "replace")
            if method == "HEAD" and "GET" in methods:
                method = "GET"  # Twisted sends the headers and drops the body
            listed = cors and allow_origin(request, s.web.allowed_origins)
            if (listed and method == "OPTIONS"
                    and request.getHeader(b"access-control-request-method") is not None):
                # a preflight carries no credentials: answer it before authentication
                request.setHeader(b"Access-Control-Allow-Methods", allow)
                request.setHeader(b"Access-Control-Allow-Headers",
                                  b"Authorization, X-Api-Key, Content-Type, X-Crawld-Client")
                request.setHeader(b"Access-Control-Max-Age", b"600")
                request.setResponseCode(204)
                return b""
            check_host(s, request)

            def serve(_: Any = None) -> Any:
                if method not in methods:
                    request.setHeader(b"Allow", allow)
                    return error_body(request, 405, f"method {method} not allowed; use "
                                      f"{' or '.join(methods)}")
                if (method != "GET" or acts(request)) and not listed:
                    refuse_cross_site(request)
                if request.body_too_large:  # (crawld's channel has answered it already)
                    raise too_large(s.web.max_body)
                parsing = request.parse_body()
                if parsing is None:  # no body to decode: answer in this call
                    return ok_body(request, fn(s, request, *args, **kwargs))
                parsing.addCallback(lambda _: fn(s, request, *args, **kwargs))
                return ok_body(request, parsing)
            checked = None if public else authenticate(s, request)
            return serve() if checked is None else ok_body(request, checked.addCallback(serve))
        return endpoint


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


def crawld_error(request: Any, failure: Any) -> bytes:
    """A CrawldError as the client's answer: its code, its message, its headers (such
    as WWW-Authenticate, left out for a request with ``X-Crawld-Client``)."""
    for name, values in guards.answer_headers(request, failure.value).items():
        request.responseHeaders.setRawHeaders(name, [str(v) for v in values])
    return error_body(request, failure.value.code, failure.value.msg)


def internal_error(request: Any, failure: Any) -> bytes:
    """Any other exception: 507 for a full disk, else 500 with the traceback logged."""
    if is_disk_full(failure.value):
        log.error("{path}: the disk is full ({exc})", path=request.path, exc=failure.value)
        return error_body(request, 507, "the disk of the data directory is full; "
                          "nothing was changed. Free some space and retry")
    log.failure("unhandled error on {path}", failure, path=request.path)
    return error_body(request, 500, "internal error; see the daemon's log")


def error_response(request: Any, failure: Any) -> bytes:
    """The answer to an endpoint's failure, as the Klein handlers below give it (for
    routes served without Klein: server.ExactRouter)."""
    if failure.check(CrawldError):
        return crawld_error(request, failure)
    return internal_error(request, failure)


def install_error_handlers(router: Router) -> None:
    """Errors as the API's JSON answers, in one place: CrawldError with its code (and
    headers such as WWW-Authenticate), unknown paths 404, methods no route takes 405,
    a full disk 507, anything else 500 (the traceback to the daemon's log only)."""
    klein = router.klein
    klein.handle_errors(CrawldError)(crawld_error)

    @klein.handle_errors(RouteNotFound, RequestRedirect)
    def not_found(request: Any, failure: Any) -> bytes:
        """No route: 404. Also for werkzeug's redirect of a path with ``//`` in a route
        with parameters (``/job-files/a//b``), which Klein does not answer (it was a 500)."""
        return error_body(request, 404, f"no such endpoint: {request.path.decode('latin-1')}")

    @klein.handle_errors(RouteMethodNotAllowed)
    def bad_method(request: Any, failure: Any) -> bytes:
        """A method no route takes at all (TRACE, CONNECT, ...): 405 with ``Allow`` too."""
        methods = router.methods_for(request.path)
        if methods:
            request.setHeader(b"Allow", ", ".join(methods).encode())
        method = request.method.decode("ascii", "replace")
        return error_body(request, 405, f"method {method} not allowed" + (
            f"; use {' or '.join(methods)}" if methods else ""))

    klein.handle_errors(Exception)(internal_error)
