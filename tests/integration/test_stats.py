"""What a crawl did (issue 11): stats and items of real Scrapy jobs against pages the test
serves, honest outcomes (fail-on), zygote-forked and freshly spawned jobs alike."""
from __future__ import annotations

import json
import os
import socket

import pytest

from tests.conftest import wait_for
from tests.integration import pages, project

#: Spiders of the project "crawl". Their payload gives ``url`` (the test's server) and
#: what else each needs.
SPIDERS = r'''
import json
import scrapy
from scrapy.exceptions import CloseSpider


def options(spider):
    return json.loads(getattr(spider, "payload", "{}"))


class Pages(scrapy.Spider):
    """Scrapes the title of ``pages`` pages, one at a time, ``delay`` seconds apart."""
    name = "pages"
    custom_settings = {"CONCURRENT_REQUESTS": 1, "RANDOMIZE_DOWNLOAD_DELAY": False}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.download_delay = options(self).get("delay", 0)

    async def start(self):
        o = options(self)
        for i in range(o.get("pages", 3)):
            yield scrapy.Request(f"{o['url']}/page/{i}", dont_filter=True)

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}


class Refused(scrapy.Spider):
    """Every request goes to a closed port: refused (and retried twice by Scrapy)."""
    name = "refused"

    async def start(self):
        yield scrapy.Request(options(self)["url"])

    def parse(self, response):
        yield {"unexpected": response.url}


class Quiet(scrapy.Spider):
    """Gets a page and scrapes nothing from it."""
    name = "quiet"

    async def start(self):
        yield scrapy.Request(options(self)["url"] + "/page/0")

    def parse(self, response):
        return []


class Complains(Quiet):
    """Logs an ERROR line, scrapes one item."""
    name = "complains"

    def parse(self, response):
        self.logger.error("something is wrong with %s", response.url)
        yield {"url": response.url}


class Stops(Quiet):
    """Closes itself early (finish_reason "enough"), after one item."""
    name = "stops"

    def parse(self, response):
        yield {"url": response.url}
        raise CloseSpider("enough")


class OwnFeed(Pages):
    """Exports its items to a feed of its own (the project configures FEEDS)."""
    name = "ownfeed"

    @classmethod
    def update_settings(cls, settings):
        super().update_settings(settings)
        settings.set("FEEDS", {options_path(): {"format": "jsonlines"}}, priority="spider")


def options_path():
    import os
    return os.environ["CRAWLD_TEST_FEED"]


class NoStats(Refused):
    """Switches crawld's stats extension off: its crawl reports nothing."""
    name = "nostats"
    custom_settings = {"EXTENSIONS": {"crawld_runner.stats.StatsReporter": None}}
'''


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def site():
    """Eight pages with titles, served on 127.0.0.1 while the test runs."""
    with pages.serve({f"/page/{i}": f"<title>page {i}</title>" for i in range(8)}) as url:
        yield url


def start(make_daemon, config: str = "", env: dict | None = None):
    daemon = make_daemon("stats-interval = 1\n" + config, env).start()
    daemon.push(project.build("crawl", spiders=SPIDERS), name="crawl")
    return daemon


def run(daemon, spider: str, **payload) -> str:
    extra = {k.replace("_", "-"): payload.pop(k) for k in list(payload) if k == "fail_on"}
    return daemon.schedule(spider, project="crawl", payload=json.dumps(payload), **extra)


def stats(daemon, job_id: str) -> dict | None:
    body = daemon.ok(daemon.get("/job-stats.json", id=job_id))
    assert body["identifier"] == job_id
    return body["stats"]


def items(daemon, job_id: str, **params) -> dict:
    return daemon.ok(daemon.get("/job-items.json", id=job_id, **params))


@pytest.mark.parametrize("preload", ["yes", "no"], ids=["zygote", "spawn"])
def test_a_crawl_reports_stats_and_items_while_it_runs_and_after(make_daemon, site, preload):
    daemon = start(make_daemon, f"preload = {preload}\n")
    job_id = run(daemon, "pages", url=site, pages=8, delay=0.6)

    def running_with_items():
        now, page = stats(daemon, job_id) or {}, items(daemon, job_id)
        job = daemon.job(job_id)  # last: RUNNING now, so it was when the others were read
        return (job["status"] == "RUNNING" and now.get("item_scraped_count", 0) >= 2
                and page["total"] >= 2 and (job["stats"] or {}).get("item_scraped_count")
                and (job, now, page))
    job, now, page = wait_for(running_with_items, 60, what="stats and items while running")
    assert job["stats"]["item_scraped_count"] >= 2, "list-jobs shows them too"
    assert now["start_time"].endswith("+00:00"), "datetimes as ISO 8601 text"
    assert "finish_reason" not in now
    assert page["items"][0] == {"url": f"{site}/page/0", "title": "page 0"}

    job = daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL" and job["reason"] is None
    final = stats(daemon, job_id)
    assert final == job["stats"]
    assert final["item_scraped_count"] == 8 and final["response_received_count"] == 8
    assert final["finish_reason"] == "finished" and final["downloader/request_count"] == 8
    assert isinstance(final["elapsed_time_seconds"], float) and final["log_count/INFO"] > 0
    assert final["memusage/max"] > 0 and final["finish_time"].endswith("+00:00")
    every = items(daemon, job_id, limit=1000)
    assert every["total"] == 8
    assert [i["title"] for i in every["items"]] == [f"page {i}" for i in range(8)]
    assert items(daemon, job_id, offset=6, limit=5)["items"] == every["items"][6:]
    download = daemon.get(f"/job-items/{job_id}.jl")
    assert download.status_code == 200
    assert download.headers["Content-Type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in download.text.splitlines()] == every["items"]
    assert "Dumping Scrapy stats" in daemon.log_text(job_id, "err"), "Scrapy's log as usual"

    # every request refused: FAILED with the reason, counted as failed
    before = daemon.ok(daemon.get("/status.json"))
    refused = run(daemon, "refused", url=f"http://127.0.0.1:{closed_port()}/")
    job = daemon.wait_status(refused, "SUCCESSFUL", "FAILED")
    assert job["status"] == "FAILED" and job["exit-code"] == 0
    assert job["reason"] == ("all 3 requests failed: connection refused "
                             "(fail-on all-requests-failed)")
    assert job["stats"]["downloader/request_count"] == 3
    after = daemon.ok(daemon.get("/status.json"))
    assert after["jobs-failed"] == before["jobs-failed"] + 1
    assert after["jobs-successful"] == before["jobs-successful"]
    assert items(daemon, refused) == {"status": "ok", "identifier": refused, "items": [],
                                      "total": 0}
    # the same crawl judged by its exit alone
    lenient = run(daemon, "refused", url=f"http://127.0.0.1:{closed_port()}/", fail_on="none")
    job = daemon.wait_status(lenient, "SUCCESSFUL", "FAILED")
    assert (job["status"], job["reason"], job["fail-on"]) == ("SUCCESSFUL", None, "none")
    assert job["stats"]["downloader/request_count"] == 3


def test_each_fail_on_condition_is_shown_and_a_template_passes_its_own_on(make_daemon, site):
    daemon = start(make_daemon, "fail-on = no-items, error-log, unfinished\n")
    quiet = run(daemon, "quiet", url=site)
    complains = run(daemon, "complains", url=site)
    stops = run(daemon, "stops", url=site)
    fine = run(daemon, "pages", url=site, pages=2)
    ended = {job_id: daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")
             for job_id in (quiet, complains, stops, fine)}
    assert ended[quiet]["reason"] == ("no items scraped (1 response(s) received) "
                                      "(fail-on no-items)")
    assert ended[complains]["reason"] == ("1 ERROR log line(s) (see the .err log) "
                                          "(fail-on error-log)")
    assert ended[stops]["reason"] == ("the crawl ended with finish_reason 'enough' "
                                      "(fail-on unfinished)")
    assert [ended[j]["status"] for j in (quiet, complains, stops)] == ["FAILED"] * 3
    assert ended[fine]["status"] == "SUCCESSFUL" and ended[fine]["fail-on"] is None
    # a job's own conditions replace the daemon's; several met are all named
    both = run(daemon, "quiet", url=site, fail_on="all-requests-failed,no-items")
    assert daemon.wait_status(both, "FAILED", "SUCCESSFUL")["reason"] == (
        "no items scraped (1 response(s) received) (fail-on no-items)")
    # a schedule's runs inherit its fail-on
    template = daemon.schedule("complains", when="every 1 hour", project="crawl",
                               payload=json.dumps({"url": site}), **{"fail-on": "none"})
    assert daemon.job(template)["fail-on"] == "none"
    child = daemon.ok(daemon.post("/run-job.json", id=template))["identifier"]
    job = daemon.wait_status(child, "SUCCESSFUL", "FAILED")
    assert (job["status"], job["fail-on"], job["stats"]["log_count/ERROR"]) == (
        "SUCCESSFUL", "none", 1)
    for bad in ("sometimes", "none,no-items", ""):
        r = daemon.post("/schedule-job.json", project="crawl", spider="quiet", when="now",
                        **{"fail-on": bad})
        if bad:
            assert r.status_code == 400 and "fail-on" in r.json()["msg"], r.text
        else:
            assert r.status_code == 200, "an empty fail-on is the daemon's default"


def test_a_project_keeps_its_own_feeds_and_may_switch_the_stats_off(make_daemon, site,
                                                                    tmp_path):
    feed = tmp_path / "own-feed.jl"
    daemon = start(make_daemon, env={"CRAWLD_TEST_FEED": str(feed)})
    own = run(daemon, "ownfeed", url=site, pages=3)
    job = daemon.wait_status(own, "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL" and job["stats"]["item_scraped_count"] == 3
    assert [json.loads(line)["title"] for line in feed.read_text().splitlines()] == [
        "page 0", "page 1", "page 2"]
    assert items(daemon, own)["total"] == 0, "crawld's file stays empty"
    # no stats at all (the extension is off): nothing to judge, the exit decides
    silent = run(daemon, "nostats", url=f"http://127.0.0.1:{closed_port()}/")
    job = daemon.wait_status(silent, "SUCCESSFUL", "FAILED")
    assert (job["status"], job["stats"]) == ("SUCCESSFUL", None)
    assert stats(daemon, silent) is None
    assert f"job {silent} exited 0 and reported no stats" in daemon.log()


def test_without_items_no_file_is_written_and_retention_removes_items(make_daemon, site):
    daemon = start(make_daemon, "items = no\n")
    job_id = run(daemon, "pages", url=site, pages=2)
    job = daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")
    assert job["stats"]["item_scraped_count"] == 2
    assert items(daemon, job_id)["total"] == 0
    assert daemon.get(f"/job-items/{job_id}.jl").status_code == 404
    assert os.listdir(os.path.join(daemon.data_dir, "items")) == []
    daemon.stop()

    daemon = start(make_daemon, "completed-cap = 1\njob-slots = 1\n")
    first = run(daemon, "pages", url=site, pages=1)
    daemon.wait_status(first, "SUCCESSFUL")
    path = os.path.join(daemon.data_dir, "items", f"{first}.jl")
    assert os.path.getsize(path) > 0
    second = run(daemon, "pages", url=site, pages=1)
    daemon.wait_status(second, "SUCCESSFUL")
    wait_for(lambda: not os.path.exists(path), 15, what="the purged job's items to go")
    assert daemon.get("/job-items.json", id=first).status_code == 404
    assert items(daemon, second)["total"] == 1
    assert os.listdir(os.path.join(daemon.data_dir, "run")) == [], "no FIFO left behind"


def test_unknown_jobs_and_items_files_are_404(daemon):
    missing = "00000000-0000-4000-8000-000000000000"
    for path in ("/job-stats.json", "/job-items.json"):
        r = daemon.get(path, id=missing)
        assert r.status_code == 404 and r.json()["status"] == "error", r.text
    for name in (f"{missing}.jl", "nope.jl", f"{missing}.out"):
        r = daemon.get(f"/job-items/{name}")
        assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    r = daemon.get("/job-items.json", id=missing, limit=1001)
    assert r.status_code == 400 and "limit" in r.json()["msg"]
    r = daemon.get("/job-items.json", id=missing, offset=-1)
    assert r.status_code == 400 and "offset" in r.json()["msg"]
