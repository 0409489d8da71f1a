"""The checks both faces (the native API and the scrapyd listener) make of a request
before its route runs: who sent it and may they (``authenticate``), does its Host name
this server (DNS rebinding, with authentication off), does a browser say it comes from
another site, and CORS for the origins the operator listed. No route, no JSON: each
face turns the errors raised here into its own answers.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred

from . import auth
from .errors import Forbidden


@lru_cache(maxsize=1024)
def _required_role(method: str, path: str) -> str:
    """auth.required_role, kept per (method, path): its regexes run once per path."""
    return auth.required_role(method, path)


def allow_origin(request: Any, allowed: frozenset[str]) -> bool:
    """CORS for the origins the operator listed (``[web] allowed-origins``), none else.

    Adds the response headers that let a dashboard on such an origin read responses
    (credentials included); returns whether the request's Origin is one of them."""
    origin = request.getHeader(b"origin")
    if origin is None or origin.decode("latin-1").strip().lower() not in allowed:
        return False
    request.setHeader(b"Access-Control-Allow-Origin", origin.strip())
    request.setHeader(b"Access-Control-Allow-Credentials", b"true")
    request.setHeader(b"Vary", b"Origin")
    return True


def host_allowed(request: Any, names: frozenset[str]) -> bool:
    """Whether the Host header names this server: an IP literal, localhost, or one of
    ``[web] hostnames``. A DNS-rebinding page reaches 127.0.0.1 under its own name."""
    return _host_name_allowed(request.getHeader(b"host") or b"", names)


@lru_cache(maxsize=256)
def _host_name_allowed(value: bytes, names: frozenset[str]) -> bool:
    """``host_allowed`` for one Host value, kept (an IP literal is parsed once)."""
    raw = value.decode("latin-1").strip().lower()
    host = raw[1:raw.index("]")] if raw.startswith("[") and "]" in raw else raw.split(":")[0]
    if host in ("localhost", "localhost.") or host in names:
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def refuse_cross_site(request: Any) -> None:
    """Refuse a state-changing request that a browser says comes from another site.

    A web page can POST forms to 127.0.0.1 without any CORS approval; since pushing a
    project runs code, such requests must not reach the API. curl and scrapy-do-cl send
    neither header and are unaffected.
    """
    fetch_site = request.getHeader(b"sec-fetch-site")
    if fetch_site is not None and fetch_site.strip().lower() == b"cross-site":
        raise Forbidden("cross-site requests may not change anything (Sec-Fetch-Site)")
    origin = request.getHeader(b"origin")
    if origin is not None:
        host = (request.getHeader(b"host") or b"").strip().lower()
        _, _, origin_host = origin.strip().lower().partition(b"://")
        if origin_host != host:
            raise Forbidden("cross-origin requests may not change anything (Origin "
                            f"{origin.decode('latin-1')!r} is not this server)")


def identify(authenticator: Any, trusted_proxies: tuple[Any, ...], request: Any,
             query_key: bool = True) -> Any:
    """Who sent ``request``: the authenticator's answer from the request's credentials
    (an Identity, or a Deferred of one; it raises or fails with 401, 429 or 503).
    ``query_key`` as for ``authenticate``."""
    headers = {}
    for name in (b"authorization", b"x-api-key"):  # all the authenticator reads
        values = request.requestHeaders.getRawHeaders(name)
        if values:
            headers[name.decode("ascii")] = values[-1].decode("latin-1")
    uri = request.uri.decode("latin-1")
    # the URL's key, never the body's
    query = parse_qs(urlsplit(uri).query).get("key") if query_key and "?" in uri else None
    return authenticator.authenticate(headers, query[0] if query else None,
                                      request.method.decode("ascii", "replace"), uri,
                                      auth.client_address(request, trusted_proxies))


def authenticate(authenticator: Any, trusted_proxies: tuple[Any, ...], request: Any,
                 query_key: bool = True) -> Optional[Deferred]:
    """Who is asking, and may they: raises (or fails with) 401 with challenges, 429 or
    403. ``authenticator`` is an ``auth.Authenticator``; ``trusted_proxies`` are the
    peers whose X-Forwarded-For is believed; ``query_key``: an API key may come as the
    URL's ``key`` parameter (not on the scrapyd listener, where every parameter a
    schedule does not know is a spider argument).

    The authenticator may answer at once or later (a password hash checked in a
    thread). At once: this returns None once the identity has the role needed; later:
    a Deferred that fires with None then. (No Deferred on the first path: status.json
    is polled hard, and each one costs.)
    """
    if authenticator.mode == "none":
        return None  # everyone is the anonymous operator, who may do anything
    role = _required_role(request.method.decode("ascii", "replace"),
                          request.path.decode("latin-1"))
    identity = identify(authenticator, trusted_proxies, request, query_key)
    if isinstance(identity, Deferred):
        return identity.addCallback(auth.authorize, role)
    auth.authorize(identity, role)
    return None


def let_in(request: Any, checked: Optional[Deferred]) -> Optional[Deferred]:
    """Mark ``request`` ``authenticated`` once ``checked`` (``authenticate``'s answer:
    None, or a Deferred) passes: a channel's gate decided it on its headers, and its
    route need not ask again (a Digest nonce count is accepted once, and a password
    need not be checked twice). Returns what the gate returns."""
    if checked is None:
        request.authenticated = True
        return None

    def passed(_: Any) -> None:
        request.authenticated = True
    return checked.addCallback(passed)


#: A request with this header (any value) gets its 401 without ``WWW-Authenticate``:
#: the dashboard asks for credentials itself, and a Basic or Digest challenge would
#: make the browser pop its own login dialog over the page (``X-Crawld-Client:
#: dashboard``, which the page sends with every call).
QUIET_HEADER = b"x-crawld-client"


def answer_headers(request: Any, error: Any) -> dict[str, list[Any]]:
    """The headers ``error`` adds to its answer (its ``response_headers``: the
    challenges of a 401, a 429's Retry-After...), without ``WWW-Authenticate`` for a
    request with ``QUIET_HEADER``. ``request`` may be None (no request yet)."""
    extra = getattr(error, "response_headers", None)
    found = extra() if extra else {}
    if request is not None and request.requestHeaders.hasHeader(QUIET_HEADER):
        found = {k: v for k, v in found.items() if k.lower() != "www-authenticate"}
    return found
