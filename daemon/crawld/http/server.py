"""The HTTP server around the API: the request class (a body size limit enforced while
the body arrives, form bodies decoded off the reactor thread), the channel (a deadline
for request headers), the access log line and the Site.

Only Twisted's public names are used (no ``_getMultiPartArgs``): multipart bodies are
decoded by the ``multipart`` package.
"""
from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes

import multipart
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ..errors import BadRequest

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

    The route then answers 413 (see helpers.Router); the daemon never holds or spools
    more than the limit, whatever the client announces or sends. Twisted would decode
    a form body on the reactor thread before routing: a 50 MB url-encoded archive (what
    scrapy-do-cl sends) would freeze the daemon for tens of seconds.
    """

    max_body = 50 * 1024 * 1024
    body_too_large = False
    body_received = 0  # bytes of body so far

    def __init__(self, channel: Any, *args: Any, **kw: Any) -> None:
        # whatever the Site says: Twisted would decode a form body itself, on the
        # reactor thread, before routing; parse_body does it, in a thread when large
        kw["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kw)

    def parse_body(self) -> Deferred:
        """Decode a form body into ``args``: inline when small, in a thread when large."""
        ctype = self.getHeader(b"content-type")
        if self.method != b"POST" or not ctype or self.body_too_large:
            return succeed(None)
        self.content.seek(0, 2)
        size = self.content.tell()
        self.content.seek(0, 0)
        if not size:
            return succeed(None)
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
            self.body_too_large = True
            self.content.close()
            self.content = _Discard()
        self.content.write(data)


def redact_query(uri: str) -> str:
    """``uri`` with the value of every ``key`` parameter (an API key) replaced.

    Names are compared as the API reads them (percent-decoded), so ``k%65y=`` is
    redacted too."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    pieces = []
    for piece in re.split(r"([&;])", query):
        name = piece.split("=", 1)[0]
        if piece not in ("&", ";") and unquote_plus(name).strip().lower() == "key":
            piece = f"{name}=REDACTED"
        pieces.append(piece)
    return path + "?" + "".join(pieces)


def access_line(timestamp: str, request: Any) -> str:
    """One combined-log-format line per request, API keys redacted from the URI."""
    def text(value: Any) -> str:
        raw = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        return raw.replace("\\", "\\\\").replace('"', '\\"')
    uri = redact_query(request.uri.decode("latin-1"))
    return (f'"{request.getClientAddress().host}" - - {timestamp} '
            f'"{text(request.method)} {text(uri)} {text(request.clientproto)}" '
            f'{request.code} {request.sentLength or "-"} '
            f'"{text(request.getHeader(b"referer") or b"-")}" '
            f'"{text(request.getHeader(b"user-agent") or b"-")}"')


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
        try:
            request.getRequestHostname().decode("utf-8")
            b"/".join(request.prepath + request.postpath).decode("utf-8")
        except UnicodeDecodeError:
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-store")
            return b'{"status": "error", "msg": "the URL path or host is not valid UTF-8"}\n'
        return self.inner.render(request)


IDLE_TIMEOUT = 60.0    # an idle keep-alive connection is closed after this
HEADER_TIMEOUT = 30.0  # a request's line and headers must arrive within this


class DeadlineChannel(HTTPChannel):
    """HTTP with a deadline for each request's headers.

    Twisted's idle timeout restarts with every byte, so a client that trickles its
    headers one byte at a time (slowloris) would hold a connection for ever. Here the
    request line and headers must all arrive within ``header_timeout`` of the
    connection opening, or of the previous response on a kept-alive connection."""

    header_timeout = HEADER_TIMEOUT
    header_call: Any = None
    #: A request's headers are all in and its response is not done: no deadline then.
    in_request = False

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's names)
        super().connectionMade()
        self.arm_headers()

    def allHeadersReceived(self) -> None:  # noqa: N802
        self.disarm_headers()
        self.in_request = True
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:  # noqa: N802
        self.in_request = False
        # On a kept-alive connection, Twisted replays what the client pipelined: a next
        # request whose headers are all in sets in_request again (no deadline then).
        super().requestDone(request)
        if self.persistent and not self.in_request:
            self.arm_headers()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self.disarm_headers()
        super().connectionLost(reason)

    def arm_headers(self) -> None:
        self.disarm_headers()
        self.header_call = self.callLater(self.header_timeout, self.headers_too_slow)

    def disarm_headers(self) -> None:
        if self.header_call is not None and self.header_call.active():
            self.header_call.cancel()
        self.header_call = None

    def headers_too_slow(self) -> None:
        self.header_call = None
        log.info("closing {peer}: no complete request headers within {t:g} s",
                 peer=str(self.transport.getPeer()), t=self.header_timeout)
        self.transport.abortConnection()


def request_class(max_body: int) -> type[LimitedRequest]:
    """The request class of a Site whose bodies are limited to ``max_body`` bytes."""
    return type("CrawldRequest", (LimitedRequest,), {"max_body": max_body})


def make_site(resource: Any, max_body: int, header_timeout: float = HEADER_TIMEOUT,
              idle_timeout: float = IDLE_TIMEOUT) -> Site:
    """A Site serving ``resource`` with bodies limited to ``max_body`` bytes, a deadline
    for request headers and an idle timeout for connections."""
    # Twisted would decode form bodies itself, on the reactor thread: parse_body does it.
    site = Site(Utf8Only(resource), requestFactory=request_class(max_body),
                parsePOSTFormSubmission=False, logFormatter=access_line,
                timeout=idle_timeout)
    site.protocol = type("CrawldChannel", (DeadlineChannel,),
                         {"header_timeout": header_timeout})
    site.displayTracebacks = False
    site.noisy = False
    return site
