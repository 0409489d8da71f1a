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
