"""The POST of one webhook attempt: Twisted's Agent, bounded in time, never following
a redirect, never reading the answer's body.

Mechanism only: it reports what happened (an HTTP status, or what went wrong) as an
``Outcome`` and never fails; the webhooks service decides what that means. The whole
attempt (DNS, connect, TLS, sending, the status line) has ``timeout`` seconds; after the
status line the connection is dropped, so an endpoint that streams an endless answer
costs nothing. Redirects are not followed: a redirect could send the job's data, and
the signature, anywhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Protocol

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, TimeoutError as DeferredTimeout
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from . import __version__

USER_AGENT = f"crawld/{__version__}"
MAX_ERROR = 300  # characters of an error kept with an attempt


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: the HTTP status (None when none came) or what went wrong,
    and the seconds an answer's ``Retry-After`` asked for (429, 503)."""

    code: Optional[int] = None
    error: Optional[str] = None
    retry_after: Optional[float] = None

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


class Poster(Protocol):
    """What the webhooks service sends with (``AgentPoster``; a fake in unit tests)."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> "Deferred[Outcome]":
        """POST ``body`` to ``url``; fires with an Outcome, never fails."""


@implementer(IBodyProducer)
class BytesBody:
    """A request body already in memory, written at once (no cooperator, no thread)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self.data)
        d: Deferred = Deferred()
        d.callback(None)
        return d

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Drop(TwistedProtocol):
    """Takes an answer's body and drops the connection at once: only the status counts."""

    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def connectionLost(self, reason: Any = None) -> None:
        pass


def retry_after(value: Optional[bytes]) -> Optional[float]:
    """A ``Retry-After`` of whole seconds (an HTTP date is ignored), or None."""
    if value is None:
        return None
    text = value.decode("latin-1").strip()
    return float(text) if re.fullmatch(r"[0-9]{1,9}", text) else None


def describe(failure: Failure, timeout: float) -> str:
    """What went wrong, short and without the URL's path or query."""
    if isinstance(failure.value, ResponseNeverReceived) and failure.value.reasons:
        failure = failure.value.reasons[0]
    if failure.check(CancelledError):
        return "cut short: the daemon stopped"
    if failure.check(DeferredTimeout, error.TimeoutError):
        return f"no answer within {timeout:g} s"
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    if failure.check(error.DNSLookupError):
        return "DNS lookup failed"
    text = failure.getErrorMessage() or failure.type.__name__
    return f"{failure.type.__name__}: {text}"[:MAX_ERROR]


class AgentPoster:
    """Posts with a non-persistent connection per attempt, within ``timeout`` seconds."""

    def __init__(self, reactor: Any, timeout: float, agent: Optional[Any] = None) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.agent = agent or Agent(reactor, connectTimeout=timeout,
                                    pool=HTTPConnectionPool(reactor, persistent=False))

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> "Deferred[Outcome]":
        sent = Headers({b"User-Agent": [USER_AGENT.encode()]})
        for name, value in headers.items():
            sent.setRawHeaders(name.encode("ascii"), [value.encode("latin-1")])
        d = self.agent.request(b"POST", url.encode("ascii"), sent, BytesBody(body))
        d.addCallback(self._answered)
        d.addTimeout(self.timeout, self.reactor)
        return d.addErrback(lambda failure: Outcome(error=describe(failure, self.timeout)))

    @staticmethod
    def _answered(response: Any) -> Outcome:
        response.deliverBody(_Drop())
        code = response.code
        wait = (retry_after((response.headers.getRawHeaders(b"retry-after") or [None])[-1])
                if code in (429, 503) else None)
        if 200 <= code < 300:
            return Outcome(code)
        phrase = response.phrase.decode("latin-1", "replace")[:80] if response.phrase else ""
        return Outcome(code, f"HTTP {code} {phrase}".strip(), wait)
