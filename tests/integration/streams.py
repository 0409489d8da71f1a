"""A plain HTTP/1.1 client for streamed answers (/events): one socket, chunked decoding
done here, so that reading with a deadline never leaves a half-read chunk behind."""
from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable, Optional
from urllib.parse import urlsplit


class Stream:
    """A GET whose answer is read as it comes: ``code``, ``headers``, ``body`` so far."""

    def __init__(self, base_url: str, path: str, headers: Optional[dict[str, str]] = None,
                 method: str = "GET") -> None:
        url = urlsplit(base_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=30)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}",
                 *(f"{k}: {v}" for k, v in (headers or {}).items()), "", ""]
        self.sock.sendall("\r\n".join(lines).encode())
        self.raw = b""
        self.body = b""
        self.eof = False       # the server closed the connection
        self.complete = False  # the answer's end was received (last chunk, or its length)
        while b"\r\n\r\n" not in self.raw:
            self._recv(30)
            if self.eof:
                raise AssertionError(f"no answer: {self.raw!r}")
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        status, *fields = head.decode("latin-1").split("\r\n")
        self.code = int(status.split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self.length = int(self.headers.get("content-length", -1))
        self._decode()

    def _recv(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.raw += data

    def _decode(self) -> None:
        if not self.chunked:
            self.body, self.raw = self.body + self.raw, b""
            self.complete = self.complete or 0 <= self.length <= len(self.body)
            return
        while b"\r\n" in self.raw and not self.complete:
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.raw = rest[size + 2:]
            self.complete = size == 0

    def until(self, found: Callable[["Stream"], Any], timeout: float = 60,
              what: str = "the stream") -> Any:
        """Read until ``found(self)`` is truthy (returns it); fail after ``timeout`` s or
        if the answer ends first."""
        deadline = time.monotonic() + timeout
        while True:
            result = found(self)
            if result:
                return result
            if self.complete or self.eof:
                raise AssertionError(f"the answer ended before {what}: {self.body[-2000:]!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}: {self.body[-2000:]!r}")
            self._recv(min(left, 0.5))
            self._decode()

    def to_end(self, timeout: float = 60) -> "Stream":
        """Read until the answer or the connection ends."""
        deadline = time.monotonic() + timeout
        while not (self.complete or self.eof):
            assert time.monotonic() < deadline, f"the answer did not end: {self.body[-500:]!r}"
            self._recv(0.5)
            self._decode()
        return self

    # -- what the body holds ----------------------------------------------------------
    def sse(self) -> list[dict[str, str]]:
        """The complete SSE messages so far, each as {field: value} (comments as ``:``)."""
        found = []
        for block in self.body.decode().split("\n\n")[:-1]:
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                name, _, value = line.partition(": ") if not line.startswith(":") else (
                    ":", "", line[1:].strip())
                fields[name] = value
            found.append(fields)
        return found

    def events(self) -> list[tuple[str, str, dict]]:
        """The SSE events so far (keep-alives left out): (id, kind, data)."""
        return [(m["id"], m["event"], json.loads(m["data"])) for m in self.sse()
                if "event" in m]

    def ndjson(self) -> list[dict]:
        """The complete NDJSON lines so far."""
        return [json.loads(line) for line in self.body.decode().split("\n")[:-1]]

    def json(self) -> dict:
        return json.loads(self.body)

    def close(self) -> None:
        self.sock.close()
