"""The credentials file: its format, atomic edits for ``crawld keys|users`` (keys.py),
and ``Credentials``, the daemon's view of it, reloaded when it changes.

Credentials live in ``<data-dir>/credentials.json`` (mode 0600, replaced atomically):
API keys (``cwk_`` + 43 random URL-safe characters) as their SHA-256, with only the
first 12 characters (the ``id``) in clear, to list and revoke keys; users with a scrypt
hash for Basic and the Digest HA1 of one realm (see passwords.py for why each). The
file's mode and the data directory's permissions are what protect the HA1s.
"""
from __future__ import annotations

import binascii
import contextlib
import json
import math
import os
import re
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Optional

from twisted.logger import Logger

from ..errors import ConfigError
from .passwords import (DEFAULT_KDF, DEFAULT_REALM, KdfParams, digest_ha1, hash_password,
                        key_sha256, unb64, valid_realm)
from .roles import KEY_ROLES, ROLES, Clock

log = Logger(namespace="crawld.auth")

CREDENTIALS_FILE = "credentials.json"
FORMAT_VERSION = 1
KEY_PREFIX = "cwk_"
KEY_ID_LENGTH = len(KEY_PREFIX) + 8
USER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HEX_RE = re.compile(r"[0-9a-f]+")


class CredentialsError(Exception):
    """A credentials change the CLI refuses (duplicate user, unknown key...)."""


@dataclass(frozen=True)
class ApiKey:
    """A stored API key: its SHA-256 (hex), never the key; ``id`` is its first 12 chars."""

    id: str
    name: str
    role: str
    sha256: str
    created: str


@dataclass(frozen=True)
class User:
    """A stored user: a scrypt record for Basic and, for Digest, the HA1 of one realm
    (password-equivalent for that realm; see passwords.py)."""

    name: str
    role: str
    password: Mapping[str, Any]
    digest_realm: Optional[str]
    digest_ha1: Optional[str]
    created: str


@dataclass(frozen=True)
class CredentialSet:
    """One snapshot of the credentials file."""

    keys: tuple[ApiKey, ...] = ()
    users: Mapping[str, User] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.keys or self.users)


def credentials_path(data_dir: str) -> str:
    """Where the credentials file of a data directory is."""
    return os.path.join(data_dir, CREDENTIALS_FILE)


def _now_iso(clock: Clock) -> str:
    return datetime.fromtimestamp(clock(), timezone.utc).isoformat(timespec="seconds")


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(what)


def _parse_password(rec: Any, who: str) -> dict[str, Any]:
    _check(isinstance(rec, dict) and rec.get("alg") == "scrypt",
           f"{who}: password must be an scrypt record")
    n, r, p = rec.get("n"), rec.get("r"), rec.get("p")
    _check(all(type(v) is int for v in (n, r, p)), f"{who}: n, r, p must be integers")
    _check(1 < n <= 2 ** 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16,
           f"{who}: scrypt parameters out of range")
    try:
        salt, digest = unb64(rec["salt"]), unb64(rec["hash"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise ValueError(f"{who}: salt and hash must be base64") from None
    _check(len(salt) >= 8 and 16 <= len(digest) <= 64, f"{who}: salt or hash too short")
    return {"alg": "scrypt", "n": n, "r": r, "p": p, "salt": rec["salt"], "hash": rec["hash"]}


def parse_credentials(data: Any) -> CredentialSet:
    """Validate the file's JSON; raises ValueError naming the bad entry."""
    _check(isinstance(data, dict), "not a JSON object")
    _check(data.get("version") == FORMAT_VERSION, f"unknown version {data.get('version')!r}")
    keys: list[ApiKey] = []
    for i, k in enumerate(data.get("keys") or []):
        who = f"keys[{i}]"
        _check(isinstance(k, dict), f"{who}: not an object")
        _check(isinstance(k.get("id"), str) and k["id"].startswith(KEY_PREFIX),
               f"{who}: bad id")
        _check(k.get("role") in KEY_ROLES,
               f"{who}: role must be reader, operator or worker")
        _check(isinstance(k.get("sha256"), str) and len(k["sha256"]) == 64
               and bool(_HEX_RE.fullmatch(k["sha256"])), f"{who}: sha256 must be 64 hex")
        keys.append(ApiKey(k["id"], str(k.get("name") or ""), k["role"], k["sha256"],
                           str(k.get("created") or "")))
    users: dict[str, User] = {}
    for i, u in enumerate(data.get("users") or []):
        who = f"users[{i}]"
        _check(isinstance(u, dict), f"{who}: not an object")
        name = u.get("name")
        _check(isinstance(name, str) and bool(USER_NAME_RE.fullmatch(name)),
               f"{who}: bad name")
        _check(name not in users, f"{who}: duplicate user {name!r}")
        _check(u.get("role") in ROLES, f"{who}: role must be reader or operator")
        digest = u.get("digest")
        realm = ha1 = None
        if digest is not None:
            _check(isinstance(digest, dict) and isinstance(digest.get("realm"), str)
                   and isinstance(digest.get("ha1"), str) and len(digest["ha1"]) == 32
                   and bool(_HEX_RE.fullmatch(digest["ha1"])),
                   f"{who}: digest must have a realm and a 32-hex ha1")
            realm, ha1 = digest["realm"], digest["ha1"]
        users[name] = User(name, u["role"], _parse_password(u.get("password"), who),
                           realm, ha1, str(u.get("created") or ""))
    return CredentialSet(tuple(keys), users)


def dump_credentials(creds: CredentialSet) -> dict[str, Any]:
    """The file's JSON for ``creds``."""
    return {
        "version": FORMAT_VERSION,
        "keys": [{"id": k.id, "name": k.name, "role": k.role, "sha256": k.sha256,
                  "created": k.created} for k in creds.keys],
        "users": [{"name": u.name, "role": u.role, "created": u.created,
                   "password": dict(u.password),
                   **({"digest": {"realm": u.digest_realm, "ha1": u.digest_ha1}}
                      if u.digest_ha1 else {})}
                  for u in creds.users.values()],
    }


def _read_fd(fd: int) -> tuple[CredentialSet, os.stat_result]:
    st = os.fstat(fd)
    with os.fdopen(fd, "r", encoding="utf-8") as fh:
        text = fh.read()
    return parse_credentials(json.loads(text)), st


def read_credentials(path: str) -> CredentialSet:
    """The file's credentials; an absent file has none. Raises ConfigError if invalid."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return CredentialSet()
    try:
        return _read_fd(fd)[0]
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid credentials file: {exc}") from None


def write_credentials(path: str, creds: CredentialSet) -> None:
    """Replace the file atomically (temp file in the same directory, fsync, rename);
    mode 0600 whatever the umask. Creates the data directory (0750) if needed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o750, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".credentials.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dump_credentials(creds), fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Serialize read-modify-write cycles of concurrent CLI runs (flock on a side file)."""
    import fcntl

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o750, exist_ok=True)
    fd = os.open(path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_credentials(path: str, change: Callable[[CredentialSet], CredentialSet]
                       ) -> CredentialSet:
    """Read, ``change``, write back, under a lock; returns the new set."""
    with _locked(path):
        new = change(read_credentials(path))
        write_credentials(path, new)
        return new


def _check_role(role: str, roles: tuple[str, ...] = ROLES) -> None:
    if role not in roles:
        raise CredentialsError(f"role must be {', '.join(roles[:-1])} or {roles[-1]}, "
                               f"not {role!r}")


def add_key(path: str, role: str, name: str = "", clock: Clock = time.time
            ) -> tuple[str, ApiKey]:
    """Create an API key; returns (the key, to show once; its stored record). Keys may
    also have the worker role (a worker host's key, issue 14); users may not."""
    _check_role(role, KEY_ROLES)
    if len(name) > 64 or any(not ch.isprintable() for ch in name):
        raise CredentialsError("key names are at most 64 printable characters")
    made: list[tuple[str, ApiKey]] = []

    def change(creds: CredentialSet) -> CredentialSet:
        taken = {k.id for k in creds.keys}
        while True:
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            if key[:KEY_ID_LENGTH] not in taken:
                break
        record = ApiKey(key[:KEY_ID_LENGTH], name, role,
                        key_sha256(key), _now_iso(clock))
        made.append((key, record))
        return replace(creds, keys=creds.keys + (record,))

    update_credentials(path, change)
    return made[0]


def revoke_key(path: str, ident: str) -> ApiKey:
    """Remove the key whose id (or full key, or unique name) is ``ident``."""
    removed: list[ApiKey] = []

    def change(creds: CredentialSet) -> CredentialSet:
        sha = key_sha256(ident)
        found = [k for k in creds.keys if k.id == ident or k.sha256 == sha]
        if not found:
            found = [k for k in creds.keys if k.name and k.name == ident]
            if len(found) > 1:
                raise CredentialsError(f"{len(found)} keys are named {ident!r}; "
                                       "revoke by id (crawld keys list)")
        if not found:
            raise CredentialsError(f"no key {ident!r} (see crawld keys list)")
        removed.append(found[0])
        return replace(creds, keys=tuple(k for k in creds.keys if k is not found[0]))

    update_credentials(path, change)
    return removed[0]


def add_user(path: str, name: str, password: str, role: str, *,
             realm: str = DEFAULT_REALM, kdf: KdfParams = DEFAULT_KDF,
             replace_existing: bool = False, clock: Clock = time.time) -> User:
    """Add (or with ``replace_existing``, replace) a user for Basic and Digest."""
    _check_role(role)
    if not USER_NAME_RE.fullmatch(name):
        raise CredentialsError("user names are 1-64 of A-Z a-z 0-9 . _ @ -, starting "
                               "with a letter or digit")
    if not password:
        raise CredentialsError("the password may not be empty")
    if not valid_realm(realm):
        raise CredentialsError(f"bad realm {realm!r}")
    user = User(name, role, hash_password(password, kdf), realm,
                digest_ha1(name, realm, password), _now_iso(clock))

    def change(creds: CredentialSet) -> CredentialSet:
        if name in creds.users and not replace_existing:
            raise CredentialsError(f"user {name!r} exists (use --replace to change it)")
        users = dict(creds.users)
        users[name] = user
        return replace(creds, users=users)

    update_credentials(path, change)
    return user


def remove_user(path: str, name: str) -> User:
    """Remove a user; raises CredentialsError if there is none of that name."""
    removed: list[User] = []

    def change(creds: CredentialSet) -> CredentialSet:
        if name not in creds.users:
            raise CredentialsError(f"no user {name!r} (see crawld users list)")
        removed.append(creds.users[name])
        return replace(creds, users={n: u for n, u in creds.users.items() if n != name})

    update_credentials(path, change)
    return removed[0]


class Credentials:
    """The credentials file as the daemon sees it, reloaded when it changes.

    ``current()`` looks at the file at most once per ``check_interval`` seconds of the
    injected clock (one fstat), and reads it again only when its inode, size or mtime
    changed: keys added or revoked by the CLI take effect within a second, no restart.
    A file that becomes invalid keeps the previous credentials (and logs an error); a
    file that disappears means no credentials.
    """

    def __init__(self, path: str, clock: Clock = time.time, check_interval: float = 1.0,
                 logger: Optional[Logger] = None) -> None:
        self.path = path
        self._clock = clock
        self._interval = check_interval
        self._log = logger or log
        self._set = CredentialSet()
        self._sig: Optional[tuple[int, int, int]] = None
        self._checked = -math.inf
        self._loaded = False

    def load(self) -> CredentialSet:
        """Read the file now; raises ConfigError if it is invalid (stops start-up)."""
        self._checked = self._clock()
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self._set, self._sig = CredentialSet(), None
            self._loaded = True
            return self._set
        try:
            new, st = _read_fd(fd)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: invalid credentials file: {exc}") from None
        if st.st_mode & 0o077:
            self._log.warn("{path} is readable by group or others (mode {mode:o}); it "
                           "holds password-equivalent hashes: chmod 600 it",
                           path=self.path, mode=stat.S_IMODE(st.st_mode))
        self._set, self._sig = new, (st.st_ino, st.st_size, st.st_mtime_ns)
        self._loaded = True
        return new

    def current(self) -> CredentialSet:
        """The credentials in force, reloaded first if the file changed."""
        now = self._clock()
        if not self._loaded:  # load() was not called at start: do not fail requests
            try:
                self.load()
            except ConfigError as exc:
                self._log.error("no credentials in force: {error}", error=str(exc))
                self._loaded = True
        elif now - self._checked >= self._interval:
            self._checked = now
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                if self._sig is not None:
                    self._log.info("{path} is gone: no credentials", path=self.path)
                self._set, self._sig = CredentialSet(), None
                return self._set
            if (st.st_ino, st.st_size, st.st_mtime_ns) != self._sig:
                previous = self._set
                try:
                    self.load()
                except (ConfigError, OSError) as exc:
                    self._log.error("keeping the previous credentials: {error}",
                                    error=str(exc))
                    self._set = previous
                    self._sig = (st.st_ino, st.st_size, st.st_mtime_ns)
                else:
                    self._log.info("reloaded {path}: {keys} keys, {users} users",
                                   path=self.path, keys=len(self._set.keys),
                                   users=len(self._set.users))
        return self._set
