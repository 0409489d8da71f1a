"""Byte ranges of the scrapyd listener's /logs/ (byterange.py): literal cases of RFC 9110."""
from __future__ import annotations

import io

import pytest

from crawld import byterange
from crawld.byterange import UNSATISFIABLE, Slice, parse


@pytest.mark.parametrize("header, size, wanted", [
    (None, 100, None),
    (b"", 100, None),
    (b"bytes=0-9", 100, (0, 9)),
    (b"bytes=10-", 100, (10, 99)),
    (b"bytes=-10", 100, (90, 99)),
    (b"bytes=-1000", 100, (0, 99)),        # a suffix longer than the file: all of it
    (b"bytes=90-200", 100, (90, 99)),      # an end past the file is cut to it
    (b"BYTES = 5 - 6", 100, (5, 6)),
    (b"bytes=100-", 100, UNSATISFIABLE),   # starts past the last byte
    (b"bytes=-0", 100, UNSATISFIABLE),
    (b"bytes=-5", 0, UNSATISFIABLE),       # no byte of an empty file
    (b"bytes=9-3", 100, None),             # invalid: ignored, the whole file
    (b"bytes=0-1,5-6", 100, None),         # several ranges: the whole file
    (b"items=0-9", 100, None),             # another unit
    (b"bytes=-", 100, None),
])
def test_parse(header, size, wanted) -> None:
    assert parse(header, size) == wanted


def test_a_slice_reads_only_its_length_and_closes_the_file() -> None:
    fh = io.BytesIO(b"0123456789")
    fh.seek(3)
    part = Slice(fh, 4)
    assert part.read(3) == b"345" and part.read(10) == b"6" and part.read() == b""
    part.close()
    assert fh.closed
    assert byterange.Slice(io.BytesIO(b"abc"), 5).read() == b"abc"
