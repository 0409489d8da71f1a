"""metrics.Metrics and GET /metrics: names, labels and values, the collector, the store's
job totals (kept whatever retention removes), and where requests and firings are counted."""
from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyChannel
from zoneinfo import ZoneInfo

from crawld import spec
from crawld.database import Database, items_scraped
from crawld.events import JobEvents
from crawld import server
from crawld.launch.spawner import DirectSpawner, ZygoteSpawner
from crawld.metrics import HTTP_BUCKETS, Buckets, Metrics
from crawld.migrations import MIGRATIONS
from crawld.model import Actor, Job, JobStatus
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import result, scheduler_for
from tests.unit.http_fakes import FakeCounts, inline, services, stub
from tests.unit.test_feed import job

NAMES = {  # what the issue asks for, exactly: family name -> (type, labels)
    "crawld_jobs_finished": ("counter", {"project", "spider", "status"}),
    "crawld_items_scraped": ("counter", {"project", "spider"}),
    "crawld_jobs_running": ("gauge", set()),
    "crawld_jobs_pending": ("gauge", set()),
    "crawld_job_slots": ("gauge", set()),
    "crawld_zygote_up": ("gauge", set()),
    "crawld_job_duration_seconds": ("histogram", {"project", "spider"}),
    "crawld_scheduler_lateness_seconds": ("histogram", set()),
    "crawld_http_requests": ("counter", {"route", "code"}),
    "crawld_http_request_duration_seconds": ("histogram", {"route"}),
}


def scrape(metrics: Metrics) -> dict[str, Any]:
    body, content_type = result(metrics.render())
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(family: Any) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


def key(name: str, **labels: str) -> tuple:
    return (name, tuple(sorted(labels.items())))


def make(totals: list[tuple] = (), states: dict[str, int] | None = None,
         zygote: bool = True) -> tuple[Metrics, JobEvents]:
    events = JobEvents()
    return Metrics(FakeCounts(list(totals), states or {}), events, lambda: 8,
                   lambda: zygote, to_thread=inline, process=False), events


def test_every_metric_the_issue_names_with_its_type_and_labels():
    metrics, events = make()
    metrics.request("/status.json", 200, 0.001)
    metrics.fired(0.2)
    events.publish(job(1, JobStatus.SUCCESSFUL, started=100, finished=130))
    found = scrape(metrics)
    for name, (kind, labels) in NAMES.items():
        assert found[name].type == kind, name
        for sample in found[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
    assert not any(name.startswith("process_") for name in found)  # process=False


def test_values_from_the_store_the_gauges_and_the_counters():
    totals = [("demo", "ok", "SUCCESSFUL", 3, 40), ("demo", "ok", "FAILED", 1, 2),
              ("demo", "slow", "CANCELED", 2, 0)]
    metrics, events = make(totals, {"RUNNING": 2, "PENDING": 5}, zygote=False)
    found = scrape(metrics)
    assert samples(found["crawld_jobs_finished"]) == {
        ("crawld_jobs_finished_total", (("project", "demo"), ("spider", "ok"),
                                        ("status", "SUCCESSFUL"))): 3,
        ("crawld_jobs_finished_total", (("project", "demo"), ("spider", "ok"),
                                        ("status", "FAILED"))): 1,
        ("crawld_jobs_finished_total", (("project", "demo"), ("spider", "slow"),
                                        ("status", "CANCELED"))): 2}
    assert samples(found["crawld_items_scraped"]) == {  # summed over the statuses
        ("crawld_items_scraped_total", (("project", "demo"), ("spider", "ok"))): 42,
        ("crawld_items_scraped_total", (("project", "demo"), ("spider", "slow"))): 0}
    assert [(n, found[n].samples[0].value) for n in (
        "crawld_jobs_running", "crawld_jobs_pending", "crawld_job_slots",
        "crawld_zygote_up")] == [("crawld_jobs_running", 2), ("crawld_jobs_pending", 5),
                                 ("crawld_job_slots", 8), ("crawld_zygote_up", 0)]


def test_job_durations_by_project_and_spider_for_jobs_that_ran():
    metrics, events = make()
    events.publish(job(1, JobStatus.SUCCESSFUL, started=100, finished=103))
    events.publish(job(2, JobStatus.FAILED, started=100, finished=190))
    events.publish(job(3, JobStatus.CANCELED, finished=190))  # never ran: not observed
    events.publish(job(4, JobStatus.RUNNING, started=100))
    events.publish(job(5, JobStatus.SUCCESSFUL, started=100, finished=101, project="x"))
    found = samples(scrape(metrics)["crawld_job_duration_seconds"])
    name = "crawld_job_duration_seconds"
    assert found[key(name + "_count", project="demo", spider="ok")] == 2
    assert found[key(name + "_sum", project="demo", spider="ok")] == 93
    for le, count in (("1.0", 0), ("5.0", 1), ("60.0", 1), ("300.0", 2), ("+Inf", 2)):
        assert found[key(name + "_bucket", project="demo", spider="ok", le=le)] == count
    assert found[key(name + "_count", project="x", spider="ok")] == 1


def test_http_requests_by_route_pattern_and_code():
    metrics, events = make()
    for route, code, took in (("/status.json", 200, 0.0004), ("/status.json", 200, 0.02),
                              ("/list-jobs.json", 400, 0.003), ("unmatched", 404, 0.0001)):
        metrics.request(route, code, took)
    found = scrape(metrics)
    assert samples(found["crawld_http_requests"]) == {
        ("crawld_http_requests_total", (("code", "200"), ("route", "/status.json"))): 2,
        ("crawld_http_requests_total", (("code", "400"), ("route", "/list-jobs.json"))): 1,
        ("crawld_http_requests_total", (("code", "404"), ("route", "unmatched"))): 1}
    durations = samples(found["crawld_http_request_duration_seconds"])
    status = ("route", "/status.json")
    assert durations[("crawld_http_request_duration_seconds_bucket",
                      (("le", "0.001"), status))] == 1
    assert durations[("crawld_http_request_duration_seconds_bucket",
                      (("le", "0.025"), status))] == 2
    assert durations[("crawld_http_request_duration_seconds_sum", (status,))] == 0.0204
    assert len([k for k in durations if k[0].endswith("_bucket")
                and ("route", "/status.json") in k[1]]) == len(HTTP_BUCKETS) + 1


def test_a_scrape_is_a_copy_what_happens_meanwhile_is_in_the_next_one():
    events = JobEvents()
    made: list = []
    metrics = Metrics(FakeCounts(), events, lambda: 1, lambda: True,
                      to_thread=lambda fn, *a: made.append(fn) or inline(fn, *a),
                      process=False)
    metrics.request("/", 200, 0.01)
    d = metrics.render()
    metrics.request("/", 200, 0.01)
    body, _ = result(d)
    assert b'crawld_http_requests_total{code="200",route="/"} 1.0' in body
    assert len(made) == 1  # the text was made through to_thread (a thread in the daemon)


def test_the_process_collector_is_included_by_default():
    metrics = Metrics(FakeCounts(), JobEvents(), lambda: 1, lambda: True, to_thread=inline)
    found = scrape(metrics)
    assert "process_cpu_seconds" in found and "process_resident_memory_bytes" in found


def test_buckets_are_cumulative_with_inf_last():
    b = Buckets((1.0, 5.0))
    for value in (0.5, 1.0, 3, 7, 9):
        b.observe(value)
    assert b.cumulative() == [("1.0", 2), ("5.0", 3), ("+Inf", 5)] and b.sum == 20.5
    copy = b.copy()
    b.observe(1)
    assert copy.cumulative()[-1] == ("+Inf", 5)


def test_the_metrics_route_answers_the_text_format():
    s = services()
    client = stub(s)
    response = result(client.get("http://localhost/metrics"))
    body = result(response.content()).decode()
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == [
        "text/plain; version=0.0.4; charset=utf-8"]
    assert "# TYPE crawld_jobs_finished_total counter" in body
    assert result(client.post("http://localhost/metrics")).code == 405


# -- where things are recorded ---------------------------------------------------------
def test_each_request_is_recorded_with_its_route_pattern_not_its_path():
    s = services()
    client = stub(s)
    site = client._agent._serverFactory
    seen: list = []
    site.log = lambda request: seen.append((request.route, request.code))
    for path in ("/status.json", "/get-log/data/x.out", "/no-such-thing",
                 "/list-jobs.json?id=nope"):
        result(client.get("http://localhost" + path))
    client.flush()
    assert seen == [("/status.json", 200),
                    ("/get-log/<string:anything>/<string:filename>", 404),
                    ("unmatched", 404), ("/list-jobs.json", 404)]


def test_the_site_hands_route_code_and_duration_to_record():
    recorded: list = []
    site = server.make_site(object(), 1024, record=lambda *a: recorded.append(a))
    request = server.request_class(1024)(DummyChannel(), False)
    request.code, request.route = 201, "/schedule-job.json"
    site.log(request)
    [(route, code, took)] = recorded
    assert (route, code) == ("/schedule-job.json", 201) and 0 <= took < 5


def test_each_firing_tells_how_late_it_is():
    clock = Clock()
    clock.advance(1_800_000_000)
    store = Store(":memory:", InlineExecutor())
    late: list = []
    sched, launched = scheduler_for(clock, store, tz=ZoneInfo("UTC"), lateness=late.append)
    t = Job(id=str(uuid.uuid4()), status=JobStatus.SCHEDULED, actor=Actor.USER,
            schedule="every 10 minutes", project="p", spider="s", created=clock.seconds(),
            updated=clock.seconds())
    t = result(store.add_job(t.evolve(next_fire=sched.first_fire(spec.parse(t.schedule)))))
    sched.add(t)
    clock.advance(600)
    clock.pump([0])
    assert late == [0.0] and len(launched) == 1
    sched.stop()
    metrics, _ = make()
    metrics.fired(-0.5)  # a clock that stepped back: counted as on time
    metrics.fired(3.0)
    lateness = samples(scrape(metrics)["crawld_scheduler_lateness_seconds"])
    assert lateness[("crawld_scheduler_lateness_seconds_bucket", (("le", "0.005"),))] == 1
    assert lateness[("crawld_scheduler_lateness_seconds_count", ())] == 2


def test_zygote_up_is_the_zygote_ready_and_alive():
    assert DirectSpawner(Clock()).up() is False
    zygote = ZygoteSpawner.__new__(ZygoteSpawner)
    for alive, ready, up in ((True, True, True), (True, False, False), (False, True, False)):
        zygote.alive, zygote.ready = alive, ready
        assert zygote.up() is up


# -- the store's totals ----------------------------------------------------------------
def ran(db: Database, n: int, status: JobStatus, stats: Any = None, started: bool = True,
        project: str = "demo") -> str:
    j = job(n, JobStatus.PENDING, project=project)
    db.add_job(j)
    if started:
        db.transition(j.id, [JobStatus.PENDING], JobStatus.RUNNING, 1.0, started=1.0)
        if stats is not None:
            db.update_job(j.id, stats=stats)
    db.transition(j.id, [JobStatus.RUNNING, JobStatus.PENDING], status, 2.0, finished=2.0)
    return j.id


def test_the_end_of_a_job_that_ran_counts_it_and_its_items_in_the_same_transaction():
    db = Database(":memory:")
    ran(db, 1, JobStatus.SUCCESSFUL, '{"item_scraped_count": 7, "x": 1}')
    ran(db, 2, JobStatus.SUCCESSFUL, '{"item_scraped_count": 5}')
    ran(db, 3, JobStatus.FAILED, "not json")
    ran(db, 4, JobStatus.CANCELED, '{"item_scraped_count": 2}')
    ran(db, 5, JobStatus.CANCELED, started=False)  # a queued job canceled: never ran
    ran(db, 6, JobStatus.SUCCESSFUL, project="other")
    totals, states = db.metric_counts()
    assert totals == [("demo", "ok", "CANCELED", 1, 2), ("demo", "ok", "FAILED", 1, 0),
                      ("demo", "ok", "SUCCESSFUL", 2, 12), ("other", "ok", "SUCCESSFUL", 1, 0)]
    assert states == {"PENDING": 0, "RUNNING": 0}
    assert db.counters() == {"jobs-run": 5, "jobs-successful": 3, "jobs-failed": 1,
                             "jobs-canceled": 1}
    db.add_job(job(7))
    db.add_job(job(8))
    db.transition(job(8).id, [JobStatus.PENDING], JobStatus.RUNNING, 3.0, started=3.0)
    assert db.metric_counts()[1] == {"PENDING": 1, "RUNNING": 1}
    assert db.purge(0, 10.0)  # retention removes every finished job ...
    assert db.metric_counts()[0] == totals  # ... and the totals stay


def test_items_scraped_reads_a_count_or_nothing():
    assert [items_scraped(s) for s in (None, "", "[]", "{}", '{"item_scraped_count": 3}',
                                       '{"item_scraped_count": -3}',
                                       '{"item_scraped_count": true}',
                                       '{"item_scraped_count": 2.5}', "{")] == [
        0, 0, 0, 0, 3, 0, 0, 0, 0]


def test_migration_7_starts_the_totals_from_what_retention_kept(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for version in range(1, 7):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 6")
    rows = [("SUCCESSFUL", 1.0, '{"item_scraped_count": 4}'), ("SUCCESSFUL", 1.0, "bad"),
            ("FAILED", 1.0, None), ("CANCELED", None, None), ("RUNNING", 1.0, None)]
    for n, (status, started, stats) in enumerate(rows):
        conn.execute("INSERT INTO jobs (id, status, actor, schedule, project, spider, "
                     "description, payload, created, updated, started, stats) VALUES "
                     "(?, ?, 'USER', 'now', 'demo', 'ok', '', '{}', 1, 1, ?, ?)",
                     (f"j{n}", status, started, stats))
    conn.close()
    db = Database(path)
    assert db.schema_version() == max(MIGRATIONS)
    assert db.metric_counts() == ([("demo", "ok", "FAILED", 1, 0),
                                   ("demo", "ok", "SUCCESSFUL", 2, 4)],
                                  {"PENDING": 0, "RUNNING": 1})
