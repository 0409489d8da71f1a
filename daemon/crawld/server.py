"""The HTTP server around the API: the request class (a body size limit enforced while
the body arrives, form bodies decoded off the reactor thread), the access log line and
the Site, whose channel (channel.py) has the deadlines, the early answers and the caps
on connections.

Only Twisted's public names are used (no ``_getMultiPartArgs``): multipart bodies are
decoded by the ``multipart`` package.
"""
from __future__ import annotations

import io
import re
import time
from time import perf_counter
from typing import Any, Callable, Optional
from urllib.parse import unquote_plus, unquote_to_bytes

import multipart
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import datetimeToLogString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from .channel import (BODY_MIN_RATE, BODY_TIMEOUT, HEADER_TIMEOUT, IDLE_TIMEOUT,
                      DeadlineChannel, Gate, Refusal, too_large)
from .connections import ConnectionLimits
from .errors import BadRequest
from .metrics import UNMATCHED

log = Logger(namespace="crawld.web")

INLINE_BODY = 256 * 1024  # bodies up to this size are decoded on the reactor thread
SLICE = 64 * 1024


def unquote_sliced(value: bytes) -> bytes:
    """Percent-decode in slices of ~64 KiB, never splitting a %XX escape.

    One unquote of a 20 MB value is a few long C calls that hold the GIL for seconds,
    starving the reactor thread even when run in another thread; slices keep each call
    short so the interpreter switches threads between them.
    """
    out = []
    start, size = 0, len(value)
    while start < size:
        end = min(start + SLICE, size)
        pct = value.rfind(b"%", max(start, end - 2), end)
        if pct != -1 and end < size:
            end = pct  # the escape starts in the last two bytes: keep it whole
        out.append(unquote_to_bytes(value[start:end]))
        start = end
    return b"".join(out)


def decode_urlencoded(body: bytes) -> dict[bytes, list[bytes]]:
    """``application/x-www-form-urlencoded`` as Twisted's ``args`` (blank values kept)."""
    found: dict[bytes, list[bytes]] = {}
    for field in body.split(b"&"):
        if not field:
            continue
        name, _, value = field.partition(b"=")
        found.setdefault(unquote_sliced(name.replace(b"+", b" ")), []).append(
            unquote_sliced(value.replace(b"+", b" ")))
    return found


def decode_multipart(body: bytes, ctype: bytes) -> dict[bytes, list[bytes]]:
    """``multipart/form-data`` as Twisted's ``args``: each named part's bytes by name.

    Parts without a name are skipped; the body is fed to the parser in slices of
    ``SLICE`` bytes. A body that is not a complete multipart stream (no boundary, a
    missing delimiter or end, a header over the parser's limits) is a 400.
    """
    _, options = multipart.parse_options_header(ctype.decode("latin-1"))
    boundary = options.get("boundary")
    if not boundary:
        raise BadRequest("malformed multipart body: no boundary in its Content-Type")
    found: dict[bytes, list[bytes]] = {}
    name: Any = None
    pieces: list[bytes] = []
    try:
        with multipart.PushMultipartParser(boundary, len(body)) as parser:
            for event in parser.parse_blocking(io.BytesIO(body).read, SLICE):
                if isinstance(event, multipart.MultipartSegment):
                    name, pieces = event.name, []
                elif event is None:  # the end of a part
                    if name:
                        found.setdefault(name.encode("utf-8"), []).append(b"".join(pieces))
                else:
                    pieces.append(bytes(event))
    except multipart.MultipartError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    return found


class _Discard(io.BytesIO):
    """Stands in for a request body that is over the limit: counts bytes, keeps none."""

    size = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.size += len(data)
        return len(data)


class LimitedRequest(Request):
    """A request whose body is dropped, not buffered, once it passes ``max_body`` bytes,
    and whose form body is decoded off the reactor thread when it is large.

    crawld's channel answers 413 as soon as a declared length or the bytes received
    pass the limit (the route would, see helpers.Router); the daemon never holds or
    spools more than the limit, whatever the client announces or sends. Twisted would
    decode a form body on the reactor thread before routing: a 50 MB url-encoded
    archive (what scrapy-do-cl sends) would freeze the daemon for tens of seconds.
    """

    max_body = 50 * 1024 * 1024
    body_too_large = False
    body_received = 0  # bytes of body so far
    #: the pattern of the route that took the request (helpers.Router sets it), for the
    #: metrics' route label: never the raw path, so the label's values stay few
    route = UNMATCHED

    #: authenticated (and authorized) on its headers, before its body was let in (the
    #: channel's gate): the route does not ask again (a Digest nonce count is single-use)
    authenticated = False

    def __init__(self, channel: Any, *args: Any, **kw: Any) -> None:
        # whatever the Site says: Twisted would decode a form body itself, on the
        # reactor thread, before routing; parse_body does it, in a thread when large
        kw["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kw)
        self.began = perf_counter()  # for the request's duration (metrics)

    def parse_body(self) -> Optional[Deferred]:
        """Decode a form body into ``args``: inline when small, in a thread when large.

        None when there is nothing to decode (a GET, no body, no content type), so that
        the route can answer at once, without a Deferred."""
        if self.method != b"POST" or self.body_too_large:
            return None
        ctype = self.getHeader(b"content-type")
        if not ctype:
            return None
        self.content.seek(0, 2)
        size = self.content.tell()
        self.content.seek(0, 0)
        if not size:
            return None
        if size <= INLINE_BODY:
            return maybeDeferred(self.parse_form, ctype)
        return deferToThread(self.parse_form, ctype)

    def parse_form(self, ctype: bytes) -> None:
        key = ctype.split(b";", 1)[0].strip().lower()
        body = self.content.read()
        self.content.seek(0, 0)
        if key == b"application/x-www-form-urlencoded":
            found = decode_urlencoded(body)
        elif key == b"multipart/form-data":
            found = decode_multipart(body, ctype)
        else:
            return
        for name, values in found.items():
            self.args.setdefault(name, []).extend(values)

    def gotLength(self, length: Any) -> None:  # noqa: N802 (Twisted's names)
        if length is not None and length > self.max_body:
            self.body_too_large = True
            self.content = _Discard()
        else:
            super().gotLength(length)
        self.body_received = 0

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 (Twisted's names)
        self.body_received += len(data)
        if not self.body_too_large and self.body_received > self.max_body:
            # a chunked body (no length declared) passing the limit: 413 at once
            self.body_too_large = True
            self.content.close()
            self.content = _Discard()
            refuse = getattr(self.channel, "refuse", None)  # crawld's channel (not treq's)
            if refuse is not None:
                refuse(self, too_large(self.max_body))
        self.content.write(data)


def redact_query(uri: str) -> str:
    """``uri`` with the value of every ``key`` parameter (an API key) replaced.

    Names are compared as the API reads them (percent-decoded), so ``k%65y=`` is
    redacted too."""
    path, sep, query = uri.partition("?")
    if not sep or not ("k" in query or "K" in query or "%" in query):
        return uri  # no name can be ``key`` (status.json?job=<id> is polled hard)
    pieces = []
    for piece in re.split(r"([&;])", query):
        name = piece.split("=", 1)[0]
        if piece not in ("&", ";") and unquote_plus(name).strip().lower() == "key":
            piece = f"{name}=REDACTED"
        pieces.append(piece)
    return path + "?" + "".join(pieces)


def _quoted(raw: str) -> str:
    """A quoted field of the combined log format: backslashes and quotes escaped."""
    if "\\" in raw or '"' in raw:
        return raw.replace("\\", "\\\\").replace('"', '\\"')
    return raw


def access_line(timestamp: str, request: Any) -> str:
    """One combined-log-format line per request, API keys redacted from the URI."""
    uri = request.uri.decode("latin-1")
    if "?" in uri:
        uri = redact_query(uri)
    referer = request.getHeader(b"referer")
    agent = request.getHeader(b"user-agent")
    return (f'"{request.getClientAddress().host}" - - {timestamp} '
            f'"{_quoted(request.method.decode("latin-1"))} {_quoted(uri)} '
            f'{_quoted(request.clientproto.decode("latin-1"))}" '
            f'{request.code} {request.sentLength or "-"} '
            f'"{_quoted(referer.decode("latin-1")) if referer else "-"}" '
            f'"{_quoted(agent.decode("latin-1")) if agent else "-"}"')


class Utf8Only(Resource):
    """The API's resource, for URLs whose path and host name are UTF-8 (400 otherwise).

    Klein answers those with a ``text/plain`` 400 and logs a traceback; the API's
    errors are JSON, so this answers first, before authentication, as for an unknown
    path: there is nothing to authorize."""

    isLeaf = True

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def render(self, request: Any) -> Any:
        host = request.getHeader(b"host")
        try:
            if host is not None and not host.isascii():  # (any part of ASCII is UTF-8)
                request.getRequestHostname().decode("utf-8")
            b"/".join(request.prepath + request.postpath).decode("utf-8")
        except UnicodeDecodeError:
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-store")
            return b'{"status": "error", "msg": "the URL path or host is not valid UTF-8"}\n'
        return self.inner.render(request)


class ExactRouter(Resource):
    """Serves a request whose path (as sent) and method are in ``routes`` and
    ``methods`` by calling its handler directly; every other request goes to
    ``fallback`` (the Klein app, for paths with variables, unknown paths, escapes...).

    Klein's dispatch (werkzeug's matcher, zope adapter look-ups, a dozen Deferreds per
    request) cost more than all of status.json's own work. A handler here is the same
    endpoint Klein would call, and its answer is given the same way: bytes are written
    and the request finished (so still chunked), a Deferred is waited for, and
    ``on_error(request, failure)`` makes the body of any exception, as Klein's error
    handlers do. A client that goes away gets nothing written; the work goes on.
    """

    isLeaf = True

    def __init__(self, routes: dict[bytes, Callable[[Any], Any]], fallback: Any,
                 on_error: Callable[[Any, Failure], bytes],
                 methods: frozenset[bytes]) -> None:
        super().__init__()
        self.routes = routes
        self.fallback = fallback
        self.on_error = on_error
        self.methods = methods

    def render(self, request: Any) -> Any:
        handler = self.routes.get(request.path)
        if handler is None or request.method not in self.methods:
            return self.fallback.render(request)
        try:
            result = handler(request)
        except Exception:
            result = self.on_error(request, Failure())
        if not isinstance(result, Deferred):
            _respond(request, result)
            return NOT_DONE_YET
        gone: list[Any] = []
        request.notifyFinish().addBoth(gone.append)  # finished, or the connection lost
        result.addErrback(lambda failure: self.on_error(request, failure))
        result.addCallback(lambda body: None if gone else _respond(request, body))
        result.addErrback(lambda failure: log.failure("writing an answer failed", failure))
        return NOT_DONE_YET


def _respond(request: Any, body: Optional[bytes]) -> None:
    """Write a handler's body, if any, and finish the request unless it has been."""
    if isinstance(body, bytes):
        request.write(body)
    if not request.finished:
        request.finish()


def request_class(max_body: int) -> type[LimitedRequest]:
    """The request class of a Site whose bodies are limited to ``max_body`` bytes."""
    return type("CrawldRequest", (LimitedRequest,), {"max_body": max_body})


class AccessLogSite(Site):
    """A Site that hands one access line per request (``access_line``) to a callable,
    and each request's route, code and duration to ``record`` (metrics.Metrics.request).

    Twisted's own path sends each line through the legacy log into twisted.logger (an
    event dict, the level filter, a format-string parse, a flush): a third of the
    daemon's time on a status.json request. Here the line goes straight to
    ``access_log`` (``daemonlog.DaemonLog.access``: the daemon's log, in the same
    ``<time> <level> <component>:`` shape as every other line); None: no access lines. The ``[dd/Mon/yyyy:HH:MM:SS
    +0000]`` stamp is made once per second of ``clock``. Both are called when a
    response is finished (not for a request whose client went away first).

    Its channels (channel.DeadlineChannel) find here the ``gate`` that decides a request
    with a body on its headers and the ``limits`` on connections (None: none).
    """

    gate: Optional[Gate] = None
    limits: Optional[ConnectionLimits] = None
    #: (request or None, CrawldError) -> (code, headers, body) of an early refusal in
    #: this site's shape; None: the native API's JSON error (channel.DeadlineChannel)
    refusal: Optional[Refusal] = None

    def __init__(self, resource: Any, access_log: Optional[Callable[[str], None]],
                 clock: Callable[[], float] = time.time,
                 record: Optional[Callable[[str, int, float], None]] = None,
                 **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.access_log = access_log
        self.clock = clock
        self.record = record
        self._stamp_second = -1
        self._stamp = ""

    def log(self, request: Any) -> None:
        if self.record is not None:
            self.record(request.route, request.code, perf_counter() - request.began)
        if self.access_log is None:
            return
        second = int(self.clock())
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = datetimeToLogString(second)
        self.access_log(access_line(self._stamp, request))


def make_site(resource: Any, max_body: int, header_timeout: float = HEADER_TIMEOUT,
              idle_timeout: float = IDLE_TIMEOUT,
              access_log: Optional[Callable[[str], None]] = None,
              clock: Callable[[], float] = time.time,
              record: Optional[Callable[[str, int, float], None]] = None,
              body_timeout: float = BODY_TIMEOUT, body_min_rate: int = BODY_MIN_RATE,
              gate: Optional[Gate] = None, limits: Optional[ConnectionLimits] = None,
              refusal: Optional[Refusal] = None) -> Site:
    """A Site serving ``resource`` with bodies limited to ``max_body`` bytes, deadlines
    for request headers and bodies (``body_timeout`` s plus 1 s per ``body_min_rate``
    bytes), an idle timeout for connections, each request with a body decided by
    ``gate`` on its headers (None: only its declared length is), connections counted by
    ``limits`` (None: no cap), early refusals shaped by ``refusal`` (None: the native
    API's JSON errors), each request's access line handed to ``access_log``
    (None: not logged) and its route, code and duration to ``record`` (the metrics;
    None: not recorded). See channel.py."""
    # Twisted would decode form bodies itself, on the reactor thread: parse_body does it.
    site = AccessLogSite(Utf8Only(resource), access_log, clock, record,
                         requestFactory=request_class(max_body), parsePOSTFormSubmission=False,
                         timeout=idle_timeout)
    site.gate = gate
    site.limits = limits
    site.refusal = refusal
    site.protocol = type("CrawldChannel", (DeadlineChannel,),
                         {"header_timeout": header_timeout, "body_timeout": body_timeout,
                          "body_min_rate": body_min_rate})
    site.displayTracebacks = False
    site.noisy = False
    return site
