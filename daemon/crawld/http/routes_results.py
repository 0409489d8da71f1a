"""What a spider job produced: its crawl's stats (job-stats.json) and its items
(job-items.json a page at a time, job-items/<id>.jl the whole file, followed while the
job runs, as get-log follows a log)."""
from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import inlineCallbacks

from .. import items as item_files
from ..errors import NotFound
from .files import open_regular, read_items
from ..model import JOB_ID_RE
from .helpers import Router, arg, find_job, follow_file, int_arg
from .services import Services
from .views import stats_object

ITEMS_NAME_RE = re.compile(rf"({JOB_ID_RE.pattern})\.{item_files.EXT}")
DEFAULT_ITEMS = 100   # items per job-items.json page unless ``limit`` says
MAX_ITEMS = 1000      # the largest ``limit``


@inlineCallbacks
def job_stats(s: Services, request: Any):
    """The latest stats of a running or finished job's crawl (null before any)."""
    job = yield find_job(s, arg(request, "id"))
    return {"identifier": job.id, "stats": stats_object(job.stats)}


@inlineCallbacks
def job_items(s: Services, request: Any):
    """A page of a job's items (read in a thread) and how many it has so far."""
    offset = int_arg(request, "offset", 0)
    limit = int_arg(request, "limit", DEFAULT_ITEMS, 1, MAX_ITEMS)
    job = yield find_job(s, arg(request, "id"))
    found = None
    if s.items_dir:
        found = yield s.to_thread(read_items, s.items_dir, job.id, offset, limit)
    items, total = found if found is not None else ([], 0)
    return {"identifier": job.id, "items": items, "total": total}


@inlineCallbacks
def items_file(s: Services, request: Any, itemsfile: str):
    """``<job-id>.jl``: the job's items file, followed while the job runs."""
    m = ITEMS_NAME_RE.fullmatch(itemsfile)
    if not m:
        raise NotFound(f"no such items file {itemsfile!r}; they are <job-id>.jl")
    job = yield find_job(s, m.group(1))
    try:  # in a thread, and never through a link or to a FIFO
        if not s.items_dir:
            raise FileNotFoundError(itemsfile)
        fh = yield s.to_thread(open_regular, s.items_dir, item_files.name(job.id))
    except OSError:
        why = ("it has not started" if job.started is None else
               "a browser job, or a spider run while [crawld] items = no")
        raise NotFound(f"job {job.id} has no items file ({why})") from None
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return (yield follow_file(s, request, fh, b"application/x-ndjson; charset=utf-8",
                              job.id))


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/job-stats.json", "GET")(job_stats)
    router.route("/job-items.json", "GET")(job_items)
    router.route("/job-items/<string:itemsfile>", "GET")(items_file)
