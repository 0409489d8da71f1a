"""The lean request path (issue 9): the exact-path router, the access log written
directly, the header deadline kept on one timer, and that answers did not change."""
from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from crawld.errors import BadRequest
from crawld.http.app import build_app, build_router
from crawld.server import ExactRouter, make_site
from tests.unit.http_fakes import services
from tests.unit.test_api import client  # noqa: F401 (the fixture)

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


# ------------------------------------------------------------------------ ExactRouter
class Fallback(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def render(self, request: Any) -> bytes:
        self.seen.append(request.path)
        return b"fallback"


def on_error(request: Any, failure: Failure) -> bytes:
    request.setResponseCode(400)
    return f"error: {failure.getErrorMessage()}".encode()


def dummy(path: bytes, method: bytes = b"GET") -> DummyRequest:
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.path, request.method = path, method
    return request


def router(routes: dict[bytes, Any]) -> tuple[ExactRouter, Fallback]:
    fallback = Fallback()
    return ExactRouter(routes, fallback, on_error, frozenset({b"GET", b"POST"})), fallback


def test_an_exact_path_is_served_by_its_handler_and_finished():
    exact, fallback = router({b"/a.json": lambda request: b"from a"})
    request = dummy(b"/a.json")
    assert exact.render(request) is NOT_DONE_YET
    assert request.written == [b"from a"] and request.finished == 1
    assert fallback.seen == []


@pytest.mark.parametrize("path,method", [
    (b"/a%2Ejson", b"GET"),   # another spelling of the path: Klein decodes it
    (b"/a.json/", b"GET"),    # Klein decides about slashes
    (b"/other.json", b"GET"),
    (b"/a.json", b"TRACE"),   # a method no route takes: Klein's 405
])
def test_every_other_request_goes_to_the_fallback(path, method):
    called = []
    exact, fallback = router({b"/a.json": called.append})
    assert exact.render(dummy(path, method)) == b"fallback"
    assert fallback.seen == [path] and called == []


def test_an_exception_becomes_the_error_body():
    def broken(request: Any) -> bytes:
        raise BadRequest("no good")
    exact, _ = router({b"/a.json": broken})
    request = dummy(b"/a.json")
    exact.render(request)
    assert request.responseCode == 400
    assert request.written == [b"error: no good"] and request.finished == 1


def test_a_deferred_answer_is_written_when_it_fires_and_its_failure_converted():
    later: Deferred = Deferred()
    failing: Deferred = Deferred()
    exact, _ = router({b"/a.json": lambda r: later, b"/b.json": lambda r: failing})
    first, second = dummy(b"/a.json"), dummy(b"/b.json")
    exact.render(first)
    exact.render(second)
    assert first.written == [] and first.finished == 0
    later.callback(b"done")
    failing.errback(BadRequest("late"))
    assert first.written == [b"done"] and first.finished == 1
    assert second.written == [b"error: late"] and second.responseCode == 400


def test_a_client_that_left_gets_nothing_and_the_work_still_finishes():
    work: Deferred = Deferred()
    finished_work = []
    work.addCallback(lambda body: finished_work.append(body) or body)
    exact, _ = router({b"/a.json": lambda r: work})
    request = dummy(b"/a.json")
    exact.render(request)
    request.processingFailed(Failure(ConnectionDone()))  # the connection is gone
    work.callback(b"too late")
    assert finished_work == [b"too late"]
    assert request.written == [] and request.finished == 0


def test_a_handler_that_finished_the_request_itself_is_not_finished_twice():
    def streams(request: Any) -> None:
        request.write(b"streamed")
        request.finish()
    exact, _ = router({b"/a.json": streams})
    request = dummy(b"/a.json")
    exact.render(request)
    assert request.written == [b"streamed"] and request.finished == 1


# ------------------------------------------------- the API: same answers as through Klein
FORM = "application/x-www-form-urlencoded"
REQUESTS = [
    ("GET", "/status.json", {}), ("HEAD", "/status.json", {}), ("POST", "/status.json", {}),
    ("OPTIONS", "/status.json", {}), ("TRACE", "/status.json", {}),
    ("GET", "/list-projects.json", {}), ("GET", "/list-spiders.json?project=demo", {}),
    ("GET", "/list-spiders.json?project=nope", {}), ("GET", "/list-jobs.json", {}),
    ("GET", "/list-jobs.json?status=ACTIVE&limit=5", {}),
    ("GET", "/list-jobs.json?id=00000000-0000-0000-0000-000000000000", {}),
    ("GET", "/list-jobs.json?status=NOPE", {}), ("GET", "/list-jobs.json?limit=x", {}),
    ("POST", "/schedule-job.json", {"Content-Type": FORM,
                                    "body": "project=demo&spider=nope&when=now"}),
    ("POST", "/schedule-job.json", {"Content-Type": FORM, "body": "project=demo"}),
    ("GET", "/preview-schedule.json?when=@daily&count=2", {}),
    ("GET", "/openapi.json", {}), ("GET", "/nothing-here.json", {}),
    ("GET", "/status%2Ejson", {}), ("GET", "/status.json/", {}),
    ("POST", "/schedule-job.json", {"Sec-Fetch-Site": "cross-site"}),
    ("GET", "/status.json", {"Origin": "http://evil.example"}),
]


def raw_answer(resource: Any, method: str, path: str, headers: dict[str, str]) -> bytes:
    """The bytes a real Site sends for one request, its Date header taken out."""
    headers = dict(headers)
    body = headers.pop("body", "").encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "localhost", **headers,
                                                   "Content-Length": str(len(body))}.items())
    channel, transport = connect(make_site(resource, 1 << 20), Clock())
    channel.dataReceived(f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
    lines = transport.value().split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 "), lines[:3]
    return b"\r\n".join(line for line in lines if not line.startswith(b"Date: "))


@pytest.mark.parametrize("method,path,headers", REQUESTS)
def test_the_router_sends_the_same_bytes_as_klein(client, method, path, headers):  # noqa: F811
    built = client[0].services
    routed = raw_answer(build_app(built), method, path, headers)
    assert routed == raw_answer(build_router(built).klein.resource(), method, path, headers)
    assert b"Transfer-Encoding: chunked" in routed or method == "HEAD" or b" 204 " in routed


def test_every_route_without_variables_is_served_by_the_router():
    router = build_router(services())
    assert set(router.exact) == {p.encode() for p in router.methods if "<" not in p}
    assert b"/status.json" in router.exact and b"/list-jobs.json" in router.exact


def test_a_get_is_answered_in_the_same_call_without_a_deferred(client):  # noqa: F811
    stub, _ = client
    request = DummyRequest([b"status.json"])
    request.method, request.path, request.uri = b"GET", b"/status.json", b"/status.json"
    request.requestHeaders.setRawHeaders(b"host", [b"localhost"])
    request.body_too_large, request.parse_body = False, lambda: None  # as LimitedRequest
    body = build_router(stub.services).exact[b"/status.json"](request)
    assert isinstance(body, bytes) and body.startswith(b'{"status": "ok"')


# ---------------------------------------------------------- the site: logs and deadlines
class Slow(Resource):
    """Answers ``/fast`` at once and ``/slow`` when the test says so."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Any] = []

    def render_GET(self, request: Any) -> Any:  # noqa: N802
        if request.path == b"/slow":
            self.waiting.append(request)
            return NOT_DONE_YET
        return b"ok"


def connect(site: Any, clock: Clock) -> tuple[Any, StringTransport]:
    channel = site.buildProtocol(PEER)
    channel.callLater = clock.callLater
    transport = StringTransport(peerAddress=PEER)
    channel.makeConnection(transport)
    return channel, transport


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\n\r\n".encode()


def test_one_access_line_per_request_goes_to_the_writer_not_to_twisted_logger():
    lines: list[str] = []
    clock = Clock()
    clock.advance(1_800_000_000)
    site = make_site(Slow(), 1 << 20, access_log=lines.append, clock=clock.seconds)
    channel, transport = connect(site, clock)
    channel.dataReceived(get("/fast?key=cwk_secret") + get("/fast"))
    assert transport.value().count(b"HTTP/1.1 200 OK") == 2
    assert lines == [
        '"127.0.0.1" - - [15/Jan/2027:08:00:00 +0000] "GET /fast?key=REDACTED HTTP/1.1" '
        '200 2 "-" "t"',
        '"127.0.0.1" - - [15/Jan/2027:08:00:00 +0000] "GET /fast HTTP/1.1" 200 2 "-" "t"']
    quiet = make_site(Slow(), 1 << 20, access_log=None)
    channel, transport = connect(quiet, clock)
    channel.dataReceived(get("/fast"))
    assert b"HTTP/1.1 200 OK" in transport.value()


def test_each_kept_alive_request_gets_the_header_deadline_without_piling_up_timers():
    clock = Clock()
    site = make_site(Slow(), 1 << 20, header_timeout=2.0, idle_timeout=60.0)
    channel, transport = connect(site, clock)
    for _ in range(5):  # 5 requests 1.5 s apart: 7.5 s in all, each within its 2 s
        clock.advance(1.5)
        channel.dataReceived(get("/fast"))
    assert transport.value().count(b"200 OK") == 5 and not transport.disconnected
    assert len(clock.getDelayedCalls()) == 2  # the header deadline and the idle timeout
    channel.dataReceived(b"GET /fast HTTP/1.1\r\nHost: 1")  # then trickling headers
    clock.advance(2.1)
    assert transport.disconnected


def test_a_slow_answer_is_not_cut_off_by_the_header_deadline():
    clock = Clock()
    resource = Slow()
    site = make_site(resource, 1 << 20, header_timeout=2.0, idle_timeout=60.0)
    channel, transport = connect(site, clock)
    channel.dataReceived(get("/slow"))
    clock.advance(10)  # the deadline's timer fires while the answer is produced
    assert not transport.disconnected
    request = resource.waiting.pop()
    request.write(b"late")
    request.finish()
    assert b"late" in transport.value() and not transport.disconnected
    clock.advance(1.9)
    channel.dataReceived(get("/fast"))  # the deadline applies again to the next request
    assert transport.value().count(b"200 OK") == 2 and not transport.disconnected
    channel.dataReceived(b"GET /fast HTTP/1.1\r\n")
    clock.advance(2.1)
    assert transport.disconnected


@pytest.mark.parametrize("host,passes", [
    (b"127.0.0.1:7654", True), (b"caf\xc3\xa9.example", True), (b"\xff.example", False)])
def test_only_a_host_that_is_not_utf8_is_refused(host, passes):
    site = make_site(Slow(), 1 << 20)
    channel, transport = connect(site, Clock())
    channel.dataReceived(b"GET /fast HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 200") if passes else (
        answer.startswith(b"HTTP/1.1 400") and b"not valid UTF-8" in answer)
