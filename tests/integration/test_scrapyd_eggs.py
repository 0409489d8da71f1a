"""Eggs and jobs through the scrapyd listener: real eggs (``python setup.py bdist_egg``
of a real Scrapy project, as scrapyd-deploy builds them), real Scrapy processes."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from typing import Any

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.scrapyd import scrapyd_daemon

#: scrapyd-deploy's setup.py (scrapyd-client's _SETUP_PY_TEMPLATE), for project {name}
SETUP_PY = """from setuptools import setup, find_packages

setup(
    name         = 'project',
    version      = '1.0',
    packages     = find_packages(),
    entry_points = {{'scrapy': ['settings = {name}.settings']}},
)
"""

ECHO = r'''

class Echo(scrapy.Spider):
    """Says what it was given: its arguments, a setting, its forced settings."""

    name = "echo"

    async def start(self):
        s = self.crawler.settings
        say(job=getattr(self, "_job", None), version=getattr(self, "_version", None),
            color=getattr(self, "color", None), setting=s.get("CRAWLD_ECHO"),
            telnet=s.getbool("TELNETCONSOLE_ENABLED"), cwd=os.getcwd(),
            bot=s.get("BOT_NAME"))
        return
        yield
'''


def build_egg(tmp_path: Any, tag: str, extra: str = "", name: str = "demo") -> bytes:
    """Project ``name`` (with ``echo`` and ``extra`` spiders) as an egg."""
    root = tmp_path / f"src-{tag}"
    root.mkdir()
    data = project.build(name, spiders=project.SPIDERS + ECHO + extra)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(root)
    tree = root / name
    os.remove(tree / "scrapy.cfg")  # an egg carries none; its entry point names settings
    (tree / "setup.py").write_text(SETUP_PY.format(name=name))
    run = subprocess.run([sys.executable, "setup.py", "bdist_egg", "-d", "dist"], cwd=tree,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (egg,) = (tree / "dist").iterdir()
    return egg.read_bytes()


TWO = r'''

class Two(scrapy.Spider):
    name = "two"

    async def start(self):
        return
        yield
'''


def finished(d: Any, job_id: str) -> None:
    wait_for(lambda: d.sd_get("/status.json", job=job_id)["currstate"] == "finished", 90,
             what=f"job {job_id} to finish")


def test_eggs_are_versions_that_run_with_arguments_settings_and_logs(tmp_path):
    d = scrapyd_daemon(tmp_path)
    try:
        one = d.sd_post("/addversion.json", files={"egg": ("demo.egg", build_egg(tmp_path, "1"))},
                        project="demo", version="1.0")
        assert one == {"project": "demo", "version": "1.0", "spiders": 7, "status": "ok",
                       "node_name": one["node_name"]}
        assert d.sd_get("/listprojects.json")["projects"] == ["demo"]
        assert d.sd_get("/listversions.json", project="demo")["versions"] == ["1_0"]
        assert "echo" in d.sd_get("/listspiders.json", project="demo")["spiders"]

        # a setting no job may set is refused, as the native API refuses it (scrapyd's
        # shape: 200, status error, the message), and nothing is scheduled
        refused = d.sd_post("/schedule.json", project="demo", spider="echo", jobid="echo-1",
                            color="blue", setting=["CRAWLD_ECHO=x", "TELNETCONSOLE_ENABLED=1"])
        assert refused["status"] == "error" and refused["message"].startswith(
            "setting TELNETCONSOLE_ENABLED may not be set on a job: Scrapy's telnet console")
        assert d.sd_get("/status.json", job="echo-1")["currstate"] is None
        native = d.post("/schedule-job.json", project="demo", spider="echo", when="now",
                        setting="TELNETCONSOLE_ENABLED=1").json()
        assert native["msg"] == refused["message"]
        sent = d.sd_post("/schedule.json", project="demo", spider="echo", jobid="echo-1",
                         color="blue", setting=["CRAWLD_ECHO=x"])
        assert sent["jobid"] == "echo-1" and sent["status"] == "ok"
        said = d.said("echo-1")
        assert said["job"] == "echo-1" and said["color"] == "blue" and said["setting"] == "x"
        assert said["telnet"] is False, "a job cannot turn the telnet console back on"
        assert said["bot"] == "demo" and said["version"] is None
        assert said["cwd"] == os.path.join(d.data_dir, "projects", "demo", "1")
        finished(d, "echo-1")
        done = d.sd_get("/listjobs.json", project="demo")["finished"]
        assert [j["id"] for j in done] == ["echo-1"]
        assert done[0]["log_url"] == "/logs/demo/echo/echo-1.log"
        log = d.sd.get(d.scrapyd_url + done[0]["log_url"], timeout=30)
        assert log.status_code == 200 and "Spider closed (finished)" in log.text
        assert log.headers["Accept-Ranges"] == "bytes"
        # byte ranges as scrapyd's static files answer them (Gerapy reads a log's tail)
        whole = log.content
        tail = d.sd.get(d.scrapyd_url + done[0]["log_url"], timeout=30,
                        headers={"Range": "bytes=-100"})
        assert tail.status_code == 206 and tail.content == whole[-100:]
        assert tail.headers["Content-Range"] == f"bytes {len(whole) - 100}-{len(whole) - 1}/{len(whole)}"
        part = d.sd.get(d.scrapyd_url + done[0]["log_url"], timeout=30,
                        headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == whole[10:20]
        past = d.sd.get(d.scrapyd_url + done[0]["log_url"], timeout=30,
                        headers={"Range": f"bytes={len(whole)}-"})
        assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(whole)}"
        listing = d.sd.get(d.scrapyd_url + "/logs/demo/echo/", timeout=30).text
        assert "echo-1.log" in listing and "Last modified" in listing
        # the same job on the native API
        native = d.job("echo-1")
        assert native["status"] == "SUCCESSFUL" and native["spider"] == "echo"

        d.sd_post("/addversion.json", files={"egg": ("demo.egg", build_egg(tmp_path, "2",
                                                                           TWO))},
                  project="demo", version="2.0")
        assert d.sd_get("/listversions.json", project="demo")["versions"] == ["1_0", "2_0"]
        assert "two" in d.sd_get("/listspiders.json", project="demo")["spiders"]
        assert "two" not in d.sd_get("/listspiders.json", project="demo",
                                     _version="1.0")["spiders"]
        refused = d.sd_post("/schedule.json", project="demo", spider="two", _version="1.0")
        assert refused["status"] == "error" and refused["message"] == "spider 'two' not found"
        versions = d.ok(d.get("/list-versions.json", project="demo"))["versions"]
        assert [(v["name"], v["kind"], v["current"]) for v in versions] == [
            ("1_0", "egg", False), ("2_0", "egg", True)]

        # a job pinned to 1.0 runs from 1.0's directory; 1.0 cannot go while it runs
        d.sd_post("/schedule.json", project="demo", spider="sleep", _version="1.0",
                  jobid="sleeper")
        wait_for(lambda: d.sd_get("/status.json", job="sleeper")["currstate"] == "running",
                 60, what="the sleeper to run")
        busy = d.sd_post("/delversion.json", project="demo", version="1.0")
        assert busy["status"] == "error" and "used by a running job" in busy["message"]
        assert d.sd_post("/cancel.json", project="demo", job="sleeper")["prevstate"] == "running"
        finished(d, "sleeper")
        assert d.sd_post("/delversion.json", project="demo", version="1.0")["status"] == "ok"
        assert d.sd_get("/listversions.json", project="demo")["versions"] == ["2_0"]
        assert not os.path.exists(os.path.join(d.data_dir, "projects", "demo", "1"))
        assert d.sd_post("/delproject.json", project="demo")["status"] == "ok"
        assert d.sd_get("/listprojects.json")["projects"] == []
    finally:
        d.stop()


def test_priority_orders_the_pending_queue_in_both_apis(tmp_path):
    d = scrapyd_daemon(tmp_path, "job-slots = 1\n")
    try:
        d.sd_post("/addversion.json", files={"egg": ("demo.egg", build_egg(tmp_path, "1"))},
                  project="demo", version="1")
        d.sd_post("/schedule.json", project="demo", spider="sleep", jobid="blocker")
        wait_for(lambda: d.sd_get("/status.json", job="blocker")["currstate"] == "running",
                 60, what="the blocker to run")
        d.sd_post("/schedule.json", project="demo", spider="ok", jobid="low")
        d.sd_post("/schedule.json", project="demo", spider="ok", jobid="high", priority="5")
        native = d.schedule("ok", project="demo", priority="2")
        pending = d.sd_get("/listjobs.json")["pending"]
        assert [j["id"] for j in pending] == ["high", native, "low"]
        assert pending[0] == {"id": "high", "project": "demo", "spider": "ok",
                              "version": None, "settings": {}, "args": {}}
        d.sd_post("/cancel.json", project="demo", job="blocker")
        for job_id in ("high", native, "low"):
            finished(d, job_id)
        starts = {j["id"]: j["start_time"] for j in d.sd_get("/listjobs.json")["finished"]}
        assert starts["high"] < starts[native] < starts["low"]
    finally:
        d.stop()
