"""The dashboard in a real browser: Playwright drives Debian's Chromium against a real
daemon (authentication required, keys and users made with the CLI, real Scrapy jobs).

Each test saves a screenshot of the view it ends on: into ``CRAWLD_SCREENSHOTS`` when
set (``CRAWLD_SCREENSHOTS=docs/img python -m pytest tests/integration/test_dashboard.py``
makes docs/dashboard.md's pictures), else into the test's temporary directory.
Nothing in these tests waits a fixed time: each waits for what the page shows, with a
deadline.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.scrapyd import PASSWORD as SCRAPYD_PASSWORD, USER as SCRAPYD_USER
from tests.integration.scrapyd import ScrapydDaemon
from tests.integration.test_auth import crawld_cli
from tests.integration.test_scrapyd_eggs import build_egg
# the browser, found as the browser-job tests find it (a missing one fails the module)
from tests.integration.test_browser_job import CHROMIUM, browser_available  # noqa: F401

PASSWORDS = {"alice": "alice-operator-pw", "bob": "bob-reader-pw"}
TIMEOUT = 60_000  # ms: a job's start and end on a loaded machine


class Dash:
    """The module's daemon and what logs in to it."""

    def __init__(self, daemon: ScrapydDaemon, keys: dict[str, str]) -> None:
        self.daemon = daemon
        self.url = daemon.url
        self.keys = keys
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {keys['operator']}"

    def get(self, path: str, **params: Any) -> dict:
        r = self.api.get(self.url + path, params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, **data: Any) -> dict:
        r = self.api.post(self.url + path, data=data, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def job(self, job_id: str) -> dict:
        return self.get("/list-jobs.json", id=job_id)["jobs"][0]

    def ensure_project(self, name: str = "demo") -> None:
        if name not in self.get("/list-projects.json")["projects"]:
            r = self.api.post(self.url + "/push-project.json",
                              files={"archive": ("p.zip", project.build(name))}, timeout=120)
            assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def dash(tmp_path_factory: Any) -> Iterator[Dash]:
    """The module's daemon, with its scrapyd listener on (eggs are versions too)."""
    d = ScrapydDaemon(tmp_path_factory.mktemp("dashboard"), "job-slots = 4\n")
    os.makedirs(d.data_dir, exist_ok=True)
    keys = {role: crawld_cli(d.data_dir, "keys", "add", "--role", role, "--name",
                             f"{role} key").strip() for role in ("operator", "reader")}
    for name, role, password in (("alice", "operator", PASSWORDS["alice"]),
                                 ("bob", "reader", PASSWORDS["bob"]),
                                 (SCRAPYD_USER, "operator", SCRAPYD_PASSWORD)):
        crawld_cli(d.data_dir, "users", "add", name, "--role", role, "--password-stdin",
                   stdin=password + "\n")
    d.start()
    try:
        yield Dash(d, keys)
    finally:
        d.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A page, and what it did: dialogs, 401 answers and their challenges, requests'
    Authorization headers, page errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.unauthorized: list[dict] = []
        self.authorizations: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("response", self._response)
        page.on("request", self._request)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _response(self, response: Any) -> None:
        if response.status == 401:
            self.unauthorized.append(response.all_headers())

    def _request(self, request: Any) -> None:
        value = request.headers.get("authorization")
        if value:
            self.authorizations.append(value)


@pytest.fixture
def page(browser: Any, request: Any, tmp_path: Path) -> Iterator[Watched]:
    """A fresh browser context (its own sessionStorage) and page; a screenshot of where
    the test ended is saved as ``<test name>.png`` (see the module docstring)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT)
    watched = Watched(context.new_page())
    try:
        yield watched
        assert not watched.dialogs, f"the browser opened a dialog: {watched.dialogs}"
        assert not watched.errors, f"errors in the page: {watched.errors}"
        for headers in watched.unauthorized:
            assert "www-authenticate" not in headers, "a 401 that would pop a login dialog"
    finally:
        context.close()


def shot(page: Watched, name: str, tmp_path: Path) -> Path:
    """Save a screenshot of the page (the whole page) as ``name``.png."""
    folder = Path(os.environ.get("CRAWLD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def login_key(page: Watched, dash: Dash, role: str = "operator") -> None:
    page.page.goto(dash.url + "/")
    page.page.fill("#login-key", dash.keys[role])
    page.page.click("#login-key ~ button")
    page.page.wait_for_selector("#nav a[aria-current=page]")


def login_user(page: Watched, dash: Dash, name: str) -> None:
    page.page.goto(dash.url + "/")
    page.page.fill("#login-user", name)
    page.page.fill("#login-password", PASSWORDS[name])
    page.page.click("#login-password ~ button")
    page.page.wait_for_selector("#nav a[aria-current=page]")


def open_view(page: Watched, dash: Dash, view: str, ready: str) -> Any:
    """The demo project pushed, logged in with the operator key, ``view`` open (once
    ``ready`` is there) and marked (``not_reloaded``); returns the Playwright page."""
    dash.ensure_project()
    login_key(page, dash)
    page.page.goto(dash.url + f"/#/{view}")
    page.page.wait_for_selector(ready)
    mark(page)
    return page.page


def mark(page: Watched) -> None:
    """Put a value in the page's window: it is gone if the page is ever reloaded."""
    page.page.evaluate("window.crawldTestMark = 42")


def not_reloaded(page: Watched) -> bool:
    return page.page.evaluate("window.crawldTestMark") == 42


# -- logging in ---------------------------------------------------------------------
def test_login_with_a_key_and_never_a_browser_dialog(dash: Dash, page: Watched,
                                                     tmp_path: Path) -> None:
    p = page.page
    p.goto(dash.url + "/")
    p.wait_for_selector("#login-user")
    assert p.is_hidden("#nav")
    shot(page, "login", tmp_path)
    p.fill("#login-key", "cwk_not_a_key_at_all")
    p.click("#login-key ~ button")
    p.wait_for_selector("#login-error:has-text('not valid')")
    assert page.unauthorized, "the wrong key was refused with a 401"
    # the same 401 to a client that is not the page carries the challenges
    plain = requests.get(dash.url + "/whoami.json", timeout=30,
                         headers={"Authorization": "Bearer cwk_not_a_key_at_all"})
    assert plain.status_code == 401 and "Basic" in plain.headers["WWW-Authenticate"]
    p.fill("#login-key", dash.keys["operator"])
    p.click("#login-key ~ button")
    p.wait_for_selector("#fig-uptime")
    assert p.text_content("#who .role") == "operator"
    stored = json.loads(p.evaluate("sessionStorage.getItem('crawld.credential')"))
    assert stored == {"kind": "key", "token": dash.keys["operator"]}
    assert dash.keys["operator"] not in p.url
    p.reload()  # the tab keeps its credential
    p.wait_for_selector("#fig-uptime")


def test_login_with_user_and_password_then_a_session_token(dash: Dash, page: Watched,
                                                           tmp_path: Path) -> None:
    p = page.page
    p.goto(dash.url + "/")
    p.fill("#login-user", "alice")
    p.fill("#login-password", "wrong password")
    p.click("#login-password ~ button")
    p.wait_for_selector("#login-error:has-text('Wrong user or password')")
    login_user(page, dash, "alice")
    p.wait_for_selector("#fig-uptime")
    stored = json.loads(p.evaluate("sessionStorage.getItem('crawld.credential')"))
    assert stored["kind"] == "session" and stored["token"].startswith("cws_")
    assert PASSWORDS["alice"] not in json.dumps(stored)
    p.click("a[href='#/jobs']")
    p.wait_for_selector("#jobs-RUNNING")
    assert page.authorizations and all(a == f"Bearer {stored['token']}"
                                       for a in page.authorizations), \
        "after the login every call carries the session token, never the password"
    r = requests.get(dash.url + "/status.json", timeout=30,
                     headers={"Authorization": f"Bearer {stored['token']}"})
    assert r.status_code == 200
    p.click("#who button")  # log out
    p.wait_for_selector("#login-user")
    assert p.evaluate("sessionStorage.getItem('crawld.credential')") is None
    r = requests.get(dash.url + "/status.json", timeout=30,
                     headers={"Authorization": f"Bearer {stored['token']}"})
    assert r.status_code == 401, "the session ended on the server too"


# -- projects -------------------------------------------------------------------------
def test_push_an_archive_through_the_upload(dash: Dash, page: Watched,
                                            tmp_path: Path) -> None:
    login_key(page, dash)
    p = page.page
    p.click("a[href='#/projects']")
    p.wait_for_selector("#archive", state="attached")
    p.set_input_files("#archive", files=[{"name": "demo.zip", "mimeType": "application/zip",
                                          "buffer": project.build("demo")}])
    p.wait_for_selector("#push-result:has-text('Pushed demo')", timeout=120_000)
    p.wait_for_selector("tr[data-project=demo] td:has-text('sleep')")
    assert "demo" in dash.get("/list-projects.json")["projects"]
    # what the API says of a bad archive is what the page shows
    p.set_input_files("#archive", files=[{"name": "bad.zip", "mimeType": "application/zip",
                                          "buffer": b"this is not a zip"}])
    p.wait_for_selector("#push-error:not(:empty)")
    refused = requests.post(dash.url + "/push-project.json", timeout=60,
                            files={"archive": ("bad.zip", b"this is not a zip")},
                            headers=dash.api.headers)
    assert refused.status_code == 400
    assert refused.json()["msg"] in p.text_content("#push-error")
    # dropped on the zone, as a file dragged from the desktop
    data = list(project.build("other"))
    transfer = p.evaluate_handle("""bytes => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], 'other.zip', {type: 'application/zip'}));
        return dt; }""", data)
    p.dispatch_event("#drop-zone", "dragover", {"dataTransfer": transfer})
    p.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    p.wait_for_selector("#push-result:has-text('Pushed other')", timeout=120_000)
    p.wait_for_selector("tr[data-project=other]")
    shot(page, "projects", tmp_path)
    # remove, asked twice in the page (no browser dialog)
    p.click("tr[data-project=other] button.danger")
    p.click("tr[data-project=other] button.danger:has-text('Remove other?')")
    p.wait_for_selector("tr[data-project=other]", state="detached")
    assert "other" not in dash.get("/list-projects.json")["projects"]


def test_a_projects_versions_newest_first_and_deleting_one(dash: Dash, page: Watched,
                                                           tmp_path: Path) -> None:
    for version, tag in (("1.0", "v1"), ("2.0", "v2")):  # two eggs, then a pushed archive
        added = dash.daemon.sd_post("/addversion.json", project="eggs", version=version,
                                    files={"egg": ("e.egg", build_egg(tmp_path, tag,
                                                                      name="eggs"))})
        assert added["status"] == "ok", added
    r = dash.api.post(dash.url + "/push-project.json", timeout=120,
                      files={"archive": ("e.zip", project.build("eggs"))})
    assert r.status_code == 200, r.text
    versions = dash.get("/list-versions.json", project="eggs")["versions"]
    (pushed,) = [v for v in versions if v["kind"] == "archive"]
    assert pushed["current"] and {v["name"] for v in versions} == {"1_0", "2_0", pushed["name"]}
    # a job pinned to version 1_0 runs from it: 1_0 cannot go while it runs
    sleeper = dash.post("/schedule-job.json", project="eggs", spider="sleep", when="now",
                        version="1_0")["identifier"]
    wait_for(lambda: dash.job(sleeper)["status"] == "RUNNING", 60, what="the pinned job")
    p = open_view(page, dash, "projects", "tr[data-versions-of=eggs] tr[data-version='1_0']")
    rows = "tr[data-versions-of=eggs] tbody tr"
    shown = p.eval_on_selector_all(rows, "rows => rows.map(r => r.dataset.version)")
    assert shown == [pushed["name"], "2_0", "1_0"], "newest first"
    for v in versions:
        row = f"{rows}[data-version='{v['name']}']"
        text = p.text_content(row)
        assert v["kind"] in text and f"{len(v['spiders'])} spiders" in text
        assert p.get_attribute(f"{row} time", "datetime") == v["pushed"]
        assert ("current" in text) == v["current"]
        assert (p.query_selector(f"{row} button") is None) == v["current"], \
            "every version but the current one can be deleted"
    shot(page, "versions", tmp_path)
    p.click(f"{rows}[data-version='1_0'] button")
    p.click(f"{rows}[data-version='1_0'] button:has-text('Delete 1_0?')")
    p.wait_for_selector("tr[data-versions-of=eggs] .version-error:not(:empty)")
    refused = dash.api.post(dash.url + "/delete-version.json", timeout=30,
                            data={"project": "eggs", "version": "1_0"})
    assert refused.status_code == 409 and "running job" in refused.json()["msg"]
    assert refused.json()["msg"] in p.text_content("tr[data-versions-of=eggs] .version-error")
    reader = requests.post(dash.url + "/delete-version.json", timeout=30,
                           data={"project": "eggs", "version": "1_0"},
                           headers={"Authorization": f"Bearer {dash.keys['reader']}"})
    assert reader.status_code == 403 and "operator role" in reader.json()["msg"]
    dash.post("/cancel-job.json", id=sleeper)
    wait_for(lambda: dash.job(sleeper)["finished"], 60, what="the pinned job to end")
    p.click(f"{rows}[data-version='1_0'] button")
    p.click(f"{rows}[data-version='1_0'] button:has-text('Delete 1_0?')")
    p.wait_for_selector(f"{rows}[data-version='1_0']", state="detached")
    left = dash.get("/list-versions.json", project="eggs")["versions"]
    assert [v["name"] for v in left] == [v["name"] for v in versions if v["name"] != "1_0"]
    assert p.eval_on_selector_all(rows, "rows => rows.map(r => r.dataset.version)") == \
        [pushed["name"], "2_0"]
    assert not_reloaded(page)


# -- scheduling and following jobs ----------------------------------------------------
def test_schedule_a_job_through_the_form_and_watch_it_finish(dash: Dash, page: Watched,
                                                             tmp_path: Path) -> None:
    dash.ensure_project()
    login_key(page, dash)
    p = page.page
    p.click("a[href='#/schedule']")
    p.wait_for_selector("#f-target option[value=ok]", state="attached")
    p.select_option("#f-project", "demo")
    p.select_option("#f-target", "ok")
    p.fill("#f-when", "every day at 03:00")
    p.fill("#f-tz", "Europe/Paris")
    p.wait_for_selector("#when-preview li:nth-child(5)")
    expected = dash.get("/preview-schedule.json", when="every day at 03:00",
                        tz="Europe/Paris")["next"]
    shown = p.eval_on_selector_all("#when-preview time", "els => els.map(e => e.dateTime)")
    assert shown == expected
    p.fill("#f-when", "every fortnight")
    p.wait_for_selector("#when-error")
    said = requests.get(dash.url + "/preview-schedule.json", timeout=30,
                        params={"when": "every fortnight"}, headers=dash.api.headers).json()
    assert p.text_content("#when-error") == said["msg"]
    p.fill("#f-when", "now")
    p.fill("#f-tz", "")
    p.fill("#f-description", "scheduled from the dashboard")
    p.wait_for_selector("#when-preview li")
    shot(page, "schedule", tmp_path)
    mark(page)
    p.click("#f-submit")
    p.wait_for_url(re.compile(r"#/job/[0-9a-f-]{36}$"))
    job_id = p.url.rsplit("/", 1)[1]
    assert dash.job(job_id)["description"] == "scheduled from the dashboard"
    p.wait_for_selector("#job-head .badge:has-text('SUCCESSFUL')")
    p.wait_for_selector(f"#log-out:has-text('CRAWLD-TEST')")
    assert job_id in p.text_content("#log-out"), "the spider's own line, from its log"
    assert not_reloaded(page), "the status changed without a reload"
    assert dash.job(job_id)["status"] == "SUCCESSFUL"
    shot(page, "job", tmp_path)


def test_jobs_appear_and_end_in_the_list_without_a_reload(dash: Dash, page: Watched,
                                                          tmp_path: Path) -> None:
    p = open_view(page, dash, "jobs?tab=completed", "#jobs-COMPLETED")
    job_id = dash.post("/schedule-job.json", project="demo", spider="ok", when="now",
                       description="appears by itself")["identifier"]
    p.wait_for_selector(f"#jobs-COMPLETED tr[data-id='{job_id}'][data-status=SUCCESSFUL]")
    assert "appears by itself" in p.text_content(f"tr[data-id='{job_id}']")
    shot(page, "jobs", tmp_path)
    # the text search is the server's
    p.fill("#filter-q", "appears by")
    p.wait_for_function("""id => {
        const rows = [...document.querySelectorAll('#jobs-COMPLETED tbody tr[data-id]')];
        return rows.length === 1 && rows[0].dataset.id === id; }""", arg=job_id)
    assert "q=appears" in p.url
    assert not_reloaded(page)


def test_a_schedule_paused_resumed_run_now_and_edited(dash: Dash, page: Watched,
                                                     browser: Any, tmp_path: Path) -> None:
    dash.ensure_project()
    template = dash.post("/schedule-job.json", project="demo", spider="ok",
                         when="every day at 03:00", description="nightly")["identifier"]
    row = f"tr[data-id='{template}']"
    # a reader watches the same list in another browser context: it follows the events
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT)
    watcher = Watched(context.new_page())
    login_key(watcher, dash, "reader")
    watcher.page.goto(dash.url + "/#/jobs?tab=scheduled")
    watcher.page.wait_for_selector(f"#jobs-SCHEDULED {row}")
    mark(watcher)
    p = open_view(page, dash, "jobs?tab=scheduled", f"#jobs-SCHEDULED {row}")

    def next_run() -> Any:
        """The next run the row shows (None for its dash)."""
        found = p.query_selector(f"{row} td:nth-child(4) time")
        return found and found.get_attribute("datetime")

    assert next_run() == dash.job(template)["next-run"] is not None
    p.click(f"{row} button:text-is('Pause')")
    p.wait_for_selector(f"#jobs-PAUSED {row}")
    job = dash.job(template)
    assert job["status"] == "PAUSED" and job["next-run"] is None and next_run() is None
    watcher.page.wait_for_selector(f"#jobs-PAUSED {row}")
    p.click(f"{row} button:text-is('Resume')")
    p.wait_for_selector(f"#jobs-SCHEDULED {row}")
    job = dash.job(template)
    assert job["status"] == "SCHEDULED" and next_run() == job["next-run"] is not None
    # run now: a child of the schedule, which runs and ends while the page stays
    p.click(f"{row} button:text-is('Run now')")
    link = p.wait_for_selector("#notice a[href^='#/job/']")
    child = link.get_attribute("href").rsplit("/", 1)[1]
    assert dash.job(child)["parent"] == template
    p.wait_for_function("""([sel, want]) => {
        const t = document.querySelector(sel + ' td:nth-child(5) time');
        return t && t.dateTime === want; }""",
                        arg=[row, dash.job(template)["last-run"]])
    watcher.page.wait_for_function("""([sel, want]) => {
        const t = document.querySelector(sel + ' td:nth-child(5) time');
        return t && t.dateTime === want; }""", arg=[row, dash.job(template)["last-run"]])
    p.click("#tab-completed")
    p.wait_for_selector(f"#jobs-COMPLETED tr[data-id='{child}'][data-status=SUCCESSFUL]")
    assert dash.job(child)["status"] == "SUCCESSFUL"
    assert "nightly" in p.text_content(f"tr[data-id='{child}']")
    # edit: a when that does not parse is refused with the API's words, then a new when
    # and description; the next run follows
    p.click("#tab-scheduled")
    p.click(f"{row} button:text-is('Edit')")
    p.fill(f"#edit-when-{template}", "every fortnight")
    p.click(f"#edit-when-{template} ~ button[type=submit]")
    said = dash.api.post(dash.url + "/update-job.json", timeout=30,
                         data={"id": template, "when": "every fortnight"}).json()
    p.wait_for_selector(f"tr.edit-row .error:text-is({json.dumps(said['msg'])})")
    before = dash.job(template)["next-run"]
    p.fill(f"#edit-when-{template}", "every day at 05:30")
    p.fill(f"#edit-desc-{template}", "nightly, later")
    p.click(f"#edit-when-{template} ~ button[type=submit]")
    p.wait_for_selector(f"{row} td.mono:text-is('every day at 05:30')")
    job = dash.job(template)
    assert job["schedule"] == "every day at 05:30" and job["description"] == "nightly, later"
    assert job["next-run"] != before and next_run() == job["next-run"]
    assert "nightly, later" in p.text_content(row)
    shot(page, "schedules", tmp_path)
    assert not_reloaded(page)
    watcher.page.wait_for_selector(f"{row} td.mono:text-is('every day at 05:30')")
    assert "nightly, later" in watcher.page.text_content(row)
    assert not_reloaded(watcher) and not watcher.errors
    context.close()
    dash.post("/cancel-job.json", id=template)


def test_follow_a_running_job_and_cancel_it(dash: Dash, page: Watched,
                                            tmp_path: Path) -> None:
    p = open_view(page, dash, "jobs?tab=active", "#jobs-RUNNING")
    job_id = dash.post("/schedule-job.json", project="demo", spider="sleep",
                       when="now")["identifier"]
    row = f"#jobs-RUNNING tr[data-id='{job_id}']"
    p.wait_for_selector(row)  # it appears among the running jobs, no reload
    p.click(f"{row} a")
    p.wait_for_selector("#job-head .badge:has-text('RUNNING')")
    p.wait_for_selector("#log-out:has-text('CRAWLD-TEST')")  # followed while it runs
    assert not_reloaded(page)
    shot(page, "running-job", tmp_path)
    p.click("#cancel-job")
    p.wait_for_selector("#job-head .badge:has-text('CANCELED')")
    assert dash.job(job_id)["status"] == "CANCELED"
    p.wait_for_selector("#cancel-job", state="detached")
    assert not_reloaded(page)


def test_a_long_log_shows_its_tail_and_older_parts_on_demand(dash: Dash, page: Watched,
                                                           tmp_path: Path) -> None:
    dash.ensure_project()
    job_id = dash.post("/schedule-job.json", project="demo", spider="flood", when="now",
                       payload='{"megabytes": 2}')["identifier"]
    wait_for(lambda: dash.job(job_id)["status"] == "SUCCESSFUL", 60, what="the flood")
    size = len(requests.get(f"{dash.url}/get-log/x/{job_id}.out", timeout=60,
                            headers=dash.api.headers).content)
    assert size >= 2 * 1024 * 1024
    asked: list[str] = []
    page.page.on("request", lambda r: asked.append(r.url) if "/get-log/" in r.url else None)
    login_key(page, dash)
    p = page.page
    p.goto(dash.url + f"/#/job/{job_id}")
    p.wait_for_selector("#older-out:visible")
    shown = p.evaluate("document.getElementById('log-out').textContent.length")
    assert shown == 64 * 1024, "the last 64 KiB, not the 2 MB log"
    p.click("#older-out")
    p.wait_for_function("() => document.getElementById('log-out').textContent.length "
                        "=== 128 * 1024")
    text = p.evaluate("document.getElementById('log-out').textContent")
    assert set(text) == {"x", "\n"}
    assert asked and all("offset=" in url and "follow=0" in url for url in asked), asked
    assert "of the log" in p.text_content("#log-info-out")


def test_overview_shows_status_failures_and_the_chart(dash: Dash, page: Watched,
                                                      tmp_path: Path) -> None:
    dash.ensure_project()
    failed = dash.post("/schedule-job.json", project="demo", spider="fail",
                       when="now")["identifier"]
    wait_for(lambda: dash.job(failed)["status"] == "FAILED", 60, what="the job to fail")
    login_key(page, dash)
    p = page.page
    p.wait_for_selector(f"#failures a[href='#/job/{failed}']")
    reason = dash.job(failed)["reason"] or "exit code 3"
    assert reason in p.text_content("#failures")
    status = dash.get("/status.json")
    assert int(p.text_content("#fig-failed")) == status["jobs-failed"] >= 1
    assert p.text_content("#fig-slots").endswith(f"/ {status['job-slots']}")
    p.wait_for_selector("#history svg rect.bar.failed")
    shot(page, "overview", tmp_path)


# -- roles ----------------------------------------------------------------------------
def test_a_reader_sees_everything_and_can_change_nothing(dash: Dash, page: Watched,
                                                         tmp_path: Path) -> None:
    dash.ensure_project()
    running = dash.post("/schedule-job.json", project="demo", spider="sleep",
                        when="now")["identifier"]
    login_user(page, dash, "bob")
    p = page.page
    assert p.text_content("#who .role") == "reader"
    assert p.is_hidden("#nav a[href='#/schedule']")
    p.click("a[href='#/projects']")
    p.wait_for_selector("tr[data-project=demo]")
    assert p.query_selector("#archive") is None and p.query_selector("#drop-zone") is None
    assert p.query_selector("tr[data-project=demo] button") is None
    p.wait_for_selector("tr[data-versions-of=demo] tr[data-version]")
    assert p.query_selector("tr.versions button") is None, "no version can be deleted"
    p.goto(dash.url + "/#/jobs?tab=active")
    p.wait_for_selector(f"tr[data-id='{running}']")
    assert p.query_selector(f"tr[data-id='{running}'] button") is None
    p.goto(dash.url + f"/#/job/{running}")
    p.wait_for_selector("#job-head .badge")
    assert p.query_selector("#cancel-job") is None
    p.goto(dash.url + "/#/schedule")
    p.wait_for_selector("#reader-note")
    # the buttons are absent, and the server refuses what they would have sent
    answer = p.evaluate("""async id => {
        const cred = JSON.parse(sessionStorage.getItem('crawld.credential'));
        const r = await fetch('cancel-job.json', {method: 'POST',
            headers: {Authorization: 'Bearer ' + cred.token, 'X-Crawld-Client': 'dashboard',
                      'Content-Type': 'application/x-www-form-urlencoded'},
            body: 'id=' + id});
        return {status: r.status, body: await r.json()}; }""", running)
    assert answer["status"] == 403 and "operator role" in answer["body"]["msg"]
    assert dash.job(running)["status"] == "RUNNING"
    p.goto(dash.url + f"/#/job/{running}")
    p.wait_for_selector("#log-out:has-text('CRAWLD-TEST')")
    shot(page, "reader", tmp_path)
    dash.post("/cancel-job.json", id=running)


def test_readable_in_a_narrow_window(dash: Dash, browser: Any, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 380, "height": 800})
    context.set_default_timeout(TIMEOUT)
    try:
        page = Watched(context.new_page())
        login_key(page, dash)
        p = page.page
        for view, ready in (("overview", "#fig-uptime"), ("jobs?tab=completed", "#jobs-COMPLETED"),
                            ("schedule", "#f-when")):
            p.goto(dash.url + f"/#/{view}")
            p.wait_for_selector(ready)
            width = p.evaluate("document.documentElement.scrollWidth")
            assert width <= 380, f"{view} is {width} px wide in a 380 px window"
        shot(page, "narrow", tmp_path)
        # keyboard: the tabs of the jobs view move with the arrow keys
        p.goto(dash.url + "/#/jobs?tab=active")
        p.focus("#tab-active")
        p.keyboard.press("ArrowRight")
        p.wait_for_selector("#tab-scheduled[aria-selected=true]")
        assert p.evaluate("document.activeElement.id") == "tab-scheduled"
        assert not page.errors and not page.dialogs
    finally:
        context.close()


CHAT = '''
async def run(page, job):
    await page.set_content("<title>Chat</title><h1>waiting for messages</h1>")
    job.progress(0.5, "half way")
    async for message in job.messages():
        await page.set_content(f"<h1>got {message}</h1>")
        job.post({"got": message})
'''


def test_a_browser_job_live_screenshot_progress_and_messages(dash: Dash, page: Watched,
                                                             tmp_path: Path) -> None:
    r = dash.api.post(dash.url + "/push-project.json", timeout=120, files={
        "archive": ("b.zip", project.build("browsing", extra={"browsing/scripts/chat.py": CHAT}))})
    assert r.status_code == 200 and r.json()["scripts"] == ["chat"], r.text
    job_id = dash.post("/schedule-job.json", project="browsing", script="chat",
                       when="now")["identifier"]
    login_key(page, dash)
    p = page.page
    p.goto(dash.url + f"/#/job/{job_id}")
    p.wait_for_selector("#job-progress:has-text('half way')")
    p.wait_for_selector("#screenshot[src^='blob:']")
    assert p.evaluate("document.getElementById('screenshot').naturalWidth") > 100
    p.fill("#job-message", '{"hello": 1}')
    p.click("#job-message ~ button")
    p.wait_for_selector("#job-posts li:has-text('\"got\":{\"hello\":1}')")
    shot(page, "browser-job", tmp_path)
    p.click("#cancel-job")
    p.wait_for_selector("#job-head .badge:has-text('CANCELED')")


# -- what issue 11 adds: the event stream, arguments, stats, items ---------------------
HARVEST = '''
import scrapy


class Harvest(scrapy.Spider):
    """Scrapes ``count`` items from nowhere: the page's items and stats to show."""

    name = "harvest"

    async def start(self):
        for n in range(int(getattr(self, "count", "3"))):
            yield {"n": n, "word": getattr(self, "word", "none")}
'''


def test_live_updates_come_from_the_event_stream(dash: Dash, page: Watched,
                                                 tmp_path: Path) -> None:
    streams: list[tuple[str, int]] = []
    page.page.on("response", lambda r: streams.append((r.url, r.status))
                 if "/events" in r.url else None)
    polls: list[str] = []
    p = open_view(page, dash, "jobs?tab=completed", "#jobs-COMPLETED")
    page.page.on("request", lambda r: polls.append(r.url) if "list-jobs" in r.url else None)
    assert any(url.endswith("/events?format=ndjson") and code == 200 for url, code in streams)
    job_id = dash.post("/schedule-job.json", project="demo", spider="ok",
                       when="now")["identifier"]
    p.wait_for_selector(f"#jobs-COMPLETED tr[data-id='{job_id}'][data-status=SUCCESSFUL]")
    # reloaded because an event said so (a new row for this list), not by a poll timer
    assert 1 <= len(polls) <= 3, polls
    assert not_reloaded(page)


def test_arguments_from_the_form_then_stats_and_items(dash: Dash, page: Watched,
                                                      tmp_path: Path) -> None:
    r = dash.api.post(dash.url + "/push-project.json", timeout=120, files={
        "archive": ("h.zip", project.build("harvest", spiders=HARVEST))})
    assert r.status_code == 200, r.text
    login_key(page, dash)
    p = page.page
    p.goto(dash.url + "/#/schedule?project=harvest")
    p.wait_for_selector("#f-target option[value=harvest]", state="attached")
    p.fill("#f-args", "count=4\nword=hello")
    p.fill("#f-settings", "DOWNLOAD_DELAY=0")
    p.check("input[name=fail-on][value=no-items]")
    p.click("#f-submit")
    p.wait_for_url(re.compile(r"#/job/[0-9a-f-]{36}$"))
    job_id = p.url.rsplit("/", 1)[1]
    p.wait_for_selector("#job-head .badge:has-text('SUCCESSFUL')")
    job = dash.job(job_id)
    assert job["args"] == {"count": "4", "word": "hello"}, job["args"]
    assert "no-items" in job["fail-on"]
    assert "hello" in p.text_content("#job-args")
    assert "DOWNLOAD_DELAY" in p.text_content("#job-settings")
    p.wait_for_selector("#job-stats .figure:has-text('Items') dd:text-is('4')")
    p.wait_for_selector("#items-title:has-text('Items (4)')")
    assert p.eval_on_selector_all("#items-table tbody tr", "rows => rows.length") == 4
    assert "hello" in p.text_content("#items-table")
    shot(page, "job-stats", tmp_path)
    p.goto(dash.url + "/#/jobs?tab=completed&project=harvest")
    p.wait_for_selector(f"tr[data-id='{job_id}'] td.num:text-is('4')")
