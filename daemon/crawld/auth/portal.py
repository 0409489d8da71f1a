"""The Authenticator: a request's credentials to an ``Identity``, asynchronously.

twisted.cred's Portal shape: the request's credential is found (``credential_of``), the
checker registered for its type answers with a Deferred (checkers.py, digest.py), and the
portal turns a wrong credential into a 401 with fresh challenges, counted by the failure
limiter per client and claimed user or key (limiter.py). Password hashing runs in a
thread, a bounded number at once (kdfpool.py), so the reactor never waits for scrypt.

Valid credentials always get in, whatever others did from the same address: an API key
is checked before the limiter is asked, and a user is refused only when that user's
password was guessed at from that client (or the client sprayed names and the user never
logged in from it).

Failures never log a secret: no key, no password, no Authorization header, no part of
them; only the kind of credential, the user name and the client address.
"""
from __future__ import annotations

import secrets
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import ConfigError, CrawldError
from .checkers import (ApiKeyCredential, BadCredentials, Checker, KeyChecker,
                       PasswordChecker, PasswordCredential, StaleNonce, ToThread, parse_basic)
from .credfile import Credentials
from .digest import DigestChecker, DigestCredential, parse_digest
from .limiter import FAILED, PROVEN, VOID, Claim, FailureLimiter, TooManyAttempts
from .passwords import DEFAULT_KDF, DEFAULT_REALM, KdfParams, valid_realm
from .roles import ANONYMOUS, MODES, Clock, Identity
from .sessions import DEFAULT_TTL, TOKEN_PREFIX, SessionCredential, Sessions

log = Logger(namespace="crawld.auth")

Credential = Union[ApiKeyCredential, PasswordCredential, DigestCredential,
                   SessionCredential]

_REQUIRED = ("authentication required: an API key (Authorization: Bearer, X-Api-Key or "
             "?key=) or a user (HTTP Basic or Digest)")


class Unauthorized(CrawldError):
    """No valid credentials (401). ``challenges`` are the ``WWW-Authenticate`` values to
    send, one header each: a Digest challenge (fresh nonce) and a Basic one."""

    code = 401

    def __init__(self, msg: str, challenges: Sequence[str] = ()) -> None:
        super().__init__(msg)
        self.challenges = list(challenges)

    def response_headers(self) -> dict[str, list[str]]:
        """Headers the response must carry, name -> values (one header line each)."""
        return {"WWW-Authenticate": list(self.challenges)}


def credential_of(headers: Mapping[str, str], query_key: Optional[str], method: str,
                  uri: str) -> Optional[Credential]:
    """The request's credential, from the first present of: ``Authorization`` (Bearer,
    Basic or Digest; another scheme is ignored), ``X-Api-Key``, ``query_key``; None if
    there is none. A Bearer token is a session's when it starts with ``cws_``
    (sessions.py), else an API key. Raises BadCredentials when the one found is
    malformed."""
    scheme, _, rest = (headers.get("authorization") or "").strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        token = rest.strip()
        if token.startswith(TOKEN_PREFIX):
            return SessionCredential(token)
        return ApiKeyCredential(token, "Bearer")
    if scheme == "basic":
        return parse_basic(rest.strip())
    if scheme == "digest":
        return parse_digest(rest, method, uri)
    if headers.get("x-api-key"):
        return ApiKeyCredential(headers["x-api-key"].strip(), "X-Api-Key")
    if query_key:
        return ApiKeyCredential(query_key, "key parameter")
    return None


def claim_of(credential: Optional[Credential]) -> Claim:
    """Whom ``credential`` claims to be, for the limiter: a user name (Basic and Digest
    alike: a password is guessed through either), an API key, or malformed (None).

    Wrong keys are one claim whatever they hold: a key's id is chosen by whoever sends
    it, and a valid key never meets the limiter, so counting per id would only let a
    client send more wrong keys while protecting no one."""
    if isinstance(credential, ApiKeyCredential):
        return ("key", "")
    if isinstance(credential, PasswordCredential):
        return ("user", credential.name[:64])
    if isinstance(credential, DigestCredential):
        return ("user", credential.params["username"][:64])
    return ("malformed", "")


def _shielded(d: Deferred[Identity]) -> Deferred[Identity]:
    """``d``'s result through a Deferred whose cancellation does not reach ``d``: a
    client that goes away must not skip the limiter's and the cache's bookkeeping.
    (Always a new Deferred: one that ``called`` may still wait on another, such as the
    password check queue's, which a cancellation would reach.)"""
    out: Deferred[Identity] = Deferred()
    d.chainDeferred(out)
    return out


class Authenticator:
    """Checks requests against the credentials (see ``authenticate``).

    ``secret`` keys the Digest nonces, the opaque value and the Basic success cache;
    by default it is random per process, so a restart makes old nonces stale (clients
    retry transparently). ``kdf`` is the cost of the dummy hash checked for unknown
    Basic users (so that timing does not tell which users exist): set it to the cost
    the users were created with. ``to_thread`` runs password hashing off the reactor,
    at most ``max_password_checks`` at once with ``password_queue`` more waiting (by
    default 16 per check; a 503 past them). ``login`` opens a session (sessions.py)
    that expires after ``session_ttl`` seconds without use.
    """

    def __init__(self, credentials: Credentials, *, mode: str = "required",
                 realm: str = DEFAULT_REALM, clock: Clock = time.time,
                 limiter: Optional[FailureLimiter] = None, nonce_lifetime: float = 300.0,
                 secret: Optional[bytes] = None, kdf: KdfParams = DEFAULT_KDF,
                 basic_cache_ttl: float = 300.0, cache_size: int = 1000,
                 max_tracked_nonces: int = 10000, logger: Optional[Logger] = None,
                 to_thread: ToThread = deferToThread, max_password_checks: int = 2,
                 password_queue: Optional[int] = None, session_ttl: float = DEFAULT_TTL) -> None:
        if mode not in MODES:
            raise ConfigError(f"auth: expected none or required, got {mode!r}")
        if not valid_realm(realm):
            raise ConfigError(f"auth realm: printable ASCII without quotes, got {realm!r}")
        self.mode = mode
        self.realm = realm
        self._log = logger or log
        self.limiter = limiter or FailureLimiter(clock, logger=self._log)
        secret = secret or secrets.token_bytes(32)
        self.digest = DigestChecker(credentials, realm, secret, clock=clock,
                                    nonce_lifetime=nonce_lifetime,
                                    max_tracked_nonces=max_tracked_nonces)
        self.sessions = Sessions(credentials, clock, session_ttl)
        self.passwords = PasswordChecker(
            credentials, secret, clock=clock, kdf=kdf, to_thread=to_thread,
            cache_ttl=basic_cache_ttl, cache_size=cache_size,
            max_checks=max_password_checks, max_waiting=password_queue)
        checkers: tuple[Checker, ...] = (KeyChecker(credentials), self.passwords,
                                         self.digest, self.sessions)
        self._checkers: dict[type, Checker] = {
            kind: checker for checker in checkers for kind in checker.credential_types}

    def challenges(self, stale: bool = False) -> list[str]:
        """``WWW-Authenticate`` values: Digest (new nonce) first, then Basic."""
        return [self.digest.challenge(stale), f'Basic realm="{self.realm}", charset="UTF-8"']

    def authenticate(self, headers: Mapping[str, str], query_key: Optional[str],
                     method: str, uri: str, client_host: str) -> Deferred[Identity]:
        """Who sent this request: a Deferred firing with the Identity, or failing with
        Unauthorized (401), TooManyAttempts (429) or PasswordChecksBusy (503). It never
        raises.

        ``headers`` maps lower-case names to values; ``query_key`` is the ``key`` query
        parameter; ``uri`` is the request target as sent (path and query, Twisted's
        ``request.uri``), which a Digest ``uri`` must equal; ``client_host`` is the peer
        address (the client's, behind a trusted proxy: ``clients.client_address``).
        With ``mode = none`` everyone is ANONYMOUS (an operator). A request without
        credentials gets 401 without counting as a failure (it is how Digest starts);
        wrong ones count, per client and claimed user or key. Only a Basic password not
        checked recently waits for a thread (or fails with PasswordChecksBusy, 503, when
        too many do); every other answer is already fired.
        """
        if self.mode == "none":
            return succeed(ANONYMOUS)
        try:
            credential = credential_of(headers, query_key, method, uri)
        except BadCredentials:
            return self._attempt(client_host, claim_of(None), fail, Failure())
        if credential is None:
            return fail(Unauthorized(_REQUIRED, self.challenges()))
        checker = self._checkers[type(credential)]
        claim = claim_of(credential)
        if not checker.guessable:  # checked first: a valid key always gets in
            return checker.check(credential).addErrback(self._refuse, client_host, claim)
        return self._attempt(client_host, claim, checker.check, credential)

    @property
    def session_ttl(self) -> float:
        """Seconds a session lives without use."""
        return self.sessions.ttl

    def login(self, name: str, password: str, client_host: str
              ) -> Deferred[tuple[str, Identity]]:
        """Check a user's password once (as Basic is checked: in a thread, bounded,
        counted by the limiter) and open a session: fires with its token and the
        session's identity, or fails as ``authenticate`` does (Unauthorized,
        TooManyAttempts, PasswordChecksBusy)."""
        credential = PasswordCredential(name, password)
        d = self._attempt(client_host, claim_of(credential), self.passwords.check,
                          credential)

        def opened(identity: Identity) -> tuple[str, Identity]:
            token = self.sessions.open(identity.name)
            return token, Identity("session", identity.name, identity.role)
        return d.addCallback(opened)

    def logout(self, headers: Mapping[str, str]) -> bool:
        """End the session whose token the request carries (Bearer); whether there
        was one. Anything else in the headers is left alone."""
        scheme, _, rest = (headers.get("authorization") or "").strip().partition(" ")
        token = rest.strip()
        if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
            return False
        return self.sessions.close(token)

    def _attempt(self, client: str, claim: Claim, check: Callable[..., Any], *args: Any
                 ) -> Deferred[Identity]:
        """``check(*args)`` once the limiter admits ``client`` at ``claim``, settled."""
        try:
            self.limiter.admit(client, claim)
        except TooManyAttempts:
            return fail()
        d = maybeDeferred(check, *args)
        return _shielded(d.addBoth(self._settle, client, claim))

    def _refuse(self, failure: Failure, client: str, claim: Claim) -> Identity:
        """A wrong key, checked before the limiter: 429 if the client may not try it now
        (not counted), else a counted failure (401)."""
        self.limiter.admit(client, claim)  # TooManyAttempts: 429
        return self._settle(failure, client, claim)

    def _settle(self, result: Any, client: str, claim: Claim) -> Any:
        """Count the outcome of the attempt; a wrong credential becomes a 401."""
        if not isinstance(result, Failure):
            self.limiter.settle(client, claim, PROVEN)
            return result
        wrong = result.value
        if isinstance(wrong, BadCredentials):
            self.limiter.settle(client, claim, FAILED)
            self._log.warn("authentication failed from {client}: {reason}",
                           client=client, reason=wrong.reason)
            raise Unauthorized(wrong.msg, self.challenges())
        if isinstance(wrong, StaleNonce):  # the password was right, the nonce not
            self.limiter.settle(client, claim, PROVEN)
            raise Unauthorized("the Digest nonce is stale; retry with the new one",
                               self.challenges(stale=True))
        self.limiter.settle(client, claim, VOID)
        return result
