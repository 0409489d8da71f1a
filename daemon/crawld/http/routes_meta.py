"""The daemon itself: status.json and openapi.json (``/`` is the dashboard's page,
routes_dashboard.py)."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from .helpers import Router
from .services import Services


@lru_cache(maxsize=1)
def openapi_json() -> bytes:
    """The API's OpenAPI 3.1 description as JSON: ``openapi.yaml`` of the crawld package
    (the file docs/openapi.yaml links to), parsed once and kept."""
    text = resources.files("crawld").joinpath("openapi.yaml").read_text("utf-8")
    return (json.dumps(yaml.safe_load(text), ensure_ascii=False) + "\n").encode("utf-8")


def openapi(s: Services, request: Any) -> bytes:
    """This API in OpenAPI 3.1 (what docs/openapi.yaml says), for clients and tools."""
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return openapi_json()


def status(s: Services, request: Any) -> bytes:
    """scrapy-do's status report, from counts kept in memory (never the database): its
    body made by the report itself, which re-encodes only what changed."""
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return s.status.answer(s.jobs.counters, s.jobs.schedule_count(), len(s.projects.names()),
                           s.projects.spider_count(), s.supervisor.load())


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/openapi.json", "GET")(openapi)
    router.route("/status.json", "GET")(status)
