"""Form decoding off Twisted's path: same results as Twisted's parser, in bounded slices."""
from __future__ import annotations

import os
import urllib.parse

import pytest
from twisted.web.http import parse_qs

from crawld import web


@pytest.mark.parametrize("size", [0, 1, web.SLICE - 1, web.SLICE, web.SLICE + 1, 3 * web.SLICE + 7])
def test_urlencoded_decoding_matches_twisted_across_slice_boundaries(size):
    data = os.urandom(size)
    body = urllib.parse.urlencode([("archive", data), ("when", "every 2 hours"),
                                   ("empty", ""), ("archive", b"%+&=")]).encode()
    assert web.decode_urlencoded(body) == parse_qs(body, 1)
    assert web.decode_urlencoded(body)[b"archive"][0] == data


def test_escapes_straddling_a_slice_edge_stay_whole():
    value = b"a" * (web.SLICE - 1) + b"%41" + b"b" * web.SLICE + b"%4"  # a broken tail
    decoded = web.decode_urlencoded(b"v=" + value)[b"v"][0]
    assert decoded == urllib.parse.unquote_to_bytes(value)
    assert decoded[web.SLICE - 1:web.SLICE] == b"A"


def test_access_log_lines_never_carry_an_api_key():
    from crawld.web import access_line, redact_query
    assert redact_query("/list-jobs.json?status=ACTIVE&key=cwk_secret") == \
        "/list-jobs.json?status=ACTIVE&key=REDACTED"
    assert redact_query("/x?k%65y=cwk_a;KEY=cwk_b&keys=fine") == \
        "/x?k%65y=REDACTED;KEY=REDACTED&keys=fine"
    assert redact_query("/status.json") == "/status.json"

    class Req:
        uri = b"/status.json?key=cwk_secret"
        method = b"GET"
        clientproto = b"HTTP/1.1"
        code = 200
        sentLength = 42

        def getClientAddress(self):
            class A:
                host = "127.0.0.1"
            return A()

        def getHeader(self, name):
            return {b"user-agent": b'curl/8 "x"'}.get(name)

    line = access_line("[22/Nov/2026:15:00:00 +0000]", Req())
    assert "cwk_secret" not in line and "key=REDACTED" in line
    assert line.startswith('"127.0.0.1" - - [22/Nov/2026:15:00:00 +0000] "GET /status.json?')
    assert line.endswith('200 42 "-" "curl/8 \\"x\\""')
