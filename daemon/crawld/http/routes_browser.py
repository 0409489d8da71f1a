"""Browser jobs, and job output for every job: the routes over browser.Browsers.

Incremental output (job-output.json), messages both ways (job-message.json,
job-posts.json), screenshots on request, artifacts (job-files), ad-hoc browsing
(browse.json), the installed browser (browsers.json) and a project's scripts.
"""
from __future__ import annotations

import base64
import binascii
import mimetypes
import os
from functools import lru_cache
from typing import Any, Optional
from urllib.parse import quote, urlsplit

from twisted.internet.defer import Deferred, inlineCallbacks

from .. import browser, logs
from ..errors import BadRequest, NotFound
from ..payloads import parse_json
from ..remote_shots import ShotError
from .files import (events_view, list_files, open_regular, read_output, read_screenshot,
                    valid_file_name)
from .helpers import Router, arg, find_job, flag_arg, int_arg, seconds_arg, stream
from .services import BrowsersApi, ChannelApi, Services
from .views import iso_ms, job_dict
from .waiting import until_ended

BROWSE_DEFAULT_TIMEOUT = 30.0
BROWSE_MAX_TIMEOUT = 3600.0
BLOCK_MARGIN = 10.0        # browse.json?block=1 waits the job's timeout + kill-grace + this
LAUNCH_MARGIN = 30.0       # a browse job's own limit: its page timeout plus this (launch)


def browse_params(request: Any) -> dict[str, Any]:
    """Validate browse.json's parameters into the runner's CRAWLD_BROWSE object."""
    url = arg(request, "url", required=False)
    html = arg(request, "html", required=False)
    if (url is None) == (html is None):
        raise BadRequest("give exactly one of 'url' and 'html' (url-safe base64)")
    params: dict[str, Any] = {}
    if url is not None:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise BadRequest("parameter 'url' must be an http:// or https:// URL")
        params["url"] = url
    else:
        try:
            raw = base64.b64decode(html + "=" * (-len(html) % 4), altchars=b"-_",
                                   validate=True)
            params["html"] = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            raise BadRequest("parameter 'html' must be UTF-8 HTML in url-safe base64") from None
    wait_for = arg(request, "wait-for", required=False)
    if wait_for:
        params["wait_for"] = wait_for
    params["screenshot"] = flag_arg(request, "screenshot")
    params["timeout"] = seconds_arg(request, "timeout", BROWSE_DEFAULT_TIMEOUT,
                                    BROWSE_MAX_TIMEOUT)
    return params


def browsers_of(s: Services) -> BrowsersApi:
    """The browser jobs' service (404 in a daemon without one)."""
    if s.browsers is None:
        raise NotFound("browser jobs are not available in this daemon")
    return s.browsers


def channel(s: Services, job_id: str) -> ChannelApi:
    """The control channel of a running browser job (404 otherwise)."""
    return browsers_of(s).channel(job_id)


def job_files_listed(s: Services, job_id: str) -> Deferred:
    """A job's artifacts as job-files.json and browse.json list them: with the path
    each one downloads from."""
    def listed(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for f in files:
            f["url"] = f"/job-files/{job_id}/{quote(f['name'], safe='')}"
        return files
    return s.to_thread(list_files, browsers_of(s).files_dir(job_id)).addCallback(listed)


def list_scripts(s: Services, request: Any) -> dict[str, Any]:
    name = arg(request, "project")
    return {"project": name, "scripts": list(s.projects.get(name).scripts)}


@inlineCallbacks
def job_output(s: Services, request: Any):
    """What is new since the client's last poll: output from a byte, events from an id."""
    job = yield find_job(s, arg(request, "id"))
    start = int_arg(request, "from-pos", 0)
    after = int_arg(request, "from-message-id", 0)
    output, pos = yield s.to_thread(read_output, logs.path(s.log_dir, job.id, "out"), start)
    view = yield s.to_thread(events_view, browser.events_path(s.log_dir, job.id), after)
    return {"identifier": job.id, "job-status": job.status.value,
            "running": s.supervisor.is_running(job.id),
            "output": output, "output-pos": pos, **view}


@inlineCallbacks
def job_message(s: Services, request: Any):
    """Send a message (JSON) in to a running browser script."""
    job = yield find_job(s, arg(request, "id"))
    data = parse_json("parameter 'data'", arg(request, "data"))
    try:
        control = channel(s, job.id)
    except NotFound:  # on a worker: its next heartbeat answer carries the message
        if s.cluster is None or not s.cluster.message(job.id, data):
            raise
        return {"identifier": job.id}
    control.message(data)
    return {"identifier": job.id}


@inlineCallbacks
def job_posts(s: Services, request: Any):
    """The messages the script posted since the last call (each one is handed out once)."""
    job = yield find_job(s, arg(request, "id"))
    if s.cluster is not None and job.host is not None:  # it ran on a worker
        found = yield s.cluster.take_posts(job.id)
    else:
        found = s.browsers.take_posts(job.id) if s.browsers else []
    posts = [dict(p, date=iso_ms(p.get("date"))) for p in found]
    return {"identifier": job.id, "posts": posts}


def shot_timeout(s: Services) -> float:
    """How long job-screenshot.png waits for the job ([browser] screenshot-timeout)."""
    settings = s.browsers.settings if s.browsers is not None else browser.Settings(None, 0.0)
    return settings.screenshot_timeout


@inlineCallbacks
def job_screenshot(s: Services, request: Any):
    """A PNG of the running job's page, taken now (relayed through the heartbeat of the
    worker that runs it, for a job on a worker)."""
    job = yield find_job(s, arg(request, "id"))
    full_page = flag_arg(request, "full-page")
    limit = shot_timeout(s)
    try:
        browsers = browsers_of(s)
        control = browsers.channel(job.id)
    except NotFound:
        remote = s.cluster.screenshot(job.id, full_page) if s.cluster is not None else None
        if remote is None:
            raise
        data = yield taken(job.id, remote, limit, s.reactor)
        return png_answer(request, data)
    shot = f"{control.next_shot + 1}.png"
    path = os.path.join(browsers.tmp_dir(job.id), "shots", shot)
    reply = yield taken(job.id, control.screenshot(path, full_page), limit, s.reactor)
    if not reply.get("ok"):
        raise browser.ScreenshotFailed(f"screenshot failed: {reply.get('error') or 'unknown'}")
    try:
        data = yield s.to_thread(read_screenshot, browsers.tmp_root, job.id, "shots", shot)
    except (OSError, ValueError) as exc:
        raise browser.ScreenshotFailed(f"the job's screenshot cannot be read: {exc}") from None
    return png_answer(request, data)


@inlineCallbacks
def taken(job_id: str, waiting: Deferred, limit: float, reactor: Any):
    """What the job answered a screenshot request within ``limit`` seconds; the same
    errors for a local job and a remote one (remote_shots.ShotError: the worker's
    reason)."""
    waiting.addTimeout(limit, reactor)
    try:
        reply = yield waiting
    except NotFound:
        raise NotFound(f"job {job_id} ended before its screenshot was taken") from None
    except ShotError as exc:
        raise browser.ScreenshotFailed(f"screenshot failed: {exc}") from None
    except Exception:
        raise browser.ScreenshotFailed(
            f"job {job_id} did not take a screenshot within {limit:g} s "
            "(screenshot-timeout)") from None
    return reply


def png_answer(request: Any, data: bytes) -> bytes:
    request.setHeader(b"Content-Type", b"image/png")
    request.setHeader(b"Cache-Control", b"no-store")
    return data


@inlineCallbacks
def job_files(s: Services, request: Any):
    job = yield find_job(s, arg(request, "id"))
    files = yield job_files_listed(s, job.id)
    return {"identifier": job.id, "files": files}


@inlineCallbacks
def job_file(s: Services, request: Any, job_id: str, name: str):
    """One artifact, as a download (never through a link, never a FIFO)."""
    job = yield find_job(s, job_id)
    if not valid_file_name(name):
        raise NotFound(f"no such file {name!r}")
    try:  # in a thread, and never through a link or to a FIFO the job put there
        fh = yield s.to_thread(open_regular, browsers_of(s).files_root, job.id, name)
    except OSError:
        raise NotFound(f"job {job.id} has no file {name!r}") from None
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    request.setHeader(b"Content-Type", kind.encode())
    request.setHeader(b"Content-Disposition",
                      f"attachment; filename*=UTF-8''{quote(name, safe='')}".encode())
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    if request.method == b"HEAD":
        fh.close()
        return b""
    yield stream(s, request, fh, lambda: False)
    return None


@inlineCallbacks
def browse(s: Services, request: Any):
    """An ad-hoc browser job: open a page, maybe wait for a selector, maybe screenshot."""
    params = browse_params(request)
    block = flag_arg(request, "block")
    job = yield s.jobs.browse(params, arg(request, "description", required=False,
                                           default=""),
                              timeout=params["timeout"] + LAUNCH_MARGIN)
    if not block:
        return {"identifier": job.id}
    bound = job.timeout + s.supervisor.kill_grace + BLOCK_MARGIN
    final = yield until_ended(s, request, s.waits.take(counted=False), job.id, bound)
    if final is None:
        return None  # the client went away: the job runs on, unwatched
    view = yield s.to_thread(events_view, browser.events_path(s.log_dir, job.id), 0, 0)
    files = yield job_files_listed(s, job.id)
    return {"identifier": job.id, "ended": final.status.completed, "job": job_dict(final),
            "result": view["result"], "files": files}


@inlineCallbacks
def browsers(s: Services, request: Any):
    """The browser browser jobs use, its version, and Playwright's."""
    found = (yield s.browsers.describe()) if s.browsers is not None else None
    if found is None:
        return {"browsers": []}
    if found.get("error") is None:
        found = {**found, "playwright": playwright_version()}
    return {"browsers": [found]}


@lru_cache(maxsize=1)
def playwright_version() -> Optional[str]:
    """The installed Playwright's version (None: not installed), looked up once."""
    from importlib import metadata
    try:
        return metadata.version("playwright")
    except metadata.PackageNotFoundError:
        return None


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/list-scripts.json", "GET")(list_scripts)
    router.route("/job-output.json", "GET")(job_output)
    router.route("/job-message.json", "POST")(job_message)
    router.route("/job-posts.json", "GET")(job_posts)
    router.route("/job-screenshot.png", "GET")(job_screenshot)
    router.route("/job-files.json", "GET")(job_files)
    router.route("/job-files/<string:job_id>/<string:name>", "GET")(job_file)
    router.route("/browse.json", "POST")(browse)
    router.route("/browsers.json", "GET")(browsers)
