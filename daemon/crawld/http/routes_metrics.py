"""The daemon's metrics: ``GET /metrics`` in Prometheus' text format (metrics.py)."""
from __future__ import annotations

from typing import Any

from .helpers import Router
from .services import Services


def metrics(s: Services, request: Any) -> Any:
    """The daemon's metrics in Prometheus' text format (made at scrape time)."""
    def answer(result: tuple[bytes, str]) -> bytes:
        body, content_type = result
        request.setHeader(b"Content-Type", content_type.encode())
        request.setHeader(b"Cache-Control", b"no-store")
        return body
    return s.metrics.render().addCallback(answer)


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/metrics", "GET")(metrics)
