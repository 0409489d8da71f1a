"""A worker's HTTP client for the daemon's ``/cluster/*`` routes (docs/cluster.md).

Runs on the worker's reactor (twisted.web's Agent: no dependency beyond Twisted), sends
the worker key as ``Authorization: Bearer KEY`` and answers every call with a ``Reply``
(HTTP code and decoded JSON body). A 409 is an answer, not an error: claim, output and
ended carry what the worker does next in it. Only when the daemon cannot be reached (or
answers 5xx, or something that is not JSON) does a call fail with ``Unreachable``,
which the callers treat as "keep the spool, retry with backoff".
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import quote, urlencode

from twisted.internet.defer import inlineCallbacks
from twisted.web.client import (Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool,
                                _HTTP11ClientFactory, readBody)
from twisted.web.http_headers import Headers

from ..webhook_client import BytesBody

#: Seconds a call may take before it counts as the daemon being unreachable.
TIMEOUT = 30.0


class _QuietFactory(_HTTP11ClientFactory):
    """The pool's connection factory without a log line per connection."""

    noisy = False


class Unreachable(Exception):
    """The daemon did not answer usefully (connection refused, timeout, 5xx, garbage)."""


@dataclass(frozen=True)
class Reply:
    """A daemon's answer: its HTTP code and JSON body (``{}`` when it had none)."""

    code: int
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == 200


def tls_policy(ca_file: Optional[str]) -> Any:
    """HTTPS trust: the system's roots, or only the CAs in the PEM file ``ca_file``."""
    if not ca_file:
        return BrowserLikePolicyForHTTPS()
    from twisted.internet import ssl
    with open(ca_file, "rb") as fh:
        pem = fh.read()
    certs = [ssl.Certificate.loadPEM(b"-----BEGIN CERTIFICATE-----" + part)
             for part in pem.split(b"-----BEGIN CERTIFICATE-----")[1:]]
    if not certs:
        raise ValueError(f"{ca_file}: no PEM certificate in it")
    return BrowserLikePolicyForHTTPS(trustRoot=ssl.trustRootFromCertificates(certs))


class DaemonClient:
    """The ``/cluster/*`` calls, one method per route (see the spec in docs/cluster.md)."""

    def __init__(self, reactor: Any, base_url: str, key: Optional[str],
                 ca_file: Optional[str] = None, agent: Any = None,
                 timeout: float = TIMEOUT) -> None:
        """``agent``: an IAgent (tests pass a StubTreq's; None: a pooled Agent)."""
        self.reactor = reactor
        self.base = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        if agent is None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            pool.maxPersistentPerHost = 8
            pool._factory = _QuietFactory
            agent = Agent(reactor, contextFactory=tls_policy(ca_file), pool=pool)
        self.agent = agent

    def _headers(self, content_type: Optional[str]) -> Headers:
        headers = Headers({b"User-Agent": [b"crawld-worker"]})
        if self.key:
            headers.addRawHeader(b"Authorization", f"Bearer {self.key}".encode())
        if content_type:
            headers.addRawHeader(b"Content-Type", content_type.encode())
        return headers

    @inlineCallbacks
    def _call(self, method: bytes, path: str, body: Optional[bytes] = None,
              content_type: Optional[str] = None, raw: bool = False):
        """One request; fires with a Reply (or the raw body bytes when ``raw`` and 200)."""
        url = (self.base + path).encode()
        try:
            d = self.agent.request(method, url, self._headers(content_type),
                                   BytesBody(body) if body is not None else None)
            d.addTimeout(self.timeout, self.reactor)
            response = yield d
            data = yield readBody(response)
        except Exception as exc:
            raise Unreachable(f"{method.decode()} {path}: {exc}") from exc
        code = response.code
        if code >= 500:
            raise Unreachable(f"{method.decode()} {path}: HTTP {code}")
        if raw and code == 200:
            return data
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            if code == 200:
                raise Unreachable(f"{method.decode()} {path}: an answer that is not JSON")
            parsed = {}
        return Reply(code, parsed if isinstance(parsed, dict) else {})

    def _post(self, path: str, payload: dict[str, Any]):
        return self._call(b"POST", path, json.dumps(payload).encode(), "application/json")

    # -- the routes -------------------------------------------------------------------
    def claim(self, worker: str, job: str, attempt: int):
        """``Deferred[Reply]``: 200 with the job and its code, or 409: start nothing."""
        return self._post("/cluster/claim", {"worker": worker, "job": job, "attempt": attempt})

    def code(self, digest: str):
        """``Deferred[bytes | Reply]``: the version's zip, or the Reply of a refusal."""
        return self._call(b"GET", f"/cluster/code/{quote(digest)}.zip", raw=True)

    def started(self, worker: str, key: str, pid: Optional[int],
                pid_started: Optional[float]):
        return self._post("/cluster/started", {"worker": worker, "key": key, "pid": pid,
                                               "pid_started": pid_started})

    def output(self, key: str, stream: str, offset: int, data: bytes):
        """``Deferred[Reply]``: ``offset`` is what the daemon now holds (or, on 409,
        where to resume)."""
        query = urlencode({"key": key, "stream": stream, "offset": offset})
        return self._call(b"POST", f"/cluster/output?{query}", data,
                          "application/octet-stream")

    def file(self, key: str, name: str, offset: int, data: bytes):
        """``Deferred[Reply]``: a chunk of a browser job's saved file, answered like
        ``output``."""
        query = urlencode({"key": key, "name": name, "offset": offset})
        return self._call(b"POST", f"/cluster/file?{query}", data,
                          "application/octet-stream")

    def screenshot(self, key: str, req: int, data: Optional[bytes] = None,
                   error: Optional[str] = None):
        """``Deferred[Reply]``: the PNG of live screenshot request ``req`` (``data``), or
        why it could not be taken (``error``)."""
        params: dict[str, Any] = {"key": key, "req": req}
        if error is not None:
            params["error"] = error
        return self._call(b"POST", f"/cluster/screenshot?{urlencode(params)}",
                          data if error is None and data is not None else b"",
                          "image/png")

    def stats(self, key: str, stats: dict[str, Any]):
        return self._post("/cluster/stats", {"key": key, "stats": stats})

    def heartbeat(self, worker: str, slots: int, queues: list[str],
                  attempts: list[dict[str, Any]]):
        return self._post("/cluster/heartbeat", {"worker": worker, "slots": slots,
                                                 "queues": queues, "attempts": attempts})

    def ended(self, key: str, code: Optional[int], signal: Optional[int],
              reason: Optional[str], offsets: dict[str, int]):
        return self._post("/cluster/ended", {"key": key, "code": code, "signal": signal,
                                             "reason": reason, "offsets": offsets})
