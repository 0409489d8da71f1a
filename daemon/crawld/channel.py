"""The API's HTTP channel: deadlines for a request's headers and its body, the caps on
connections, and requests with a body decided on their headers, before the body is read.

Twisted reads a request's whole body (spooling one over 100 KB to a temporary file)
before any resource sees the request, and its idle timeout restarts with every byte.
So, on every connection:

- **Headers** must all arrive within ``header_timeout`` seconds of the connection opening
  or of the previous response (slowloris on the headers); else the connection is cut.
- **A body** must arrive within ``body_timeout`` seconds plus one more second for every
  ``body_min_rate`` bytes received (Apache mod_reqtimeout's rule: slow links are fine,
  one byte every few seconds is not); else it gets 408 and the connection closes.
- **A request with a body is decided on its headers** (the site's ``gate``: the Host
  check, authentication and the role, http.helpers.header_gate) and then on its declared
  ``Content-Length`` (over the request class's ``max_body``: 413), before a byte of its
  body is read. A refusal is answered at once and the connection closed: a client
  without valid credentials never makes crawld read, spool or hold its body. A check
  that takes time (a Basic password's scrypt, in a thread) holds the connection paused,
  nothing more read from it, until it answers; ``Expect: 100-continue`` is answered only
  once the request is let in. A chunked body (no length declared) gets its 413 the
  moment it passes ``max_body``.
- **The answer's shape** is the native API's JSON error, or what the site's
  ``refusal(request, error)`` makes (the scrapyd listener's: scrapyd's 401 and its
  error JSON), with ``Connection: close`` added.
- **Connections** past the site's ``limits`` (connections.ConnectionLimits) get 503
  and are closed at once.

One timer per connection serves every deadline, moved rather than made again. A refusal
is the API's JSON error with ``Connection: close`` and an access line; the connection is
then closed, and aborted ``CLOSE_GRACE`` seconds later should the client not read it.
Requests without a body (every GET, status.json) pay for none of this but one
comparison: the hot path stays as it was.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.http_headers import Headers

from .errors import CrawldError, TooLarge, TooManyConnections, TooSlow
from .guards import answer_headers

log = Logger(namespace="crawld.web")

IDLE_TIMEOUT = 60.0    # an idle keep-alive connection is closed after this
HEADER_TIMEOUT = 30.0  # a request's line and headers must arrive within this
BODY_TIMEOUT = 30.0    # a body's first allowance, in seconds...
BODY_MIN_RATE = 16 * 1024  # ... and one more second for each this many bytes received
CLOSE_GRACE = 5.0      # a refused connection still open after this is aborted

#: Reason phrases Twisted lacks (it would say "429 Unknown Status") or words otherwise.
PHRASES = {408: b"Request Timeout", 414: b"URI Too Long", 429: b"Too Many Requests",
           431: b"Request Header Fields Too Large", 507: b"Insufficient Storage"}

#: Decides a request that has a body on its headers alone (its method, uri, path and
#: headers are set): returns None to let the body in, or a Deferred that fires to let it
#: in later; raising, or failing, with a CrawldError refuses it with that error's answer.
Gate = Callable[[Any], Optional[Deferred]]
#: Makes the answer to a refusal in a site's own shape: (request or None, the error)
#: -> (HTTP code, headers as name -> values, body).
Refusal = Callable[[Any, CrawldError], tuple[int, dict[bytes, list[bytes]], bytes]]


def too_large(max_body: int) -> TooLarge:
    """The 413 of a request body over ``max_body`` bytes."""
    return TooLarge(f"request body over the {max_body} byte limit (max-archive-size)")


def _ignore(*args: Any) -> None:
    """Stands in for the parser once a connection is refused: nothing more is read."""


class _LineTooLong(CrawldError):
    """A request line (414) or header line (431) over the channel's MAX_LENGTH."""


class DeadlineChannel(HTTPChannel):
    """HTTP with deadlines, early answers and connection caps (see the module docstring).

    The site (server.AccessLogSite) holds the ``gate`` and the ``limits``; the deadlines
    are class attributes, set by server.make_site on a subclass."""

    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT
    body_min_rate = BODY_MIN_RATE

    deadline_call: Any = None  # the one timer
    #: A request's headers (and body) are all in and its response is not done: no
    #: deadline then (the timer stays; it sees this when due).
    in_request = False
    in_body = False            # a body is arriving: the body deadline
    body_started = 0.0         # when its headers were all in (the site's clock)
    checking = False           # the gate has not answered yet: the connection is paused
    closing = False            # refused: answered, being closed
    lost = False
    client_key: Optional[str] = None  # the key the site's limits counted this one under
    #: the current request's line has been read (a longer line is then a header's)
    line_seen = False
    request_line = b""
    _addresses: Optional[tuple[Any, Any]] = None

    def getPeer(self) -> Any:  # noqa: N802
        return self._local_and_peer()[1]

    def getHost(self) -> Any:  # noqa: N802
        return self._local_and_peer()[0]

    def _local_and_peer(self) -> tuple[Any, Any]:
        """The connection's two addresses, asked once: every Request asks for both (a
        getsockname call and two address objects per request otherwise)."""
        if self._addresses is None:
            self._addresses = (self.transport.getHost(), self.transport.getPeer())
        return self._addresses

    # -- connections ----------------------------------------------------------------
    def connectionMade(self) -> None:  # noqa: N802 (Twisted's names)
        super().connectionMade()
        limits = getattr(self.site, "limits", None)
        if limits is not None:
            try:
                self.client_key = limits.admit(getattr(self.getPeer(), "host", ""))
            except TooManyConnections as exc:
                self.refuse(None, exc)
                return
        self.arm(self.header_timeout)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self.lost = True
        if self.deadline_call is not None and self.deadline_call.active():
            self.deadline_call.cancel()
        self.deadline_call = None
        if self.client_key is not None:
            self.site.limits.release(self.client_key)
            self.client_key = None
        super().connectionLost(reason)

    # -- parsing --------------------------------------------------------------------
    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if line and not self.line_seen:
            self.line_seen = True
            self.request_line = line
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        """A request line or a header line over MAX_LENGTH bytes: Twisted would close
        the connection without a word. Answer 414 (the line with the URL) or 431 (a
        header), as JSON, then close."""
        if self.line_seen:
            error = _LineTooLong(f"a header line is over {self.MAX_LENGTH} bytes")
            error.code = 431
        else:
            error = _LineTooLong(f"the request line (method and URL) is over "
                                 f"{self.MAX_LENGTH} bytes")
            error.code = 414
        self.refuse(None, error)

    def allHeadersReceived(self) -> None:  # noqa: N802
        if self.length == 0:  # no body: the request is complete (every GET)
            self.in_request = True
            super().allHeadersReceived()
            return
        request = self.requests[-1]
        # what Twisted sets only once the body is in (the same values): the gate needs them
        method, uri, version = self.request_line.split(b" ")
        request.method, request.uri, request.clientproto = method, uri, version
        request.path = uri.split(b"?", 1)[0]
        self.in_body = True
        self.body_started = self.site.clock()
        self.arm(self.body_timeout)
        gate = getattr(self.site, "gate", None)
        if gate is None:
            self.let_body_in(request)
            return
        self.checking = True
        try:
            checked = gate(request)
        except Exception:
            self.checking = False
            self.refuse(request, Failure())
            return
        if checked is None:
            self.checking = False
            self.let_body_in(request)
            return
        checked.addCallbacks(self._checked, self._unchecked, callbackArgs=(request,),
                             errbackArgs=(request,))
        checked.addErrback(lambda f: log.failure("letting a request's body in failed", f))
        if self.checking:  # the answer comes later: read nothing more until then
            self.paused = True  # LineReceiver keeps what came with the headers
            self.transport.pauseProducing()

    def _checked(self, _: Any, request: Any) -> None:
        """The gate let the request in (perhaps later than the headers came)."""
        self.checking = False
        if self.lost or self.closing:
            return
        held = self.paused
        self.paused = False
        self.let_body_in(request)
        if held and not self.closing:
            self.transport.resumeProducing()
            self.dataReceived(b"")  # the body bytes that came with the headers, if any

    def _unchecked(self, failure: Failure, request: Any) -> None:
        """The gate refused the request (401, 403, 429, 503...)."""
        self.checking = False
        if not (self.lost or self.closing):
            self.refuse(request, failure)

    def let_body_in(self, request: Any) -> None:
        """Read the body, unless its declared length is already over the limit (413):
        Twisted's own step (the body's file, spooled past 100 KB; 100-continue)."""
        max_body = getattr(self.requestFactory, "max_body", None)
        if max_body is not None and self.length is not None and self.length > max_body:
            self.refuse(request, too_large(max_body))
            return
        super().allHeadersReceived()

    def resumeProducing(self) -> None:  # noqa: N802
        """The transport can take more output: Twisted then reads again, but not while
        the gate has not answered."""
        super().resumeProducing()
        if self.checking:
            self.transport.pauseProducing()

    def allContentReceived(self) -> None:  # noqa: N802
        if self.closing:  # refused: what is left of the body is not served
            return
        self.in_request, self.in_body = True, False
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:  # noqa: N802
        self.in_request = self.line_seen = False
        # On a kept-alive connection, Twisted replays what the client pipelined: a next
        # request whose headers are all in sets in_request (or in_body) again.
        super().requestDone(request)
        if self.persistent and not (self.in_request or self.in_body):
            self.arm(self.header_timeout)

    # -- deadlines ------------------------------------------------------------------
    def arm(self, delay: float) -> None:
        """Set the deadline ``delay`` seconds from now. One timer per connection, moved
        rather than cancelled and made again for every request on a kept-alive
        connection (moving it later is O(1) in Twisted; a new timer and a cancelled one
        cost a heap push each)."""
        call = self.deadline_call
        if call is not None and call.active():
            call.reset(delay)
        else:
            self.deadline_call = self.callLater(delay, self.deadline_passed)

    def deadline_passed(self) -> None:
        """The timer is due: headers too slow (cut), a body too slow (408), a refused
        connection still open (abort); nothing while a response is under way."""
        self.deadline_call = None
        if self.closing:
            self.transport.abortConnection()
        elif self.in_request:
            return  # the request came in time; a response is under way
        elif self.in_body:
            self.check_body_rate()
        else:
            log.info("closing {peer}: no complete request headers within {t:g} s",
                     peer=str(self.getPeer()), t=self.header_timeout)
            self.transport.abortConnection()

    def check_body_rate(self) -> None:
        """Has the body taken longer than ``body_timeout`` plus 1 s per
        ``body_min_rate`` bytes received? Then 408; else check again when it would."""
        request = self.requests[-1]
        got = getattr(request, "body_received", 0)
        taken = self.site.clock() - self.body_started
        allowed = self.body_timeout + got / self.body_min_rate
        if taken < allowed:
            self.arm(allowed - taken)
            return
        log.info("closing {peer}: its request body came too slowly ({got} bytes in "
                 "{t:.1f} s)", peer=str(self.getPeer()), got=got, t=taken)
        self.refuse(request, TooSlow(
            f"the request body came too slowly: {got} bytes in {taken:.1f} s; a body may "
            f"take {self.body_timeout:g} s plus 1 s per {self.body_min_rate} bytes "
            "received ([web] body-timeout, body-min-rate)"))

    # -- refusals -------------------------------------------------------------------
    def refuse(self, request: Any, error: Union[CrawldError, Failure]) -> None:
        """Answer ``error`` now, before what is left of the request (if any) is read,
        and close the connection: nothing more of it is parsed or served.

        ``error`` is a CrawldError (its code, message and headers), or a Failure of one;
        any other failure is a 500, its traceback logged."""
        if self.closing:
            return
        if isinstance(error, Failure):
            if error.check(CrawldError):
                error = error.value
            else:
                log.failure("deciding a request on its headers failed", error)
                error = CrawldError("internal error; see the daemon's log")
                error.code = 500
        self.closing, self.persistent, self.in_body, self.paused = True, False, False, False
        self.dataReceived = self.rawDataReceived = self.lineReceived = _ignore  # type: ignore
        site = getattr(self, "site", None)
        answer = getattr(site, "refusal", None)
        if answer is not None:  # the site's own shape (the scrapyd listener's)
            code, raw, body = answer(request, error)
            headers = Headers(raw)
            headers.setRawHeaders(b"Connection", [b"close"])
        else:
            code = error.code
            body = json.dumps({"status": "error", "msg": error.msg},
                              ensure_ascii=False).encode("utf-8") + b"\n"
            headers = Headers({b"Content-Type": [b"application/json"],
                               b"Cache-Control": [b"no-store"],
                               b"Content-Length": [b"%d" % len(body)],
                               b"Connection": [b"close"]})
            for name, values in answer_headers(request, error).items():
                headers.setRawHeaders(name, [str(v) for v in values])
        phrase = PHRASES.get(code) or RESPONSES.get(code, b"Error")
        self.writeHeaders(b"HTTP/1.1", b"%d" % code, phrase, headers)
        self.transport.write(body)
        if request is not None and site is not None:
            request.code, request.code_message, request.sentLength = (
                code, phrase, len(body))
            site.log(request)
        self.loseConnection()
        self.arm(CLOSE_GRACE)
