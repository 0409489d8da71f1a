"""Failed-attempt limiting: the 429 that stops password guessing without locking out the
innocent.

Failures are counted per client (an IPv4 address or IPv6 /64; see ``clients`` for how a
client behind a trusted proxy is found) and per *claim*: the user name the attempt
claimed, or "an API key" (``Claim``). Guessing one user's password from one address refuses that
user from that address; every other user, every key and every other address carry on.
An address-wide cap stops spraying many names from one address; it does not refuse the
claims already proven from that address (a user who logged in from there), so a valid
user behind a shared address keeps working while someone there sprays. The Authenticator
checks API keys before asking the limiter (a key cannot be guessed), so a valid key
always gets in.
"""
from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Optional

from twisted.logger import Logger

from ..errors import CrawldError
from .roles import Clock

log = Logger(namespace="crawld.auth")

#: What an attempt claims to be: ``("user", name)``, ``("key", "")`` (any API key) or
#: ``("malformed", "")``.
Claim = tuple[str, str]

#: How an admitted attempt ended (``FailureLimiter.settle``).
FAILED = "failed"   # wrong credentials: counted
PROVEN = "proven"   # right credentials: remembered, so the address-wide cap spares them
VOID = "void"       # neither (e.g. no thread free to check): not counted


class TooManyAttempts(CrawldError):
    """The client failed to authenticate too often (429); ``retry_after`` in seconds."""

    code = 429

    def __init__(self, msg: str, retry_after: int) -> None:
        super().__init__(msg)
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, list[str]]:
        """Headers the response must carry, name -> values."""
        return {"Retry-After": [str(self.retry_after)]}


def client_bucket(client: str) -> str:
    """The rate-limit bucket of a client address: the address itself, or its /64 for
    IPv6 (one host commonly owns a whole /64, so single addresses are free to rotate)."""
    try:
        ip = ipaddress.ip_address(client.strip("[]").split("%", 1)[0])
    except ValueError:
        return client[:100]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def describe(claim: Claim) -> str:
    """A claim for the log: the user name, never any part of a key."""
    kind, name = claim
    if kind == "user":
        return f"user {name[:64]!r}"
    return "an API key" if kind == "key" else "malformed credentials"


@dataclass
class _Client:
    """One bucket's recent failures: all of them (``recent``) and per claim."""

    recent: deque[float]
    claims: OrderedDict[Claim, deque[float]] = field(default_factory=OrderedDict)


class FailureLimiter:
    """At most ``max_failures`` failed attempts per (client, claim) and
    ``max_client_failures`` per client in any ``window`` seconds.

    Past the first limit the client may not try that claim again until its oldest counted
    failure is ``window`` seconds old (the right password too: otherwise guessing could
    go on). Past the second it may try only claims it proved within ``remember`` seconds.
    Successes neither count nor reset the counts. At most ``max_clients`` clients are
    tracked (the least recently failing are forgotten first), each with at most
    ``2 * max_client_failures`` claims, and ``max_remembered`` proven claims.

    An attempt is ``admit``-ted before it is checked and ``settle``-d when its outcome is
    known. Until then it counts as a failure: a password is checked in a thread, so
    without this a client could start any number of guesses before the first one failed.
    """

    def __init__(self, clock: Clock = time.time, max_failures: int = 10,
                 window: float = 60.0, max_clients: int = 10000, *,
                 max_client_failures: int = 100, remember: float = 86400.0,
                 max_remembered: int = 10000, logger: Optional[Logger] = None) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.max_client_failures = max_client_failures
        self.window = window
        self.max_clients = max_clients
        self.remember = remember
        self.max_remembered = max_remembered
        self._log = logger or log
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._pending: dict[tuple[str, Claim], int] = {}
        self._pending_client: dict[str, int] = {}
        self._proven: OrderedDict[tuple[str, Claim], float] = OrderedDict()

    def _wait(self, times: deque[float], pending: int, limit: int, now: float
              ) -> Optional[int]:
        """Seconds until one more attempt fits under ``limit``, or None if it does now.
        Attempts in progress count as failures; they end within a second or so."""
        recent = [t for t in times if t > now - self.window]
        if len(recent) >= limit:
            return max(1, math.ceil(recent[-limit] + self.window - now))
        return 1 if len(recent) + pending >= limit else None

    def retry_after(self, client: str, claim: Claim) -> Optional[int]:
        """Seconds until ``client`` may try ``claim`` again, or None if it may now."""
        bucket = client_bucket(client)
        now = self._clock()
        record = self._clients.get(bucket)
        waits = [self._wait(record.claims.get(claim, ()) if record else (),
                            self._pending.get((bucket, claim), 0), self.max_failures, now)]
        proven = self._proven.get((bucket, claim), -math.inf) > now
        if not proven:
            waits.append(self._wait(record.recent if record else (),
                                    self._pending_client.get(bucket, 0),
                                    self.max_client_failures, now))
        found = [w for w in waits if w is not None]
        return max(found) if found else None

    def admit(self, client: str, claim: Claim) -> None:
        """Start one attempt of ``client`` at ``claim``, or raise TooManyAttempts if it
        may not try now. Every admitted attempt must be settled."""
        wait = self.retry_after(client, claim)
        if wait is not None:
            raise TooManyAttempts(f"too many failed authentication attempts; retry in "
                                  f"{wait} s", wait)
        bucket = client_bucket(client)
        self._pending[(bucket, claim)] = self._pending.get((bucket, claim), 0) + 1
        self._pending_client[bucket] = self._pending_client.get(bucket, 0) + 1

    def settle(self, client: str, claim: Claim, outcome: str) -> None:
        """End an admitted attempt: ``outcome`` is FAILED, PROVEN or VOID."""
        bucket = client_bucket(client)
        for table, key in ((self._pending, (bucket, claim)), (self._pending_client, bucket)):
            left = table.pop(key, 1) - 1  # type: ignore[arg-type]
            if left > 0:
                table[key] = left  # type: ignore[index]
        if outcome == FAILED:
            self._count(bucket, claim)
        elif outcome == PROVEN:
            self._proven.pop((bucket, claim), None)
            self._proven[(bucket, claim)] = self._clock() + self.remember
            while len(self._proven) > self.max_remembered:
                self._proven.popitem(last=False)

    def tracked_claims(self, client: str) -> int:
        """How many claims of ``client`` are tracked (bounded; for tests and checks)."""
        record = self._clients.get(client_bucket(client))
        return len(record.claims) if record else 0

    def _count(self, bucket: str, claim: Claim) -> None:
        now = self._clock()
        record = self._clients.pop(bucket, None) or _Client(
            deque(maxlen=self.max_client_failures))
        self._clients[bucket] = record  # most recently failing last
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        record.recent.append(now)
        times = record.claims.pop(claim, None) or deque(maxlen=self.max_failures)
        times.append(now)
        record.claims[claim] = times  # most recently failing last
        while record.claims:  # forget claims with no failure in the window; bounded
            first = next(iter(record.claims.values()))
            if (first[-1] > now - self.window
                    and len(record.claims) <= 2 * self.max_client_failures):
                break
            record.claims.popitem(last=False)
        what = describe(claim)
        if len([t for t in times if t > now - self.window]) == self.max_failures:
            self._log.warn("{client}: {n} failed authentication attempts with {what} in "
                           "{window:.0f} s; refusing {what} from {client} for {wait} s",
                           client=bucket, n=self.max_failures, what=what,
                           window=self.window, wait=self.retry_after(bucket, claim))
        if len([t for t in record.recent if t > now - self.window]) == \
                self.max_client_failures:
            self._log.warn("{client}: {n} failed authentication attempts in {window:.0f} "
                           "s; refusing from {client}, for {wait} s, every user not proven "
                           "from it", client=bucket, n=self.max_client_failures,
                           window=self.window,
                           wait=self._wait(record.recent, 0, self.max_client_failures, now))
