"""Failed-attempt limiting: the 429 that stops password and key guessing."""
from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from typing import Optional

from twisted.logger import Logger

from ..errors import CrawldError
from .roles import Clock

log = Logger(namespace="crawld.auth")


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


class FailureLimiter:
    """At most ``max_failures`` failed attempts per client in any ``window`` seconds.

    Once a client reaches the limit, every request from it gets 429 (even with correct
    credentials, so guessing cannot continue) until its oldest counted failure is
    ``window`` seconds old. Successes neither count nor reset the count: otherwise one
    valid low-privilege key would allow unlimited guessing of others. At most
    ``max_clients`` clients are tracked, the least recently failing are forgotten first.

    An attempt is ``admit``-ted before it is checked and ``settle``-d when its outcome is
    known. Until then it counts as a failure: a password is checked in a thread, so
    without this a client could start any number of guesses before the first one failed.

    Behind a reverse proxy every client has the proxy's address: the limit then applies
    to all of them together.
    """

    def __init__(self, clock: Clock = time.time, max_failures: int = 10,
                 window: float = 60.0, max_clients: int = 10000,
                 logger: Optional[Logger] = None) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._log = logger or log
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._pending: dict[str, int] = {}

    def retry_after(self, client: str) -> Optional[int]:
        """Seconds until ``client`` may try again, or None if it may now. Attempts in
        progress count as failures; they end within a second."""
        bucket = client_bucket(client)
        now = self._clock()
        recent = [t for t in self._failures.get(bucket, ()) if t > now - self.window]
        if len(recent) >= self.max_failures:
            return max(1, math.ceil(recent[0] + self.window - now))
        if len(recent) + self._pending.get(bucket, 0) >= self.max_failures:
            return 1
        return None

    def admit(self, client: str) -> None:
        """Start one attempt of ``client``, or raise TooManyAttempts if it may not try
        now. Every admitted attempt must be settled."""
        wait = self.retry_after(client)
        if wait is not None:
            raise TooManyAttempts(f"too many failed authentication attempts; retry in "
                                  f"{wait} s", wait)
        bucket = client_bucket(client)
        self._pending[bucket] = self._pending.get(bucket, 0) + 1

    def settle(self, client: str, failed: bool) -> None:
        """End an admitted attempt of ``client``; ``failed`` counts it."""
        bucket = client_bucket(client)
        left = self._pending.pop(bucket, 1) - 1
        if left > 0:
            self._pending[bucket] = left
        if failed:
            self._count(bucket)

    def _count(self, bucket: str) -> None:
        now = self._clock()
        times = self._failures.pop(bucket, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
        while times and times[0] <= now - self.window:
            times.popleft()
        times.append(now)
        self._failures[bucket] = times  # most recent last
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        if len(times) == self.max_failures:
            self._log.warn("{client}: {n} failed authentication attempts in {window:.0f} s; "
                           "refusing it for {wait} s", client=bucket, n=self.max_failures,
                           window=self.window, wait=self.retry_after(bucket))
