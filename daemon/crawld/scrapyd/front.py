"""The scrapyd listener's root resource: every request passes here first.

In this order: a CORS preflight from a listed origin is answered; with authentication
off, the Host header must name this server; the request is authenticated (the same
credentials and roles as the native API; scrapyd's clients send HTTP Basic) and a
failure is scrapyd's ``401 Unauthorized``; then the path's endpoint: ``OPTIONS`` is
``204`` with ``Allow``, a method it does not take is ``405``, a browser's cross-site
request that would act is refused, a body over the limit is ``413``, the form body is
decoded, and the endpoint runs. Its dict becomes scrapyd's answer (``status: ok`` and
``node_name`` after its keys, a trailing newline); a refusal (any CrawldError) is
scrapyd's ``200`` with ``{"status": "error", "message": ...}``. Pages answer HTML or
text, as scrapyd's do.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import NOT_DONE_YET

from .. import guards
from ..auth import PasswordChecksBusy, TooManyAttempts, Unauthorized
from ..errors import CrawldError, Forbidden, TooLarge, TooManyStreams, is_disk_full
from .pages import find as find_page
from .webservice import ENDPOINTS, JSON, Encoded
from .services import ScrapydServices

log = Logger(namespace="crawld.scrapyd")

_JSON = JSON  # scrapyd's encoder: ASCII with escapes


def _tail(node_name: str, _kept: dict[str, bytes] = {}) -> bytes:
    """What follows an ok answer's keys: ``status``, ``node_name``, the newline (made
    once per node name)."""
    tail = _kept.get(node_name)
    if tail is None:
        tail = _kept[node_name] = (b', "status": "ok", "node_name": '
                                   + _JSON.encode(node_name).encode() + b"}\n")
    return tail


def _send_json(request: Any, body: bytes, code: int) -> bytes:
    if code != 200:
        request.setResponseCode(code)
    headers = request.responseHeaders
    headers.setRawHeaders(b"Content-Type", [b"application/json"])
    headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
    return body


def scrapyd_json(request: Any, s: ScrapydServices, data: dict[str, Any], code: int = 200
                 ) -> bytes:
    """``data`` as scrapyd answers it: ``node_name`` last, a trailing newline."""
    data["node_name"] = s.settings.node_name
    return _send_json(request, _JSON.encode(data).encode() + b"\n", code)


def ok_answer(request: Any, s: ScrapydServices, data: Any) -> bytes:
    """An endpoint's answer (a dict, or its keys Encoded) with ``status: ok`` and
    ``node_name`` after its keys, as one encoding of the whole would write it."""
    if isinstance(data, Encoded):
        return _send_json(request, b"".join((b"{", data, _tail(s.settings.node_name))), 200)
    data["status"] = "ok"
    return scrapyd_json(request, s, data)


def refusal(request: Any, s: ScrapydServices, message: str, code: int = 200) -> bytes:
    """scrapyd's error answer: ``{"status": "error", "message": ...}``."""
    return scrapyd_json(request, s, {"status": "error", "message": message}, code)


#: refusals answered with their own HTTP code (in scrapyd's shape) rather than 200
HONEST = (Forbidden, TooLarge, TooManyStreams, PasswordChecksBusy)


def error_answer(s: ScrapydServices, error: CrawldError, transport: bool = False
                 ) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """scrapyd's answer to a refusal: (code, headers, body). A client without valid
    credentials (or locked out after too many failures: scrapyd's clients know no
    429) gets scrapyd's 401 and the word; a refusal of the transport (``transport``:
    the channel's, before any route) or of ``HONEST`` keeps its code, any other is
    scrapyd's 200; the body is scrapyd's ``{"status": "error", "message": ...}``."""
    if isinstance(error, (Unauthorized, TooManyAttempts)):
        headers = {b"WWW-Authenticate": [f'Basic realm="{s.settings.realm}"'.encode()],
                   b"Content-Type": [b"text/html"], b"Content-Length": [b"12"]}
        if isinstance(error, TooManyAttempts):
            headers[b"Retry-After"] = [str(error.retry_after).encode()]
        return 401, headers, b"Unauthorized"
    headers = {}
    if isinstance(error, PasswordChecksBusy):
        headers = {name.encode(): [str(v).encode() for v in values]
                   for name, values in error.response_headers().items()}
    body = _JSON.encode({"status": "error", "message": error.msg,
                         "node_name": s.settings.node_name}).encode() + b"\n"
    headers[b"Content-Type"] = [b"application/json"]
    headers[b"Content-Length"] = [b"%d" % len(body)]
    return (error.code if transport or isinstance(error, HONEST) else 200), headers, body


def header_gate(s: ScrapydServices) -> Callable[[Any], Optional[Deferred]]:
    """What a request with a body must pass on its headers alone, before the channel
    reads its body (channel.DeadlineChannel's ``gate``), as the native listener's
    gate: the Host check (authentication off), then authentication and the role. A
    refusal is answered at once (``error_answer``: scrapyd's 401 ``Unauthorized``) and
    the connection closed, so no body is read, spooled or held for a client without
    valid credentials. A request let in is marked ``authenticated``: the root does
    not ask again."""
    settings = s.settings

    def gate(request: Any) -> Optional[Deferred]:
        if s.authenticator.mode == "none" and not guards.host_allowed(request,
                                                                      settings.hostnames):
            raise Forbidden(NOT_THIS_HOST)
        return guards.let_in(request, guards.authenticate(
            s.authenticator, settings.trusted_proxies, request, query_key=False))
    return gate


NOT_THIS_HOST = ("this server is not known by the name in the Host header; add it to "
                 "[web] hostnames (a guard against DNS rebinding)")


@lru_cache(maxsize=None)
def _allow(methods: tuple[str, ...]) -> bytes:
    """The ``Allow`` header of an endpoint taking ``methods``."""
    return ", ".join(("OPTIONS", "HEAD") + methods).encode()


class ScrapydRoot(Resource):
    """Serves every path of the listener (see the module docstring)."""

    isLeaf = True

    def __init__(self, services: ScrapydServices) -> None:
        super().__init__()
        self.s = services
        self.endpoints = ENDPOINTS
        self.missing = NoResource()

    def render(self, request: Any) -> Any:
        try:
            result = self._admit(request)
        except Exception:
            result = self._failed(request, Failure())
        if not isinstance(result, Deferred):
            return result
        gone: list[Any] = []
        request.notifyFinish().addBoth(gone.append)
        result.addErrback(lambda failure: self._failed(request, failure))

        def write(body: Any) -> None:
            if gone or request.finished or body is None:  # None: the page finished it
                return
            request.write(body)
            request.finish()
        result.addCallback(write).addErrback(
            lambda f: log.failure("writing a scrapyd answer failed", f))
        return NOT_DONE_YET

    # -- before the endpoint ----------------------------------------------------------
    def _admit(self, request: Any) -> Any:
        s = self.s.settings
        listed = guards.allow_origin(request, s.allowed_origins)
        if (listed and request.method == b"OPTIONS"
                and request.getHeader(b"access-control-request-method") is not None):
            request.setHeader(b"Access-Control-Allow-Methods", b"GET, POST, OPTIONS")
            request.setHeader(b"Access-Control-Allow-Headers", b"Authorization, Content-Type")
            request.setResponseCode(204)
            return b""
        if getattr(request, "authenticated", False):  # let in on its headers (header_gate)
            return self._route(request, listed)
        if self.s.authenticator.mode == "none" and not guards.host_allowed(request,
                                                                           s.hostnames):
            raise Forbidden(NOT_THIS_HOST)
        checked = guards.authenticate(self.s.authenticator, s.trusted_proxies, request,
                                      query_key=False)
        if checked is None:
            return self._route(request, listed)
        return checked.addCallback(lambda _: self._route(request, listed))

    def _route(self, request: Any, listed: bool) -> Any:
        path = request.path
        endpoint = self.endpoints.get(path)
        if endpoint is None:
            page = find_page(path)
            if page is None:
                return self.missing.render(request)
            return page(self.s, request)
        methods, fn = endpoint
        if request.method == b"GET" and "GET" in methods and not request.body_too_large:
            return self._answer(request, fn)  # polled (status, listjobs): nothing to check
        method = request.method.decode("ascii", "replace")
        allow = _allow(methods)
        if method == "OPTIONS":
            request.setHeader(b"Allow", allow)
            request.setResponseCode(204)
            return b""
        if method == "HEAD" and "GET" in methods:
            method = "GET"
        if method not in methods:
            request.setHeader(b"Allow", allow)
            return refusal(request, self.s, f"method {method} not allowed; use "
                           f"{' or '.join(methods)}", 405)
        if method != "GET" and not listed:
            guards.refuse_cross_site(request)
        if request.body_too_large:
            raise TooLarge(f"request body over the {self.s.settings.max_body} byte limit "
                           "(max-archive-size)")
        parsing = request.parse_body()
        if parsing is None:
            return self._answer(request, fn)
        return parsing.addCallback(lambda _: self._answer(request, fn))

    def _answer(self, request: Any, fn: Callable[..., Any]) -> Any:
        """The endpoint's answer: at once when it has it (status.json, listjobs.json
        from the view), else once its Deferred fires."""
        data = fn(self.s, request)
        if isinstance(data, Deferred):
            return data.addCallback(lambda found: ok_answer(request, self.s, found))
        return ok_answer(request, self.s, data)

    # -- errors -----------------------------------------------------------------------
    def _failed(self, request: Any, failure: Failure) -> bytes:
        """A failure as scrapyd would answer it (``error_answer``)."""
        error = failure.value
        if not isinstance(error, CrawldError):
            if is_disk_full(error):
                log.error("{path}: the disk is full ({exc})", path=request.path, exc=error)
                error = CrawldError("the disk of the data directory is full; nothing was "
                                    "changed. Free some space and retry")
                error.code = 507
            else:
                log.failure("unhandled error on the scrapyd listener, {path}", failure,
                            path=request.path)
                error = CrawldError("internal error; see the daemon's log")
                error.code = 500
            transport = True
        else:
            transport = False
        code, headers, body = error_answer(self.s, error, transport)
        request.setResponseCode(code)
        for name, values in headers.items():
            request.responseHeaders.setRawHeaders(name, values)
        return body


def build_scrapyd_app(services: ScrapydServices) -> IResource:
    """The scrapyd listener's root resource over ``services`` (for server.make_site)."""
    return ScrapydRoot(services)

