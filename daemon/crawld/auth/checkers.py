"""Credential checkers in twisted.cred's shape: a checker names the credential types it
checks and answers each with a Deferred (an ``Identity``, or a failure), so a slow one
(scrypt) runs in a thread while the cheap ones (SHA-256 of a key, Digest's MD5) answer at
once with an already-fired Deferred. ``portal.Authenticator`` picks the checker by the
credential's type, as ``twisted.cred.portal.Portal`` does by interface.

A checker fails with ``BadCredentials`` (a wrong credential: counted by the limiter and
logged with its reason, which holds no secret) or ``StaleNonce`` (Digest only). A checker
whose credentials can be guessed (``guessable``: passwords) is asked only once the
limiter admits the attempt; one whose credentials cannot (256-bit API keys) is asked
first, so that a valid key gets in however often others failed from its address.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.threads import deferToThread

from .credfile import USER_NAME_RE, ApiKey, Credentials, User
from .kdfpool import KdfPool, ToThread
from .passwords import DEFAULT_KDF, KdfParams, hash_password, key_sha256, verify_password
from .roles import Clock, Identity


class BadCredentials(UnauthorizedLogin):
    """A wrong credential. ``reason`` is for the log (never a secret); ``msg`` for the
    client, which learns nothing about which part was wrong unless that helps it."""

    def __init__(self, reason: str, msg: str = "invalid credentials") -> None:
        super().__init__(reason)
        self.reason = reason
        self.msg = msg


class StaleNonce(UnauthorizedLogin):
    """A correct Digest response on a nonce that is expired, foreign or replayed."""


class Checker(Protocol):
    """twisted.cred's ``ICredentialsChecker``, typed: ``credential_types`` lists the
    credential classes it checks; ``check`` fires with the Identity they prove, or fails
    with BadCredentials or StaleNonce. It must not block the reactor."""

    credential_types: tuple[type, ...]
    guessable: bool

    def check(self, credential: Any) -> Deferred[Identity]:
        """Who ``credential`` proves to be (see the class docstring)."""
        ...


# -- API keys -------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKeyCredential:
    """An API key as sent; ``where`` it was found (Bearer, X-Api-Key...) is for the log."""

    key: str = field(repr=False)
    where: str


class KeyChecker:
    """API keys: one SHA-256 and a constant-time scan of the stored ones; answers at once.
    256 random bits cannot be guessed, so keys are checked before the limiter is asked."""

    credential_types: tuple[type, ...] = (ApiKeyCredential,)
    guessable = False

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def check(self, credential: ApiKeyCredential) -> Deferred[Identity]:
        """The key's identity (already fired)."""
        return maybeDeferred(self._identity, credential)

    def _identity(self, credential: ApiKeyCredential) -> Identity:
        digest = key_sha256(credential.key)
        found: Optional[ApiKey] = None
        for record in self._credentials.current().keys:  # no early exit: time does not
            if hmac.compare_digest(record.sha256, digest):  # depend on which key matched
                found = record
        if found is None:
            raise BadCredentials(f"unknown API key ({credential.where})")
        return Identity("key", found.name, found.role, found.id)


# -- passwords (HTTP Basic) -----------------------------------------------------------
@dataclass(frozen=True)
class PasswordCredential:
    """A user name and password, as HTTP Basic sends them."""

    name: str
    password: str = field(repr=False)


def parse_basic(token: str) -> PasswordCredential:
    """The credential of a Basic ``Authorization`` value (after ``Basic``); raises
    BadCredentials if it is not base64 of UTF-8 ``name:password``."""
    try:
        text = base64.b64decode(token.encode("ascii"), validate=True).decode("utf-8")
    except (ValueError, UnicodeError, binascii.Error):
        raise BadCredentials("malformed Basic credentials") from None
    name, sep, password = text.partition(":")
    if not sep:
        raise BadCredentials("malformed Basic credentials (no colon)")
    return PasswordCredential(name, password)


class PasswordChecker:
    """Basic passwords against their scrypt hashes, in a thread (``to_thread``), at most
    ``max_checks`` at once with ``max_waiting`` queued (``kdfpool.KdfPool``: a 503 past
    that).

    scrypt costs tens of ms: a success is remembered for ``cache_ttl`` seconds, keyed by
    an HMAC under ``secret`` of the name, the password and the stored hash (no password
    kept; a password change or removal invalidates it), so a client that sends Basic
    with every request pays once; a remembered success answers at once. An unknown user
    costs a check of a dummy hash of cost ``kdf``, so that timing does not tell which
    users exist: set it to the cost the users were created with. Unknown users and wrong
    passwords take the same path through the same queue; only a name that no user can
    have (``credfile.USER_NAME_RE``, a public rule) is refused without a derivation.
    """

    credential_types: tuple[type, ...] = (PasswordCredential,)
    guessable = True

    def __init__(self, credentials: Credentials, secret: bytes, *, clock: Clock = time.time,
                 kdf: KdfParams = DEFAULT_KDF, to_thread: ToThread = deferToThread,
                 cache_ttl: float = 300.0, cache_size: int = 1000, max_checks: int = 2,
                 max_waiting: Optional[int] = None) -> None:
        self._credentials = credentials
        self._secret = secret
        self._clock = clock
        self._kdf = kdf
        self.pool = KdfPool(to_thread, max_checks, max_waiting)
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._ok: OrderedDict[bytes, float] = OrderedDict()
        self._dummy: Optional[dict[str, Any]] = None

    def check(self, credential: PasswordCredential) -> Deferred[Identity]:
        """The user's identity: at once when remembered, else after scrypt in a thread."""
        if not USER_NAME_RE.fullmatch(credential.name):
            return fail(BadCredentials("malformed Basic credentials (not a user name)"))
        user = self._credentials.current().users.get(credential.name)
        if user is None:
            return self.pool.run(self._check_dummy, credential.password).addCallback(
                self._unknown, credential.name)
        cache_key = hmac.new(self._secret, "\0".join(
            (user.name, credential.password, user.password["hash"])).encode(
                "utf-8", "surrogateescape"), hashlib.sha256).digest()
        expires = self._ok.get(cache_key)
        if expires is not None and expires >= self._clock():
            return succeed(Identity("basic", user.name, user.role))
        return self.pool.run(verify_password, credential.password, user.password
                             ).addCallback(self._verified, user, cache_key)

    def _check_dummy(self, password: str) -> bool:
        """In a thread: as costly as checking a known user's password."""
        if self._dummy is None:  # a race makes two dummies at worst, both fine
            self._dummy = hash_password(secrets.token_urlsafe(16), self._kdf)
        return verify_password(password, self._dummy)

    def _unknown(self, _: bool, name: str) -> Identity:
        raise BadCredentials(f"unknown user {name[:64]!r} (Basic)")

    def _verified(self, ok: bool, user: User, cache_key: bytes) -> Identity:
        """On the reactor thread, with scrypt's answer: remember a success."""
        if not ok:
            raise BadCredentials(f"wrong password for user {user.name!r} (Basic)")
        self._ok.pop(cache_key, None)
        self._ok[cache_key] = self._clock() + self._cache_ttl
        while len(self._ok) > self._cache_size:
            self._ok.popitem(last=False)
        return Identity("basic", user.name, user.role)
