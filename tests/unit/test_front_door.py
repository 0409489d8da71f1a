"""Issue 10, item 5: a method no route takes is authenticated before it gets its 405,
and a request line too long for the server gets 414 (a header line 431), not a closed
connection without a word."""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import pytest
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from crawld import auth
from tests.unit.fakes import result
from tests.unit.http_fakes import services, stub
from tests.unit.test_hot_path import connect


class RequiredAuth:
    """Authentication required, and no request brings valid credentials."""

    mode = "required"

    def authenticate(self, headers: Mapping[str, str], query_key: Optional[str],
                     method: str, uri: str, client_host: str) -> Any:
        raise auth.Unauthorized("authentication required", ['Basic realm="crawld"'])


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "BREW", "DELETE"])
def test_a_method_no_route_takes_is_authenticated_before_its_405(method):
    client = stub(services(authenticator=RequiredAuth()))
    for path in ("/status.json", "/job-files/x/y"):
        response = result(client.request(method, "http://127.0.0.1" + path))
        body = json.loads(result(response.content()))
        assert response.code == 401, (method, path, body)
        assert response.headers.getRawHeaders("www-authenticate") == ['Basic realm="crawld"']
        assert not response.headers.hasHeader("allow"), "nothing said before credentials"


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND"])
def test_with_credentials_an_unknown_method_still_gets_405_with_allow(method):
    client = stub(services())  # auth mode none: everyone is the anonymous operator
    response = result(client.request(method, "http://127.0.0.1/status.json"))
    assert response.code == 405 and response.headers.getRawHeaders("allow") == ["GET"]
    assert json.loads(result(response.content()))["msg"] == (
        f"method {method} not allowed; use GET")


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        return b"hello"


def sent(data: bytes) -> tuple[bytes, bool]:
    from crawld.server import make_site
    channel, transport = connect(make_site(Hello(), 1 << 20), Clock())
    channel.dataReceived(data)
    return transport.value(), transport.disconnecting or transport.disconnected


def test_a_request_line_of_a_megabyte_gets_414_then_the_connection_closes():
    answer, closed = sent(b"GET /status.json?x=" + b"a" * (1 << 20) + b" HTTP/1.1\r\n")
    assert answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), answer[:80]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["msg"].startswith("the request line (method and URL) is over")
    assert closed


def test_a_header_line_too_long_gets_431():
    answer, closed = sent(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 40000
                          + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:80]
    assert closed


def test_ordinary_requests_on_a_kept_alive_connection_are_unaffected():
    get = b"GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer, closed = sent(get + get)
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and not closed


# ------------------------------------------- issue 10, item 2: decided on the headers
class Upload(Resource):
    """Answers a POST with the size of the body it got; counts the requests it saw."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def render_POST(self, request: Any) -> bytes:  # noqa: N802
        size = len(request.content.read())
        self.seen.append(size)
        return b"got %d" % size


class Gate:
    """A site's gate: refuses with ``error``, lets in, or answers later (``pending``)."""

    def __init__(self, error: Optional[Exception] = None, later: bool = False) -> None:
        self.error, self.later = error, later
        self.asked: list[tuple[bytes, bytes, bytes]] = []
        self.pending: list[Any] = []

    def __call__(self, request: Any) -> Any:
        self.asked.append((request.method, request.uri, request.path))
        if self.error is not None:
            raise self.error
        if self.later:
            from twisted.internet.defer import Deferred
            self.pending.append(Deferred())
            return self.pending[-1]
        return None


def upload_site(gate: Any = None, max_body: int = 1 << 20, **kw: Any) -> tuple[Any, Upload]:
    from crawld.server import make_site
    resource = Upload()
    return make_site(resource, max_body, gate=gate, **kw), resource


def post_head(length: int, *extra: bytes) -> bytes:
    return (b"POST /up?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n" % length
            + b"".join(h + b"\r\n" for h in extra) + b"\r\n")


def unauthorized() -> auth.Unauthorized:
    return auth.Unauthorized("authentication required", ['Basic realm="crawld"'])


def test_a_body_without_credentials_gets_401_on_its_headers_and_none_of_it_is_read():
    gate = Gate(unauthorized())
    site, resource = upload_site(gate)
    channel, transport = connect(site, Clock())
    channel.dataReceived(post_head(1 << 30) + b"x" * 5000)  # 1 GiB announced, 5 KB sent
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:80]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"WWW-Authenticate: Basic realm=\"crawld\"" in head
    assert b"Connection: close" in head and b"Content-Type: application/json" in head
    assert json.loads(body) == {"status": "error", "msg": "authentication required"}
    assert gate.asked == [(b"POST", b"/up?x=1", b"/up")]
    assert transport.disconnecting, "the connection closes after the answer"
    assert channel.requests[-1].content is None, "no file was made for the body"
    channel.dataReceived(b"x" * 100000)  # whatever else comes is neither read nor served
    assert resource.seen == [] and transport.value() == answer


def test_a_check_that_takes_time_holds_the_body_unread_until_it_answers():
    gate = Gate(later=True)
    site, resource = upload_site(gate)
    channel, transport = connect(site, Clock())
    channel.dataReceived(post_head(10, b"Expect: 100-continue") + b"0123456789")
    assert transport.producerState == "paused", "nothing more is read meanwhile"
    assert transport.value() == b"", "no 100 Continue before the request is let in"
    assert resource.seen == [] and channel.requests[-1].content is None
    gate.pending[0].callback(None)
    assert transport.producerState == "producing"
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), answer[:80]
    assert resource.seen == [10] and answer.endswith(b"got 10")


def test_a_check_that_fails_later_gets_its_answer_and_the_body_is_never_read():
    gate = Gate(later=True)
    site, resource = upload_site(gate)
    channel, transport = connect(site, Clock())
    channel.dataReceived(post_head(1 << 30) + b"x" * 1000)
    gate.pending[0].errback(unauthorized())
    assert transport.value().startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert transport.disconnecting and resource.seen == []
    assert channel.requests[-1].content is None


def test_a_declared_length_over_the_limit_gets_413_once_let_in_before_the_body():
    gate = Gate()
    site, resource = upload_site(gate, max_body=1000)
    channel, transport = connect(site, Clock())
    channel.dataReceived(post_head(1001))
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer[:80]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["msg"] == (
        "request body over the 1000 byte limit (max-archive-size)")
    assert gate.asked and transport.disconnecting and resource.seen == []


def test_a_chunked_body_gets_413_the_moment_it_passes_the_limit():
    site, resource = upload_site(None, max_body=1000)
    channel, transport = connect(site, Clock())
    channel.dataReceived(b"POST /up HTTP/1.1\r\nHost: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"258\r\n" + b"a" * 600 + b"\r\n")
    assert transport.value() == b"" and not transport.disconnecting
    channel.dataReceived(b"258\r\n" + b"b" * 600 + b"\r\n")  # 1200 > 1000: no end yet
    assert transport.value().startswith(b"HTTP/1.1 413 "), transport.value()[:80]
    assert transport.disconnecting
    channel.dataReceived(b"0\r\n\r\n")  # the end of the body changes nothing
    assert resource.seen == [] and transport.value().count(b"HTTP/1.1") == 1


def test_a_request_let_in_on_its_headers_is_not_authenticated_again():
    from crawld.http.helpers import header_gate

    class Counting:
        mode = "required"
        calls = 0

        def authenticate(self, headers: Mapping[str, str], query_key: Optional[str],
                         method: str, uri: str, client_host: str) -> Any:
            Counting.calls += 1
            return auth.Identity("key", "ci", auth.OPERATOR, "cwk_good")

    from crawld.http.app import build_app
    from crawld.server import make_site
    built = services(authenticator=Counting())
    site = make_site(build_app(built), 1 << 20, gate=header_gate(built))
    channel, transport = connect(site, Clock())
    channel.dataReceived(b"POST /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: k\r\n"
                         b"Content-Length: 3\r\n\r\na=b")
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 405 ") and b"method POST not allowed" in answer
    assert Counting.calls == 1, "a Digest nonce count is accepted once: one check only"


# ------------------------------------------------ issue 10, item 1: slow bodies, caps
def test_a_trickled_body_gets_408_once_its_time_and_rate_credit_is_spent():
    clock = Clock()
    site, resource = upload_site(None, body_timeout=2.0, body_min_rate=100,
                                 idle_timeout=60.0, clock=clock.seconds)
    channel, transport = connect(site, clock)
    channel.dataReceived(post_head(1000000))
    for _ in range(30):  # a byte a second: the idle timeout never fires
        clock.advance(1)
        channel.dataReceived(b"x")
        if transport.disconnecting:
            break
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80]
    assert "came too slowly" in json.loads(answer.partition(b"\r\n\r\n")[2])["msg"]
    assert clock.seconds() <= 3, clock.seconds()  # 2 s, plus 1 s per 100 bytes got
    assert resource.seen == []
    clock.advance(5)  # a refused client that does not go is cut off
    assert transport.disconnected


def test_a_body_at_the_minimum_rate_is_not_cut_off():
    clock = Clock()
    site, resource = upload_site(None, body_timeout=2.0, body_min_rate=100,
                                 clock=clock.seconds)
    channel, transport = connect(site, clock)
    channel.dataReceived(post_head(1500))
    for _ in range(15):  # 100 bytes a second for 15 s: far past the first 2 s
        clock.advance(1)
        channel.dataReceived(b"y" * 100)
    assert transport.value().startswith(b"HTTP/1.1 200 OK"), transport.value()[:80]
    assert resource.seen == [1500] and not transport.disconnecting
    assert len(clock.getDelayedCalls()) == 2  # still one deadline timer, and the idle one


def test_connections_past_the_per_client_cap_get_503_and_are_closed():
    from crawld.connections import ConnectionLimits
    clock = Clock()
    site, _ = upload_site(None, limits=ConnectionLimits(10, 2))
    held = [connect(site, clock) for _ in range(2)]
    channel, transport = connect(site, clock)
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:80]
    assert b"Retry-After: 1" in answer and transport.disconnecting
    assert "max-connections-per-client" in json.loads(answer.partition(b"\r\n\r\n")[2])["msg"]
    channel.connectionLost(None)  # a refused connection releases nothing
    held[0][0].connectionLost(None)
    _, again = connect(site, clock)
    assert again.value() == b"" and site.limits.open == 2
