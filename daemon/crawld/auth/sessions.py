"""Sessions: what a user who logged in with a password (``POST /login.json``) sends
instead of the password.

A page that polls must not send Basic with every request: each one is an scrypt check
(bounded by ``[web] max-password-checks``; a remembered success only lasts 5 minutes).
So the password is checked once, and the daemon hands out a session token: 256 random
bits, prefixed ``cws_`` (``cwk_`` is an API key's), sent as ``Authorization: Bearer``.

Tokens are held in memory only, as their SHA-256 (a token is as good as a password
while it lives, and a memory dump should not hand them out): a restart logs everyone
out, which is fine for a dashboard. Each expires after ``ttl`` seconds without use
(sliding: every request that uses it starts its ``ttl`` again), at most
``MAX_SESSIONS`` are kept (the least recently used goes first), and a session ends when
its user is removed or given a new password. The role is read from the credentials at
each use, so a role change applies at once.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from twisted.internet.defer import Deferred, maybeDeferred

from .checkers import BadCredentials
from .credfile import Credentials
from .roles import Clock, Identity

TOKEN_PREFIX = "cws_"
#: The most sessions kept at once; past it the least recently used one ends.
MAX_SESSIONS = 10000
DEFAULT_TTL = 3600.0


@dataclass(frozen=True)
class SessionCredential:
    """A session token as sent (Bearer)."""

    token: str = field(repr=False)


@dataclass
class _Session:
    """One session: whose, the password hash it was opened with, when it expires."""

    name: str
    password_hash: str
    expires: float


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Sessions:
    """The daemon's open sessions (see the module docstring); a checker in the shape
    of checkers.py for ``SessionCredential``, never guessable (256 random bits)."""

    credential_types: tuple[type, ...] = (SessionCredential,)
    guessable = False

    def __init__(self, credentials: Credentials, clock: Clock, ttl: float = DEFAULT_TTL,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self._credentials = credentials
        self._clock = clock
        self.ttl = ttl
        self._max = max_sessions
        self._open: OrderedDict[bytes, _Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def open(self, name: str) -> str:
        """A new session for the user ``name`` (whose password was just checked):
        returns its token, the only time it exists outside the client."""
        user = self._credentials.current().users.get(name)
        if user is None:
            raise BadCredentials(f"user {name!r} was removed while logging in")
        now = self._clock()
        while self._open:  # the least recently used first: the earliest to expire
            oldest = next(iter(self._open.values()))
            if oldest.expires >= now:
                break
            self._open.popitem(last=False)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._open[_digest(token)] = _Session(name, user.password["hash"], now + self.ttl)
        while len(self._open) > self._max:
            self._open.popitem(last=False)
        return token

    def close(self, token: str) -> bool:
        """End the session of ``token``; whether there was one."""
        return self._open.pop(_digest(token), None) is not None

    def identity(self, token: str) -> Optional[Identity]:
        """Who ``token`` is, and its expiry moved ``ttl`` ahead; None when it is not an
        open session (unknown, expired, its user removed or its password changed)."""
        key = _digest(token)
        session = self._open.get(key)
        if session is None:
            return None
        now = self._clock()
        user = self._credentials.current().users.get(session.name)
        if (session.expires < now or user is None
                or not hmac.compare_digest(user.password["hash"], session.password_hash)):
            del self._open[key]
            return None
        session.expires = now + self.ttl
        self._open.move_to_end(key)
        return Identity("session", user.name, user.role)

    def check(self, credential: SessionCredential) -> Deferred[Identity]:
        """The checker's answer: the identity (already fired) or BadCredentials."""
        return maybeDeferred(self._check, credential)

    def _check(self, credential: SessionCredential) -> Identity:
        found = self.identity(credential.token)
        if found is None:
            raise BadCredentials("unknown or expired session token",
                                 "the session has expired or ended; log in again")
        return found
