"""scrapyd's own client tools against crawld's scrapyd listener, unchanged: a real Scrapy
project deployed with ``scrapyd-deploy`` (scrapyd-client from PyPI, which builds the egg
itself), its spider run with ``scrapyd-client schedule``, its log read through
``/logs/...`` and the items it scraped from a page this test serves through
``/items/...``, as scrapyd serves them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

from tests.conftest import wait_for
from tests.integration import pages, project
from tests.integration.scrapyd import PASSWORD, USER, scrapyd_daemon

PAGES = {"/catalog": "<html><body>" + "".join(
    f'<p class="book"><a href="/book/{i}">Book {i}</a></p>' for i in range(5))
    + "</body></html>"}

SCRAPE = r'''

class Books(scrapy.Spider):
    """The books of the catalog page at ``url`` (a spider argument), one item each."""

    name = "books"

    async def start(self):
        yield scrapy.Request(self.url)

    def parse(self, response):
        for a in response.css("p.book a"):
            yield {"title": a.css("::text").get(), "href": a.attrib["href"]}
'''

SCRAPY_CFG = """[settings]
default = demo.settings

[deploy]
url = {url}
project = demo
username = {user}
password = {password}
"""


def tool(name: str) -> str:
    """A console script of this interpreter's environment (scrapyd-client's)."""
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[test]')"
    return found


def run(cwd: Any, *argv: str) -> str:
    """Run a scrapyd-client command in the project; its output (it must succeed)."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout + done.stderr


def test_scrapyd_deploy_and_schedule_run_a_project_unchanged(tmp_path):
    d = scrapyd_daemon(tmp_path)
    try:
        tree = project.write_tree(str(tmp_path / "src"))
        with open(os.path.join(tree, "demo", "spiders", "test_spiders.py"), "a") as fh:
            fh.write(SCRAPE)
        with open(os.path.join(tree, "scrapy.cfg"), "w") as fh:
            fh.write(SCRAPY_CFG.format(url=d.scrapyd_url, user=USER, password=PASSWORD))

        out = run(tree, tool("scrapyd-deploy"), "--version", "r1")
        assert '"status": "ok"' in out and '"spiders": 7' in out, out
        assert d.sd_get("/listversions.json", project="demo")["versions"] == ["r1"]
        assert "books" in run(tree, tool("scrapyd-client"), "spiders", "-p", "demo")

        with pages.serve(PAGES) as site:
            out = run(tree, tool("scrapyd-client"), "schedule", "-p", "demo", "books",
                      "--arg", f"url={site}/catalog")
            # "demo / books => <jobid>"
            job_id = out.strip().splitlines()[-1].split("=> ")[-1]
            wait_for(lambda: d.sd_get("/status.json", job=job_id)["currstate"] == "finished",
                     90, what=f"job {job_id} to finish")
        assert d.job(job_id)["status"] == "SUCCESSFUL"

        (done,) = d.sd_get("/listjobs.json", project="demo")["finished"]
        assert done["id"] == job_id and done["spider"] == "books"
        assert done["log_url"] == f"/logs/demo/books/{job_id}.log"
        assert done["items_url"] == f"/items/demo/books/{job_id}.jl"
        log = d.sd.get(d.scrapyd_url + done["log_url"], timeout=30)
        assert log.status_code == 200 and "Spider closed (finished)" in log.text
        assert "'item_scraped_count': 5" in log.text

        got = d.sd.get(d.scrapyd_url + done["items_url"], timeout=30)
        assert got.status_code == 200
        assert [json.loads(line) for line in got.text.splitlines()] == [
            {"title": f"Book {i}", "href": f"/book/{i}"} for i in range(5)]
        listing = d.sd.get(d.scrapyd_url + "/items/demo/books/", timeout=30).text
        assert f"{job_id}.jl" in listing
        assert "Items" in d.sd.get(d.scrapyd_url + "/", timeout=30).text
        assert done["items_url"] in d.sd.get(d.scrapyd_url + "/jobs", timeout=30).text
        # no items file for a job that never ran, nor a path outside the jobs
        assert d.sd.get(d.scrapyd_url + "/items/demo/books/nope.jl",
                        timeout=30).status_code == 404
        assert d.sd.get(d.scrapyd_url + "/items/demo/books/%2e%2e.jl",
                        timeout=30).status_code == 404
    finally:
        d.stop()


def test_items_url_is_null_when_crawld_keeps_no_items(tmp_path):
    d = scrapyd_daemon(tmp_path, "items = no\n")
    try:
        tree = project.write_tree(str(tmp_path / "src"))
        with open(os.path.join(tree, "scrapy.cfg"), "w") as fh:
            fh.write(SCRAPY_CFG.format(url=d.scrapyd_url, user=USER, password=PASSWORD))
        run(tree, tool("scrapyd-deploy"), "--version", "r1")
        job_id = d.sd_post("/schedule.json", project="demo", spider="ok")["jobid"]
        wait_for(lambda: d.sd_get("/status.json", job=job_id)["currstate"] == "finished",
                 90, what=f"job {job_id} to finish")
        (done,) = d.sd_get("/listjobs.json")["finished"]
        assert done["items_url"] is None and done["log_url"] is not None
        assert d.sd.get(d.scrapyd_url + f"/items/demo/ok/{job_id}.jl",
                        timeout=30).status_code == 404
    finally:
        d.stop()
