"""Who a request is and what it may do: roles, ``Identity``, the role a request needs,
the auth mode and the start-up rule (refuse to listen beyond loopback without auth).

Pure functions over values: no file, no clock, no reactor.
"""
from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional
from urllib.parse import unquote

from ..errors import ConfigError, Forbidden

#: The injected time source of the package: seconds since the epoch (``reactor.seconds``).
Clock = Callable[[], float]

READER = "reader"
OPERATOR = "operator"
#: A worker host's key (``crawld keys add --role worker``, issue 14): it may call the
#: cluster's routes (/cluster/*) and nothing else, and only it may call them.
WORKER = "worker"
ROLES = (READER, OPERATOR)            # users' roles (people log in; workers do not)
KEY_ROLES = (READER, OPERATOR, WORKER)
_RANK = {READER: 1, OPERATOR: 2}
#: The paths of the cluster's routes (every form of a request path is checked).
CLUSTER_PREFIX = "/cluster/"

MODES = ("none", "required")


@dataclass(frozen=True)
class Identity:
    """Who made a request: ``kind`` is key, basic, digest, session (a user who logged in
    with POST /login.json) or none (auth = none)."""

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
    """The role a request needs: worker for the cluster's routes (/cluster/*, however
    the path is spelled), reader for GET and HEAD except ``OPERATOR_READS``, operator
    for every other method (POST changes state; OPTIONS and unknown methods are not
    reads crawld offers, so they get the strict answer)."""
    forms = path_forms(path)
    if any(p.lower().startswith(CLUSTER_PREFIX) or p.lower() == CLUSTER_PREFIX[:-1]
           for p in forms):
        return WORKER
    if method.upper() not in ("GET", "HEAD"):
        return OPERATOR
    if any(rx.fullmatch(p) for rx in _OPERATOR_READS for p in forms):
        return OPERATOR
    return READER


def authorize(identity: Identity, role_needed: str) -> None:
    """Raise Forbidden (403) unless ``identity``'s role includes ``role_needed``. The
    worker role is apart: it is needed for /cluster/* and gives nothing else."""
    if role_needed == WORKER or identity.role == WORKER:
        if identity.role != role_needed:
            raise Forbidden(
                "only worker keys may call /cluster/*" if role_needed == WORKER else
                f"{identity.describe()} has the worker role: it may call /cluster/* only")
        return
    if _RANK.get(identity.role, 0) < _RANK[role_needed]:
        raise Forbidden(f"this needs the {role_needed} role; {identity.describe()} has "
                        f"the {identity.role} role")


# -- modes and the start-up rule ------------------------------------------------------
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
