#!/usr/bin/env python3
"""The floor of bench_hotpath.py: a bare twisted.web resource answering JSON.

One leaf ``Resource`` on a default ``twisted.web.server.Site`` (Twisted's own access
log included, no observer started), on ``127.0.0.1:PORT``. Every GET encodes a small
dict shaped like status.json with ``json.dumps`` and sets ``Content-Type``: what any
JSON endpoint on twisted.web cannot avoid, and nothing more (no routing, no auth, no
Deferred). It runs with crawld's interpreter, so with the same Twisted.

Usage: ``python bench/bare_twisted.py PORT`` (stops on SIGTERM).
"""
from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

BODY = {"status": "ok", "memory-usage": 50.1, "cpu-usage": 0.0,
        "time": "2026-01-01 00:00:00.000000", "timezone": "UTC; UTC",
        "hostname": "localhost", "uptime": "1m 2s", "jobs-run": 0, "jobs-successful": 0,
        "jobs-failed": 0, "jobs-canceled": 0, "jobs-scheduled": 0, "projects": 1,
        "spiders": 1, "daemon-version": "0"}


class Bare(Resource):
    """Answers every path with the JSON body."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 (Twisted's name)
        request.setHeader(b"Content-Type", b"application/json")
        return (json.dumps(BODY, ensure_ascii=False) + "\n").encode("utf-8")


def main() -> None:
    port = int(sys.argv[1])
    reactor.listenTCP(port, Site(Bare()), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
