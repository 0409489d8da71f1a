"""The dashboard in Debian's Firefox (``firefox-esr``), against a real daemon with
authentication on: Firefox is driven over WebDriver BiDi by tests/integration/bidi.py,
since Playwright cannot drive Debian's build (docs/dashboard.md, "Screenshots and
tests"). The Chromium tests (test_dashboard.py) cover every view; this one shows that
the same page works in Firefox: it loads, logs in with a key typed on the keyboard,
lists a job that finished, opens it with its log lines, and logs no console error.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.bidi import Firefox
from tests.integration.test_dashboard import Dash, dash  # noqa: F401 (this module's daemon)

FIREFOX = (os.environ.get("CRAWLD_TEST_FIREFOX") or shutil.which("firefox-esr")
           or shutil.which("firefox"))


def test_the_dashboard_works_in_firefox(dash: Dash, tmp_path: Path) -> None:  # noqa: F811
    if not FIREFOX:
        pytest.fail("Firefox not found (apt-get install firefox-esr, or set "
                    "CRAWLD_TEST_FIREFOX)")
    dash.ensure_project()
    job_id = dash.post("/schedule-job.json", project="demo", spider="ok", when="now",
                       description="seen in Firefox")["identifier"]
    wait_for(lambda: dash.job(job_id)["status"] == "SUCCESSFUL", 60, what="the job")
    ff = Firefox(FIREFOX)
    try:
        version = ff.send("session.status")  # the session answers
        assert version["ready"] is False, "one session at a time: this one is taken"
        ff.navigate(dash.url + "/")
        ff.wait("document.getElementById('login-key') !== null", "the login form")
        assert ff.js("document.getElementById('nav').hidden")
        ff.click("#login-key")
        ff.type(dash.keys["operator"])
        ff.click("#login-key ~ button")
        ff.wait("document.querySelector('#who .role')?.textContent === 'operator'",
                "the operator to be logged in")
        assert ff.js("JSON.parse(sessionStorage.getItem('crawld.credential')).kind") == "key"
        assert dash.keys["operator"] not in ff.js("location.href")
        ff.click("a[href='#/jobs']")
        ff.click("#tab-completed")
        row = f"#jobs-COMPLETED tr[data-id='{job_id}'][data-status=SUCCESSFUL]"
        ff.wait(f"document.querySelector({row!r}) !== null", "the finished job in the list")
        assert "seen in Firefox" in ff.text(row)
        assert ff.js("location.hash") == "#/jobs?tab=completed"
        ff.click(f"{row} a")
        ff.wait("document.querySelector('#job-head .badge')?.textContent === 'SUCCESSFUL'",
                "the job's page")
        ff.wait("document.getElementById('log-out')?.textContent.includes('CRAWLD-TEST')",
                "the job's log lines")
        assert job_id in ff.text("#log-out"), "the spider's own line, from its log"
        folder = Path(os.environ.get("CRAWLD_SCREENSHOTS") or tmp_path)
        folder.mkdir(parents=True, exist_ok=True)
        ff.screenshot(str(folder / "firefox-job.png"))
        assert (folder / "firefox-job.png").stat().st_size > 1000
        assert ff.errors() == [], "console errors in Firefox"
    finally:
        ff.close()
