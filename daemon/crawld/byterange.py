"""HTTP byte ranges (RFC 9110 §14) for files served whole otherwise.

scrapyd serves its logs with twisted.web's static File, which honours ``Range``; Gerapy
reads a job's log as ``Range: bytes=-1000`` (its tail), ScrapydWeb by offsets. crawld's
scrapyd listener answers the same way: one range → 206 with ``Content-Range``; a range
past the end → 416; several ranges, or a header it does not understand → the whole file
(200), which the RFC allows.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Union

_ONE = re.compile(rb"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.I)

#: What :func:`parse` answers for a range that no byte of the file satisfies.
UNSATISFIABLE = "unsatisfiable"


def parse(header: Optional[bytes], size: int) -> Union[None, str, tuple[int, int]]:
    """The first and last byte (inclusive) ``header`` asks of a ``size``-byte file;
    None: serve it whole; UNSATISFIABLE: answer 416."""
    if not header:
        return None
    match = _ONE.match(header)
    if match is None:
        return None  # several ranges or another unit: the whole file
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # bytes=-N: the last N bytes
        suffix = int(last)
        if suffix == 0:
            return UNSATISFIABLE
        return (max(0, size - suffix), size - 1) if size else UNSATISFIABLE
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as the RFC says
    if start >= size:
        return UNSATISFIABLE
    return start, min(int(last) if last else size - 1, size - 1)


class Slice:
    """``length`` bytes of an open file from where it stands: what the log streamer reads."""

    def __init__(self, fh: Any, length: int) -> None:
        self.fh = fh
        self.left = length

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.fh.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.fh.close()
