"""HTTP Digest (RFC 7616, MD5, qop=auth): nonces, challenges and the response check.

Nonces are stateless: ``<time hex>.<random>.<HMAC of both>`` under a per-process secret,
so a restart makes old nonces stale and clients retry transparently. Replays are refused
by remembering the highest nonce-count seen per nonce (bounded). The checks are cheap
(HMAC and MD5), so the checker answers at once.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping, Optional

from twisted.internet.defer import Deferred, maybeDeferred

from .checkers import BadCredentials, StaleNonce
from .credfile import Credentials
from .passwords import md5_hex, same
from .roles import Clock, Identity

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))'
                       r"\s*(?:,|$)")
_REQUIRED = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")


def parse_auth_params(text: str) -> dict[str, str]:
    """``a=b, c="d"`` (RFC 7235 auth-params) as a dict with lower-case names."""
    params: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _PARAM_RE.match(text, pos)
        if not m:
            raise ValueError("malformed parameters")
        name = m.group(1).lower()
        if name in params:
            raise ValueError(f"duplicate parameter {name}")
        quoted = m.group(2)
        params[name] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else m.group(3)
        pos = m.end()
    return params


@dataclass(frozen=True)
class DigestCredential:
    """A Digest ``Authorization`` header's parameters, with the request's method and
    target (``uri`` as sent: path and query), which the response must be computed for."""

    params: Mapping[str, str] = field(repr=False)
    method: str
    uri: str


def parse_digest(text: str, method: str, uri: str) -> DigestCredential:
    """The credential of a Digest ``Authorization`` value (after ``Digest``); raises
    BadCredentials when a parameter is missing or names what crawld does not speak."""
    try:
        p = parse_auth_params(text)
    except ValueError as exc:
        raise BadCredentials(f"malformed Digest header: {exc}") from None
    missing = [n for n in _REQUIRED if not p.get(n)]
    if missing:
        raise BadCredentials(f"Digest header without {', '.join(missing)}")
    name = p["username"]
    if p.get("algorithm", "MD5").upper() != "MD5" or p["qop"] != "auth":
        raise BadCredentials(f"Digest for {name[:64]!r}: only algorithm MD5 with qop auth")
    if not re.fullmatch(r"[0-9a-fA-F]{8}", p["nc"]):
        raise BadCredentials(f"Digest for {name[:64]!r}: bad nc")
    return DigestCredential(p, method, uri)


class _NonceCounts:
    """The highest nonce-count seen per Digest nonce, to refuse replays; bounded.

    Nonces are stateless (HMAC of their time), so a nonce not in the table may be new
    or forgotten; forgotten ones are refused as stale when not newer than the newest
    forgotten one (the ``watermark``): the client just retries with a fresh nonce.
    """

    def __init__(self, lifetime: float, cap: int) -> None:
        self.lifetime = lifetime
        self.cap = cap
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._watermark = -1

    def use(self, nonce: str, nc: int, issued: int, now: float) -> bool:
        """Whether ``nc`` may be used with ``nonce`` now (and remember it if so)."""
        while self._seen:
            first = next(iter(self._seen.values()))
            if first[1] + self.lifetime >= now:
                break
            self._seen.popitem(last=False)
        seen = self._seen.get(nonce)
        if seen is not None:
            if nc <= seen[0]:
                return False
            self._seen[nonce] = (nc, issued)
            return True
        if issued <= self._watermark:
            return False
        self._seen[nonce] = (nc, issued)
        while len(self._seen) > self.cap:
            _, (_, old) = self._seen.popitem(last=False)
            self._watermark = max(self._watermark, old)
        return True


class DigestChecker:
    """Issues Digest challenges for ``realm`` and checks the answers (see the module
    docstring); ``secret`` keys the nonces and the opaque value."""

    credential_types: tuple[type, ...] = (DigestCredential,)
    guessable = True  # cheap to check, so the limiter is all that stops guessing

    def __init__(self, credentials: Credentials, realm: str, secret: bytes, *,
                 clock: Clock = time.time, nonce_lifetime: float = 300.0,
                 max_tracked_nonces: int = 10000) -> None:
        self._credentials = credentials
        self.realm = realm
        self._secret = secret
        self._clock = clock
        self.nonce_lifetime = nonce_lifetime
        self._opaque = self._mac(b"opaque")[:32]
        self._nonces = _NonceCounts(nonce_lifetime, max_tracked_nonces)

    def _mac(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def new_nonce(self) -> str:
        """A fresh nonce: ``<time hex>.<random>.<HMAC of both>``."""
        body = f"{int(self._clock()):x}.{secrets.token_hex(8)}"
        return f"{body}.{self._mac(body.encode('ascii'))[:32]}"

    def _nonce_time(self, nonce: str) -> Optional[int]:
        """When this daemon issued ``nonce``, or None if it did not."""
        parts = nonce.split(".")
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{1,12}", parts[0]):
            return None
        body = f"{parts[0]}.{parts[1]}"
        if not same(self._mac(body.encode("utf-8", "surrogateescape"))[:32], parts[2]):
            return None
        return int(parts[0], 16)

    def challenge(self, stale: bool = False) -> str:
        """A ``WWW-Authenticate`` value with a new nonce; ``stale`` tells the client its
        answer was right but the nonce was not, so it retries without asking the user."""
        value = (f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, '
                 f'nonce="{self.new_nonce()}", opaque="{self._opaque}"')
        return value + ", stale=true" if stale else value

    def check(self, credential: DigestCredential) -> Deferred[Identity]:
        """The user's identity (already fired)."""
        return maybeDeferred(self._identity, credential)

    def _identity(self, credential: DigestCredential) -> Identity:
        p, uri = credential.params, credential.uri
        name = p["username"]
        user = self._credentials.current().users.get(name)
        if user is None:
            raise BadCredentials(f"unknown user {name[:64]!r} (Digest)")
        if p["realm"] != self.realm:
            raise BadCredentials(f"Digest for {name!r}: realm {p['realm'][:64]!r} is not "
                                 f"{self.realm!r}")
        if user.digest_ha1 is None or user.digest_realm != self.realm:
            raise BadCredentials(f"user {name!r} has no Digest credentials for realm "
                                 f"{self.realm!r} (add the user again)")
        if p["uri"] != uri:
            raise BadCredentials(f"Digest for {name!r}: uri {p['uri'][:200]!r} is not the "
                                 "request's", "the Digest uri does not match the request")
        ha2 = md5_hex(f"{credential.method}:{p['uri']}")
        expected = md5_hex(f"{user.digest_ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:"
                           f"{ha2}")
        if not same(expected, p["response"].lower()):
            raise BadCredentials(f"wrong password for user {name!r} (Digest)")
        # The response proves the password; only the nonce may be unusable: stale.
        issued = self._nonce_time(p["nonce"])
        now = self._clock()
        if (issued is None or not issued - 5 <= now <= issued + self.nonce_lifetime
                or not same(p.get("opaque", self._opaque), self._opaque)
                or not self._nonces.use(p["nonce"], int(p["nc"], 16), issued, now)):
            raise StaleNonce()
        return Identity("digest", user.name, user.role)
