"""Authentication and authorization: API keys, users (HTTP Basic and Digest), two roles.

Pure logic: no reactor, no Klein, time comes from an injected clock. The API's endpoint
wrapper calls ``Authenticator.authenticate`` with the request's headers, then
``authorize(identity, required_role(method, path))``; ``crawld keys|users`` (keys.py)
edit the credentials file with the functions at the end of the file-format section.

Credentials live in ``<data-dir>/credentials.json`` (mode 0600, replaced atomically):

- **API keys** (``cwk_`` + 43 random URL-safe characters) are stored as their SHA-256:
  the key has 256 random bits, so a fast hash is enough to make a stolen file useless
  for logging in, and each request costs one hash. Only the first 12 characters (the
  ``id``) are kept in clear, to list and revoke keys.
- **Users** have a password stored twice, neither in clear: a salted scrypt hash for
  HTTP Basic, and the Digest ``HA1 = MD5(user:realm:password)`` for HTTP Digest (MD5,
  qop=auth, which is what ``requests.auth.HTTPDigestAuth`` and so scrapy-do-cl speak).
  **HA1 is password-equivalent for its realm**: whoever reads it can answer any Digest
  challenge of that realm as that user, without knowing the password. The file's mode
  and the data directory's permissions are what protect it; changing the realm makes
  every stored HA1 useless (users must be added again).

Failures never log a secret: no key, no password, no Authorization header, no part of
them; only the kind of credential, the user name and the client address.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import json
import math
import os
import posixpath
import re
import secrets
import stat
import tempfile
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence
from urllib.parse import unquote

from twisted.logger import Logger

from .errors import ConfigError, CrawldError, Forbidden

log = Logger(namespace="crawld.auth")

Clock = Callable[[], float]

READER = "reader"
OPERATOR = "operator"
ROLES = (READER, OPERATOR)
_RANK = {READER: 1, OPERATOR: 2}

MODES = ("none", "required")
CREDENTIALS_FILE = "credentials.json"
FORMAT_VERSION = 1
DEFAULT_REALM = "crawld"
KEY_PREFIX = "cwk_"
KEY_ID_LENGTH = len(KEY_PREFIX) + 8
USER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_REALM_RE = re.compile(r"[\x20-\x7e]{1,64}")  # printable ASCII; no quote or backslash
_HEX_RE = re.compile(r"[0-9a-f]+")


# -- errors ---------------------------------------------------------------------------
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


class TooManyAttempts(CrawldError):
    """The client failed to authenticate too often (429); ``retry_after`` in seconds."""

    code = 429

    def __init__(self, msg: str, retry_after: int) -> None:
        super().__init__(msg)
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, list[str]]:
        """Headers the response must carry, name -> values."""
        return {"Retry-After": [str(self.retry_after)]}


class CredentialsError(Exception):
    """A credentials change the CLI refuses (duplicate user, unknown key...)."""


# -- identities and roles -------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """Who made a request: ``kind`` is key, basic, digest or none (auth = none)."""

    kind: str
    name: str
    role: str
    key_id: Optional[str] = None

    def describe(self) -> str:
        """For messages and logs: never contains a secret."""
        if self.kind == "key":
            return f"key {self.key_id}" + (f" ({self.name!r})" if self.name else "")
        if self.kind == "none":
            return "anonymous (auth = none)"
        return f"user {self.name!r}"


ANONYMOUS = Identity("none", "anonymous", OPERATOR)

#: GET/HEAD paths that need the operator role although they change nothing. Each is a
#: regular expression matched (case-insensitively) against the whole percent-decoded
#: path, with the reason. Of the routes that exist today only job-posts.json is (status, the
#: listings, preview-schedule and get-log are read-only views the reader role is for);
#: the entries reserve the names of reads that must never be reader's:
#:
#: - project downloads: the source is the code that runs as crawld's user and often
#:   holds credentials (settings.py: API tokens, proxy and database passwords);
#: - credential listings: who may log in and with which role is reconnaissance;
#: - the effective configuration: paths, interpreter and limits of the host;
#: - job-posts.json: it hands each post out once, so reading it takes the posts away
#:   from the operator's own consumer.
#:
#: Everything that is not GET or HEAD needs operator (see ``required_role``).
OPERATOR_READS: tuple[tuple[str, str], ...] = (
    (r"/(download|get|export)-project(\.json|\.zip)?(/.*)?", "project source and settings"),
    (r"/(list-keys|list-users|credentials|whoami-all)(\.json)?(/.*)?", "credential data"),
    (r"/(config|settings)(\.json)?", "the daemon's configuration"),
    (r"/job-posts\.json", "reading consumes the posts"),
)
_OPERATOR_READS = tuple(re.compile(p, re.IGNORECASE) for p, _ in OPERATOR_READS)


def path_forms(path: str) -> set[str]:
    """The ways a router might read ``path``: raw, percent-decoded, slashes collapsed,
    dot segments resolved, trailing slash dropped. Matching any of them is stricter
    than matching only the one the router uses."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    forms = {path}
    for p in list(forms):
        forms.add(unquote(p, errors="replace"))
    for p in list(forms):
        collapsed = re.sub(r"/{2,}", "/", p)
        forms.update({collapsed, posixpath.normpath(collapsed) if collapsed else collapsed})
    for p in list(forms):
        if len(p) > 1 and p.endswith("/"):
            forms.add(p.rstrip("/"))
    return forms


def required_role(method: str, path: str) -> str:
    """The role a request needs: reader for GET and HEAD except ``OPERATOR_READS``,
    operator for every other method (POST changes state; OPTIONS and unknown methods
    are not reads crawld offers, so they get the strict answer)."""
    if method.upper() not in ("GET", "HEAD"):
        return OPERATOR
    forms = path_forms(path)
    if any(rx.fullmatch(p) for rx in _OPERATOR_READS for p in forms):
        return OPERATOR
    return READER


def authorize(identity: Identity, role_needed: str) -> None:
    """Raise Forbidden (403) unless ``identity``'s role includes ``role_needed``."""
    if _RANK.get(identity.role, 0) < _RANK[role_needed]:
        raise Forbidden(f"this needs the {role_needed} role; {identity.describe()} has "
                        f"the {identity.role} role")


# -- start-up rule --------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped) and ``localhost``; never resolves
    names, so any other name counts as reachable from the network."""
    h = host.strip().strip("[]").lower().rstrip(".")
    if h == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def resolve_mode(auth_mode: Optional[str], has_credentials: bool) -> str:
    """The mode in force: ``auth_mode`` when set; unset means ``required`` when
    credentials exist at start-up and ``none`` otherwise (so a fresh loopback install
    keeps working). Decided once at start: with ``none``, keys added later are not
    checked until a restart; with ``required``, they work at once (reload)."""
    if auth_mode is not None:
        if auth_mode not in MODES:
            raise ConfigError(f"auth: expected none or required, got {auth_mode!r}")
        return auth_mode
    return "required" if has_credentials else "none"


def must_refuse_start(listen_hosts: Iterable[str], auth_mode: Optional[str],
                      has_credentials: bool) -> Optional[str]:
    """Why the daemon must not start, or None.

    Refuses to listen on a non-loopback address when no authentication is configured:
    whoever can reach the API can run code as crawld's user. An explicit ``auth = none``
    is the operator's informed choice and is accepted (``start_warning`` says it loudly).
    ``auth = required`` without credentials is safe (everything gets 401) and only warned.
    """
    if auth_mode is not None and auth_mode not in MODES:
        return f"auth: expected none or required, got {auth_mode!r}"
    exposed = [h for h in listen_hosts if not is_loopback(h)]
    if not exposed or resolve_mode(auth_mode, has_credentials) == "required":
        return None
    if auth_mode == "none":
        return None
    return (f"refusing to listen on {', '.join(exposed)} without authentication: anyone "
            "who can reach the API could run code as this user. Either create credentials "
            "(crawld keys add --role operator, or crawld users add NAME --role operator) "
            "and set auth = required in [web], or listen on 127.0.0.1 only, or, if this "
            "network is trusted, set auth = none in [web] explicitly.")


def start_warning(listen_hosts: Iterable[str], auth_mode: Optional[str],
                  has_credentials: bool) -> Optional[str]:
    """A warning to log at start, or None: exposed with ``auth = none``, or
    ``required`` with no credentials (every request is refused until some are added)."""
    hosts = list(listen_hosts)
    exposed = [h for h in hosts if not is_loopback(h)]
    mode = resolve_mode(auth_mode, has_credentials)
    if mode == "none" and exposed:
        return (f"authentication is off (auth = none) on {', '.join(exposed)}: anyone who "
                "can reach the API can run code as this user")
    if mode == "required" and not has_credentials:
        return ("auth = required but there are no API keys or users: every request is "
                "refused (401) until one is added with crawld keys add / crawld users add")
    return None


# -- password hashing -----------------------------------------------------------------
@dataclass(frozen=True)
class KdfParams:
    """scrypt cost for new Basic password hashes; stored with each hash, so verifying
    uses the hash's own parameters. The default takes ~16 MiB and a few tens of ms."""

    n: int = 2 ** 14
    r: int = 8
    p: int = 1
    dklen: int = 32


DEFAULT_KDF = KdfParams()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=max(64 * 1024 * 1024, 256 * n * r))


def hash_password(password: str, params: KdfParams = DEFAULT_KDF) -> dict[str, Any]:
    """A salted scrypt hash of ``password`` with its parameters, as stored in the file."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password.encode("utf-8"), salt, params.n, params.r, params.p,
                     params.dklen)
    return {"alg": "scrypt", "n": params.n, "r": params.r, "p": params.p,
            "salt": _b64(salt), "hash": _b64(digest)}


def verify_password(password: str, record: Mapping[str, Any]) -> bool:
    """Whether ``password`` matches a ``hash_password`` record (constant-time compare)."""
    expected = _unb64(record["hash"])
    got = _scrypt(password.encode("utf-8", "surrogateescape"), _unb64(record["salt"]),
                  record["n"], record["r"], record["p"], len(expected))
    return hmac.compare_digest(got, expected)


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two strings (any characters: header values may hold
    non-ASCII, which ``hmac.compare_digest`` refuses for str)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_ha1(user: str, realm: str, password: str) -> str:
    """RFC 7616 HA1 = MD5(user:realm:password), hex. Password-equivalent for ``realm``."""
    return _md5(f"{user}:{realm}:{password}")


# -- the file -------------------------------------------------------------------------
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
    (password-equivalent for that realm; see the module docstring)."""

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
        salt, digest = _unb64(rec["salt"]), _unb64(rec["hash"])
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
        _check(k.get("role") in ROLES, f"{who}: role must be reader or operator")
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


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise CredentialsError(f"role must be reader or operator, not {role!r}")


def add_key(path: str, role: str, name: str = "", clock: Clock = time.time
            ) -> tuple[str, ApiKey]:
    """Create an API key; returns (the key, to show once; its stored record)."""
    _check_role(role)
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
                        hashlib.sha256(key.encode("ascii")).hexdigest(), _now_iso(clock))
        made.append((key, record))
        return replace(creds, keys=creds.keys + (record,))

    update_credentials(path, change)
    return made[0]


def revoke_key(path: str, ident: str) -> ApiKey:
    """Remove the key whose id (or full key, or unique name) is ``ident``."""
    removed: list[ApiKey] = []

    def change(creds: CredentialSet) -> CredentialSet:
        sha = hashlib.sha256(ident.encode("utf-8")).hexdigest()
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
    if not _REALM_RE.fullmatch(realm) or '"' in realm or "\\" in realm:
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

    def has_any(self) -> bool:
        """Whether there is at least one key or user."""
        return bool(self.current())


# -- failed-attempt limiting ----------------------------------------------------------
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

    def retry_after(self, client: str) -> Optional[int]:
        """Seconds until ``client`` may try again, or None if it is not locked out."""
        times = self._failures.get(client_bucket(client))
        if not times or len(times) < self.max_failures:
            return None
        left = times[0] + self.window - self._clock()
        return max(1, math.ceil(left)) if left > 0 else None

    def check(self, client: str) -> None:
        """Raise TooManyAttempts if ``client`` is locked out."""
        wait = self.retry_after(client)
        if wait is not None:
            raise TooManyAttempts(f"too many failed authentication attempts; retry in "
                                  f"{wait} s", wait)

    def failed(self, client: str) -> None:
        """Count one failed attempt of ``client``."""
        bucket = client_bucket(client)
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
                           window=self.window, wait=self.retry_after(client))

    def __len__(self) -> int:
        return len(self._failures)


# -- Digest nonces --------------------------------------------------------------------
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


_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))'
                       r"\s*(?:,|$)")


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


# -- the request check ----------------------------------------------------------------
class _Failed(Exception):
    """A wrong credential: counted, logged with ``reason`` (which holds no secret)."""

    def __init__(self, reason: str, msg: str = "invalid credentials") -> None:
        super().__init__(reason)
        self.reason = reason
        self.msg = msg


class _Stale(Exception):
    """A correct Digest response on a nonce that is expired, foreign or replayed."""


class Authenticator:
    """Checks requests against the credentials (see ``authenticate``).

    ``secret`` keys the Digest nonces, the opaque value and the Basic success cache;
    by default it is random per process, so a restart makes old nonces stale (clients
    retry transparently). ``kdf`` is the cost of the dummy hash checked for unknown
    Basic users (so that timing does not tell which users exist): set it to the cost
    the users were created with.
    """

    def __init__(self, credentials: Credentials, *, mode: str = "required",
                 realm: str = DEFAULT_REALM, clock: Clock = time.time,
                 limiter: Optional[FailureLimiter] = None, nonce_lifetime: float = 300.0,
                 secret: Optional[bytes] = None, kdf: KdfParams = DEFAULT_KDF,
                 basic_cache_ttl: float = 300.0, cache_size: int = 1000,
                 max_tracked_nonces: int = 10000, logger: Optional[Logger] = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"auth: expected none or required, got {mode!r}")
        if not _REALM_RE.fullmatch(realm) or '"' in realm or "\\" in realm:
            raise ConfigError(f"auth realm: printable ASCII without quotes, got {realm!r}")
        self.credentials = credentials
        self.mode = mode
        self.realm = realm
        self._clock = clock
        self._log = logger or log
        self.limiter = limiter or FailureLimiter(clock, logger=self._log)
        self.nonce_lifetime = nonce_lifetime
        self._secret = secret or secrets.token_bytes(32)
        self._opaque = self._mac(b"opaque")[:32]
        self._kdf = kdf
        self._dummy: Optional[dict[str, Any]] = None
        self._cache_ttl = basic_cache_ttl
        self._cache_size = cache_size
        self._basic_ok: OrderedDict[bytes, float] = OrderedDict()
        self._nonces = _NonceCounts(nonce_lifetime, max_tracked_nonces)

    def _mac(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    # -- challenges -------------------------------------------------------------------
    def new_nonce(self) -> str:
        """A fresh Digest nonce: ``<time hex>.<random>.<HMAC of both>``."""
        body = f"{int(self._clock()):x}.{secrets.token_hex(8)}"
        return f"{body}.{self._mac(body.encode('ascii'))[:32]}"

    def _nonce_time(self, nonce: str) -> Optional[int]:
        """When this daemon issued ``nonce``, or None if it did not."""
        parts = nonce.split(".")
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{1,12}", parts[0]):
            return None
        body = f"{parts[0]}.{parts[1]}"
        if not _same(self._mac(body.encode("utf-8", "surrogateescape"))[:32], parts[2]):
            return None
        return int(parts[0], 16)

    def challenges(self, stale: bool = False) -> list[str]:
        """``WWW-Authenticate`` values: Digest (new nonce) first, then Basic."""
        digest = (f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, '
                  f'nonce="{self.new_nonce()}", opaque="{self._opaque}"')
        if stale:
            digest += ", stale=true"
        return [digest, f'Basic realm="{self.realm}", charset="UTF-8"']

    # -- the check --------------------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str], query_key: Optional[str],
                     method: str, uri: str, client: str) -> Identity:
        """Who sent this request, or raise Unauthorized (401) / TooManyAttempts (429).

        ``headers`` maps lower-case names to values; ``query_key`` is the ``key`` query
        parameter; ``uri`` is the request target as sent (path and query, Twisted's
        ``request.uri``), which a Digest ``uri`` must equal; ``client`` is the peer
        address. Credentials are taken from the first present of: ``Authorization``
        (Bearer, Basic or Digest), ``X-Api-Key``, ``query_key``. With ``mode = none``
        everyone is ANONYMOUS (an operator). A request without credentials gets 401
        without counting as a failure (it is how Digest starts); wrong ones count.
        """
        if self.mode == "none":
            return ANONYMOUS
        self.limiter.check(client)
        creds = self.credentials.current()
        scheme, _, rest = (headers.get("authorization") or "").strip().partition(" ")
        scheme = scheme.lower()
        try:
            if scheme == "bearer":
                return self._key(creds, rest.strip(), "Bearer")
            if scheme == "basic":
                return self._basic(creds, rest.strip())
            if scheme == "digest":
                return self._digest(creds, rest, method, uri)
            if headers.get("x-api-key"):
                return self._key(creds, headers["x-api-key"].strip(), "X-Api-Key")
            if query_key:
                return self._key(creds, query_key, "key parameter")
        except _Failed as failure:
            self.limiter.failed(client)
            self._log.warn("authentication failed from {client}: {reason}",
                           client=client, reason=failure.reason)
            raise Unauthorized(failure.msg, self.challenges()) from None
        except _Stale:
            raise Unauthorized("the Digest nonce is stale; retry with the new one",
                               self.challenges(stale=True)) from None
        raise Unauthorized("authentication required: an API key (Authorization: Bearer, "
                           "X-Api-Key or ?key=) or a user (HTTP Basic or Digest)",
                           self.challenges())

    def _key(self, creds: CredentialSet, key: str, where: str) -> Identity:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        found: Optional[ApiKey] = None
        for record in creds.keys:  # no early exit: the time does not depend on which
            if hmac.compare_digest(record.sha256, digest):
                found = record
        if found is None:
            raise _Failed(f"unknown API key ({where})")
        return Identity("key", found.name, found.role, found.id)

    def _basic(self, creds: CredentialSet, token: str) -> Identity:
        try:
            text = base64.b64decode(token.encode("ascii"), validate=True).decode("utf-8")
        except (ValueError, UnicodeError, binascii.Error):
            raise _Failed("malformed Basic credentials") from None
        name, sep, password = text.partition(":")
        if not sep:
            raise _Failed("malformed Basic credentials (no colon)")
        user = creds.users.get(name)
        if user is None:
            if self._dummy is None:
                self._dummy = hash_password(secrets.token_urlsafe(16), self._kdf)
            verify_password(password, self._dummy)  # same cost as a known user
            raise _Failed(f"unknown user {name[:64]!r} (Basic)")
        cache_key = hmac.new(self._secret, "\0".join(
            (name, password, user.password["hash"])).encode("utf-8", "surrogateescape"),
            hashlib.sha256).digest()
        now = self._clock()
        expires = self._basic_ok.get(cache_key)
        if expires is None or expires < now:
            if not verify_password(password, user.password):
                raise _Failed(f"wrong password for user {name!r} (Basic)")
            # scrypt costs tens of ms on the reactor thread: remember the success, keyed
            # by an HMAC (no password kept) that includes the stored hash, so a password
            # change or removal invalidates it.
            self._basic_ok.pop(cache_key, None)
            self._basic_ok[cache_key] = now + self._cache_ttl
            while len(self._basic_ok) > self._cache_size:
                self._basic_ok.popitem(last=False)
        return Identity("basic", user.name, user.role)

    def _digest(self, creds: CredentialSet, text: str, method: str, uri: str) -> Identity:
        try:
            p = parse_auth_params(text)
        except ValueError as exc:
            raise _Failed(f"malformed Digest header: {exc}") from None
        missing = [n for n in ("username", "realm", "nonce", "uri", "response", "qop",
                               "nc", "cnonce") if not p.get(n)]
        if missing:
            raise _Failed(f"Digest header without {', '.join(missing)}")
        name = p["username"]
        if p.get("algorithm", "MD5").upper() != "MD5" or p["qop"] != "auth":
            raise _Failed(f"Digest for {name[:64]!r}: only algorithm MD5 with qop auth")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", p["nc"]):
            raise _Failed(f"Digest for {name[:64]!r}: bad nc")
        user = creds.users.get(name)
        if user is None:
            raise _Failed(f"unknown user {name[:64]!r} (Digest)")
        if p["realm"] != self.realm:
            raise _Failed(f"Digest for {name!r}: realm {p['realm'][:64]!r} is not "
                          f"{self.realm!r}")
        if user.digest_ha1 is None or user.digest_realm != self.realm:
            raise _Failed(f"user {name!r} has no Digest credentials for realm "
                          f"{self.realm!r} (add the user again)")
        if p["uri"] != uri:
            raise _Failed(f"Digest for {name!r}: uri {p['uri'][:200]!r} is not the "
                          "request's", "the Digest uri does not match the request")
        ha2 = _md5(f"{method}:{p['uri']}")
        expected = _md5(f"{user.digest_ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
        if not _same(expected, p["response"].lower()):
            raise _Failed(f"wrong password for user {name!r} (Digest)")
        # The response proves the password; only the nonce may be unusable: stale.
        issued = self._nonce_time(p["nonce"])
        now = self._clock()
        if (issued is None or not issued - 5 <= now <= issued + self.nonce_lifetime
                or not _same(p.get("opaque", self._opaque), self._opaque)
                or not self._nonces.use(p["nonce"], int(p["nc"], 16), issued, now)):
            raise _Stale()
        return Identity("digest", user.name, user.role)


def redact_uri(uri: str) -> str:
    """``uri`` with the value of any ``key`` query parameter replaced, for access logs."""
    return re.sub(r"([?&;]key=)[^&;#]*", r"\1REDACTED", uri)
