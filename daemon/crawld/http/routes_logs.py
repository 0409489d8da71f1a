"""A job's stdout and stderr (get-log), streamed and followed while the job runs.

A PENDING or RUNNING job always has a log to follow, empty at first: the supervisor
creates both files before it records the job RUNNING, and a job still queued answers
an empty log rather than 404.

``offset`` (bytes; negative: that many from the end) and ``limit`` (bytes) read a part
of a log, ``follow=0`` what is there now and no more: the dashboard and ``crawld logs``
load a log's tail and older parts on demand instead of a whole (maybe 1 GB) file.
``X-Log-Offset`` and ``X-Log-Size`` say where the part starts and how long the file was.
"""
from __future__ import annotations

import io
import re
import os
from typing import Any, Optional

from twisted.internet.defer import inlineCallbacks

from .. import logs
from ..errors import BadRequest, NotFound
from ..model import JOB_ID_RE, JobStatus
from .helpers import MAX_INT, Router, arg, find_job, flag_arg, follow_file, int_arg
from .services import Services

LOG_NAME_RE = re.compile(rf"({JOB_ID_RE.pattern})\.(out|err)")


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
    try:
        offset, limit, follow = _part(request)
    except Exception:
        fh.close()
        raise
    size = 0 if isinstance(fh, io.BytesIO) else os.fstat(fh.fileno()).st_size
    start = max(0, size + offset) if offset < 0 else min(offset, size)
    fh.seek(start)  # no read: a seek and an fstat do not wait on the disk
    request.setHeader(b"X-Log-Offset", str(start).encode())
    request.setHeader(b"X-Log-Size", str(size).encode())
    if limit is not None:
        fh = _Bounded(fh, limit)
    return (yield follow_file(s, request, fh, b"text/plain; charset=utf-8", job.id, follow))


def _part(request: Any) -> tuple[int, Optional[int], bool]:
    """``offset`` (may be negative), ``limit`` (None: to the end) and whether to follow
    (``follow``, default yes as scrapy-do does; never with a ``limit``)."""
    text = arg(request, "offset", required=False)
    offset = 0
    if text is not None:
        negative = text.startswith("-")
        offset = int_arg(request, "offset", 0) if not negative else -_whole(text[1:])
    limit = None
    if arg(request, "limit", required=False) is not None:
        limit = int_arg(request, "limit", 0, 1)
    follow = flag_arg(request, "follow") if arg(request, "follow", required=False) else True
    return offset, limit, follow and limit is None


def _whole(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > MAX_INT:
        raise BadRequest("parameter 'offset' must be a whole number of bytes, negative "
                         "to count from the end")
    return int(text)


class _Bounded:
    """A file read up to ``left`` bytes from where it stands (a part of a log)."""

    def __init__(self, fh: Any, left: int) -> None:
        self.fh, self.left = fh, left

    def read(self, size: int) -> bytes:
        data = self.fh.read(min(size, self.left)) if self.left > 0 else b""
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.fh.close()


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/get-log/<string:anything>/<string:filename>", "GET")(get_log)
