"""The cluster's routes (issue 14): what ``crawld worker``s call, /cluster/*.

Only worker keys may call them (auth.roles), and a worker key may call nothing else.
JSON in (``Content-Type: application/json``), JSON out; every 200 JSON answer says how
often to beat and when an attempt is lost; a 409 says why the worker must stop (or
resume from the offsets the daemon holds). With ``[cluster] launcher = local`` there is
no cluster: 404.
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from twisted.internet.defer import maybeDeferred

from ..cluster import STREAMS
from ..errors import BadRequest, NotFound, TooLarge
from .files import valid_file_name
from .helpers import MAX_INT, Router, arg, int_arg, write_json
from .services import Services

#: A worker's name: a host name, maybe with a suffix.
WORKER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
KEY_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,127})/([0-9]{1,19})")
MAX_JSON = 1024 * 1024
MAX_SHOT = 32 * 1024 * 1024   # bytes of one live screenshot a worker uploads
MAX_SHOT_ERROR = 1000         # characters of the reason a screenshot failed


def cluster_of(s: Services) -> Any:
    if s.cluster is None:
        raise NotFound("this daemon runs no cluster ([cluster] launcher = local)")
    return s.cluster


def body_json(request: Any) -> dict[str, Any]:
    """The request's JSON object (400 otherwise)."""
    ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if ctype != b"application/json":
        raise BadRequest("send a JSON object with Content-Type: application/json")
    request.content.seek(0, 0)
    raw = request.content.read(MAX_JSON + 1)
    if len(raw) > MAX_JSON:
        raise TooLarge(f"a JSON body is at most {MAX_JSON} bytes")
    try:
        found = json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(found, dict):
        raise BadRequest("the body must be a JSON object")
    return found


def field(body: dict[str, Any], name: str, kind: Any, required: bool = True) -> Any:
    """One field of a JSON body, of type ``kind`` (400 otherwise)."""
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"missing field {name!r}")
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)
                        or not 0 <= value <= MAX_INT):
        raise BadRequest(f"field {name!r} must be a whole number from 0 to {MAX_INT}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BadRequest(f"field {name!r} must be a number")
    if kind not in (int, float) and not isinstance(value, kind):
        raise BadRequest(f"field {name!r} has the wrong type")
    return value


def worker_of(body: dict[str, Any]) -> str:
    name = field(body, "worker", str)
    if not WORKER_RE.fullmatch(name):
        raise BadRequest("field 'worker' must be a host name (letters, digits, _.:@-)")
    return name


def key_of(text: Optional[str]) -> str:
    if text is None or not KEY_RE.fullmatch(text):
        raise BadRequest("an attempt's key is '<job id>/<number>'")
    return text


def answer(s: Services, request: Any, result: Any) -> Any:
    """A cluster call's result (a dict, or a Deferred of one) as its answer, with the
    timings; a Refused as 409 with what it adds (the offsets held)."""
    cluster = cluster_of(s)

    def ok(found: dict[str, Any]) -> Any:
        return {**found, **cluster.timings()}

    def refused(failure: Any) -> Any:
        extra = getattr(failure.value, "extra", None)
        if extra is None:
            return failure
        return write_json(request, 409, {"status": "error", "msg": failure.value.msg,
                                         **extra})
    return maybeDeferred(lambda: result() if callable(result) else result
                         ).addCallbacks(ok, refused)


def claim(s: Services, request: Any) -> Any:
    body = body_json(request)
    worker, job = worker_of(body), field(body, "job", str)
    number = field(body, "attempt", int)
    key_of(f"{job}/{number}")
    return answer(s, request, lambda: cluster_of(s).claim(worker, job, number))


def started(s: Services, request: Any) -> Any:
    body = body_json(request)
    worker, key = worker_of(body), key_of(field(body, "key", str))
    pid, since = field(body, "pid", int, False), field(body, "pid_started", float, False)
    return answer(s, request, lambda: cluster_of(s).started(worker, key, pid, since))


def chunk_of(request: Any, what: str) -> tuple[int, bytes]:
    """A chunk request's ``offset`` parameter and raw body (413 past 1 MiB)."""
    offset = int_arg(request, "offset", 0)
    request.content.seek(0, 0)
    data = request.content.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise TooLarge(f"at most {MAX_JSON} bytes of {what} per request")
    return offset, data


def output(s: Services, request: Any) -> Any:
    key = key_of(arg(request, "key"))
    stream = arg(request, "stream")
    if stream not in STREAMS:
        raise BadRequest("parameter 'stream' must be out, err, items or events")
    offset, data = chunk_of(request, "output")
    return answer(s, request, lambda: cluster_of(s).output(key, stream, offset, data))


def file(s: Services, request: Any) -> Any:
    """A chunk of an artifact a remote browser job saved (its files dir), by offset."""
    key = key_of(arg(request, "key"))
    name = arg(request, "name")
    if not valid_file_name(name) or len(name.encode()) > 255:
        raise BadRequest("parameter 'name' must be a plain file name (not hidden, no '/')")
    offset, data = chunk_of(request, "a file")
    return answer(s, request, lambda: cluster_of(s).file(key, name, offset, data))


def screenshot(s: Services, request: Any) -> Any:
    """A worker's answer to a live screenshot request (heartbeat ``screenshots``): the
    PNG as the raw body, or ``error=REASON`` when the job could not take it."""
    key = key_of(arg(request, "key"))
    req = int_arg(request, "req", None)
    if req is None:
        raise BadRequest("parameter 'req' (the screenshot request's id) is required")
    error = arg(request, "error", required=False)
    data = None
    if error is not None:
        error = error[:MAX_SHOT_ERROR] or "unknown"
    else:
        request.content.seek(0, 0)
        data = request.content.read(MAX_SHOT + 1)
        if len(data) > MAX_SHOT:
            raise TooLarge(f"a screenshot is at most {MAX_SHOT} bytes")
    return answer(s, request,
                  lambda: cluster_of(s).screenshot_taken(key, req, data, error))


def stats(s: Services, request: Any) -> Any:
    body = body_json(request)
    key, found = key_of(field(body, "key", str)), field(body, "stats", dict)
    return answer(s, request, lambda: cluster_of(s).stats(key, found))


def heartbeat(s: Services, request: Any) -> Any:
    body = body_json(request)
    worker, slots = worker_of(body), field(body, "slots", int)
    queues = field(body, "queues", list, False) or []
    attempts = field(body, "attempts", list, False) or []
    if not all(isinstance(q, str) for q in queues):
        raise BadRequest("field 'queues' must be a list of names")
    for item in attempts:
        if not isinstance(item, dict):
            raise BadRequest("field 'attempts' must be a list of objects")
        key_of(item.get("key"))
        field(item, "pid", int, False)
        field(item, "rss", int, False)
    return answer(s, request,
                  lambda: cluster_of(s).heartbeat(worker, slots, queues, attempts))


def ended(s: Services, request: Any) -> Any:
    body = body_json(request)
    key = key_of(field(body, "key", str))
    code, sig = field(body, "code", int, False), field(body, "signal", int, False)
    reason = field(body, "reason", str, False)
    offsets = field(body, "offsets", dict, False) or {}
    for name in list(offsets):
        if name not in STREAMS:
            raise BadRequest(f"unknown stream {name!r} in 'offsets'")
        field(offsets, name, int)
    return answer(s, request, lambda: cluster_of(s).ended(key, code, sig, reason, offsets))


def code(s: Services, request: Any, digest: str) -> Any:
    """A code bundle by its hash: the zip itself."""
    def send(data: bytes) -> bytes:
        request.setHeader(b"Content-Type", b"application/zip")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"" if request.method == b"HEAD" else data
    return cluster_of(s).code(digest).addCallback(send)


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/cluster/claim", "POST")(claim)
    router.route("/cluster/started", "POST")(started)
    router.route("/cluster/output", "POST")(output)
    router.route("/cluster/file", "POST")(file)
    router.route("/cluster/screenshot", "POST")(screenshot)
    router.route("/cluster/stats", "POST")(stats)
    router.route("/cluster/heartbeat", "POST")(heartbeat)
    router.route("/cluster/ended", "POST")(ended)
    router.route("/cluster/code/<string:digest>.zip", "GET")(code)
