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

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import NOT_DONE_YET

from .. import guards
from ..auth import PasswordChecksBusy, TooManyAttempts, Unauthorized
from ..errors import CrawldError, Forbidden, TooLarge, is_disk_full
from .pages import find as find_page
from .webservice import ENDPOINTS
from .services import ScrapydServices

log = Logger(namespace="crawld.scrapyd")

_JSON = json.JSONEncoder(ensure_ascii=True)  # scrapyd's encoder: ASCII with escapes


def scrapyd_json(request: Any, s: ScrapydServices, data: dict[str, Any], code: int = 200
                 ) -> bytes:
    """``data`` as scrapyd answers it: ``node_name`` last, a trailing newline."""
    data["node_name"] = s.settings.node_name
    body = _JSON.encode(data).encode() + b"\n"
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", str(len(body)).encode())
    return body


def refusal(request: Any, s: ScrapydServices, message: str, code: int = 200) -> bytes:
    """scrapyd's error answer: ``{"status": "error", "message": ...}``."""
    return scrapyd_json(request, s, {"status": "error", "message": message}, code)


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
        if self.s.authenticator.mode == "none" and not guards.host_allowed(request,
                                                                           s.hostnames):
            raise Forbidden("this server is not known by the name in the Host header; "
                            "add it to [web] hostnames (a guard against DNS rebinding)")
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
        method = request.method.decode("ascii", "replace")
        allow = ", ".join(("OPTIONS", "HEAD") + methods).encode()
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
        done = maybeDeferred(fn, self.s, request)
        return done.addCallback(lambda data: scrapyd_json(
            request, self.s, {**data, "status": "ok"}))

    # -- errors -----------------------------------------------------------------------
    def _failed(self, request: Any, failure: Failure) -> bytes:
        """A failure as scrapyd would answer it."""
        error = failure.value
        if isinstance(error, (Unauthorized, TooManyAttempts)):
            # scrapyd's guard: 401 and the word; a client locked out after too many
            # failures is told the same (scrapyd's clients know no 429), never checked
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate",
                              f'Basic realm="{self.s.settings.realm}"'.encode())
            if isinstance(error, TooManyAttempts):
                request.setHeader(b"Retry-After", str(error.retry_after).encode())
            request.setHeader(b"Content-Type", b"text/html")
            request.setHeader(b"Content-Length", b"12")
            return b"Unauthorized"
        if isinstance(error, PasswordChecksBusy):
            for name, values in error.response_headers().items():
                request.responseHeaders.setRawHeaders(name, [str(v) for v in values])
            return refusal(request, self.s, error.msg, error.code)
        if isinstance(error, (Forbidden, TooLarge)):  # honest codes, scrapyd's shape
            return refusal(request, self.s, error.msg, error.code)
        if isinstance(error, CrawldError):
            return refusal(request, self.s, error.msg)
        if is_disk_full(error):
            log.error("{path}: the disk is full ({exc})", path=request.path, exc=error)
            return refusal(request, self.s, "the disk of the data directory is full; "
                           "nothing was changed. Free some space and retry", 507)
        log.failure("unhandled error on the scrapyd listener, {path}", failure,
                    path=request.path)
        return refusal(request, self.s, "internal error; see the daemon's log", 500)


def build_scrapyd_app(services: ScrapydServices) -> IResource:
    """The scrapyd listener's root resource over ``services`` (for server.make_site)."""
    return ScrapydRoot(services)

