"""A small blocking HTTP client of crawld's native API, for the ``crawld`` client commands.

It runs in a command-line process, never in the daemon, so it blocks freely. Standard
library only (``http.client``): a client command must work wherever crawld is installed,
and it must stream (a followed log, an upload with progress) without holding a whole body.
"""
from __future__ import annotations

import http.client
import json
import os
import ssl
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union
from urllib.parse import urlencode, urlsplit

#: The daemon's address when neither ``--url`` nor ``CRAWLD_URL`` says otherwise.
DEFAULT_URL = "http://127.0.0.1:7654"
UPLOAD_CHUNK = 64 * 1024

#: Form fields: a mapping, or pairs when a name repeats (``arg-x=1``, ``setting=...``).
Fields = Union[Mapping[str, Any], Sequence[tuple[str, Any]]]


class ClientError(Exception):
    """The daemon answered with an error (``status``: its HTTP code) or could not be
    reached (``status`` None). The message is the daemon's own ``msg`` when it gave one."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """A file sent as one part of a multipart form: ``field`` named, ``filename`` shown."""

    field: str
    filename: str
    data: bytes


def _pairs(fields: Optional[Fields]) -> list[tuple[str, str]]:
    if not fields:
        return []
    items = fields.items() if isinstance(fields, Mapping) else fields
    return [(k, str(v)) for k, v in items if v is not None]


class Client:
    """Talks to one daemon at ``url`` with an API ``key`` (sent as a Bearer token) or no
    credentials. ``timeout`` bounds connecting and each read; a followed stream waits
    for data as long as the daemon keeps the response open."""

    def __init__(self, url: str = DEFAULT_URL, key: Optional[str] = None,
                 timeout: float = 30.0, cafile: Optional[str] = None) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"not a daemon URL: {url!r} (expected http://HOST:PORT)")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.scheme, self.netloc, self.prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.cafile = cafile

    @classmethod
    def from_env(cls, url: Optional[str] = None, key: Optional[str] = None,
                 environ: Mapping[str, str] = os.environ, **kw: Any) -> "Client":
        """Flags first, then ``CRAWLD_URL`` / ``CRAWLD_KEY``, then the default URL."""
        return cls(url or environ.get("CRAWLD_URL") or DEFAULT_URL,
                   key or environ.get("CRAWLD_KEY") or None, **kw)

    # -- requests ----------------------------------------------------------------------
    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self.scheme == "https":
            context = ssl.create_default_context(cafile=self.cafile)
            return http.client.HTTPSConnection(self.netloc, timeout=timeout, context=context)
        return http.client.HTTPConnection(self.netloc, timeout=timeout)

    def _headers(self, extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "crawld-client"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        headers.update(extra or {})
        return headers

    def _open(self, method: str, path: str, params: Optional[Fields] = None,
              body: Any = None, headers: Optional[Mapping[str, str]] = None,
              timeout: Optional[float] = None) -> http.client.HTTPResponse:
        query = urlencode(_pairs(params))
        target = self.prefix + path + (f"?{query}" if query else "")
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            conn.request(method, target, body=body, headers=self._headers(headers))
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ClientError(f"cannot reach crawld at {self.url}: {exc}") from None
        if response.status >= 400:
            try:
                raise _error(response)
            finally:
                conn.close()
        return response

    def _json(self, response: http.client.HTTPResponse) -> dict[str, Any]:
        try:
            return json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ClientError(f"a bad answer from {self.url}: {exc}") from None
        finally:
            response.close()

    def get(self, path: str, params: Optional[Fields] = None,
            timeout: Optional[float] = None) -> dict[str, Any]:
        """GET a JSON endpoint; its decoded answer."""
        return self._json(self._open("GET", path, params, timeout=timeout))

    def post(self, path: str, fields: Optional[Fields] = None,
             timeout: Optional[float] = None) -> dict[str, Any]:
        """POST a url-encoded form to a JSON endpoint; its decoded answer."""
        body = urlencode(_pairs(fields)).encode()
        return self._json(self._open(
            "POST", path, body=body, timeout=timeout,
            headers={"Content-Type": "application/x-www-form-urlencoded"}))

    def upload(self, path: str, upload: Upload, fields: Optional[Fields] = None,
               progress: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
        """POST a multipart form with one file part, sent in chunks; ``progress(sent,
        total)`` is called as the body goes out."""
        boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            .encode() for k, v in _pairs(fields))
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="{upload.field}"; '
                 f'filename="{upload.filename}"\r\nContent-Type: application/zip\r\n\r\n'
                 ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        total = len(head) + len(upload.data) + len(tail)

        def chunks() -> Iterator[bytes]:
            sent = 0
            for piece in (head, upload.data, tail):
                for at in range(0, len(piece), UPLOAD_CHUNK):
                    part = piece[at:at + UPLOAD_CHUNK]
                    sent += len(part)
                    yield part
                    if progress is not None:
                        progress(sent, total)
        return self._json(self._open(
            "POST", path, body=chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                     "Content-Length": str(total)}))

    def stream(self, path: str, params: Optional[Fields] = None) -> Iterator[bytes]:
        """GET a streamed body (a log), yielding its bytes as they arrive; ends when the
        daemon ends the response (a followed log: when the job ends)."""
        response = self._open("GET", path, params, headers={"Accept": "*/*"},
                              timeout=None)
        try:
            while True:
                try:
                    data = response.read1(UPLOAD_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise ClientError(f"the stream from {self.url} broke: {exc}") from None
                if not data:
                    return
                yield data
        finally:
            response.close()


def _error(response: http.client.HTTPResponse) -> ClientError:
    """The daemon's error as a ClientError: its ``msg`` when the body is the API's JSON."""
    raw = response.read(64 * 1024)
    try:
        message = json.loads(raw).get("msg") or ""
    except (ValueError, AttributeError):
        message = raw.decode("utf-8", "replace").strip()[:300]
    return ClientError(message or f"HTTP {response.status} {response.reason}",
                       response.status)
