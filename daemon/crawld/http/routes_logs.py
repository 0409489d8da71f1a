"""A job's stdout and stderr (get-log), streamed and followed while the job runs."""
from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import inlineCallbacks

from .. import logs
from ..errors import NotFound
from .helpers import UUID_RE, Router, find_job, stream
from .services import Services

LOG_NAME_RE = re.compile(rf"({UUID_RE.pattern})\.(out|err)")


@inlineCallbacks
def get_log(s: Services, request: Any, anything: str, filename: str):
    """``<job-id>.out`` or ``.err`` as plain text; the first path segment is free."""
    m = LOG_NAME_RE.fullmatch(filename)
    if not m:
        raise NotFound(f"no such log {filename!r}; logs are <job-id>.out or .err")
    job = yield find_job(s, m.group(1))
    try:
        fh = open(logs.path(s.log_dir, job.id, m.group(2)), "rb")
    except FileNotFoundError:
        raise NotFound(f"job {job.id} has no {m.group(2)} log "
                       f"({'it has not started' if job.started is None else 'removed'})"
                       ) from None
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    if request.method == b"HEAD":
        fh.close()
        return b""
    yield stream(s, request, fh, lambda: s.supervisor.is_running(job.id))
    return None


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/get-log/<string:anything>/<string:filename>", "GET")(get_log)
