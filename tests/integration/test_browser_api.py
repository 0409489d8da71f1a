"""Browser jobs through a real daemon: real Chromium, pages served on 127.0.0.1 here.

Scripts are pushed in a project beside its spiders (``demo/<pkg>/scripts/``) or alone
(``<name>/scripts/`` without scrapy.cfg); every test drives them through the HTTP API
only, the way a user would, and checks the processes and directories they leave.
"""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import zipfile
from typing import Any, Iterator

import psutil
import pytest

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.conftest import gone, title
from tests.integration.pages import serve

PAGES = {
    "/page": "<html><head><title>Test page</title></head>"
             "<body><h1 id='hello'>Hello</h1><p>some text</p></body></html>",
    "/late": "<html><head><title>Late</title></head><body><script>"
             "setTimeout(() => { const d = document.createElement('div'); d.id = 'late';"
             " d.textContent = 'here'; document.body.appendChild(d); }, 300);"
             "</script></body></html>",
    "/chat": "<html><head><title>Chat</title></head><body><script>"
             "window.ondata = d => { document.body.dataset.got = JSON.stringify(d); };"
             "window.addEventListener('load', () => window.postData('hello from page'));"
             "</script></body></html>",
}

SCRIPTS = {
    # argument in, post, progress, an artifact, console output, a result
    "work": '''
async def run(page, job):
    await page.goto(job.argument["url"])
    job.progress(0.5, "loaded")
    await page.evaluate("console.log('console says hi')")
    job.post({"title": await page.title(), "echo": job.argument["echo"]})
    job.save("data.json", '{"saved": true}')
    job.progress(1.0, "done")
    return {"ok": True}
''',
    # waits for one message from the API, then checks the page saw it too
    "chat": '''
async def run(page, job):
    await page.goto(job.argument["url"])
    async for message in job.messages():
        await page.wait_for_function("document.body.dataset.got !== undefined")
        seen = await page.evaluate("document.body.dataset.got")
        job.post({"script got": message, "page got": seen})
        break
''',
    # stays on a page until canceled
    "wait": '''
import asyncio

async def run(page, job):
    await page.goto(job.argument["url"])
    print("waiting", flush=True)
    await asyncio.Event().wait()
''',
    "boom": '''
async def run(page, job):
    raise RuntimeError("the script broke")
''',
}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve(PAGES) as url:
        yield url


def with_scripts() -> bytes:
    return project.build("demo", extra={f"demo/scripts/{name}.py": text
                                        for name, text in SCRIPTS.items()})


@pytest.fixture
def browser_daemon(make_daemon: Any) -> Any:
    d = make_daemon().start()
    d.push(with_scripts())
    return d


def run_script(d: Any, script: str, argument: dict, **extra: Any) -> str:
    body = d.ok(d.post("/schedule-job.json", project="demo", script=script, when="now",
                       payload=json.dumps(argument), **extra))
    return body["identifier"]


def output(d: Any, job_id: str, **params: Any) -> dict:
    return d.ok(d.get("/job-output.json", id=job_id, **params))


def job_pids(d: Any, job_id: str) -> list[int]:
    """The daemon's descendants that belong to a job (they carry its id in their env)."""
    return [p.pid for p in psutil.Process(d.proc.pid).children(recursive=True)
            if _environ(p.pid).get("CRAWLD_JOB_ID") == job_id]


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            items = fh.read().split(b"\0")
    except OSError:
        return {}
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)


def p_name(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        return (proc.name() + " " + " ".join(proc.cmdline()[:1])).lower()
    except psutil.NoSuchProcess:
        return ""


# ---------------------------------------------------------------------------------------
def test_push_lists_scripts_beside_spiders_and_alone(make_daemon: Any) -> None:
    d = make_daemon().start()
    body = d.push(with_scripts())
    assert body["scripts"] == sorted(SCRIPTS) and "ok" in body["spiders"]
    assert d.ok(d.get("/list-scripts.json", project="demo"))["scripts"] == sorted(SCRIPTS)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("solo/scripts/only.py", SCRIPTS["boom"])
        zf.writestr("solo/scripts/_helper.py", "X = 1\n")
    body = d.push(buf.getvalue())
    assert (body["name"], body["spiders"], body["scripts"]) == ("solo", [], ["only"])
    assert d.get("/list-scripts.json", project="nope").status_code == 404


def test_a_script_gets_its_argument_and_reports_output_messages_progress_files(
        browser_daemon: Any, site: str) -> None:
    d = browser_daemon
    job_id = run_script(d, "work", {"url": site + "/page", "echo": "ping"})
    job = d.wait_status(job_id, "SUCCESSFUL", "FAILED", timeout=90)
    assert job["status"] == "SUCCESSFUL", d.log_text(job_id, "err")
    assert (job["kind"], job["script"]) == ("script", "work")
    out = output(d, job_id)
    assert out["job-status"] == "SUCCESSFUL" and out["running"] is False
    assert "[console.log] console says hi" in out["output"]
    kinds = [m["type"] for m in out["messages"]]
    assert kinds == ["progress", "post", "file", "progress", "result"]
    assert [m["id"] for m in out["messages"]] == [1, 2, 3, 4, 5]
    assert out["messages"][1]["data"] == {"title": "Test page", "echo": "ping"}
    assert (out["progress"], out["progress-label"]) == (1.0, "done")
    assert out["result"] == {"ok": True}
    # polling again from where we were returns nothing new
    again = output(d, job_id, **{"from-pos": out["output-pos"], "from-message-id": 5})
    assert again["output"] == "" and again["messages"] == []
    assert again["output-pos"] == out["output-pos"]
    later = output(d, job_id, **{"from-message-id": 3})
    assert [m["id"] for m in later["messages"]] == [4, 5]
    # the post is handed out once
    posts = d.ok(d.get("/job-posts.json", id=job_id))["posts"]
    assert [p["data"]["echo"] for p in posts] == ["ping"]
    assert d.ok(d.get("/job-posts.json", id=job_id))["posts"] == []
    files = d.ok(d.get("/job-files.json", id=job_id))["files"]
    assert [(f["name"], f["size"]) for f in files] == [("data.json", 15)]
    r = d.session.get(d.url + files[0]["url"], timeout=30)
    assert r.status_code == 200 and r.json() == {"saved": True}
    assert r.headers["Content-Type"] == "application/json"
    assert d.get(f"/job-files/{job_id}/nope.txt").status_code == 404
    assert not os.path.exists(os.path.join(d.data_dir, "tmp", job_id))


def test_message_round_trip_page_to_api_to_page(browser_daemon: Any, site: str) -> None:
    d = browser_daemon
    job_id = run_script(d, "chat", {"url": site + "/chat"})

    def post_from_page() -> list:
        return d.ok(d.get("/job-posts.json", id=job_id))["posts"]
    [first] = wait_for(post_from_page, 60, what="the page's postData")
    assert first["type"] == "post" and first["data"] == "hello from page"
    d.ok(d.post("/job-message.json", id=job_id, data=json.dumps({"reply": 42})))
    [second] = wait_for(post_from_page, 30, what="the script's answer")
    assert second["data"] == {"script got": {"reply": 42}, "page got": '{"reply":42}'}
    assert d.wait_status(job_id, "SUCCESSFUL", "FAILED")["status"] == "SUCCESSFUL"
    r = d.post("/job-message.json", id=job_id, data="1")
    assert r.status_code == 404 and "not running" in r.json()["msg"]


def test_screenshot_of_a_running_job_then_cancel_leaves_nothing(
        browser_daemon: Any, site: str) -> None:
    d = browser_daemon
    job_id = run_script(d, "wait", {"url": site + "/page"})
    wait_for(lambda: "waiting" in output(d, job_id)["output"], 60, what="the page to load")
    for params in ({}, {"full-page": "1"}):
        r = d.get("/job-screenshot.png", id=job_id, **params)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "image/png"
        assert r.content.startswith(b"\x89PNG\r\n\x1a\n") and len(r.content) > 1000
    pids = job_pids(d, job_id)
    assert any("chrom" in p_name(p) for p in pids), pids
    [shim] = [p for p in psutil.Process(d.proc.pid).children() if p.pid in pids]
    assert title(shim.pid) == f"crawld: job {job_id} demo/wait"
    assert f"crawld: job {job_id} demo/wait (runner)" in [
        title(p.pid) for p in shim.children()], "the runner, forked by the shim"
    body = d.ok(d.post("/cancel-job.json", id=job_id))
    assert body["job-status"] == "CANCELED"
    assert d.get("/job-screenshot.png", id=job_id).status_code == 404
    wait_for(lambda: all(gone(p) for p in pids), 30, what="the job's processes to end")
    assert not os.path.exists(os.path.join(d.data_dir, "tmp", job_id))


def test_a_frozen_browser_is_killed_on_cancel(browser_daemon: Any, site: str) -> None:
    d = browser_daemon
    job_id = run_script(d, "wait", {"url": site + "/page"})
    wait_for(lambda: "waiting" in output(d, job_id)["output"], 60, what="the page to load")
    pids = job_pids(d, job_id)
    browsers = [p for p in pids if "chrom" in p_name(p)]
    assert browsers, "no Chromium process found under the job"
    for p in browsers:
        os.kill(p, signal.SIGSTOP)
    body = d.ok(d.post("/cancel-job.json", id=job_id))
    assert body["job-status"] == "CANCELED"
    wait_for(lambda: all(gone(p) for p in pids), 30, what="every job process to end")
    assert not os.path.exists(os.path.join(d.data_dir, "tmp", job_id))



def test_timeout_and_no_output_timeout_fail_the_job_with_the_reason(
        browser_daemon: Any, site: str) -> None:
    d = browser_daemon
    slow = run_script(d, "wait", {"url": site + "/page"}, timeout="4")
    quiet = run_script(d, "wait", {"url": site + "/page"}, **{"no-output-timeout": "3"})
    for job_id, reason in ((slow, "timed out after 4 s (timeout)"),
                           (quiet, "no output for 3 s (no-output-timeout)")):
        job = d.wait_status(job_id, "SUCCESSFUL", "FAILED", "CANCELED", timeout=90)
        assert (job["status"], job["reason"]) == ("FAILED", reason)
        assert not os.path.exists(os.path.join(d.data_dir, "tmp", job_id))


def test_a_failing_script_fails_with_its_traceback(browser_daemon: Any) -> None:
    d = browser_daemon
    job_id = run_script(d, "boom", {})
    job = d.wait_status(job_id, "SUCCESSFUL", "FAILED", timeout=90)
    assert job["status"] == "FAILED" and job["reason"] == "exit code 1"
    assert "RuntimeError: the script broke" in d.log_text(job_id, "err")


def test_browse_blocks_until_done_with_result_and_screenshot(make_daemon: Any,
                                                             site: str) -> None:
    d = make_daemon().start()
    body = d.ok(d.post("/browse.json", url=site + "/late", **{"wait-for": "#late"},
                       screenshot="1", block="1"))
    assert body["ended"] is True and body["job"]["status"] == "SUCCESSFUL", body
    assert body["job"]["kind"] == "browse"
    assert body["result"]["title"] == "Late" and body["result"]["status"] == 200
    [shot] = body["files"]
    assert shot["name"] == "screenshot.png"
    png = d.session.get(d.url + shot["url"], timeout=30).content
    assert png.startswith(b"\x89PNG")
    html = base64.urlsafe_b64encode(b"<title>Inline</title><p>x</p>").decode().rstrip("=")
    body = d.ok(d.post("/browse.json", html=html, block="1"))
    assert body["job"]["status"] == "SUCCESSFUL" and body["result"]["title"] == "Inline"
    assert body["files"] == []
    listed = d.jobs("COMPLETED")
    assert {j["kind"] for j in listed} == {"browse"} and len(listed) == 2


def test_a_browse_that_fails_has_the_pages_error_as_its_reason(make_daemon: Any,
                                                              site: str) -> None:
    d = make_daemon().start()
    body = d.ok(d.post("/browse.json", url=site + "/page", **{"wait-for": "#never"},
                       timeout="2", block="1"))
    job = body["job"]
    assert body["ended"] is True and (job["status"], job["exit-code"]) == ("FAILED", 1)
    assert job["reason"] == ("timed out after 2 s (timeout): Page.wait_for_selector: "
                             "Timeout 2000ms exceeded.")
    assert "Call log:" in d.log_text(job["identifier"], "err"), "the details stay in the log"
    with socket.socket() as closed:  # bound, never listening: the connection is refused
        closed.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d/" % closed.getsockname()[1]
        job = d.ok(d.post("/browse.json", url=url, timeout="5", block="1"))["job"]
    assert job["status"] == "FAILED"
    assert job["reason"] == f"browse failed: Page.goto: net::ERR_CONNECTION_REFUSED at {url}"


def test_bad_browser_requests_get_clear_errors(browser_daemon: Any) -> None:
    d = browser_daemon
    cases = [
        (d.post("/schedule-job.json", project="demo", spider="ok", script="work", when="now"),
         400, "exactly one of 'spider' and 'script'"),
        (d.post("/schedule-job.json", project="demo", script="nope", when="now"),
         404, "unknown script demo/nope"),
        (d.post("/schedule-job.json", project="demo", script="work", when="now",
                timeout="-1"), 400, "'timeout'"),
        (d.post("/browse.json", url="file:///etc/passwd"), 400, "http:// or https://"),
        (d.post("/browse.json"), 400, "exactly one of 'url' and 'html'"),
        (d.post("/browse.json", html="!!!"), 400, "'html'"),
        (d.post("/browse.json", url="http://127.0.0.1:1/", timeout="0"), 400, "'timeout'"),
        (d.get("/job-screenshot.png", id="00000000-0000-0000-0000-000000000000"), 404,
         "unknown job"),
        (d.get("/job-output.json", id="../etc"), 404, "unknown job"),
    ]
    for response, code, text in cases:
        assert response.status_code == code, (response.request.url, response.text)
        assert text in response.json()["msg"]


def test_spider_jobs_have_output_too_and_browsers_are_listed(browser_daemon: Any) -> None:
    d = browser_daemon
    job_id = d.schedule("ok")
    d.wait_status(job_id, "SUCCESSFUL")
    out = output(d, job_id)
    assert "CRAWLD-TEST" in out["output"] and out["messages"] == []
    assert out["output-pos"] == len(out["output"].encode())
    [info] = d.ok(d.get("/browsers.json"))["browsers"]
    assert info["executable"] and "Chromium" in info["version"]
