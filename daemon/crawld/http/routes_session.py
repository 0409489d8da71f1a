"""Sessions of the dashboard: log in with a user's password once, log out, who am I.

``POST /login.json`` checks ``user`` and ``password`` through the same checker as
HTTP Basic (scrypt in a thread, bounded, counted by the failed-attempt limiter) and
answers a session token, which the page then sends as ``Authorization: Bearer``: a
page that polls never sends the password again (auth/sessions.py). ``POST
/logout.json`` ends the session the request carries. ``GET /whoami.json`` tells the
page whether authentication is on and, when the request carries credentials, whose
they are and their role, so that it shows a login form or hides what a reader may not
do. The three are served without credentials (``public``): they look at them
themselves. Cross-site POSTs are refused as for every other POST (a page elsewhere
cannot log a browser in or out).
"""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, inlineCallbacks

from .. import auth, guards
from ..errors import BadRequest
from .helpers import Router, arg
from .services import Services


def _who(s: Services, identity: Optional[Any]) -> dict[str, Any]:
    """whoami.json's keys for ``identity`` (None: no credentials were sent)."""
    return {"auth": s.authenticator.mode,
            "name": identity.name if identity else None,
            "role": identity.role if identity else None,
            "kind": identity.kind if identity else None,
            "session-ttl": s.authenticator.session_ttl}


def whoami(s: Services, request: Any) -> Any:
    """Whether authentication is on, and whose the request's credentials are (checked:
    wrong ones are a 401). Without credentials, ``name`` and ``role`` are null."""
    if s.authenticator.mode == "none":
        return _who(s, auth.ANONYMOUS)
    headers = request.requestHeaders
    if not (headers.hasHeader(b"authorization") or headers.hasHeader(b"x-api-key")
            or b"key" in request.args):
        return _who(s, None)
    found = guards.identify(s.authenticator, s.web.trusted_proxies, request)
    if isinstance(found, Deferred):
        return found.addCallback(lambda identity: _who(s, identity))
    return _who(s, found)


@inlineCallbacks
def login(s: Services, request: Any):
    """A user's name and password (in the body, never the URL) for a session token."""
    if s.authenticator.mode == "none":
        raise BadRequest("authentication is off (auth = none): there is nothing to log "
                         "in to; every request is served")
    query = urlsplit(request.uri.decode("latin-1")).query
    if "password" in parse_qs(query, keep_blank_values=True):
        raise BadRequest("send the password in the request body, never in the URL "
                         "(URLs are written to access logs)")
    name, password = arg(request, "user"), arg(request, "password")
    token, identity = yield s.authenticator.login(
        name, password, auth.client_address(request, s.web.trusted_proxies))
    return {"token": token, "name": identity.name, "role": identity.role,
            "expires-in": s.authenticator.session_ttl}


def logout(s: Services, request: Any) -> dict[str, Any]:
    """End the session whose token the request carries; ``ended`` says whether there
    was one (logging out twice is not an error)."""
    headers = {}
    value = request.getHeader(b"authorization")
    if value is not None:
        headers["authorization"] = value.decode("latin-1")
    return {"ended": s.authenticator.logout(headers)}


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/login.json", "POST", public=True)(login)
    router.route("/logout.json", "POST", public=True)(logout)
    router.route("/whoami.json", "GET", public=True)(whoami)
