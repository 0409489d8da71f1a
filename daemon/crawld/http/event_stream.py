"""One client's stream of job events (``GET /events``): Server-Sent Events or NDJSON.

A stream is a cursor into the feed (feed.JobFeed): the sequence number of the last event
it has dealt with. While the client reads, each new event is written as it comes. The
stream is a streaming producer: when the client reads slowly, Twisted pauses it once
the connection's send buffer is full (64 KiB), and it then writes nothing and keeps
nothing of its own; when resumed it catches up from the feed's backlog. A client so slow
that the events it has not read yet leave the backlog is disconnected (its reconnection
with Last-Event-ID then gets a ``reset``). So a slow reader costs one connection's
buffer, never memory that grows with the events it misses.

Every stream begins with a ``ready`` event whose id is the point it starts from (so a
client that reconnects before any job event still resumes from there), or with a
``reset`` event when the events after the id a client resumes from are gone (an id of an
earlier run of the daemon, or older than the backlog): the client should then reload
what it shows (list-jobs.json) and go on from there. A comment (SSE) or a ``keep-alive``
object (NDJSON) is written after ``keep_alive`` seconds without anything else, so that
proxies and clients see the connection alive.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Collection, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .services import FeedApi
from .views import job_dict

log = Logger(namespace="crawld.api")

FORMATS = {"sse": b"text/event-stream; charset=utf-8",
           "ndjson": b"application/x-ndjson; charset=utf-8"}
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def frame(fmt: str, event_id: str, kind: str, data: dict[str, Any]) -> bytes:
    """One event as the format writes it. SSE: ``id:``, ``event:`` and ``data:`` lines
    (the JSON has no line break: json escapes them in strings); NDJSON: one object with
    the id and the kind (``event``) besides ``data``'s keys."""
    if fmt == "sse":
        return f"id: {event_id}\nevent: {kind}\ndata: {_JSON.encode(data)}\n\n".encode()
    return (_JSON.encode({"id": event_id, "event": kind, **data}) + "\n").encode()


def encode(fmt: str, event: Any) -> bytes:
    """A feed event in ``fmt``: SSE's data is the job object; NDJSON's the object
    ``{"id", "event", "job"}``. Made once per event and format (kept on the event)."""
    made = event.encoded.get(fmt)
    if made is None:
        job = job_dict(event.job)
        if fmt == "sse":
            made = frame(fmt, event.id, event.kind, job)
        else:
            made = (_JSON.encode({"id": event.id, "event": event.kind, "job": job})
                    + "\n").encode()
        event.encoded[fmt] = made
    return made


def keep_alive_frame(fmt: str) -> bytes:
    return b": keep-alive\n\n" if fmt == "sse" else b'{"event":"keep-alive"}\n'


class EventStream:
    """Streams the feed's events to one request (see the module docstring).

    ``start``: the sequence number to resume after, or None for a reset (the events
    the client asked for are gone). ``done`` fires when the stream has ended: the client
    went away, the daemon stopped, or the client was too slow.
    """

    def __init__(self, feed: FeedApi, request: Any, clock: Any, fmt: str,
                 start: Optional[int], projects: Collection[str] = (),
                 job_ids: Collection[str] = (), keep_alive: float = 15.0) -> None:
        self.feed = feed
        self.request = request
        self.clock = clock
        self.fmt = fmt
        self.projects = frozenset(projects)
        self.job_ids = frozenset(job_ids)
        self.keep_alive = keep_alive
        self.done: Deferred = Deferred()
        self.paused = False
        self.ended = False
        self.dropped: Optional[str] = None  # why the daemon closed it, when it did
        self.ping: Any = None
        request.notifyFinish().addBoth(self._gone)
        request.registerProducer(self, True)
        self.unlisten: Callable[[], None] = feed.listen(self._event)
        if start is None:
            self.cursor = feed.last_seq
            self._write(frame(fmt, feed.event_id(self.cursor), "reset", {
                "event": "reset", "id": feed.event_id(self.cursor),
                "reason": "the events after the id asked for are no longer kept (an id "
                          "of an earlier run of the daemon, or older than the backlog); "
                          "reload the jobs, then go on from this id"}))
        else:
            self.cursor = start
            self._write(frame(fmt, feed.event_id(start), "ready",
                              {"event": "ready", "id": feed.event_id(start)}))
        self._catch_up()

    def wanted(self, event: Any) -> bool:
        job = event.job
        return ((not self.projects or job.project in self.projects)
                and (not self.job_ids or job.id in self.job_ids))

    def _write(self, data: bytes) -> None:
        self.request.write(data)
        if self.ping is None:
            self.ping = self.clock.callLater(self.keep_alive, self._keep_alive)
        else:
            self.ping.reset(self.keep_alive)

    def _keep_alive(self) -> None:
        self.ping = None
        if self.ended:
            return
        if self.paused:  # the client is not reading: no more bytes for it to ignore
            self.ping = self.clock.callLater(self.keep_alive, self._keep_alive)
            return
        self._write(keep_alive_frame(self.fmt))

    def _event(self, event: Any) -> None:
        """A new event of the feed (None: the feed stopped, the daemon is stopping)."""
        if self.ended:
            return
        if event is None:
            self.close()
        elif self.paused:  # it catches up when resumed, if the backlog still has it all
            if not self.feed.keeps(self.cursor):
                self._drop()
        elif event.seq == self.cursor + 1:
            self.cursor = event.seq
            if self.wanted(event):
                self._write(encode(self.fmt, event))
        else:
            self._catch_up()

    def _catch_up(self) -> None:
        """Write what the client has not had yet from the backlog, until paused."""
        pending = self.feed.after(self.cursor)
        if pending is None:
            self._drop()
            return
        for event in pending:
            if self.paused or self.ended:
                return
            self.cursor = event.seq
            if self.wanted(event):
                self._write(encode(self.fmt, event))

    def _drop(self) -> None:
        """Give up on a client too slow for the backlog: the connection is aborted (its
        send buffer is full: a clean end would wait on the client). ``done`` fires
        with the reason once the connection is gone."""
        self.dropped = (f"it read too slowly: events after {self.feed.event_id(self.cursor)} "
                        "that it had not read left the backlog")
        log.info("closing the event stream of {peer}: {why}",
                 peer=str(self.request.getClientAddress()), why=self.dropped)
        self._stop()
        self.request.channel.transport.abortConnection()

    def close(self) -> None:
        """End the response cleanly: the daemon stops."""
        if self.ended:
            return
        self._stop()
        self.request.unregisterProducer()
        self.done.callback(None)  # the route's answer: the request is finished
        if not self.request.finished and not getattr(self.request, "_disconnected", False):
            self.request.finish()

    def _stop(self) -> None:
        """No more writing: leave the feed, stop the keep-alive timer."""
        self.ended = True
        self.unlisten()
        if self.ping is not None and self.ping.active():
            self.ping.cancel()
        self.ping = None

    def _gone(self, _: Any) -> None:
        """The response is over (finished, or the connection lost)."""
        if not self.ended:
            self._stop()
        if not self.done.called:
            self.done.callback(self.dropped)

    # IPushProducer
    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's names)
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        if self.paused and not self.ended:
            self.paused = False
            self._catch_up()

    def stopProducing(self) -> None:  # noqa: N802
        if not self.ended:
            self._stop()
