"""Authentication and authorization: API keys, users (HTTP Basic and Digest), two roles.

Modules by noun, each importing only those above it:

- ``roles``: roles, ``Identity``, the role a request needs, modes, the start-up rule;
- ``passwords``: scrypt, Digest's HA1, key hashes, constant-time comparison;
- ``credfile``: the credentials file and its edits (``crawld keys|users``), and
  ``Credentials``, the daemon's reloading view of it;
- ``clients``: who the client is (the peer, or behind ``[web] trusted-proxies`` the
  address in ``X-Forwarded-For``);
- ``limiter``: the failed-attempt limit (429), per client and claimed user or key;
- ``kdfpool``: at most ``[web] max-password-checks`` key derivations at once (503 past
  its queue);
- ``checkers`` and ``digest``: one checker per kind of credential, twisted.cred-style,
  each answering with a Deferred (scrypt in a thread);
- ``portal``: the ``Authenticator`` the HTTP layer calls first for every request:
  ``authenticate(...)`` fires with an Identity, then ``authorize(identity,
  required_role(method, path))``.

The names below are the package's public interface.
"""
from .clients import TrustedProxies, client_address
from .credfile import (Credentials, CredentialsError, add_key, add_user, credentials_path,
                       read_credentials, remove_user, revoke_key)
from .kdfpool import PasswordChecksBusy
from .limiter import FAILED, PROVEN, VOID, FailureLimiter, TooManyAttempts
from .passwords import DEFAULT_KDF, DEFAULT_REALM, KdfParams
from .portal import Authenticator, Unauthorized
from .roles import (ANONYMOUS, KEY_ROLES, OPERATOR, READER, ROLES, WORKER, Identity, authorize, is_loopback, must_refuse_start,
                    path_forms, required_role, resolve_mode, start_warning)

__all__ = [
    "ANONYMOUS", "FAILED", "OPERATOR", "PROVEN", "READER", "VOID", "Authenticator", "Credentials",
    "CredentialsError", "DEFAULT_KDF", "DEFAULT_REALM", "FailureLimiter", "Identity", "KdfParams",
    "PasswordChecksBusy", "ROLES", "KEY_ROLES", "WORKER", "TooManyAttempts", "TrustedProxies", "Unauthorized",
    "add_key", "add_user", "authorize", "client_address", "credentials_path", "is_loopback",
    "must_refuse_start", "path_forms", "read_credentials", "remove_user", "required_role",
    "resolve_mode", "revoke_key", "start_warning",
]
