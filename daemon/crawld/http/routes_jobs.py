"""Jobs and schedules: schedule, list, cancel, pause, resume, run, update, preview."""
from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import inlineCallbacks

from .. import spec as specs
from ..errors import BadRequest
from ..model import COMPLETED
from .helpers import Router, arg, find_job, int_arg, policy_args
from .services import Services
from .views import display_zone, iso, job_dict

#: The longest text list-jobs' ``q`` takes, in characters.
MAX_TEXT = 200
#: The most hours job-history.json covers (30 days: completed-max-age-days' default).
MAX_HOURS = 720


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
        kind="spider" if spider is not None else "script")
    return {"identifier": job.id}


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
                             spider=arg(request, "spider", required=False),
                             text=text_arg(request))
    return {"jobs": [job_dict(job) for job in jobs]}


def text_arg(request: Any) -> Optional[str]:
    """list-jobs' ``q``: text the identifier, description, spider or project must
    contain (None when absent or empty; 400 past MAX_TEXT characters)."""
    text = arg(request, "q", required=False)
    if text is not None and len(text) > MAX_TEXT:
        raise BadRequest(f"parameter 'q' is longer than {MAX_TEXT} characters")
    return text or None


@inlineCallbacks
def job_history(s: Services, request: Any):
    """Jobs finished in each of the last ``hours`` hours (the current one included),
    by outcome, from the oldest hour: the dashboard's chart."""
    hours = int_arg(request, "hours", 24, 1, MAX_HOURS)
    first = int(s.reactor.seconds() // 3600) - hours + 1
    rows = yield s.jobs.history(first, hours)
    found: dict[int, dict[str, int]] = {}
    for hour, status, count in rows:
        found.setdefault(hour, {})[status] = count
    return {"hours": hours, "buckets": [
        {"start": iso(float(hour * 3600)),
         **{status.value: found.get(hour, {}).get(status.value, 0) for status in COMPLETED}}
        for hour in range(first, first + hours)]}


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
    router.route("/job-history.json", "GET")(job_history)
