"""GET /events: SSE and NDJSON streams of the feed, resumes, filters, limits, slow readers."""
from __future__ import annotations

import json
from typing import Any, Optional

import treq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from crawld.events import JobEvents
from crawld.http.event_stream import EventStream, frame
from crawld.http.services import WebSettings
from crawld.model import JobStatus
from tests.unit.fakes import result
from tests.unit.http_fakes import services, stub
from tests.unit.test_feed import JOB_ID, job, life

URL = "http://localhost/events"


class Live:
    """A stream through the app (StubTreq): what the client has received so far."""

    def __init__(self, client: Any, url: str, headers: Optional[dict] = None) -> None:
        self.client = client
        self.chunks: list[bytes] = []
        self.response: Any = None
        self.ended: Any = None
        d = client.get(url, headers=headers)

        def got(response: Any) -> None:
            self.response = response
            collected = treq.collect(response, self.chunks.append)
            collected.addBoth(lambda r: setattr(self, "ended", r or "done"))
        d.addCallback(got)
        client.flush()

    @property
    def text(self) -> str:
        self.client.flush()
        return b"".join(self.chunks).decode()

    def sse(self) -> list[dict[str, str]]:
        """The SSE messages so far, each a dict of its fields (comments as ``:``)."""
        found = []
        for block in self.text.split("\n\n"):
            if not block:
                continue
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                name, _, value = line.partition(": ")
                fields[name] = value
            found.append(fields)
        return found

    def ndjson(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]


def setup(**web: Any) -> tuple[Any, JobEvents, Clock, Any]:
    clock = Clock()
    events = JobEvents()
    s = services(clock=clock, events=events, web=WebSettings(**web))
    return s, events, clock, stub(s)


def test_sse_sends_each_event_with_its_id_kind_and_job():
    s, events, clock, client = setup()
    live = Live(client, URL)
    assert live.response.code == 200
    assert live.response.headers.getRawHeaders("content-type") == [
        "text/event-stream; charset=utf-8"]
    assert live.response.headers.getRawHeaders("cache-control") == ["no-store"]
    for j in life():
        events.publish(j)
    messages = live.sse()
    assert [(m["id"], m["event"]) for m in messages] == [
        ("t-0", "ready"), ("t-1", "created"), ("t-2", "started"), ("t-3", "stats"),
        ("t-4", "ended")]
    assert json.loads(messages[0]["data"]) == {"event": "ready", "id": "t-0"}
    ended = json.loads(messages[-1]["data"])
    assert ended["identifier"] == JOB_ID.format(1) and ended["status"] == "SUCCESSFUL"
    assert (ended["project"], ended["spider"], ended["duration"]) == ("demo", "ok", 4)
    assert s.event_streams.open == 1 and live.ended is None


def test_ndjson_is_the_same_events_one_object_a_line():
    s, events, clock, client = setup()
    live = Live(client, URL + "?format=ndjson")
    assert live.response.headers.getRawHeaders("content-type") == [
        "application/x-ndjson; charset=utf-8"]
    for j in life():
        events.publish(j)
    lines = live.ndjson()
    assert [(o["id"], o["event"]) for o in lines] == [
        ("t-0", "ready"), ("t-1", "created"), ("t-2", "started"), ("t-3", "stats"),
        ("t-4", "ended")]
    assert lines[3]["job"]["status"] == "RUNNING" and lines[4]["job"]["exit-code"] is None
    assert all("\n" not in line for line in live.text.splitlines())


def test_last_event_id_resumes_without_loss_the_header_before_the_parameter():
    s, events, clock, client = setup()
    for j in life():
        events.publish(j)
    live = Live(client, URL + "?last-event-id=t-1")
    assert [m["id"] for m in live.sse()] == ["t-1", "t-2", "t-3", "t-4"]
    assert live.sse()[0]["event"] == "ready"
    # an EventSource reconnecting keeps its URL and sends the header: the header wins
    again = Live(client, URL + "?last-event-id=t-1&format=ndjson",
                 headers={"Last-Event-ID": "t-3"})
    assert [(o["id"], o["event"]) for o in again.ndjson()] == [("t-3", "ready"),
                                                                ("t-4", "ended")]
    events.publish(job(9))
    assert again.ndjson()[-1]["id"] == "t-5" and live.sse()[-1]["id"] == "t-5"


def test_an_id_that_cannot_be_resumed_gets_a_reset_from_now():
    s, events, clock, client = setup()
    s.feed.backlog = type(s.feed.backlog)(maxlen=2)
    for n in range(1, 5):
        events.publish(job(n))
    for asked in ("t-1", "earlier-3", "t-99"):
        live = Live(client, URL + "?format=ndjson", headers={"Last-Event-ID": asked})
        first = live.ndjson()
        assert [(o["event"], o["id"]) for o in first] == [("reset", "t-4")], asked
        assert "reload" in first[0]["reason"]
    assert [e["event"] for e in Live(client, URL + "?last-event-id=t-2&format=ndjson"
                                     ).ndjson()] == ["ready", "created", "created"]


def test_filters_by_project_and_id_any_of_the_values():
    s, events, clock, client = setup()
    by_project = Live(client, URL + "?format=ndjson&project=a&project=c")
    by_id = Live(client, URL + f"?format=ndjson&id={JOB_ID.format(2)}&id={JOB_ID.format(3)}")
    both = Live(client, URL + f"?format=ndjson&project=a&id={JOB_ID.format(2)}")
    for n, project in ((1, "a"), (2, "b"), (3, "c"), (2, "a")):
        events.publish(job(n, project=project))

    def seen(live: Live) -> list[tuple[str, str]]:
        return [(o["job"]["identifier"][-1], o["job"]["project"]) for o in live.ndjson()[1:]]
    assert seen(by_project) == [("1", "a"), ("3", "c"), ("2", "a")]
    assert seen(by_id) == [("2", "b"), ("3", "c"), ("2", "a")]
    assert seen(both) == [("2", "a")]
    # the ids go on counting every event, shown or not: a resume skips nothing shown
    assert [o["id"] for o in by_project.ndjson()[1:]] == ["t-1", "t-3", "t-4"]


def test_bad_parameters_are_a_400_that_opens_no_stream():
    s, events, clock, client = setup()
    for query, headers, said in (
            ("format=xml", None, "'format' must be sse or ndjson"),
            ("id=..%2Fetc", None, "'id' must be job identifiers"),
            ("last-event-id=12", None, "last-event-id: '12' is not an event id"),
            ("", {"Last-Event-ID": "x y"}, "Last-Event-ID: 'x y' is not an event id"),
            ("project=%ff", None, "'project' is not valid UTF-8"),
            ("&".join(["project=a"] * 101), None, "at most 100 values of 'project'")):
        response = result(client.get(f"{URL}?{query}", headers=headers))
        body = json.loads(result(response.content()))
        assert response.code == 400 and body["status"] == "error", query
        assert said in body["msg"], (query, body)
        assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert s.event_streams.open == 0


def test_past_max_streams_a_429_until_one_ends():
    s, events, clock, client = setup(max_event_streams=2)
    first = Live(client, URL)
    Live(client, URL + "?format=ndjson")
    response = result(client.get(URL))
    body = json.loads(result(response.content()))
    assert response.code == 429 and body["status"] == "error"
    assert "[events] max-streams" in body["msg"] and s.event_streams.open == 2
    s.feed.stop()  # the daemon stops: each stream ends cleanly
    client.flush()
    assert s.event_streams.open == 0 and first.ended == "done"
    assert first.text.endswith("\n\n")


def test_the_daemon_stopping_ends_each_stream_cleanly():
    s, events, clock, client = setup()
    live = Live(client, URL + "?format=ndjson")
    events.publish(job())
    s.feed.stop()
    client.flush()
    assert live.ended == "done"
    assert [o["event"] for o in live.ndjson()] == ["ready", "created"]
    assert s.event_streams.open == 0 and not clock.getDelayedCalls()


def test_head_answers_the_headers_and_opens_no_stream():
    s, events, clock, client = setup()
    response = result(client.head(URL + "?format=ndjson"))
    assert response.code == 200 and s.event_streams.open == 0
    assert response.headers.getRawHeaders("content-type") == [
        "application/x-ndjson; charset=utf-8"]
    assert result(client.post(URL)).code == 405


def test_keep_alive_after_silence_only():
    s, events, clock, client = setup(keep_alive=10.0)
    sse = Live(client, URL)
    nd = Live(client, URL + "?format=ndjson")
    clock.advance(9)
    events.publish(job())
    clock.advance(9)  # 9 s since the event: nothing yet
    assert ": keep-alive" not in sse.text
    clock.advance(1)
    assert sse.text.endswith(": keep-alive\n\n")
    assert nd.ndjson()[-1] == {"event": "keep-alive"}
    clock.advance(10)
    assert sse.text.count(": keep-alive") == 2


# -- the stream itself, with a request that can be paused -----------------------------
class Transport:
    aborted = False

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted = True


class Request:
    """What EventStream uses of a twisted.web request."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None
        self.finished = False
        self._disconnected = False
        self.finishing: list[Deferred] = []
        self.channel = type("Channel", (), {"transport": Transport()})()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def notifyFinish(self) -> Deferred:  # noqa: N802
        d: Deferred = Deferred()
        self.finishing.append(d)
        return d

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None

    def finish(self) -> None:
        self.finished = True
        for d in self.finishing:
            d.callback(None)

    def lose(self) -> None:
        self._disconnected = True
        for d in self.finishing:
            d.errback(Failure(ConnectionError("gone")))

    def getClientAddress(self) -> str:  # noqa: N802
        return "127.0.0.1"

    def ids(self) -> list[str]:
        return [json.loads(w)["id"] for w in self.written]


def stream(backlog: int = 100, start: Optional[int] = 0) -> tuple[EventStream, Request,
                                                                   JobEvents, Clock]:
    s, events, clock, _ = setup()
    s.feed.backlog = type(s.feed.backlog)(maxlen=backlog)
    request = Request()
    return (EventStream(s.feed, request, clock, "ndjson", start, keep_alive=5.0), request,
            events, clock)


def test_a_paused_stream_keeps_nothing_and_catches_up_when_resumed():
    es, request, events, clock = stream()
    events.publish(job(1))
    request.producer.pauseProducing()
    for n in range(2, 6):
        events.publish(job(n))
    clock.advance(20)  # no keep-alive to a client that is not reading
    assert request.ids() == ["t-0", "t-1"] and es.cursor == 1
    request.producer.resumeProducing()
    assert request.ids() == ["t-0"] + [f"t-{n}" for n in range(1, 6)]
    events.publish(job(6))
    assert request.ids()[-1] == "t-6"


def test_a_write_that_fills_the_buffer_pauses_the_catch_up():
    es, request, events, clock = stream()
    request.producer.pauseProducing()
    for n in range(1, 5):
        events.publish(job(n))
    original = request.write

    def write(data: bytes) -> None:
        original(data)
        if len(request.written) == 4:
            es.pauseProducing()  # as Twisted does when the transport's buffer is full
    request.write = write  # type: ignore[method-assign]
    request.producer.resumeProducing()
    assert request.ids() == ["t-0", "t-1", "t-2", "t-3"] and es.paused
    es.resumeProducing()
    assert request.ids()[-1] == "t-4"


def test_a_reader_too_slow_for_the_backlog_is_disconnected():
    es, request, events, clock = stream(backlog=3)
    events.publish(job(1))
    request.producer.pauseProducing()
    for n in range(2, 5):
        events.publish(job(n))
    assert not request.channel.transport.aborted  # events 2-4 are all kept
    events.publish(job(5))  # event 2, which it has not read, leaves the backlog
    assert request.channel.transport.aborted and es.ended
    assert "read too slowly" in es.dropped and not es.done.called
    request.lose()
    assert result(es.done) == es.dropped
    events.publish(job(6))
    assert request.ids() == ["t-0", "t-1"]


def test_a_client_that_goes_away_ends_the_stream():
    es, request, events, clock = stream()
    request.lose()
    assert es.ended and es.done.called and not clock.getDelayedCalls()
    events.publish(job())
    assert request.ids() == ["t-0"]
    es.stopProducing()
    es.close()  # nothing more happens to an ended stream
    assert not request.finished


def test_frames():
    assert frame("sse", "b-1", "ready", {"a": "é\n"}) == (
        'id: b-1\nevent: ready\ndata: {"a":"é\\n"}\n\n'.encode())
    assert json.loads(frame("ndjson", "b-1", "reset", {"reason": "x"})) == {
        "id": "b-1", "event": "reset", "reason": "x"}


def test_the_job_object_is_encoded_once_per_format():
    s, events, clock, client = setup()
    lives = [Live(client, URL), Live(client, URL), Live(client, URL + "?format=ndjson")]
    events.publish(job(1, JobStatus.RUNNING))
    event = s.feed.backlog[-1]
    assert set(event.encoded) == {"sse", "ndjson"}
    assert lives[0].sse()[-1] == lives[1].sse()[-1]
