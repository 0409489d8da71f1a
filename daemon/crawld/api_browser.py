"""The HTTP API of browser jobs (and job output for every job): routes on api.py's app.

Incremental output (job-output.json), messages both ways (job-message.json,
job-posts.json), screenshots on request, artifacts, ad-hoc browsing (browse.json) and
the installed browser (browsers.json). Imported by api.py, which owns the app, the
error handling and the endpoint wrapper; these functions are methods of ``Api`` in all
but name (Klein passes the Api instance as ``self``).
"""
from __future__ import annotations

import base64
import binascii
import itertools
import json
import mimetypes
import os
import stat
from typing import Any, Optional
from urllib.parse import quote, urlsplit

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutput

from . import browser, logs
from .api import arg, int_arg, iso_ms, job_dict, route
from .errors import BadRequest, NotFound
from .jobs import parse_seconds

MAX_OUTPUT = 1024 * 1024   # bytes of stdout per job-output.json answer
MAX_MESSAGES = 1000        # events per job-output.json answer
def valid_file_name(name: str) -> bool:
    """What job.save accepts: a plain name, not hidden, no separator, no NUL."""
    return bool(name) and not name.startswith(".") and "/" not in name and "\0" not in name
BROWSE_DEFAULT_TIMEOUT = 30.0
BROWSE_MAX_TIMEOUT = 3600.0
BLOCK_MARGIN = 10.0        # browse.json?block=1 waits the job's timeout + kill-grace + this
LAUNCH_MARGIN = 30.0       # a browse job's own limit: its page timeout plus this (launch)


def read_output(path: str, start: int, limit: int = MAX_OUTPUT) -> tuple[str, int]:
    """Up to ``limit`` bytes of a log from byte ``start``, cut at a UTF-8 boundary.

    Returns the text and the position to ask from next time (runs in a thread).
    """
    try:
        with open(path, "rb") as f:
            if start >= os.fstat(f.fileno()).st_size:
                return "", start  # nothing there yet (a seek that far may even fail)
            f.seek(start)
            data = f.read(limit)
    except FileNotFoundError:
        return "", start
    if data:  # more may follow (the job may be writing): do not split a character
        for back in range(1, min(4, len(data)) + 1):
            lead = data[-back]
            if lead & 0xC0 == 0xC0:  # a lead byte: is its sequence complete?
                need = 2 if lead & 0xE0 == 0xC0 else 3 if lead & 0xF0 == 0xE0 else 4
                if back < need:
                    data = data[:-back]
                break
            if lead & 0x80 == 0:
                break
    return data.decode("utf-8", "replace"), start + len(data)


def events_view(path: str, after: int, limit: int = MAX_MESSAGES) -> dict[str, Any]:
    """job-output.json's view of a job's events, built in a thread: the messages after
    ``after`` (at most ``limit``, dates as ISO 8601), the last progress and result."""
    events = browser.read_events(path, 0, 10 ** 12)
    progress, label = browser.last_progress(events)
    newer = (e for e in events if e.get("id", 0) > after)
    results = [e.get("data") for e in events if e.get("type") == "result"]
    return {"messages": [dict(e, date=iso_ms(e.get("date")))
                         for e in itertools.islice(newer, limit)],
            "progress": progress, "progress-label": label,
            "result": results[-1] if results else None}


def list_files(folder: str) -> list[dict[str, Any]]:
    """A job's artifacts: name, size and when it was written, sorted by name (runs in
    a thread)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    found = []
    for e in entries:
        if e.is_file(follow_symlinks=False) and not e.name.startswith("."):
            st = e.stat()
            found.append({"name": e.name, "size": st.st_size,
                          "modified": iso_ms(st.st_mtime)})
    return found


MAX_SCREENSHOT = 64 * 1024 * 1024


def open_regular(root: str, *parts: str) -> Any:
    """Open ``root/parts...`` for reading, but only a regular file reached without
    following a link (blocking: run it in a thread). Returns a binary file object.

    The job owns the folders below ``root`` (its files and temp dirs) and may put
    anything there: a symlink to the database (read as root under run-as), a FIFO (an
    open that never returns), /dev/zero. Each component is opened with O_NOFOLLOW from
    the one before, and the result must be a regular file; FileNotFoundError otherwise.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (
                os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:  # ELOOP (a link), ENOTDIR, ENXIO...
                raise FileNotFoundError(f"no regular file {part!r}") from exc
            os.close(fd)
            fd = child
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError("not a regular file")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
        fd = -1
        return handle
    finally:
        if fd >= 0:
            os.close(fd)


def read_screenshot(root: str, *parts: str) -> bytes:
    """A screenshot the job wrote under its temp dir, read safely, then removed."""
    try:
        with open_regular(root, *parts) as f:
            data = f.read(MAX_SCREENSHOT + 1)
    finally:
        try:
            os.unlink(os.path.join(root, *parts))
        except OSError:
            pass
    if len(data) > MAX_SCREENSHOT:
        raise ValueError("screenshot over 64 MiB")
    return data


def seconds_arg(request: Any, name: str, default: float, top: float) -> float:
    text = arg(request, name, required=False)
    if text is None or text == "":
        return default
    return parse_seconds(name, text, top, zero=False)


def flag_arg(request: Any, name: str) -> bool:
    text = (arg(request, name, required=False) or "0").lower()
    if text not in ("0", "1", "true", "false", "yes", "no"):
        raise BadRequest(f"parameter {name!r} must be 1 or 0")
    return text in ("1", "true", "yes")


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


def job_files_listed(self: Any, job_id: str) -> Any:
    """A job's artifacts as job-files.json and browse.json list them: with the path
    each one downloads from."""
    def listed(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for f in files:
            f["url"] = f"/job-files/{job_id}/{quote(f['name'], safe='')}"
        return files
    return self.to_thread(list_files, self.browsers.files_dir(job_id)).addCallback(listed)


@route("/list-scripts.json", "GET")
def list_scripts(self: Any, request: Any) -> dict[str, Any]:
    name = arg(request, "project")
    return {"project": name, "scripts": list(self.projects.get(name).scripts)}


@route("/job-output.json", "GET")
@inlineCallbacks
def job_output(self: Any, request: Any):
    """What is new since the client's last poll: output from a byte, events from an id."""
    job = yield self._job(arg(request, "id"))
    start = int_arg(request, "from-pos", 0)
    after = int_arg(request, "from-message-id", 0)
    output, pos = yield self.to_thread(read_output, logs.path(self.log_dir, job.id, "out"),
                                       start)
    view = yield self.to_thread(events_view, browser.events_path(self.log_dir, job.id),
                                after)
    return {"identifier": job.id, "job-status": job.status.value,
            "running": self.supervisor.is_running(job.id),
            "output": output, "output-pos": pos, **view}


@route("/job-message.json", "POST")
@inlineCallbacks
def job_message(self: Any, request: Any):
    """Send a message (JSON) in to a running browser script."""
    job = yield self._job(arg(request, "id"))
    text = arg(request, "data")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"parameter 'data' is not valid JSON: {exc}") from None
    self._channel(job.id).message(data)
    return {"identifier": job.id}


@route("/job-posts.json", "GET")
@inlineCallbacks
def job_posts(self: Any, request: Any):
    """The messages the script posted since the last call (each one is handed out once)."""
    job = yield self._job(arg(request, "id"))
    posts = [dict(p, date=iso_ms(p.get("date")))
             for p in (self.browsers.take_posts(job.id) if self.browsers else [])]
    return {"identifier": job.id, "posts": posts}


@route("/job-screenshot.png", "GET")
@inlineCallbacks
def job_screenshot(self: Any, request: Any):
    """A PNG of the running job's page, taken now."""
    job = yield self._job(arg(request, "id"))
    full_page = flag_arg(request, "full-page")
    channel = self._channel(job.id)
    shot = f"{channel.next_shot + 1}.png"
    path = os.path.join(self.browsers.tmp_dir(job.id), "shots", shot)
    waiting = channel.screenshot(path, full_page)
    waiting.addTimeout(self.browsers.settings.screenshot_timeout, self.reactor)
    try:
        reply = yield waiting
    except NotFound:
        raise NotFound(f"job {job.id} ended before its screenshot was taken") from None
    except Exception:
        raise browser.ScreenshotFailed(
            f"job {job.id} did not take a screenshot within "
            f"{self.browsers.settings.screenshot_timeout:g} s (screenshot-timeout)") from None
    if not reply.get("ok"):
        raise browser.ScreenshotFailed(f"screenshot failed: {reply.get('error') or 'unknown'}")
    try:
        data = yield self.to_thread(read_screenshot, self.browsers.tmp_root, job.id,
                                    "shots", shot)
    except (OSError, ValueError) as exc:
        raise browser.ScreenshotFailed(f"the job's screenshot cannot be read: {exc}") from None
    request.setHeader(b"Content-Type", b"image/png")
    request.setHeader(b"Cache-Control", b"no-store")
    return data


@route("/job-files.json", "GET")
@inlineCallbacks
def job_files(self: Any, request: Any):
    job = yield self._job(arg(request, "id"))
    files = yield job_files_listed(self, job.id)
    return {"identifier": job.id, "files": files}


@route("/job-files/<string:job_id>/<string:name>", "GET")
@inlineCallbacks
def job_file(self: Any, request: Any, job_id: str, name: str):
    job = yield self._job(job_id)
    if not valid_file_name(name):
        raise NotFound(f"no such file {name!r}")
    try:  # in a thread, and never through a link or to a FIFO the job put there
        fh = yield self.to_thread(open_regular, self.browsers.files_root, job.id, name)
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
    yield self.stream(request, fh, lambda: False)
    return None


@route("/browse.json", "POST")
@inlineCallbacks
def browse(self: Any, request: Any):
    """An ad-hoc browser job: open a page, maybe wait for a selector, maybe screenshot."""
    params = browse_params(request)
    block = flag_arg(request, "block")
    job = yield self.jobs.browse(params, arg(request, "description", required=False,
                                              default=""),
                                 timeout=params["timeout"] + LAUNCH_MARGIN)
    if not block:
        return {"identifier": job.id}
    bound = job.timeout + self.supervisor.kill_grace + BLOCK_MARGIN
    ended = yield self.jobs.wait(job.id, bound)
    final = ended or (yield self.jobs.get(job.id))
    view = yield self.to_thread(events_view, browser.events_path(self.log_dir, job.id),
                                0, 0)
    files = yield job_files_listed(self, job.id)
    return {"identifier": job.id, "ended": final.status.completed, "job": job_dict(final),
            "result": view["result"], "files": files}


@route("/browsers.json", "GET")
@inlineCallbacks
def browsers(self: Any, request: Any):
    """The browser browser jobs use, and its version."""
    exe = self.browsers.settings.executable if self.browsers else None
    if exe is None:
        return {"browsers": []}
    if self.browsers.version is None:
        try:
            out = yield getProcessOutput(exe, ("--version",), env=dict(os.environ),
                                         reactor=self.reactor, errortoo=True)
            self.browsers.version = out.decode("utf-8", "replace").strip()
        except Exception as exc:  # shown, not cached: it may work next time
            return {"browsers": [{"name": "chromium", "executable": exe,
                                  "version": None, "error": str(exc)}]}
    return {"browsers": [{"name": "chromium", "executable": exe,
                          "version": self.browsers.version,
                          "playwright": _playwright_version()}]}


def _playwright_version() -> Optional[str]:
    from importlib import metadata
    try:
        return metadata.version("playwright")
    except metadata.PackageNotFoundError:
        return None

