"""The dashboard's files: ``/`` (its page) and ``/dashboard/<file>`` (scripts, styles).

The files ship in the package (``crawld/http/dashboard/``, setup.py's package_data):
plain HTML, CSS and JavaScript modules, nothing to build, nothing fetched from
elsewhere. They hold no data, so they are served without credentials (``public``);
every call the page makes for data carries its own (docs/dashboard.md).

The files are read once (``dashboard_files()``, off the reactor at start-up as
openapi.json is) with a gzip copy and a strong ETag each. Every answer carries a
strict Content-Security-Policy (scripts and styles of this origin only: no inline
script, no ``eval``; images also from ``blob:``, for screenshots fetched with
credentials), ``nosniff``, no referrer, no framing, and never an
``Access-Control-*`` header. ``Cache-Control: no-cache``: the browser keeps a copy
and asks with ``If-None-Match`` each time (a 304 costs a few bytes), so a new
crawld's page is never mixed with an old one's scripts.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import NotFound
from .helpers import Router
from .services import Services

PACKAGE = "crawld.http"
FOLDER = "dashboard"
TYPES = {"html": b"text/html; charset=utf-8", "js": b"text/javascript; charset=utf-8",
         "css": b"text/css; charset=utf-8", "svg": b"image/svg+xml",
         "png": b"image/png", "ico": b"image/x-icon"}
CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; "
       b"img-src 'self' blob: data:; connect-src 'self'; font-src 'self'; "
       b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = ((b"Content-Security-Policy", CSP), (b"X-Content-Type-Options", b"nosniff"),
           (b"Referrer-Policy", b"no-referrer"), (b"X-Frame-Options", b"DENY"),
           (b"Cache-Control", b"no-cache"), (b"Vary", b"Accept-Encoding"))


@dataclass(frozen=True)
class Asset:
    """One file of the dashboard: its bytes and gzip bytes, each with its ETag."""

    content_type: bytes
    body: bytes
    etag: bytes
    gzipped: bytes
    gzip_etag: bytes


def _asset(name: str, body: bytes) -> Asset:
    tag = hashlib.sha256(body).hexdigest()[:32]
    return Asset(TYPES[name.rsplit(".", 1)[-1]], body, f'"{tag}"'.encode(),
                 gzip.compress(body, 9, mtime=0), f'"{tag}-gz"'.encode())


@lru_cache(maxsize=1)
def dashboard_files() -> dict[str, Asset]:
    """Every file of the dashboard by name, read from the package once and kept (call
    it in a thread first: it reads and compresses them)."""
    folder = resources.files(PACKAGE).joinpath(FOLDER)
    return {item.name: _asset(item.name, item.read_bytes()) for item in folder.iterdir()
            if item.is_file() and item.name.rsplit(".", 1)[-1] in TYPES}


def _accepts_gzip(request: Any) -> bool:
    """Whether Accept-Encoding names gzip with a weight above 0."""
    for part in (request.getHeader(b"accept-encoding") or b"").split(b","):
        token, _, params = part.partition(b";")
        if token.strip().lower() != b"gzip":
            continue
        weight = params.replace(b" ", b"").lower()
        try:
            return not weight.startswith(b"q=") or float(weight[2:]) > 0
        except ValueError:
            return False
    return False


def send(request: Any, asset: Asset) -> bytes:
    """``asset`` as the answer, gzipped when the client takes it, 304 when the client
    already has this version."""
    zipped = _accepts_gzip(request)
    etag = asset.gzip_etag if zipped else asset.etag
    for name, value in HEADERS:
        request.setHeader(name, value)
    request.setHeader(b"Content-Type", asset.content_type)
    request.setHeader(b"ETag", etag)
    wanted = request.getHeader(b"if-none-match")
    if wanted is not None and etag in (t.strip() for t in wanted.split(b",")):
        request.setResponseCode(304)
        return b""
    if zipped:
        request.setHeader(b"Content-Encoding", b"gzip")
    body = asset.gzipped if zipped else asset.body
    request.setHeader(b"Content-Length", str(len(body)).encode())
    return b"" if request.method == b"HEAD" else body


def index(s: Services, request: Any) -> bytes:
    """The dashboard's page."""
    return send(request, dashboard_files()["index.html"])


def asset(s: Services, request: Any, name: str) -> bytes:
    """One of the page's scripts, styles or images (404 for any other name)."""
    found = dashboard_files().get(name)
    if found is None or name == "index.html":
        raise NotFound(f"the dashboard has no file {name!r}")
    return send(request, found)


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/", "GET", public=True, cors=False)(index)
    router.route("/dashboard/<string:name>", "GET", public=True, cors=False)(asset)
