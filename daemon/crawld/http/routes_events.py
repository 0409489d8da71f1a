"""Job events as a stream: ``GET /events``, Server-Sent Events or NDJSON (see
event_stream.py for the stream itself)."""
from __future__ import annotations

from typing import Any

from ..errors import BadRequest, TooManyStreams
from .event_stream import FORMATS, EventStream
from ..model import JOB_ID_RE
from .helpers import Router, arg
from .services import Services

#: Most values of one filter parameter: a stream's filters are checked at every event.
MAX_FILTERS = 100


def _values(request: Any, name: str) -> list[str]:
    """Every value of a repeatable parameter, as text (400 past MAX_FILTERS)."""
    raw = request.args.get(name.encode(), [])
    if len(raw) > MAX_FILTERS:
        raise BadRequest(f"at most {MAX_FILTERS} values of {name!r}")
    try:
        return [value.decode("utf-8") for value in raw]
    except UnicodeDecodeError:
        raise BadRequest(f"parameter {name!r} is not valid UTF-8") from None


def _start(s: Services, request: Any) -> Any:
    """Where the stream starts: after the event the client names (the Last-Event-ID
    header, which an EventSource sends when it reconnects, else the ``last-event-id``
    parameter), or from now. None: those events are gone (the stream says ``reset``)."""
    header = request.getHeader(b"last-event-id")
    try:
        text = header.decode("utf-8") if header is not None else arg(
            request, "last-event-id", required=False)
    except UnicodeDecodeError:
        raise BadRequest("the Last-Event-ID header is not valid UTF-8") from None
    if not text:
        return s.feed.last_seq
    try:
        events = s.feed.since(text)
    except ValueError as exc:
        raise BadRequest(f"{'Last-Event-ID' if header is not None else 'last-event-id'}: "
                         f"{exc}") from None
    if events is None:
        return None
    return events[0].seq - 1 if events else s.feed.last_seq


def events(s: Services, request: Any) -> Any:
    """Stream job events: ``created``, ``started``, ``stats``, ``ended``, ``changed``,
    each with the job object, filtered by ``project`` and ``id`` (both repeatable)."""
    fmt = arg(request, "format", required=False, default="sse")
    if fmt not in FORMATS:
        raise BadRequest("parameter 'format' must be sse or ndjson")
    projects = _values(request, "project")
    job_ids = _values(request, "id")
    for job_id in job_ids:
        if not JOB_ID_RE.fullmatch(job_id):
            raise BadRequest(f"parameter 'id' must be job identifiers; {job_id!r} is not")
    start = _start(s, request)
    gate = s.event_streams
    if gate.full:
        raise TooManyStreams(f"{gate.open} event streams are open, the most [events] "
                             "max-streams allows; retry later")
    request.setHeader(b"Content-Type", FORMATS[fmt])
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Accel-Buffering", b"no")  # a proxy must pass each event on
    if request.method == b"HEAD":
        return b""
    gate.open += 1
    try:
        stream = EventStream(s.feed, request, s.reactor, fmt, start, projects, job_ids,
                             s.web.keep_alive)
    except BaseException:
        gate.open -= 1
        raise

    def closed(result: Any) -> None:
        gate.open -= 1
        return None
    return stream.done.addBoth(closed)


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/events", "GET")(events)
