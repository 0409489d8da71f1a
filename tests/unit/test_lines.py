"""The daemon's one JSON-lines framer (crawld.lines): splits, bounds, no rescans."""
from __future__ import annotations

from crawld.lines import LineReader


def feed_all(reader: LineReader, *chunks: bytes) -> list[bytes]:
    return [line for chunk in chunks for line in reader.feed(chunk)]


def test_a_line_split_across_chunks_is_returned_once_it_ends():
    reader = LineReader(1000)
    assert reader.feed(b'{"ev": "rea') == []
    assert reader.feed(b'dy"') == []
    assert reader.feed(b'}\n{"ev": "st') == [b'{"ev": "ready"}']
    assert reader.feed(b'arted"}\n') == [b'{"ev": "started"}']


def test_many_lines_in_one_chunk_come_out_in_order_empty_ones_included():
    reader = LineReader(1000)
    assert reader.feed(b"a\nbb\n\nccc\nd") == [b"a", b"bb", b"", b"ccc"]
    assert reader.feed(b"\n") == [b"d"]


def test_a_line_of_exactly_the_limit_is_kept():
    reader = LineReader(10)
    assert feed_all(reader, b"x" * 6, b"y" * 4 + b"\nnext\n") == [b"x" * 6 + b"y" * 4, b"next"]


def test_an_overlong_line_is_dropped_and_the_next_line_is_read():
    reader = LineReader(10)
    got = feed_all(reader, b"short\n", b"x" * 8, b"x" * 8, b"x" * 50, b"tail of it\nnext\n")
    assert got == [b"short", b"next"], "nothing of the dropped line comes out"
    assert feed_all(reader, b"y" * 30 + b"\nafter\n") == [b"after"], "also within a chunk"


def test_an_overlong_line_ending_in_the_chunk_that_passes_the_limit_is_dropped():
    reader = LineReader(10)
    assert feed_all(reader, b"x" * 8, b"x" * 8 + b"\nok\n") == [b"ok"]


class Counted(bytes):
    """Bytes that count how many of their bytes ``find`` looked at."""

    looked = 0

    def find(self, sub, start=0, *rest):  # type: ignore[override]
        found = super().find(sub, start, *rest)
        Counted.looked += (found + 1 if found >= 0 else len(self)) - start
        return found


def test_each_byte_is_searched_once_however_many_chunks_a_line_takes():
    reader = LineReader(10 * 1024 * 1024)
    Counted.looked = 0
    chunks = [Counted(b"x" * 1000) for _ in range(2000)] + [Counted(b"x\nnext\n")]
    got = feed_all(reader, *chunks)
    assert got == [b"x" * 2_000_001, b"next"]
    assert Counted.looked == sum(len(c) for c in chunks), "no rescan of what came before"
