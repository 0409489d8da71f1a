"""The HTTP server around the API: a body size limit enforced while the body arrives."""
from __future__ import annotations

import io
from typing import Any

from twisted.web.server import Request, Site


class _Discard(io.BytesIO):
    """Stands in for a request body that is over the limit: counts bytes, keeps none."""

    size = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.size += len(data)
        return len(data)


class LimitedRequest(Request):
    """A request whose body is dropped, not buffered, once it passes ``max_body`` bytes.

    The route then answers 413 (see api.endpoint); the daemon never holds or spools
    more than the limit, whatever the client announces or sends.
    """

    max_body = 50 * 1024 * 1024
    body_too_large = False

    def gotLength(self, length: Any) -> None:
        if length is not None and length > self.max_body:
            self.body_too_large = True
            self.content = _Discard()
        else:
            super().gotLength(length)
        self._received = 0

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if not self.body_too_large and self._received > self.max_body:
            self.body_too_large = True
            self.content.close()
            self.content = _Discard()
        self.content.write(data)


def make_site(resource: Any, max_body: int) -> Site:
    """A Site serving ``resource`` with bodies limited to ``max_body`` bytes."""
    request_class = type("CrawldRequest", (LimitedRequest,), {"max_body": max_body})
    site = Site(resource, requestFactory=request_class)
    site.displayTracebacks = False
    site.noisy = False
    return site
