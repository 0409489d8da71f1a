"""The jobs service: schedule, list, cancel, counters and retention.

It is what the API calls; it turns requests into store rows and hands them to the
scheduler (templates) or the supervisor (PENDING jobs), and keeps the persistent
counters mirrored in memory so that status.json never waits on the database.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from datetime import tzinfo
from typing import Any, Callable, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from . import arguments, items as item_files, logs, outcomes, spec as specs
from .config import parse_size
from .errors import BadRequest, Conflict, NotFound
from .hookurls import check_url
from .database import COUNTERS
from .events import JobEvents
from .model import Actor, Job, JobStatus, STATUS_GROUPS, TEMPLATES
from .payloads import parse_json
from .seams import Clock, ProjectCatalog
from .scheduler import Scheduler
from .store import Store
from .supervisor import Supervisor

log = Logger(namespace="crawld.jobs")

PURGE_DELAY = 1.0          # batch retention work after a burst of finished jobs
PURGE_PERIOD = 3600.0      # and check ages hourly even when nothing finishes


LIMITS = ("timeout", "no_output_timeout", "max_log_size", "memory_limit")
#: Fields a job keeps whether it runs now or is a template (its runs inherit them).
PER_JOB = (*LIMITS, "webhook", "fail_on", "retry_lost")
MISFIRE = ("once", "skip")
OVERLAP = ("skip", "queue", "allow")
MAX_JITTER = 86400.0
NOT_JUDGED = "fail-on judges a spider's crawl; a browser script's job is judged by its exit"


def parse_seconds(name: str, text: str, top: Optional[float] = None,
                  zero: bool = True) -> float:
    """A request's number of seconds: finite, 0 or more (more than 0 when not ``zero``)
    and at most ``top``; else a 400 naming the parameter and the bounds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero) or (
            top is not None and value > top):
        low = "0 or more" if zero else "more than 0"
        bound = f" and at most {top:g}" if top else ""
        raise BadRequest(f"parameter {name!r} must be a number of seconds, {low}{bound}")
    return value


def validate_policies(tz: Optional[str] = None, jitter: Optional[str] = None,
                      misfire: Optional[str] = None, misfire_grace: Optional[str] = None,
                      overlap: Optional[str] = None, timeout: Optional[str] = None,
                      no_output_timeout: Optional[str] = None,
                      max_log_size: Optional[str] = None,
                      memory_limit: Optional[str] = None,
                      webhook: Optional[str] = None, fail_on: Optional[str] = None,
                      retry_lost: Optional[str] = None) -> dict[str, Any]:
    """Check schedule policy, limit, webhook and fail-on parameters (text from a
    request); return Job fields.

    ``webhook``: a URL the job's events are POSTed to (``none`` on update: remove it);
    whether this server allows it is the webhooks service's call (``Jobs.vet_webhook``).
    ``retry_lost`` (0 or 1): a job whose worker is lost before it wrote items is queued
    again instead of FAILED ([cluster] launcher = celery)."""
    found: dict[str, Any] = {}
    if retry_lost is not None and retry_lost != "":
        if retry_lost not in ("0", "1"):
            raise BadRequest("parameter 'retry-lost' must be 0 or 1")
        found["retry_lost"] = retry_lost == "1"
    if webhook:
        try:
            found["webhook"] = None if webhook.lower() == "none" else check_url(webhook)
        except ValueError as exc:
            raise BadRequest(f"parameter 'webhook' {exc}") from None
    if fail_on:
        found["fail_on"] = outcomes.normalize(fail_on)
    if tz:
        specs.zone(tz)
        found["tz"] = tz
    for name, text, top in (("jitter", jitter, MAX_JITTER),
                            ("misfire-grace", misfire_grace, None),
                            ("timeout", timeout, None),
                            ("no-output-timeout", no_output_timeout, None)):
        if text is None or text == "":
            continue
        found[name.replace("-", "_")] = parse_seconds(name, text, top)
    for name, text in (("max-log-size", max_log_size), ("memory-limit", memory_limit)):
        if text is None or text == "":
            continue
        try:
            found[name.replace("-", "_")] = size = parse_size(text)
            if size > 2 ** 63 - 1:  # SQLite's largest integer
                raise ValueError(text)
        except ValueError:
            raise BadRequest(f"parameter {name!r} must be a size such as 500MB or 0 (no "
                             "limit)") from None
    for name, text, allowed in (("misfire", misfire, MISFIRE), ("overlap", overlap, OVERLAP)):
        if text:
            if text.lower() not in allowed:
                raise BadRequest(f"parameter {name!r} must be one of {', '.join(allowed)}")
            found[name] = text.lower()
    return found


def normalize_payload(payload: Optional[str]) -> str:
    """Validate a JSON payload and re-encode it compactly, as scrapy-do does."""
    if payload is None or payload == "":
        return "{}"
    return json.dumps(parse_json("payload", payload), ensure_ascii=False)


class JobFiles(Protocol):
    """What retention removes of a purged job besides its logs (browser.Browsers)."""

    files_root: str

    def forget(self, job_id: str) -> None:
        """Drop what is kept in memory of the job (unread posts)."""


class Jobs:
    """Job operations for the API: rows in the store, templates to the scheduler,
    PENDING jobs to the supervisor, every change published to the event list."""

    def __init__(self, reactor: Clock, store: Store, projects: ProjectCatalog,
                 scheduler: Scheduler, supervisor: Supervisor, events: JobEvents, log_dir: str,
                 completed_cap: int, max_age_days: float, files: Optional[JobFiles] = None,
                 to_thread: Callable[..., Deferred] = deferToThread,
                 vet_webhook: Callable[[str], None] = lambda url: None,
                 items_dir: Optional[str] = None) -> None:
        """``vet_webhook(url)`` raises BadRequest for a job's webhook URL this server
        does not allow (webhooks.Webhooks.vet); by default every valid URL is.
        ``items_dir``: where spider jobs' items files are (removed by retention)."""
        self.reactor = reactor
        self.store = store
        self.projects = projects
        self.scheduler = scheduler
        self.supervisor = supervisor
        self.events = events
        self.log_dir = log_dir
        self.completed_cap = completed_cap
        self.max_age = max_age_days * 86400
        self.files = files                     # browser jobs' artifacts and posts
        self.items_dir = items_dir
        self.to_thread = to_thread
        self.vet_webhook = vet_webhook
        self.counters: dict[str, int] = {name: 0 for name in COUNTERS}
        self.stopped = False
        self.purge_soon: Any = None      # debounced purge after jobs finish
        self.purge_periodic: Any = None  # the hourly age check
        events.subscribe(self.job_changed)

    # -- time zones (the daemon's, and each schedule's own) ---------------------------
    def zone(self, name: Optional[str]) -> Optional[tzinfo]:
        """A schedule's zone by name, or the daemon's (``[crawld] timezone``) for None."""
        return self.scheduler.zone(name)

    def timezone_name(self) -> str:
        """The daemon's time zone as list-jobs and previews name it ("local": the host's)."""
        zone = self.scheduler.tz
        return str(zone) if zone is not None else "local"

    def schedule_count(self) -> int:
        """How many schedules the scheduler tracks."""
        return len(self.scheduler)

    # -- start-up ---------------------------------------------------------------------
    @inlineCallbacks
    def start(self):
        """Settle orphans, refill the queue and the scheduler from the store."""
        running = yield self.store.list_jobs([JobStatus.RUNNING])
        yield self.supervisor.recover(running)
        rows = yield self.store.schedule_rows()
        for job_id, exc in self.scheduler.load(rows):
            log.error("schedule {id} cannot be loaded: {exc}", id=job_id, exc=exc)
        for job in (yield self.store.pending_in_order()):
            self.supervisor.enqueue(job.id, job.priority)
        yield self.refresh_counters()
        yield self.purge()

    def stop(self) -> None:
        self.stopped = True
        for call in (self.purge_soon, self.purge_periodic):
            if call is not None and call.active():
                call.cancel()

    # -- schedule ---------------------------------------------------------------------
    @inlineCallbacks
    def schedule(self, project: str, spider: str, when: str, description: str = "",
                 payload: Optional[str] = None, policies: Optional[dict[str, Any]] = None,
                 kind: str = "spider", args: Sequence[tuple[str, str]] = (),
                 settings: Sequence[tuple[str, str]] = (), priority: float = 0.0,
                 job_id: Optional[str] = None, version: Optional[str] = None):
        """Create a job: PENDING for ``now``, else a SCHEDULED template. Returns the Job.

        ``spider`` names a spider, or a browser script when ``kind`` is ``script``.
        ``policies``: tz, jitter, misfire, misfire_grace, overlap (recurring jobs) and
        timeout, no_output_timeout, as validated by ``validate_policies``. ``args`` and
        ``settings``: a spider's ``-a`` and ``-s`` pairs, as ``arguments`` parses them
        (a browser script takes neither: its argument is the payload). ``priority``
        orders the pending queue (higher first); ``job_id`` is the job's identifier
        when the client chose one (scrapyd's ``jobid``; a Conflict if it is taken);
        ``version`` pins a stored version of the project (None: the current one when it
        starts).
        """
        if kind != "spider" and (args or settings):
            raise BadRequest("spider arguments (arg-NAME) and settings (setting=) are for "
                             "spiders; a browser script gets the payload as job.argument")
        known = self.projects.get(project)
        names = known.scripts if kind == "script" else known.spiders
        if version is not None:
            pinned = self.projects.get_version(project, version)
            version, names = pinned.name, (pinned.scripts if kind == "script"
                                           else pinned.spiders)
        if spider not in names:
            raise NotFound(f"unknown {kind} {project}/{spider}")
        if not math.isfinite(priority):
            raise BadRequest("parameter 'priority' must be a finite number")
        spec = specs.parse(when)
        payload = normalize_payload(payload)
        policies = dict(policies or {})
        if policies.get("webhook"):
            self.vet_webhook(policies["webhook"])
        if job_id is not None and (yield self.store.get_job(job_id)) is not None:
            raise Conflict(f"a job {job_id!r} exists already; choose another identifier")
        now = self.reactor.seconds()
        limits = {k: policies.pop(k) for k in PER_JOB if k in policies}
        if kind != "spider" and "fail_on" in limits:
            raise BadRequest(NOT_JUDGED)
        job = Job(id=job_id or str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER,
                  schedule="now", project=project, spider=spider, description=description,
                  payload=payload, created=now, updated=now, kind=kind, priority=priority,
                  args=arguments.to_json(args), settings=arguments.to_json(settings),
                  version=version, **limits)
        if not spec.is_now:
            job = job.evolve(status=JobStatus.SCHEDULED, schedule=when, **policies)
            job = job.evolve(next_fire=self.scheduler.first_fire(spec, job.tz))
        job = yield self.store.add_job(job)
        if spec.is_now:
            self.launch(job)
        else:
            self.events.publish(job)
            self.scheduler.add(job)
        log.info("job {id} scheduled: {project}/{spider} when={when!r}", id=job.id,
                 project=project, spider=spider, when=when)
        return job

    @inlineCallbacks
    def browse(self, params: dict[str, Any], description: str = "",
               timeout: Optional[float] = None):
        """An ad-hoc browser job with no project: open a URL (or HTML), maybe wait for a
        selector and take a screenshot. Runs now; returns the PENDING Job."""
        now = self.reactor.seconds()
        job = Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER,
                  schedule="now", project="", spider="", description=description,
                  payload=json.dumps(params, ensure_ascii=False), created=now, updated=now,
                  kind="browse", timeout=timeout)
        job = yield self.store.add_job(job)
        self.launch(job)
        log.info("job {id}: browse {what}", id=job.id,
                 what=params.get("url") or f"{len(params.get('html', ''))} bytes of HTML")
        return job

    def launch(self, job: Job) -> None:
        """A PENDING job exists: publish it and hand it to the supervisor."""
        self.events.publish(job)
        self.supervisor.enqueue(job.id, job.priority)

    # -- read -------------------------------------------------------------------------
    @inlineCallbacks
    def get(self, job_id: str):
        job = yield self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"unknown job {job_id!r}")
        return job

    def list(self, status: str, limit: int = -1, offset: int = 0,
             project: Optional[str] = None, spider: Optional[str] = None,
             text: Optional[str] = None):
        """Jobs by status name or group (ACTIVE, COMPLETED), newest change first;
        ``text``: only those whose identifier, description, spider or project has it."""
        try:
            statuses = STATUS_GROUPS[status.upper()]
        except KeyError:
            raise BadRequest(f"unknown status {status!r}; one of "
                             f"{', '.join(STATUS_GROUPS)}") from None
        return self.store.list_jobs(statuses, limit, offset, project, spider, text)

    def history(self, first_hour: int, hours: int) -> Deferred:
        """How many jobs finished in each of ``hours`` hours from ``first_hour`` (hours
        since the epoch), by status: (hour, status, count) rows, counts over 0."""
        return self.store.job_history(first_hour, hours)

    def ran_spider_jobs(self, project: Optional[str] = None):
        """(running, completed) spider jobs that started, lean rows (model.RanJob)."""
        return self.store.ran_spider_jobs(project)

    def pending(self):
        """PENDING jobs in the queue's order (priority, then arrival)."""
        return self.store.pending_in_order()

    def status_counts(self):
        """How many jobs are in each status (name -> count), from the store."""
        return self.store.status_counts()

    # -- cancel -----------------------------------------------------------------------
    @inlineCallbacks
    def cancel(self, job_id: str):
        """Cancel a scheduled, pending or running job; returns the final Job."""
        for _ in range(3):  # a job may change status under us; look again
            job = yield self.get(job_id)
            now = self.reactor.seconds()
            if job.status in (JobStatus.SCHEDULED, JobStatus.PAUSED, JobStatus.PENDING):
                done = yield self.store.transition(job_id, [job.status],
                                             JobStatus.CANCELED, now, finished=now,
                                             reason="canceled by user", next_fire=None)
                if done is not None:
                    if job.status is JobStatus.SCHEDULED:
                        self.scheduler.remove(job_id)
                    self.events.publish(done)
                    return done
            elif job.status is JobStatus.RUNNING:
                waiting = self.supervisor.cancel(job_id)
                if waiting is not None:
                    return (yield waiting)
            else:
                raise Conflict(f"job {job_id} is not active (it is {job.status.value})")
        raise Conflict(f"job {job_id} changed status while being canceled; try again")

    # -- managing schedules -----------------------------------------------------------
    @inlineCallbacks
    def _template(self, job_id: str, *statuses: JobStatus):
        job = yield self.get(job_id)
        if job.status not in statuses:
            raise Conflict(f"job {job_id} is {job.status.value}; this needs a "
                           f"{' or '.join(s.value for s in statuses)} job")
        return job

    @inlineCallbacks
    def _move(self, job_id: str, current: JobStatus, status: JobStatus, **fields: Any):
        job = yield self.store.transition(job_id, [current], status,
                                    self.reactor.seconds(), **fields)
        if job is None:
            raise Conflict(f"job {job_id} changed status; try again")
        return job

    @inlineCallbacks
    def pause(self, job_id: str):
        """Stop a schedule from firing until it is resumed (SCHEDULED -> PAUSED)."""
        yield self._template(job_id, JobStatus.SCHEDULED)
        job = yield self._move(job_id, JobStatus.SCHEDULED, JobStatus.PAUSED, next_fire=None)
        self.scheduler.remove(job_id)
        self.events.publish(job)  # a "changed" event: lists that show it follow
        return job

    @inlineCallbacks
    def resume(self, job_id: str):
        """PAUSED -> SCHEDULED; the next firing is the spec's next time from now."""
        job = yield self._template(job_id, JobStatus.PAUSED)
        nxt = self.scheduler.first_fire(specs.parse(job.schedule), job.tz)
        job = yield self._move(job_id, JobStatus.PAUSED, JobStatus.SCHEDULED, next_fire=nxt)
        self.scheduler.add(job)
        self.events.publish(job)
        return job

    @inlineCallbacks
    def run_now(self, job_id: str):
        """Fire a schedule once, now, outside its series (its overlap policy aside)."""
        template = yield self._template(job_id, *TEMPLATES)
        now = self.reactor.seconds()
        child = yield self.store.add_job(self.scheduler.child_of(template, now, Actor.USER))
        yield self.store.update_job(job_id, last_run=now, updated=now)
        self.launch(child)
        updated = yield self.store.get_job(job_id)
        if updated is not None:
            self.events.publish(updated)  # its last run changed
        return child

    @inlineCallbacks
    def update(self, job_id: str, when: Optional[str] = None,
               description: Optional[str] = None, payload: Optional[str] = None,
               policies: Optional[dict[str, Any]] = None):
        """Change a schedule's when, description, payload, time zone or policies."""
        job = yield self._template(job_id, *TEMPLATES)
        fields: dict[str, Any] = dict(policies or {})
        if fields.get("webhook"):
            self.vet_webhook(fields["webhook"])
        if job.is_browser and "fail_on" in fields:
            raise BadRequest(NOT_JUDGED)
        if when is not None:
            if specs.parse(when).is_now:
                raise BadRequest("a schedule's when cannot become 'now'; use run-job.json")
            fields["schedule"] = when
        if description is not None:
            fields["description"] = description
        if payload is not None:
            fields["payload"] = normalize_payload(payload)
        if not fields:
            raise BadRequest("nothing to update: give when, description, payload, tz, "
                             "jitter, misfire, misfire-grace, overlap, timeout, "
                             "no-output-timeout, max-log-size, memory-limit, webhook or "
                             "fail-on")
        changed = job.evolve(**fields)
        spec = specs.parse(changed.schedule)  # 400 before anything is stored, if a
        # crawld that knew no limits stored a schedule this one refuses: give a new when
        if job.status is JobStatus.SCHEDULED and ("schedule" in fields or "tz" in fields):
            fields["next_fire"] = self.scheduler.first_fire(spec, changed.tz)
        fields["updated"] = self.reactor.seconds()
        yield self.store.update_job(job_id, **fields)
        job = yield self.get(job_id)
        if job.status is JobStatus.SCHEDULED:
            self.scheduler.add(job)  # replaces the old entry (a new generation)
        self.events.publish(job)
        return job

    # -- counters and retention -------------------------------------------------------
    def job_changed(self, job: Job) -> None:
        """A job changed (an event): refresh counters, plan retention."""
        if self.stopped or not (job.status.completed or job.status is JobStatus.RUNNING):
            return
        if job.status is JobStatus.RUNNING and job.stats is not None:
            return  # a stats update (stats.py): no counter moved
        self.refresh_counters().addErrback(
            lambda f: log.failure("refreshing the counters failed", f))
        if job.status.completed and (self.purge_soon is None or not self.purge_soon.active()):
            self.purge_soon = self.reactor.callLater(PURGE_DELAY, self._purge_logged)

    @inlineCallbacks
    def refresh_counters(self):
        self.counters = yield self.store.counters()

    def _purge_logged(self) -> None:
        if not self.stopped:
            self.purge().addErrback(lambda f: log.failure("retention failed", f))

    def _remove_files(self, job_ids: list[str]) -> None:
        """A purged job's logs, events, items and artifacts (blocking: runs in a thread)."""
        for job_id in job_ids:
            logs.remove(self.log_dir, job_id)
            if self.items_dir is not None:
                item_files.remove(self.items_dir, job_id)
            if self.files is not None:
                shutil.rmtree(os.path.join(self.files.files_root, job_id), ignore_errors=True)
                self.files.forget(job_id)

    @inlineCallbacks
    def purge(self):
        """Drop completed jobs beyond completed-cap or older than the max age, with logs."""
        if self.purge_periodic is not None and self.purge_periodic.active():
            self.purge_periodic.cancel()
        self.purge_periodic = self.reactor.callLater(PURGE_PERIOD, self._purge_logged)
        cutoff = self.reactor.seconds() - self.max_age
        removed = yield self.store.purge(self.completed_cap, cutoff)
        self.events.removed(removed)
        if removed:
            yield self.to_thread(self._remove_files, removed)
            log.info("retention: removed {n} completed job(s) and their logs", n=len(removed))
