"""The scrapyd listener's pages: ``/`` (links to the jobs and the logs), ``/jobs`` (the
table ScrapydWeb and Gerapy read, with Cancel buttons) and ``/logs/...``.

scrapyd keeps each job's log in ``logs/<project>/<spider>/<job>.log`` and serves that
folder as a directory listing; crawld keeps a job's stderr (where Scrapy logs) as
``<job>.err``, so ``/logs/...`` is a listing made from the jobs that have run, in
scrapyd's shape (a "Last modified" column), and ``<job>.log`` is the job's stderr.
Links honour ``X-Forwarded-Prefix``, as scrapyd's do. ``/items/...`` is the same for
the jobs' items files (``<job>.jl``, items.py) when crawld keeps items (``[crawld]
items``), as scrapyd serves its local ``items_dir``.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any, Callable, Optional, Union
from urllib.parse import quote, unquote

from twisted.internet.defer import inlineCallbacks
from twisted.web.util import redirectTo

from .. import byterange, items as item_files, logs
from ..model import JOB_ID_RE, Job, RanJob
from .services import ScrapydServices
from .webservice import item_ids, items_url

#: the jobs table's columns; "Items" only when crawld keeps items, as scrapyd shows it
#: only with a local items_dir
#: a job as the pages show it: a pending Job, or a RanJob (started)
Listed = Union[Job, RanJob]
HEADERS = ("Project", "Spider", "Job", "PID", "Start", "Runtime", "Finish", "Log", "Items",
           "Cancel")


def base_path(request: Any) -> str:
    """The prefix a reverse proxy serves this listener under (``X-Forwarded-Prefix``)."""
    prefix = request.getHeader(b"x-forwarded-prefix")
    return escape(prefix.decode("latin-1").rstrip("/"), quote=True) if prefix else ""


def html(request: Any, body: str) -> bytes:
    data = body.encode("utf-8")
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    request.setHeader(b"Content-Length", str(len(data)).encode())
    return data


def page(title: str, content: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{escape(title)}</title>\n<style>body {{ font-family: system-ui, "
            "sans-serif; }} table {{ border-collapse: collapse; }} th, td {{ border: "
            "1px solid; padding: .4rem; }}</style>\n</head>\n<body>\n"
            f"{content}\n</body>\n</html>\n")


def home(s: ScrapydServices, request: Any) -> bytes:
    base = base_path(request)
    names = s.projects.names()
    projects = ("<p>Scrapy projects:</p>\n<ul>\n" + "\n".join(
        f"<li>{escape(n)}</li>" for n in names) + "\n</ul>") if names else \
        "<p>No Scrapy projects yet.</p>"
    items = f'\n<li><a href="{base}/items/">Items</a></li>' if s.items_dir else ""
    return html(request, page("crawld (scrapyd)", f"""<h1>crawld: the scrapyd listener</h1>
<ul>
<li><a href="{base}/jobs">Jobs</a></li>
<li><a href="{base}/logs/">Logs</a></li>{items}
</ul>
{projects}
<p>This page is for monitoring. Upload projects and schedule crawls with scrapyd's API
(addversion.json, schedule.json), or crawld's own.</p>"""))


def _clock(seconds: Optional[float]) -> str:
    """A time or a duration as scrapyd shows them: no microseconds."""
    return "" if seconds is None else str(datetime.fromtimestamp(int(seconds)))


def _row(headers: tuple[str, ...], cells: dict[str, Any]) -> str:
    tds = "\n".join(f"    <td>{'' if cells.get(h) is None else cells[h]}</td>"
                    for h in headers)
    return f"<tr>\n{tds}\n</tr>"


@inlineCallbacks
def jobs_page(s: ScrapydServices, request: Any):
    base = base_path(request)
    now = s.reactor.seconds()
    view = s.view
    pending, running, finished = view.queued(), view.started(), view.ended()
    with_items = yield item_ids(s, running + finished)
    headers = tuple(h for h in HEADERS if h != "Items" or s.items_dir)

    def cancel(job: Listed) -> str:
        return (f'<form method="post" onsubmit="return confirm(\'Are you sure?\');" '
                f'action="{base}/cancel.json"><input type="hidden" name="project" '
                f'value="{escape(job.project)}"><input type="hidden" name="job" '
                f'value="{escape(job.id)}"><input type="submit" value="Cancel"></form>')

    def log_link(job: Listed) -> str:
        return (f'<a href="{base}/logs/{quote(job.project)}/{quote(job.spider)}/'
                f'{quote(job.id)}.log">Log</a>')

    def items_link(job: Listed) -> Optional[str]:
        url = items_url(job, with_items)
        return f'<a href="{base}{url}">Items</a>' if url else None

    def names(job: Listed) -> dict[str, str]:
        return {"Project": escape(job.project), "Spider": escape(job.spider),
                "Job": escape(job.id)}
    rows = {
        "Pending": [_row(headers, {**names(j), "Cancel": cancel(j)}) for j in pending],
        "Running": [_row(headers, {**names(j), "PID": j.pid, "Start": _clock(j.started),
                                   "Runtime": str(timedelta(seconds=int(now - j.started))),
                                   "Log": log_link(j), "Items": items_link(j),
                                   "Cancel": cancel(j)}) for j in running],
        "Finished": [_row(headers, {**names(j), "Start": _clock(j.started),
                                    "Runtime": str(timedelta(seconds=int(
                                        (j.finished or now) - j.started))),
                                    "Finish": _clock(j.finished), "Log": log_link(j),
                                    "Items": items_link(j)})
                     for j in finished],
    }
    heads = "\n".join(f"    <th>{h}</th>" for h in headers)
    bodies = "\n".join(
        f'<tbody>\n<tr>\n    <th colspan="{len(headers)}">{group}</th>\n</tr>\n'
        + "\n".join(found) + "\n</tbody>" for group, found in rows.items())
    return html(request, page("Jobs", f"""<h1>Jobs</h1>
<p><a href="{base}/">Go up</a></p>
<table id="jobs">
<thead>
<tr>
{heads}
</tr>
</thead>
{bodies}
</table>"""))


# -- /logs/ ---------------------------------------------------------------------------
def _listing(request: Any, title: str, entries: list[tuple[str, str, str, str]]) -> bytes:
    """scrapyd's directory listing: (name, href, size, last modified) per entry."""
    rows = "\n".join(
        f'<tr class="{"odd" if i % 2 else "even"}">\n    <td><a href="{escape(href)}">'
        f"{escape(name)}</a></td>\n    <td>{size}</td>\n    <td>{modified}</td>\n"
        f"    <td>{'[text/plain]' if size else '[Directory]'}</td>\n    <td></td>\n</tr>"
        for i, (name, href, size, modified) in enumerate(entries))
    return html(request, page(title, f"""<h1>{escape(title)}</h1>
<table>
<thead>
<tr>
<th>Filename</th>
<th>Size</th>
<th>Last modified</th>
<th>Content type</th>
<th>Content encoding</th>
</tr>
</thead>
<tbody>
{rows}
</tbody>
</table>"""))


def _stamp(ts: Optional[float]) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Folder:
    """A folder of job files scrapyd serves: ``/logs/`` (``<job>.log``) or ``/items/``
    (``<job>.jl``), and where crawld keeps the file of a job."""

    name: str                                   # the URL's first segment
    ext: str                                    # the file name's extension
    path: Callable[[ScrapydServices, str], str]  # a job id -> its file (blocking use)
    content_type: bytes


LOGS = Folder("logs", "log", lambda s, job_id: logs.path(s.log_dir, job_id, "err"),
              b"text/plain; charset=utf-8")
ITEMS = Folder("items", item_files.EXT,
               lambda s, job_id: item_files.path(s.items_dir or "", job_id),
               b"text/plain; charset=utf-8")


def _size(path: str) -> str:
    """A file's size as twisted.web's listing shows it (blocking: a stat)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    for unit, scale in (("G", 1024 ** 3), ("M", 1024 ** 2), ("K", 1024)):
        if size >= scale:
            return f"{size / scale:.0f}{unit}"
    return f"{size}B"


def _not_found(request: Any) -> bytes:
    request.setResponseCode(404)
    return html(request, page("No Such Resource", "<h1>No Such Resource</h1>"))


@inlineCallbacks
def _jobs_with_files(s: ScrapydServices, folder: Folder):
    """The spider jobs that have run and have a file in ``folder``."""
    ran = s.view.started() + s.view.ended()
    if folder is ITEMS:
        with_items = yield item_ids(s, ran)
        ran = [j for j in ran if j.id in with_items]
    return ran


@inlineCallbacks
def files_page(s: ScrapydServices, request: Any, folder: Folder):
    """``/<folder>/``, ``/<folder>/<project>/``, ``/<folder>/<project>/<spider>/``
    (listings) and ``/<folder>/<project>/<spider>/<job>.<ext>`` (the file)."""
    raw = request.path.decode("latin-1")
    parts = [unquote(p) for p in raw[len(folder.name) + 2:].split("/")]
    if parts and parts[-1] == "":
        parts.pop()
        is_folder = True
    else:
        is_folder = False
    ran = yield _jobs_with_files(s, folder)
    if len(parts) == 3 and not is_folder:
        return (yield _job_file(s, request, folder, ran, *parts))
    if len(parts) > 2 or not is_folder and parts:
        return _not_found(request)
    level = [j for j in ran if parts[:1] in ([], [j.project])
             and parts[1:2] in ([], [j.spider])]
    if parts and not level:
        return _not_found(request)
    if len(parts) < 2:
        key = (lambda j: j.project) if not parts else (lambda j: j.spider)
        newest: dict[str, float] = {}
        for job in level:
            newest[key(job)] = max(newest.get(key(job), 0.0), job.updated)
        entries = [(f"{n}/", quote(n) + "/", "", _stamp(t)) for n, t in sorted(newest.items())]
    else:
        sizes = yield s.to_thread(lambda: [_size(folder.path(s, j.id)) for j in level])
        entries = [(f"{j.id}.{folder.ext}", f"{quote(j.id)}.{folder.ext}", size,
                    _stamp(j.updated))
                   for j, size in sorted(zip(level, sizes), key=lambda p: p[0].id)]
    return _listing(request, f"Directory listing for {raw}", entries)


def _open(s: ScrapydServices, folder: Folder, job_id: str) -> Any:
    """The job's file, opened (blocking: in a thread). A log not there yet is empty;
    an items file that is not a regular one is not there."""
    if folder is ITEMS:
        return item_files.open_file(s.items_dir or "", job_id)
    try:
        return open(folder.path(s, job_id), "rb")
    except FileNotFoundError:
        return io.BytesIO()


@inlineCallbacks
def _job_file(s: ScrapydServices, request: Any, folder: Folder, ran: list[RanJob],
              project: str, spider: str, name: str):
    suffix = "." + folder.ext
    job_id = name[:-len(suffix)] if name.endswith(suffix) else ""
    found = [j for j in ran if (j.project, j.spider, j.id) == (project, spider, job_id)]
    if not JOB_ID_RE.fullmatch(job_id) or not found:
        return _not_found(request)
    try:
        fh = yield s.to_thread(_open, s, folder, job_id)
    except OSError:
        return _not_found(request)
    request.setHeader(b"Content-Type", folder.content_type)
    fh = _ranged(request, fh)
    if fh is None or request.method == b"HEAD":
        if fh is not None:
            fh.close()
        return b""
    # streamed in chunks, paused when the client reads slowly; not followed: scrapyd
    # serves the file as it is (get-log on the native API follows a running job's).
    # It counts against [web] max-streams with the native API's streams (429 past it)
    yield logs.stream(s.streams, s.reactor, request, fh, lambda: False)
    return None


def _ranged(request: Any, fh: Any) -> Any:
    """The part of ``fh`` the request's ``Range`` asks for (206), as scrapyd's static
    files answer (Gerapy reads a log's tail as ``bytes=-1000``); the whole file without
    one; None (and 416) when the range lies past its end."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    request.setHeader(b"Accept-Ranges", b"bytes")
    wanted = byterange.parse(request.getHeader(b"range"), size)
    if wanted is None:
        return fh
    if wanted == byterange.UNSATISFIABLE:
        fh.close()
        request.setResponseCode(416)
        request.setHeader(b"Content-Range", f"bytes */{size}".encode())
        return None
    first, last = wanted
    request.setResponseCode(206)
    request.setHeader(b"Content-Range", f"bytes {first}-{last}/{size}".encode())
    request.setHeader(b"Content-Length", str(last - first + 1).encode())
    fh.seek(first)
    return byterange.Slice(fh, last - first + 1)


def logs_page(s: ScrapydServices, request: Any) -> Any:
    """``/logs/...``: the jobs' logs (their stderr, where Scrapy logs)."""
    return files_page(s, request, LOGS)


def items_page(s: ScrapydServices, request: Any) -> Any:
    """``/items/...``: the jobs' items files, when crawld keeps items."""
    if s.items_dir is None:
        return _not_found(request)
    return files_page(s, request, ITEMS)


def folder_redirect(s: ScrapydServices, request: Any) -> bytes:
    """``/logs`` and ``/items`` are folders: their addresses end with a slash (scrapyd
    redirects too)."""
    if request.path == b"/items" and s.items_dir is None:
        return _not_found(request)
    return redirectTo(f"{base_path(request)}{request.path.decode('latin-1')}/".encode(),
                      request)


def find(path: bytes) -> Optional[Callable[[ScrapydServices, Any], Any]]:
    """The page serving ``path``, or None."""
    if path == b"/":
        return home
    if path == b"/jobs":
        return jobs_page
    if path == b"/logs" or path == b"/items":
        return folder_redirect
    if path.startswith(b"/logs/"):
        return logs_page
    if path.startswith(b"/items/"):
        return items_page
    return None
