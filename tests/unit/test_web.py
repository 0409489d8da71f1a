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
