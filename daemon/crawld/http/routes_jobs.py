"""Jobs and schedules: schedule, list, cancel, pause, resume, run, update, preview."""
from __future__ import annotations

import math
from typing import Any

from twisted.internet.defer import inlineCallbacks

from .. import spec as specs
from ..errors import BadRequest
from .helpers import Router, arg, find_job, int_arg, policy_args
from .services import Services
from .views import display_zone, iso, job_dict


@inlineCallbacks
def schedule_job(s: Services, request: Any):
    """A spider or browser script, now or on a schedule (``when``)."""
    policies = policy_args(request)
    spider = arg(request, "spider", required=False)
    script = arg(request, "script", required=False)
    if (spider is None) == (script is None):
        raise BadRequest("give exactly one of 'spider' and 'script'" if spider else
                         "missing parameter 'spider' (or 'script' for a browser script)")
    job = yield s.jobs.schedule(
        arg(request, "project"), spider or script, arg(request, "when"),
        description=arg(request, "description", required=False, default=""),
        payload=arg(request, "payload", required=False), policies=policies,
        kind="spider" if spider is not None else "script",
        priority=number_arg(request, "priority", 0.0),
        version=arg(request, "version", required=False) or None)
    return {"identifier": job.id}


def number_arg(request: Any, name: str, default: float) -> float:
    """A finite number parameter (``priority``: the queue's order, higher first)."""
    text = arg(request, name, required=False)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest(f"parameter {name!r} must be a number, such as 0, 10 or -1.5")
    return value


@inlineCallbacks
def pause_job(s: Services, request: Any):
    job = yield find_job(s, arg(request, "id"))
    job = yield s.jobs.pause(job.id)
    return {"identifier": job.id, "job-status": job.status.value}


@inlineCallbacks
def resume_job(s: Services, request: Any):
    job = yield find_job(s, arg(request, "id"))
    job = yield s.jobs.resume(job.id)
    return {"identifier": job.id, "job-status": job.status.value,
            "next-run": iso(job.next_fire, display_zone(job.tz))}


@inlineCallbacks
def run_job(s: Services, request: Any):
    job = yield find_job(s, arg(request, "id"))
    child = yield s.jobs.run_now(job.id)
    return {"identifier": child.id, "parent": job.id}


@inlineCallbacks
def update_job(s: Services, request: Any):
    job = yield find_job(s, arg(request, "id"))
    policies = policy_args(request)
    job = yield s.jobs.update(
        job.id, when=arg(request, "when", required=False),
        description=arg(request, "description", required=False),
        payload=arg(request, "payload", required=False), policies=policies)
    return {"job": job_dict(job)}


def preview_schedule(s: Services, request: Any) -> dict[str, Any]:
    """The next fire times of a ``when`` (in ``tz``, else the daemon's zone)."""
    when = arg(request, "when")
    tz_name = arg(request, "tz", required=False)
    count = int_arg(request, "count", 5, 1, 100)
    parsed = specs.parse(when)
    zone = s.jobs.zone(tz_name)
    times = specs.preview(parsed, s.reactor.seconds(), count, zone)
    return {"when": when, "tz": tz_name or s.jobs.timezone_name(),
            "next": [iso(t, zone) for t in times]}


@inlineCallbacks
def list_jobs(s: Services, request: Any):
    """One job by ``id``, or a page of jobs by ``status`` (newest change first)."""
    job_id = arg(request, "id", required=False)
    if job_id is not None:
        job = yield find_job(s, job_id)
        return {"jobs": [job_dict(job)]}
    status = arg(request, "status", required=False)
    if status is None:
        raise BadRequest("give 'status' (SCHEDULED, PAUSED, PENDING, RUNNING, SUCCESSFUL, "
                         "FAILED, CANCELED, ACTIVE, COMPLETED) or 'id'")
    jobs = yield s.jobs.list(status, limit=int_arg(request, "limit", -1, 1),
                             offset=int_arg(request, "offset", 0),
                             project=arg(request, "project", required=False),
                             spider=arg(request, "spider", required=False))
    return {"jobs": [job_dict(job) for job in jobs]}


@inlineCallbacks
def cancel_job(s: Services, request: Any):
    job = yield find_job(s, arg(request, "id"))
    job = yield s.jobs.cancel(job.id)
    return {"identifier": job.id, "job-status": job.status.value}


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/schedule-job.json", "POST")(schedule_job)
    router.route("/pause-job.json", "POST")(pause_job)
    router.route("/resume-job.json", "POST")(resume_job)
    router.route("/run-job.json", "POST")(run_job)
    router.route("/update-job.json", "POST")(update_job)
    router.route("/preview-schedule.json", "GET")(preview_schedule)
    router.route("/list-jobs.json", "GET")(list_jobs)
    router.route("/cancel-job.json", "POST")(cancel_job)
