"""A job's stdout and stderr (get-log), streamed and followed while the job runs.

A PENDING or RUNNING job always has a log to follow, empty at first: the supervisor
creates both files before it records the job RUNNING, and a job still queued answers
an empty log rather than 404."""
from __future__ import annotations

import io
import re
from typing import Any

from twisted.internet.defer import inlineCallbacks

from .. import logs
from ..errors import NotFound
from ..model import JobStatus
from .helpers import UUID_RE, Router, find_job, follow_file
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
        if job.status not in (JobStatus.PENDING, JobStatus.RUNNING):
            why = "it has not started" if job.started is None else "its file is missing"
            raise NotFound(f"job {job.id} has no {m.group(2)} log ({why})") from None
        # Queued, or about to start: a log to follow, empty so far. (The supervisor
        # creates a job's logs before it records the job RUNNING.)
        fh = io.BytesIO()
    return (yield follow_file(s, request, fh, b"text/plain; charset=utf-8", job.id))


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/get-log/<string:anything>/<string:filename>", "GET")(get_log)
