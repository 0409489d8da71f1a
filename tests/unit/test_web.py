"""Form decoding off Twisted's path: same results as Twisted's parser, in bounded slices."""
from __future__ import annotations

import os
import urllib.parse

import pytest
from twisted.web.http import parse_qs

from crawld import server as web


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
    from crawld.server import access_line, redact_query
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


def test_multipart_parts_are_decoded_by_name_in_order():
    body = (b"--b\r\nContent-Disposition: form-data; name=\"when\"\r\n\r\nnow\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"p.zip\"\r\n"
            b"Content-Type: application/zip\r\n\r\nPK\x03\x04\r\n\x00\xff\r\n"
            b"--b\r\nContent-Disposition: form-data\r\n\r\nno name: skipped\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"caf\xc3\xa9\"\r\n\r\n\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"when\"\r\n\r\nlater\r\n"
            b"--b--\r\n")
    assert web.decode_multipart(body, b"multipart/form-data; boundary=b") == {
        b"when": [b"now", b"later"], b"archive": [b"PK\x03\x04\r\n\x00\xff"],
        "café".encode(): [b""]}


def test_a_large_multipart_part_spanning_many_slices_is_whole():
    data = os.urandom(5 * web.SLICE + 3).replace(b"\r\n--", b"xxxx")
    body = (b"--edge\r\nContent-Disposition: form-data; name=\"archive\"\r\n\r\n" + data
            + b"\r\n--edge--\r\n")
    assert web.decode_multipart(body, b'multipart/form-data; boundary="edge"') == {
        b"archive": [data]}


@pytest.mark.parametrize("body, ctype", [
    (b"--b--\r\n", b"multipart/form-data"),                      # no boundary
    (b"--nope\r\ngarbage", b"multipart/form-data; boundary=xyz"),  # no delimiter
    (b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
     b"multipart/form-data; boundary=b"),                       # cut short
    (b"--b\r\n" + b"X-Filler: y\r\n" * 100 + b"\r\nv\r\n--b--\r\n",
     b"multipart/form-data; boundary=b"),                       # a part's headers unbounded
])
def test_malformed_multipart_is_a_bad_request_naming_it(body, ctype):
    from crawld.errors import BadRequest
    with pytest.raises(BadRequest, match="^malformed multipart body: "):
        web.decode_multipart(body, ctype)
