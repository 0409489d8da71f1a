"""ScrapydWeb 1.6 (PyPI), unchanged, pointed at crawld's scrapyd listener: it lists the
node, its projects and jobs, and shows a job's log and stats, read from ScrapydWeb's own
pages over HTTP.

ScrapydWeb pins old Flask, SQLAlchemy and friends, so it runs from a virtualenv of its
own, made once under a cache folder (``CRAWLD_TEST_CACHE``, else
``~/.cache/crawld-tests``), as bench/ makes scrapyd's."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import requests

from tests.conftest import wait_for
from tests.integration.scrapyd import (PASSWORD, USER, free_port, scrapyd_daemon,
                                      stop_process, tool_venv)
from tests.integration.test_scrapyd_eggs import build_egg, finished

#: ScrapydWeb 1.6.0 and every package it resolved to on Python 3.11, pinned (in a venv
#: of its own: they clash with crawld's test environment)
REQUIREMENTS = ["APScheduler==3.6.0", "certifi==2026.10.19.post1",
                "charset-normalizer==3.5.3", "click==7.1.2", "colorama==0.4.0",
                "Flask==2.0.0", "Flask-Compress==1.4.0", "Flask-SQLAlchemy==2.4.0",
                "idna==2.7", "itsdangerous==2.0.0", "Jinja2==3.0.0",
                "logparser==0.8.4", "MarkupSafe==2.0.0", "pexpect==4.7.0",
                "ptyprocess==0.6.0", "pytz==2018.9", "requests==2.34.2",
                "scrapydweb==1.6.0", "six==1.16.0", "SQLAlchemy==1.3.24",
                "tzlocal==1.5.1", "urllib3==2.8.0", "w3lib==2.0.0", "Werkzeug==2.0.0"]

SETTINGS = """SCRAPYDWEB_BIND = '127.0.0.1'
SCRAPYDWEB_PORT = {port}
DATA_PATH = {data!r}
SCRAPYD_SERVERS = ['{user}:{password}@127.0.0.1:{node}']
ENABLE_LOGPARSER = False
ENABLE_MONITOR = False
"""


def scrapydweb_venv() -> Path:
    """The virtualenv with ScrapydWeb, made the first time."""
    return tool_venv("scrapydweb-1.6.0", REQUIREMENTS)


def page(base: str, path: str) -> str:
    """A ScrapydWeb page: 200, its HTML."""
    r = requests.get(base + path, timeout=120)
    assert r.status_code == 200, (path, r.status_code, r.text[-2000:])
    return r.text


def test_scrapydweb_lists_the_node_projects_jobs_and_shows_log_and_stats(tmp_path: Any):
    venv = scrapydweb_venv()
    d = scrapyd_daemon(tmp_path)
    web = None
    try:
        d.sd_post("/addversion.json", files={"egg": ("demo.egg", build_egg(tmp_path, "1"))},
                  project="demo", version="1.0")
        d.sd_post("/schedule.json", project="demo", spider="ok", jobid="job-1")
        finished(d, "job-1")
        node = d.scrapyd_url.rsplit(":", 1)[1]
        home = tmp_path / "scrapydweb"
        home.mkdir()
        port = free_port()
        # ScrapydWeb reads scrapydweb_settings_v11.py from its working folder
        (home / "scrapydweb_settings_v11.py").write_text(SETTINGS.format(
            port=port, data=str(home / "data"), user=USER, password=PASSWORD, node=node))
        out = open(home / "out.log", "wb")
        web = subprocess.Popen([str(venv / "bin" / "scrapydweb")], cwd=home,
                               stdout=out, stderr=subprocess.STDOUT)
        out.close()
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert web.poll() is None, (home / "out.log").read_text()[-3000:]
            try:
                return requests.get(base + "/1/api/daemonstatus/", timeout=5).ok
            except requests.ConnectionError:
                return False
        wait_for(up, 120, what="ScrapydWeb to answer")

        # the node, as ScrapydWeb's servers page polls it
        status = requests.get(base + "/1/api/daemonstatus/", timeout=60).json()
        assert status["status"] == "ok" and status["status_code"] == 200, status
        assert status["finished"] == 1 and status["node_name"] == d.sd_get(
            "/daemonstatus.json")["node_name"]
        assert f"127.0.0.1:{node}" in page(base, "/1/servers/")
        # its projects and their versions
        assert '<li id="project_demo">' in page(base, "/1/projects/")
        versions = requests.get(base + "/1/api/listversions/demo/", timeout=60).json()
        assert versions["versions"] == ["1_0"], versions
        # its jobs: ScrapydWeb reads the listener's /jobs table
        jobs = page(base, "/1/jobs/")
        assert "job: 'job-1'" in jobs
        assert "url_stats: '/1/log/stats/demo/ok/job-1/?job_finished=True'" in jobs
        # the job's log, and the stats ScrapydWeb parses from it
        log = page(base, "/1/log/utf8/demo/ok/job-1/")
        assert "Spider closed (finished)" in log
        stats = page(base, "/1/log/stats/demo/ok/job-1/")
        assert '<td id="finish_reason">finished</td>' in stats
        assert "job-1" in page(base, "/1/logs/demo/ok/")
    finally:
        stop_process(web)
        d.stop()
