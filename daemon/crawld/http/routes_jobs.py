"""Jobs and schedules: schedule, list, cancel, pause, resume, run, update, preview."""
from __future__ import annotations

import math
from typing import Any, Optional

from twisted.internet.defer import inlineCallbacks

from .. import arguments, spec as specs
from ..errors import BadRequest
from ..model import COMPLETED
from .helpers import Router, arg, find_job, int_arg, policy_args
from .services import Services
from .views import display_zone, iso, job_dict
from .waiting import until_ended, wait_arg


def spider_args(request: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The ``arg-NAME=VALUE`` and ``setting=NAME=VALUE`` parameters of a request, in the
    order given, validated (``arguments``)."""
    named: list[tuple[str, str]] = []
    for key, values in request.args.items():
        if key.startswith(b"arg-"):
            name = text_of(key[4:], "an arg- parameter's name")
            named += [(name, text_of(v, f"parameter 'arg-{name}'")) for v in values]
    args = arguments.parse_args(named)
    settings = arguments.parse_settings(
        text_of(v, "parameter 'setting'") for v in request.args.get(b"setting", ()))
    arguments.check_total(args, settings)
    return args, settings


def text_of(raw: bytes, what: str) -> str:
    """A parameter's bytes as UTF-8 text (400 naming ``what`` otherwise)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not valid UTF-8") from None

#: The longest text list-jobs' ``q`` takes, in characters.
MAX_TEXT = 200
#: The most hours job-history.json covers (30 days: completed-max-age-days' default).
MAX_HOURS = 720


@inlineCallbacks
def schedule_job(s: Services, request: Any):
    """A spider or browser script, now or on a schedule (``when``); with ``wait`` (a
    ``now`` job), the answer comes when the job has ended or the wait has run out."""
    policies = policy_args(request)
    spider = arg(request, "spider", required=False)
    script = arg(request, "script", required=False)
    if (spider is None) == (script is None):
        raise BadRequest("give exactly one of 'spider' and 'script'" if spider else
                         "missing parameter 'spider' (or 'script' for a browser script)")
    args, settings = spider_args(request)
    when = arg(request, "when")
    seconds = wait_arg(request)
    if seconds is not None and not specs.parse(when).is_now:
        raise BadRequest("parameter 'wait' is for when=now jobs; a schedule's runs can be "
                         "waited for with list-jobs.json?id=...&wait=")
    place = s.waits.take() if seconds is not None else None  # 429 before any job exists
    try:
        job = yield s.jobs.schedule(
            arg(request, "project"), spider or script, when,
            description=arg(request, "description", required=False, default=""),
            payload=arg(request, "payload", required=False), policies=policies,
            kind="spider" if spider is not None else "script", args=args,
            settings=settings, priority=number_arg(request, "priority", 0.0),
            version=arg(request, "version", required=False) or None)
    except BaseException:
        if place is not None:
            place.release()
        raise
    if place is None:
        return {"identifier": job.id}
    final = yield until_ended(s, request, place, job.id, seconds)
    return None if final is None else {"identifier": job.id, "job": job_dict(final)}


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
    if b"setting" in request.args or any(k.startswith(b"arg-") for k in request.args):
        raise BadRequest("a schedule's spider arguments and settings cannot be changed; "
                         "cancel it and schedule it again with the new ones")
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
    """One job by ``id``, or a page of jobs by ``status`` (newest change first). With
    ``wait`` (and ``id``), the answer comes when the job has ended or the wait has run
    out, and shows the job as it is then."""
    job_id = arg(request, "id", required=False)
    seconds = wait_arg(request)
    if job_id is not None and seconds is not None:
        job = yield until_ended(s, request, s.waits.take(), job_id, seconds)
        return None if job is None else {"jobs": [job_dict(job)]}
    if job_id is not None:
        job = yield find_job(s, job_id)
        return {"jobs": [job_dict(job)]}
    if seconds is not None:
        raise BadRequest("parameter 'wait' needs 'id': it waits for one job to end")
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
