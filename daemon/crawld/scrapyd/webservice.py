"""scrapyd 1.6's webservice (``*.json``) over crawld's jobs and projects.

Each endpoint takes the services and the request and returns a dict (or a Deferred of
one): the answer's keys before ``status`` and ``node_name`` (front.py adds those). A
refusal is a CrawldError whose message is scrapyd's text: ``project 'x' not found``,
``'spider' parameter is required``, ``DirectoryTraversalError: ../p``... Parameters
come from the query string and the form body alike, as in scrapyd. Only spider jobs are
scrapyd's jobs: browser jobs and schedule templates stay on the native API.
"""
from __future__ import annotations

import json
import uuid
import zipfile
from datetime import datetime
from functools import lru_cache
from io import BytesIO
from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from .. import archive, arguments as job_arguments, items as item_files
from ..arguments import as_object
from ..errors import BadRequest, Conflict, NotFound
from ..model import JOB_ID_RE, Job, JobStatus, RanJob
from .services import ScrapydServices
from .view import JobsView

log = Logger(namespace="crawld.scrapyd")

#: schedule.json's own parameters; every other one is a spider argument
RESERVED = (b"project", b"spider", b"_version", b"jobid", b"priority", b"setting")
#: what schedule.json adds to a job's arguments, as scrapyd's launcher passes them
#: (``-a _job=<id>``, ``-a _version=<v>``); listjobs.json leaves them out of ``args``
HIDDEN_ARGS = ("_job", "_version")
SIGNALS = {"INT", "TERM", "KILL", "HUP", "QUIT", "USR1", "USR2", "BREAK"}


# -- parameters -----------------------------------------------------------------------
def param(request: Any, name: str, required: bool = True) -> Optional[str]:
    """A parameter as text, as scrapyd's ``@param`` reads it (the first value)."""
    values = request.args.get(name.encode())
    if not values:
        if required:
            raise BadRequest(f"'{name}' parameter is required")
        return None
    try:
        return values[0].decode()
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{name} is invalid: {exc}") from None


def stored_project(request: Any) -> str:
    """``project`` of an endpoint that reaches the stored eggs: a name that would leave
    their directory is scrapyd's DirectoryTraversalError."""
    name = param(request, "project")
    if "/" in name or "\\" in name or name == "..":
        raise BadRequest(f"DirectoryTraversalError: {name}")
    return name


def known_project(s: ScrapydServices, name: Optional[str]) -> None:
    """scrapyd's check that a project exists (it has at least one version)."""
    if name is not None and name not in s.projects.names():
        raise BadRequest(f"project '{name}' not found")


def spiders_of(s: ScrapydServices, project: str, version: Optional[str]) -> list[str]:
    """The spiders of a project's version (its current one when None)."""
    if not version:
        return list(s.projects.get(project).spiders)
    try:
        return list(s.projects.get_version(project, version).spiders)
    except NotFound:
        raise BadRequest(f"version '{version}' not found") from None


@lru_cache(maxsize=8192)
def local_time(ts: Optional[float]) -> Optional[str]:
    """A time as scrapyd shows one: ``str(datetime)`` in local time (cached: listjobs
    shows the same finished jobs' times on every request)."""
    return None if ts is None else str(datetime.fromtimestamp(ts))


def log_url(job: Union[Job, RanJob]) -> Optional[str]:
    """Where the job's log is on this listener (once it has started: crawld creates
    a job's logs before it runs, and removes them with the job)."""
    if job.started is None:
        return None
    return f"/logs/{job.project}/{job.spider}/{job.id}.log"


def items_url(job: Union[Job, RanJob], with_items: Union[set[str], bool]) -> Optional[str]:
    """Where the job's items are on this listener, when it has an items file (its id
    in ``with_items``, or ``with_items`` true), as scrapyd gives ``items_url`` when the
    feed's file exists."""
    if not (with_items is True or (with_items is not False and job.id in with_items)):
        return None
    return f"/items/{job.project}/{job.spider}/{job.id}.{item_files.EXT}"


def item_ids(s: ScrapydServices, jobs: list[RanJob]) -> Union[set[str], Deferred]:
    """The ids of ``jobs`` that have an items file: at once when the view knows them
    all, else a Deferred of them after a listing of the items folder (in a thread)."""
    view = s.view
    if view.settled(jobs):
        return {j.id for j in jobs if view.has_items(j.id)}
    return view.list_items().addCallback(
        lambda listed: {j.id for j in jobs if view.has_items(j.id, listed)})


class Encoded(bytes):
    """An answer's keys already encoded as JSON (``"a": 1, "b": [...]``, what goes
    between the braces, in scrapyd's encoding): front.py adds ``status`` and
    ``node_name`` after them. listjobs.json answers from encoded pieces kept between
    requests instead of encoding every finished job again."""


#: scrapyd's encoder (ASCII with escapes, its separators): the pieces of an Encoded
#: answer join as one encoding of the whole dict would have written them
JSON = json.JSONEncoder(ensure_ascii=True)


def scrapyd_state(job: Optional[Job], project: Optional[str]) -> Optional[str]:
    """status.json's ``currstate`` of a job (None: not a scrapyd job, or not there)."""
    if job is None or job.kind != "spider" or (project is not None and job.project != project):
        return None
    if job.status is JobStatus.PENDING:
        return "pending"
    if job.status is JobStatus.RUNNING:
        return "running"
    if job.status.completed and job.started is not None:
        return "finished"
    return None  # a template, or canceled before it ran (scrapyd drops those)


@inlineCallbacks
def find(s: ScrapydServices, job_id: str):
    """The job ``job_id``, or None."""
    if not JOB_ID_RE.fullmatch(job_id):
        return None
    try:
        return (yield s.jobs.get(job_id))
    except NotFound:
        return None


# -- endpoints ------------------------------------------------------------------------
def daemonstatus(s: ScrapydServices, request: Any) -> Union[Encoded, Deferred]:
    """The store's counts of every job, kept in the view until the next job event
    (only events move them), so that a poller does not wait on the store each time."""
    view = s.view
    if view.counts is not None:
        return view.counts
    generation = view.generation

    def got(counts: dict[str, int]) -> Encoded:
        answer = Encoded(JSON.encode({
            "pending": counts.get("PENDING", 0), "running": counts.get("RUNNING", 0),
            "finished": sum(counts.get(st.value, 0) for st in
                            (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELED)),
        })[1:-1].encode())
        if view.generation == generation:  # no event meanwhile: the counts still hold
            view.counts = answer
        return answer
    return s.jobs.status_counts().addCallback(got)


@inlineCallbacks
def addversion(s: ScrapydServices, request: Any):
    project = stored_project(request)
    version = param(request, "version")
    eggs = request.args.get(b"egg")
    if not eggs:
        raise BadRequest("'egg' parameter is required")
    egg = eggs[0]
    if not zipfile.is_zipfile(BytesIO(egg)):
        raise BadRequest("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")
    if not archive.valid_name(project):
        raise BadRequest(f"invalid project name {project!r}: crawld's project names match "
                         f"{archive.NAME_RE.pattern}")
    stored = yield s.projects.add_egg(project, version, egg, s.settings.max_archive)
    return {"project": project, "version": version, "spiders": len(stored.spiders)}


@inlineCallbacks
def schedule(s: ScrapydServices, request: Any):
    project = param(request, "project")
    spider = param(request, "spider")
    version = param(request, "_version", required=False)
    job_id = param(request, "jobid", required=False)
    text = param(request, "priority", required=False)
    texts = []
    for raw in request.args.get(b"setting", []):
        try:
            texts.append(raw.decode())
        except UnicodeDecodeError as exc:
            raise BadRequest(f"setting is invalid: {exc}") from None
    # the native API's checks: NAME=VALUE, bounds, and the settings no job may set
    # (the telnet console, extensions...: arguments.REFUSED_SETTINGS), refused here
    # as scrapyd refuses (200, status error, the message)
    settings = job_arguments.parse_settings(texts)
    try:
        priority = float(text) if text is not None else 0.0
    except ValueError as exc:
        raise BadRequest(f"priority is invalid: {exc}") from None
    known_project(s, project)
    if spider not in spiders_of(s, project, version):
        raise BadRequest(f"spider '{spider}' not found")
    if job_id is None:
        job_id = uuid.uuid4().hex
    elif not JOB_ID_RE.fullmatch(job_id):
        raise BadRequest(f"jobid is invalid: crawld's job identifiers match "
                         f"{JOB_ID_RE.pattern}")
    arguments = []
    for key, values in request.args.items():
        if key in RESERVED:
            continue
        try:
            arguments.append((key.decode(), values[0].decode()))
        except UnicodeDecodeError as exc:
            raise BadRequest(f"a spider argument is invalid: {exc}") from None
    arguments.append(("_job", job_id))
    job_arguments.check_total(arguments, settings)
    if version:
        arguments.append(("_version", version))
    job = yield s.jobs.schedule(project, spider, "now", priority=priority, job_id=job_id,
                                args=arguments, settings=settings,
                                version=version or None)
    return {"jobid": job.id}


@inlineCallbacks
def cancel(s: ScrapydServices, request: Any):
    project = param(request, "project")
    job_id = param(request, "job")
    sig = param(request, "signal", required=False) or "INT"
    if not (sig.isdigit() or sig.upper().removeprefix("SIG") in SIGNALS):
        raise BadRequest(f"signal is invalid: {sig!r}")
    known_project(s, project)
    job = yield find(s, job_id)
    state = scrapyd_state(job, project)
    if state == "pending":
        try:
            yield s.jobs.cancel(job.id)
        except Conflict:  # it started meanwhile: it is being canceled as running
            s.jobs.cancel(job.id).addErrback(lambda f: None)
            state = "running"
    elif state == "running":
        # crawld's cancel (TERM, then KILL after kill-grace); answered at once, as
        # scrapyd answers once it has sent its signal
        s.jobs.cancel(job.id).addErrback(
            lambda f: log.failure("canceling job {id} failed", f, id=job.id))
    else:
        state = None
    return {"prevstate": state}


def status(s: ScrapydServices, request: Any) -> Encoded:
    """scrapyd's job state, from the view (no store round trip: status.json is polled),
    its answer encoded once per state."""
    job_id = param(request, "job")
    project = param(request, "project", required=False)
    known_project(s, project)
    return _CURRSTATE[s.view.state(job_id, project)]


#: status.json's key, encoded, for each state
_CURRSTATE = {state: Encoded(JSON.encode({"currstate": state})[1:-1].encode())
              for state in ("pending", "running", "finished", None)}


def listprojects(s: ScrapydServices, request: Any) -> dict[str, Any]:
    return {"projects": s.projects.names()}


def listversions(s: ScrapydServices, request: Any) -> dict[str, Any]:
    return {"versions": s.projects.version_names(stored_project(request))}


def listspiders(s: ScrapydServices, request: Any) -> dict[str, Any]:
    project = param(request, "project")
    version = param(request, "_version", required=False)
    known_project(s, project)
    return {"spiders": spiders_of(s, project, version)}


def listjobs(s: ScrapydServices, request: Any) -> Union[Encoded, Deferred]:
    """scrapyd's three lists, from the view: at once when it knows which jobs have
    items (after a listing of the items folder otherwise, once per job)."""
    project = param(request, "project", required=False)
    known_project(s, project)
    view = s.view
    if view.settled(view.started(project)) and (
            ("finished", project) in view.memo or view.settled(view.ended(project))):
        return _listing(view, project, None)
    return view.list_items().addCallback(lambda listed: _listing(view, project, listed))


def _listing(view: JobsView, project: Optional[str], listed: Optional[set[str]]
             ) -> Encoded:
    """listjobs.json's keys, encoded; the finished part (and each pending job's entry)
    kept in the view until what it shows changes."""
    encode = JSON.encode
    pending = []
    for j in view.queued(project):
        entry = view.entries.get(j.id)
        if entry is None:
            entry = view.entries[j.id] = encode({
                "id": j.id, "project": j.project, "spider": j.spider,
                "version": j.version, "settings": as_object(j.settings),
                "args": {k: v for k, v in as_object(j.args).items()
                         if k not in HIDDEN_ARGS}})
        pending.append(entry)
    running = [encode({"id": j.id, "project": j.project, "spider": j.spider, "pid": j.pid,
                       "start_time": local_time(j.started), "log_url": log_url(j),
                       "items_url": items_url(j, view.has_items(j.id, listed))})
               for j in view.started(project)]
    key = ("finished", project)
    finished = view.memo.get(key)
    if finished is None:
        ended = view.ended(project)
        entries = []
        for j in ended:
            entry = view.entries.get(j.id)
            if entry is None:
                entry = encode({"id": j.id, "project": j.project, "spider": j.spider,
                                "start_time": local_time(j.started),
                                "end_time": local_time(j.finished), "log_url": log_url(j),
                                "items_url": items_url(j, view.has_items(j.id, listed))})
                if j.id in view.items or view.items_dir is None:
                    view.entries[j.id] = entry  # its items answer is settled
            entries.append(entry)
        finished = ", ".join(entries).encode("ascii")  # (scrapyd's encoding is ASCII)
        if view.settled(ended):
            view.memo[key] = finished
    return Encoded(b"".join((b'"pending": [', ", ".join(pending).encode("ascii"),
                             b'], "running": [', ", ".join(running).encode("ascii"),
                             b'], "finished": [', finished, b"]")))


@inlineCallbacks
def delversion(s: ScrapydServices, request: Any):
    project = stored_project(request)
    version = param(request, "version")
    try:
        yield s.projects.delete_version(project, version)
    except NotFound:
        raise BadRequest(f"version '{version}' not found") from None
    return {}


@inlineCallbacks
def delproject(s: ScrapydServices, request: Any):
    project = stored_project(request)
    known_project(s, project)
    yield s.projects.remove(project)
    return {}


#: path -> (methods besides OPTIONS and HEAD, endpoint), as scrapyd's [services] lists them
ENDPOINTS: dict[bytes, tuple[tuple[str, ...], Callable[..., Any]]] = {
    b"/daemonstatus.json": (("GET",), daemonstatus),
    b"/addversion.json": (("POST",), addversion),
    b"/schedule.json": (("POST",), schedule),
    b"/cancel.json": (("POST",), cancel),
    b"/status.json": (("GET",), status),
    b"/listprojects.json": (("GET",), listprojects),
    b"/listversions.json": (("GET",), listversions),
    b"/listspiders.json": (("GET",), listspiders),
    b"/listjobs.json": (("GET",), listjobs),
    b"/delversion.json": (("POST",), delversion),
    b"/delproject.json": (("POST",), delproject),
}
