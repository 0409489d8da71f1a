"""The scrapyd listener's pages: ``/`` (links to the jobs and the logs), ``/jobs`` (the
table ScrapydWeb and Gerapy read, with Cancel buttons) and ``/logs/...``.

scrapyd keeps each job's log in ``logs/<project>/<spider>/<job>.log`` and serves that
folder as a directory listing; crawld keeps a job's stderr (where Scrapy logs) as
``<job>.err``, so ``/logs/...`` is a listing made from the jobs that have run, in
scrapyd's shape (a "Last modified" column), and ``<job>.log`` is the job's stderr.
Links honour ``X-Forwarded-Prefix``, as scrapyd's do. crawld has no items feed:
``/items/`` does not exist (``items_url`` is always null).
"""
from __future__ import annotations

import io
import os
from datetime import datetime, timedelta
from html import escape
from typing import Any, Callable, Optional
from urllib.parse import quote, unquote

from twisted.internet.defer import inlineCallbacks
from twisted.web.util import redirectTo

from .. import logs
from ..model import JOB_ID_RE, Job
from .services import ScrapydServices

HEADERS = ("Project", "Spider", "Job", "PID", "Start", "Runtime", "Finish", "Log", "Cancel")


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
    return html(request, page("crawld (scrapyd)", f"""<h1>crawld: the scrapyd listener</h1>
<ul>
<li><a href="{base}/jobs">Jobs</a></li>
<li><a href="{base}/logs/">Logs</a></li>
</ul>
{projects}
<p>This page is for monitoring. Upload projects and schedule crawls with scrapyd's API
(addversion.json, schedule.json), or crawld's own.</p>"""))


def _clock(seconds: Optional[float]) -> str:
    """A time or a duration as scrapyd shows them: no microseconds."""
    return "" if seconds is None else str(datetime.fromtimestamp(int(seconds)))


def _row(cells: dict[str, Any]) -> str:
    tds = "\n".join(f"    <td>{'' if cells.get(h) is None else cells[h]}</td>"
                    for h in HEADERS)
    return f"<tr>\n{tds}\n</tr>"


@inlineCallbacks
def jobs_page(s: ScrapydServices, request: Any):
    base = base_path(request)
    now = s.reactor.seconds()
    pending = [j for j in (yield s.jobs.pending()) if j.kind == "spider"]
    running = [j for j in (yield s.jobs.list("RUNNING")) if j.kind == "spider"]
    finished = [j for j in (yield s.jobs.list("COMPLETED"))
                if j.kind == "spider" and j.started is not None]

    def cancel(job: Job) -> str:
        return (f'<form method="post" onsubmit="return confirm(\'Are you sure?\');" '
                f'action="{base}/cancel.json"><input type="hidden" name="project" '
                f'value="{escape(job.project)}"><input type="hidden" name="job" '
                f'value="{escape(job.id)}"><input type="submit" value="Cancel"></form>')

    def log_link(job: Job) -> str:
        return (f'<a href="{base}/logs/{quote(job.project)}/{quote(job.spider)}/'
                f'{quote(job.id)}.log">Log</a>')

    def names(job: Job) -> dict[str, str]:
        return {"Project": escape(job.project), "Spider": escape(job.spider),
                "Job": escape(job.id)}
    rows = {
        "Pending": [_row({**names(j), "Cancel": cancel(j)}) for j in pending],
        "Running": [_row({**names(j), "PID": j.pid, "Start": _clock(j.started),
                          "Runtime": str(timedelta(seconds=int(now - j.started))),
                          "Log": log_link(j), "Cancel": cancel(j)}) for j in running],
        "Finished": [_row({**names(j), "Start": _clock(j.started),
                           "Runtime": str(timedelta(seconds=int((j.finished or now)
                                                                - j.started))),
                           "Finish": _clock(j.finished), "Log": log_link(j)})
                     for j in finished],
    }
    heads = "\n".join(f"    <th>{h}</th>" for h in HEADERS)
    bodies = "\n".join(
        f'<tbody>\n<tr>\n    <th colspan="{len(HEADERS)}">{group}</th>\n</tr>\n'
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


def _size(log_dir: str, job_id: str) -> str:
    """A log's size as twisted.web's listing shows it (blocking: a stat)."""
    try:
        size = os.stat(logs.path(log_dir, job_id, "err")).st_size
    except OSError:
        size = 0
    for unit, scale in (("G", 1024 ** 3), ("M", 1024 ** 2), ("K", 1024)):
        if size >= scale:
            return f"{size / scale:.0f}{unit}"
    return f"{size}B"


@inlineCallbacks
def logs_page(s: ScrapydServices, request: Any):
    """``/logs/``, ``/logs/<project>/``, ``/logs/<project>/<spider>/`` and the log."""
    raw = request.path.decode("latin-1")
    parts = [unquote(p) for p in raw[len("/logs/"):].split("/")]
    if parts and parts[-1] == "":
        parts.pop()
        folder = True
    else:
        folder = False
    ran = [j for j in (yield s.jobs.list("RUNNING")) + (yield s.jobs.list("COMPLETED"))
           if j.kind == "spider" and j.started is not None]
    if len(parts) == 3 and not folder:
        return (yield _log_file(s, request, ran, *parts))
    if len(parts) > 2 or not folder and parts:
        request.setResponseCode(404)
        return html(request, page("No Such Resource", "<h1>No Such Resource</h1>"))
    level = [j for j in ran if parts[:1] in ([], [j.project])
             and parts[1:2] in ([], [j.spider])]
    if parts and not level:
        request.setResponseCode(404)
        return html(request, page("No Such Resource", "<h1>No Such Resource</h1>"))
    if len(parts) < 2:
        key = (lambda j: j.project) if not parts else (lambda j: j.spider)
        newest: dict[str, float] = {}
        for job in level:
            newest[key(job)] = max(newest.get(key(job), 0.0), job.updated)
        entries = [(f"{n}/", quote(n) + "/", "", _stamp(t)) for n, t in sorted(newest.items())]
    else:
        sizes = yield s.to_thread(lambda: [_size(s.log_dir, j.id) for j in level])
        entries = [(f"{j.id}.log", quote(j.id) + ".log", size, _stamp(j.updated))
                   for j, size in sorted(zip(level, sizes), key=lambda p: p[0].id)]
    return _listing(request, f"Directory listing for {raw}", entries)


@inlineCallbacks
def _log_file(s: ScrapydServices, request: Any, ran: list[Job], project: str,
              spider: str, name: str):
    job_id = name[:-len(".log")] if name.endswith(".log") else ""
    found = [j for j in ran if (j.project, j.spider, j.id) == (project, spider, job_id)]
    if not JOB_ID_RE.fullmatch(job_id) or not found:
        request.setResponseCode(404)
        return html(request, page("No Such Resource", "<h1>No Such Resource</h1>"))
    try:
        fh = open(logs.path(s.log_dir, job_id, "err"), "rb")
    except FileNotFoundError:
        fh = io.BytesIO()
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    if request.method == b"HEAD":
        fh.close()
        return b""
    # streamed in chunks, paused when the client reads slowly; not followed: scrapyd
    # serves the file as it is (get-log on the native API follows a running job's)
    yield logs.Follower(s.reactor, request, fh, lambda: False).done
    return None


def logs_redirect(s: ScrapydServices, request: Any) -> bytes:
    """``/logs`` is a folder: its address ends with a slash (scrapyd redirects too)."""
    return redirectTo(f"{base_path(request)}/logs/".encode(), request)


def find(path: bytes) -> Optional[Callable[[ScrapydServices, Any], Any]]:
    """The page serving ``path``, or None."""
    if path == b"/":
        return home
    if path == b"/jobs":
        return jobs_page
    if path == b"/logs":
        return logs_redirect
    if path.startswith(b"/logs/"):
        return logs_page
    return None
