"""How secrets are stored and compared: scrypt for Basic passwords, Digest's HA1, SHA-256
for API keys, and constant-time comparison.

- **API keys** have 256 random bits, so a fast hash (SHA-256) is enough to make a stolen
  file useless for logging in, and each request costs one hash.
- **Basic passwords** are stored as a salted scrypt hash. Verifying one costs tens of ms
  and ~16 MiB: callers on the reactor thread must run ``verify_password`` (and
  ``hash_password``) in a thread (see ``checkers.PasswordChecker``).
- **Digest** needs ``HA1 = MD5(user:realm:password)`` (RFC 7616, MD5, qop=auth), which
  is **password-equivalent for its realm**: whoever reads it can answer any Digest
  challenge of that realm as that user. Changing the realm makes every stored HA1
  useless (users must be added again).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

DEFAULT_REALM = "crawld"
_REALM_RE = re.compile(r"[\x20-\x7e]{1,64}")  # printable ASCII


@dataclass(frozen=True)
class KdfParams:
    """scrypt cost for new Basic password hashes; stored with each hash, so verifying
    uses the hash's own parameters. The default takes ~16 MiB and a few tens of ms."""

    n: int = 2 ** 14
    r: int = 8
    p: int = 1
    dklen: int = 32


DEFAULT_KDF = KdfParams()


def valid_realm(realm: str) -> bool:
    """Whether ``realm`` can be quoted in a challenge as is: 1-64 printable ASCII
    characters, no quote, no backslash."""
    return bool(_REALM_RE.fullmatch(realm)) and '"' not in realm and "\\" not in realm


def b64(data: bytes) -> str:
    """Standard base64 as text (the file's encoding of salts and hashes)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """The bytes of ``b64``'s text; raises binascii.Error (a ValueError) if invalid."""
    return base64.b64decode(text.encode("ascii"), validate=True)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=max(64 * 1024 * 1024, 256 * n * r))


def hash_password(password: str, params: KdfParams = DEFAULT_KDF) -> dict[str, Any]:
    """A salted scrypt hash of ``password`` with its parameters, as stored in the file.
    Slow on purpose: not on the reactor thread."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password.encode("utf-8"), salt, params.n, params.r, params.p,
                     params.dklen)
    return {"alg": "scrypt", "n": params.n, "r": params.r, "p": params.p,
            "salt": b64(salt), "hash": b64(digest)}


def verify_password(password: str, record: Mapping[str, Any]) -> bool:
    """Whether ``password`` matches a ``hash_password`` record (constant-time compare).
    Slow on purpose: not on the reactor thread."""
    expected = unb64(record["hash"])
    got = _scrypt(password.encode("utf-8", "surrogateescape"), unb64(record["salt"]),
                  record["n"], record["r"], record["p"], len(expected))
    return hmac.compare_digest(got, expected)


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings (any characters: header values may hold
    non-ASCII, which ``hmac.compare_digest`` refuses for str)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


def md5_hex(text: str) -> str:
    """MD5 of ``text`` (UTF-8) in hex, as Digest computes it; not a password hash."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_ha1(user: str, realm: str, password: str) -> str:
    """RFC 7616 HA1 = MD5(user:realm:password), hex. Password-equivalent for ``realm``."""
    return md5_hex(f"{user}:{realm}:{password}")


def key_sha256(key: str) -> str:
    """The stored form of an API key: its SHA-256 in hex (any characters: a request may
    send non-ASCII, which simply matches nothing)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
