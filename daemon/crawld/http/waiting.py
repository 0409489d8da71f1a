"""Answers that wait for a job to end: ``wait=SECONDS`` (list-jobs.json, schedule-job.json)
and browse.json's ``block=1``, over the daemon's waits (waits.JobWaits).

The wait is registered before the job is read, so a job that ends between the read and
the registration cannot be missed; a client that goes away releases its wait at once
(``request.notifyFinish``), and its answer is not made.
"""
from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import CancelledError, inlineCallbacks

from ..jobs import parse_seconds
from ..waits import MAX_WAIT
from .helpers import arg, find_job
from .services import Services, WaitApi


def wait_arg(request: Any) -> Optional[float]:
    """The ``wait`` parameter: seconds, more than 0 and at most MAX_WAIT; None when
    absent or empty."""
    text = arg(request, "wait", required=False)
    if text is None or text == "":
        return None
    return parse_seconds("wait", text, MAX_WAIT, zero=False)


def _unwanted(failure: Any) -> None:
    """A canceled wait (the client went away, or the job had ended already) is no error."""
    failure.trap(CancelledError)


@inlineCallbacks
def until_ended(s: Services, request: Any, place: WaitApi, job_id: str, seconds: float):
    """The job once it has ended, else as it is after ``seconds``; None when the client
    went away first. ``place`` (``s.waits.take()``) is given back in every case;
    NotFound for anything that is not a known job."""
    gone: list[Any] = []

    def went_away(failure: Any) -> None:
        gone.append(failure)
        place.release()
    waiting = place.until(job_id, seconds).addErrback(_unwanted)
    request.notifyFinish().addErrback(went_away)
    try:
        job = yield find_job(s, job_id)
        if not job.status.completed and not gone:
            ended = yield waiting
            if not gone:
                job = ended if ended is not None else (yield s.jobs.get(job_id))
    finally:
        place.release()
    return None if gone else job
