"""How many connections the API holds: a cap in total and per client, and the file
descriptors they need, checked against ``RLIMIT_NOFILE`` at start-up.

Every connection holds a socket, and one that sends a body over 100 KB a spooled
temporary file too, for as long as the client takes. Without a cap, slow clients can
take every descriptor the process may open, and then the API, the database and the jobs'
logs all fail with "Too many open files". So at most ``[web] max-connections`` are open
at once and at most ``max-connections-per-client`` from one client (an IPv4 address or
an IPv6 /64, as the failed-attempt limiter counts them; a ``[web] trusted-proxies``
peer carries many clients and meets only the total). One more is answered 503 and
closed at once (``channel.DeadlineChannel``).

The caps only help if the descriptors they allow exist: ``ensure_descriptors`` raises
the soft limit when the caps, the job slots and the daemon's own files need more, and
refuses to start (exit code 2) when even the hard limit is too low.
"""
from __future__ import annotations

import os
import resource
from typing import Callable, Optional

from twisted.logger import Logger

from .auth.clients import TrustedProxies, is_trusted
from .auth.limiter import client_bucket
from .errors import ConfigError, TooManyConnections

log = Logger(namespace="crawld.web")

#: Descriptors one connection may hold: its socket, and a spooled body or a streamed file.
PER_CONNECTION = 2
#: Descriptors one running job may hold in the daemon: a browser job's events file and
#: its two control pipes, and one more while a job starts (spider jobs hold none).
PER_JOB = 4
#: Descriptors for everything else at once: files read in threads, a push's archive and
#: its ``scrapy list`` pipes, the zygote's, TLS files, the credentials file...
RESERVE = 64
#: A refused connection is logged at most this often (seconds), with the count since.
LOG_EVERY = 60.0


class ConnectionLimits:
    """Counts the API's open connections, in total and per client (see the module
    docstring); ``admit`` a new one, ``release`` it when it closes.

    ``clock`` (seconds) spaces the log lines about refused connections."""

    def __init__(self, total: int, per_client: int, trusted: TrustedProxies = (),
                 clock: Callable[[], float] = lambda: 0.0) -> None:
        if total < 1 or per_client < 1:
            raise ValueError("connection caps must be at least 1")
        self.total = total
        self.per_client = per_client
        self.trusted = trusted
        self.clock = clock
        self.open = 0
        self.by_client: dict[str, int] = {}
        self._refused = 0
        self._logged_at: Optional[float] = None

    def admit(self, host: str) -> str:
        """Count a connection from ``host`` (the peer's address); returns the key to
        ``release`` it with ("" for a trusted proxy). Raises TooManyConnections (503)
        when it is one too many."""
        if self.open >= self.total:
            self._refuse(f"{self.open} connections are open, the most [web] "
                         "max-connections allows; retry later")
        key = "" if self.trusted and is_trusted(host, self.trusted) else client_bucket(host)
        if key:
            held = self.by_client.get(key, 0)
            if held >= self.per_client:
                self._refuse(f"{held} connections from {key} are open, the most [web] "
                             "max-connections-per-client allows; close some or retry later")
            self.by_client[key] = held + 1
        self.open += 1
        return key

    def release(self, key: str) -> None:
        """A connection ``admit`` counted under ``key`` closed."""
        self.open -= 1
        if key:
            held = self.by_client.pop(key) - 1
            if held:
                self.by_client[key] = held

    def _refuse(self, msg: str) -> None:
        """Raise TooManyConnections(msg); log it, at most once per LOG_EVERY seconds."""
        self._refused += 1
        now = self.clock()
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY:
            log.warn("refused {n} connection(s) since the last such line: {msg}",
                     n=self._refused, msg=msg)
            self._refused, self._logged_at = 0, now
        raise TooManyConnections(msg)


def descriptors_needed(open_now: int, slots: int, max_connections: int) -> int:
    """File descriptors the daemon may need at once: those ``open_now``, ``RESERVE``,
    ``PER_JOB`` per job slot and ``PER_CONNECTION`` per connection."""
    return open_now + RESERVE + PER_JOB * slots + PER_CONNECTION * max_connections


def open_descriptors() -> int:
    """How many file descriptors this process has open (/proc/self/fd)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # listing the folder opened one
        except OSError:
            continue
    return 32  # no way to count: a daemon that has just started holds about this many


def ensure_descriptors(open_now: int, slots: int, max_connections: int,
                       getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
                       setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit
                       ) -> Optional[str]:
    """Make ``RLIMIT_NOFILE`` fit ``descriptors_needed``: raise the soft limit as far as
    needed (returns what to log), or raise ConfigError naming the numbers and the way out
    when the hard limit is too low. None when the limit fits already."""
    needed = descriptors_needed(open_now, slots, max_connections)
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return None
    if hard == resource.RLIM_INFINITY or needed <= hard:
        setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return (f"raised the open files limit (RLIMIT_NOFILE) from {soft} to {needed} for "
                f"{max_connections} connections and {slots} job slots")
    fit = (hard - open_now - RESERVE - PER_JOB * slots) // PER_CONNECTION
    way = (f"lower [web] max-connections (at most {fit} fit) or [crawld] job-slots"
           if fit >= 1 else "lower [crawld] job-slots")
    raise ConfigError(
        f"too few file descriptors: up to {needed} may be open at once ({max_connections} "
        f"connections ([web] max-connections) x {PER_CONNECTION} + {slots} job slots x "
        f"{PER_JOB} + {open_now} open now + {RESERVE} in reserve), but the open files "
        f"limit (RLIMIT_NOFILE) is {soft} and its hard limit {hard}; {way}, or raise the "
        "limit (LimitNOFILE= in the systemd unit, ulimit -n in a shell)")
