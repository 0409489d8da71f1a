"""A bounded JSON-lines framer for the pipes the daemon reads (zygote, browser control).

Bytes arrive in pieces of any size; ``LineReader.feed`` returns the lines they complete.
Only the new bytes are searched for a newline, and an unfinished line is kept as a list
of pieces joined once when it ends, so a long line costs one join, not a rescan of the
whole buffer at every read. A line longer than ``max_line`` is dropped with a warning,
its remaining bytes are skipped up to its newline, and the next line is read as usual.
"""
from __future__ import annotations

from twisted.logger import Logger

log = Logger(namespace="crawld.lines")


class LineReader:
    """Splits a byte stream into lines (without their ``\\n``), each at most ``max_line``."""

    def __init__(self, max_line: int, name: str = "a pipe") -> None:
        self.max_line = max_line
        self.name = name          # for the warning: whose line was dropped
        self._pieces: list[bytes] = []
        self._pending = 0         # bytes in _pieces
        self._skipping = False    # inside a dropped line, until its newline

    def feed(self, data: bytes) -> list[bytes]:
        """The lines that ``data`` completes, in order."""
        lines: list[bytes] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            elif self._pending + end - start > self.max_line:
                self._drop()
            else:
                self._pieces.append(data[start:end])
                lines.append(b"".join(self._pieces))
            self._pieces, self._pending = [], 0
            start = end + 1
        if start < len(data) and not self._skipping:
            self._pieces.append(data[start:])
            self._pending += len(data) - start
            if self._pending > self.max_line:
                self._drop()
                self._pieces, self._pending = [], 0
                self._skipping = True
        return lines

    def _drop(self) -> None:
        log.warn("{name}: a line over {n} bytes dropped", name=self.name, n=self.max_line)
