"""What a crawl did, over HTTP without a socket: fail-on on schedule-job and update-job,
stats in the job object and job-stats.json, items in job-items.json and the .jl file,
read off the reactor in bounded pieces (http/files.py), removed by retention."""
from __future__ import annotations

import json
import os
import uuid
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.task import Clock

from crawld import config, items as item_files
from crawld.errors import ConfigError
from crawld.events import JobEvents
from crawld.http import files
from crawld.http.views import job_dict
from crawld.jobs import Jobs
from crawld.model import Actor, Job, JobStatus, Project
from crawld.scheduler import Scheduler
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import result
from tests.unit.http_fakes import FakeProjects, FakeSupervisor, services, stub
from tests.unit.test_api import URL, call, call_json, result_of

STATS = {"finish_reason": "finished", "item_scraped_count": 2,
         "start_time": "2026-11-26T13:05:16.920257+00:00"}


@pytest.fixture
def api(tmp_path):
    """StubTreq over the app with real Jobs and Store, and an items folder."""
    clock = Clock()
    clock.advance(1_800_000_000)
    store = Store(":memory:", InlineExecutor())
    projects = FakeProjects()
    projects.cache["demo"] = projects.cache["demo"].evolve(scripts=("shot",))
    sup = FakeSupervisor()
    events = JobEvents()
    scheduler = Scheduler(clock, store, sup.enqueue, events, tz=ZoneInfo("UTC"))
    items_dir = tmp_path / "items"
    items_dir.mkdir()
    jobs = Jobs(clock, store, projects, scheduler, sup, events, str(tmp_path), 1000, 30,
                to_thread=result_of, items_dir=str(items_dir))
    client = stub(services(clock, jobs=jobs, projects=projects, supervisor=sup,
                           log_dir=str(tmp_path), to_thread=result_of,
                           items_dir=str(items_dir)))
    client.store, client.jobs, client.items_dir, client.clock = store, jobs, items_dir, clock
    return client


def ended(store: Store, **fields) -> Job:
    job = Job(id=str(uuid.uuid4()), status=JobStatus.SUCCESSFUL, actor=Actor.USER,
              schedule="now", project="demo", spider="ok", created=1, updated=1,
              started=1, finished=2, **fields)
    return result(store.add_job(job))


def test_fail_on_is_validated_stored_listed_and_passed_to_a_schedule_s_runs(api):
    code, body = call_json(api, "post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "now", "fail-on": "error-log no-items"})
    assert code == 200
    job = call_json(api, "get", f"/list-jobs.json?id={body['identifier']}")[1]["jobs"][0]
    assert job["fail-on"] == "no-items,error-log" and job["stats"] is None
    code, body = call_json(api, "post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "every 1 hour", "fail-on": "none"})
    template = body["identifier"]
    child = call_json(api, "post", f"/run-job.json?id={template}")[1]["identifier"]
    assert result(api.store.get_job(child)).fail_on == "none", "inherited"
    code, body = call_json(api, "post", "/update-job.json",
                           data={"id": template, "fail-on": "unfinished"})
    assert code == 200 and body["job"]["fail-on"] == "unfinished"
    code, body = call_json(api, "post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "now", "fail-on": ""})
    assert result(api.store.get_job(body["identifier"])).fail_on is None, "the default"


@pytest.mark.parametrize("data, words", [
    ({"spider": "ok", "fail-on": "sometimes"}, "unknown condition 'sometimes'"),
    ({"spider": "ok", "fail-on": "none,error-log"}, "none cannot be combined"),
    ({"script": "shot", "fail-on": "no-items"}, "judged by its exit"),
])
def test_bad_fail_on_is_400_and_stores_nothing(api, data, words):
    code, body = call_json(api, "post", "/schedule-job.json",
                           data={"project": "demo", "when": "now", **data})
    assert code == 400 and words in body["msg"], body
    assert call_json(api, "get", "/list-jobs.json?status=ACTIVE")[1]["jobs"] == []


def test_a_script_schedule_takes_no_fail_on(api):
    code, body = call_json(api, "post", "/schedule-job.json", data={
        "project": "demo", "script": "shot", "when": "every 1 hour"})
    code, body = call_json(api, "post", "/update-job.json",
                           data={"id": body["identifier"], "fail-on": "no-items"})
    assert code == 400 and "judged by its exit" in body["msg"]


def test_job_stats_and_the_job_object_show_the_stats(api):
    job = ended(api.store, stats=json.dumps(STATS))
    code, body = call_json(api, "get", f"/job-stats.json?id={job.id}")
    assert (code, body) == (200, {"status": "ok", "identifier": job.id, "stats": STATS})
    listed = call_json(api, "get", f"/list-jobs.json?id={job.id}")[1]["jobs"][0]
    assert listed["stats"] == STATS and listed["fail-on"] is None
    quiet = ended(api.store)
    assert call_json(api, "get", f"/job-stats.json?id={quiet.id}")[1]["stats"] is None
    missing = str(uuid.uuid4())
    assert call_json(api, "get", f"/job-stats.json?id={missing}")[0] == 404
    assert call_json(api, "get", "/job-stats.json?id=../x")[0] == 404
    assert call_json(api, "get", "/job-stats.json")[0] == 400


def test_a_stored_stats_text_that_is_not_an_object_shows_as_null():
    base = dict(id="j", status=JobStatus.RUNNING, actor=Actor.USER, schedule="now",
                project="p", spider="s", created=1, updated=1)
    assert job_dict(Job(**base, stats="[1]"))["stats"] is None
    assert job_dict(Job(**base, stats="{oops"))["stats"] is None
    assert job_dict(Job(**base, stats='{"a": 1}'))["stats"] == {"a": 1}


def write_items(api, job: Job, lines: list[bytes]) -> None:
    (api.items_dir / item_files.name(job.id)).write_bytes(b"".join(lines))


def test_job_items_pages_through_the_file(api):
    job = ended(api.store)
    write_items(api, job, [json.dumps({"n": i}).encode() + b"\n" for i in range(250)]
                + [b'{"n": "being written'])
    code, body = call_json(api, "get", f"/job-items.json?id={job.id}")
    assert code == 200 and body["total"] == 250, "the unfinished line is not counted"
    assert body["items"] == [{"n": i} for i in range(100)], "100 by default"
    body = call_json(api, "get", f"/job-items.json?id={job.id}&offset=240&limit=1000")[1]
    assert body["items"] == [{"n": i} for i in range(240, 250)]
    body = call_json(api, "get", f"/job-items.json?id={job.id}&offset=9999")[1]
    assert (body["items"], body["total"]) == ([], 250)
    for bad in ("limit=0", "limit=1001", "offset=-1", "limit=x"):
        assert call_json(api, "get", f"/job-items.json?id={job.id}&{bad}")[0] == 400
    none = ended(api.store)
    assert call_json(api, "get", f"/job-items.json?id={none.id}")[1] == {
        "status": "ok", "identifier": none.id, "items": [], "total": 0}
    assert call_json(api, "get", f"/job-items.json?id={uuid.uuid4()}")[0] == 404


def test_the_items_file_is_served_whole(api):
    job = ended(api.store)
    write_items(api, job, [b'{"a": 1}\n', b'{"a": 2}\n'])
    d = api.get(f"{URL}/job-items/{job.id}.jl")
    got = d.addCallback(lambda response: (response, response.content()))
    for _ in range(3):
        api.clock.advance(0)  # the follower reads the file, and the job is not running
        api.flush()
    response, body = result(got)
    assert response.code == 200 and result(body) == b'{"a": 1}\n{"a": 2}\n'
    assert response.headers.getRawHeaders("content-type") == [
        "application/x-ndjson; charset=utf-8"]
    response, body = call(api, "head", f"/job-items/{job.id}.jl")
    assert response.code == 200 and body == b""
    for name in (f"{ended(api.store).id}.jl", f"{uuid.uuid4()}.jl", "x.jl",
                 f"{job.id}.json"):
        assert call_json(api, "get", f"/job-items/{name}")[0] == 404


def test_an_items_file_that_is_a_link_is_not_followed(api, tmp_path):
    job = ended(api.store)
    secret = tmp_path / "secret"
    secret.write_text('{"secret": 1}\n')
    os.symlink(secret, api.items_dir / item_files.name(job.id))
    assert call_json(api, "get", f"/job-items/{job.id}.jl")[0] == 404
    assert call_json(api, "get", f"/job-items.json?id={job.id}")[1]["total"] == 0


def test_items_too_big_or_not_json_are_null_and_a_page_stops_at_its_bound(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(files, "CHUNK", 7)   # lines across many reads
    monkeypatch.setattr(files, "MAX_ITEM", 20)
    monkeypatch.setattr(files, "MAX_PAGE", 40)
    lines = [b'{"a": 1}', b'{"big": "' + b"x" * 30 + b'"}', b"not json", b'{"b": 2}',
             b'{"c": 3}', b'{"d": "0123456789"}', b'{"e": 5}']
    (tmp_path / "j.jl").write_bytes(b"\n".join(lines) + b"\n")
    found, total = files.read_items(str(tmp_path), "j", 0, 100)
    assert total == 7
    assert found == [{"a": 1}, None, None, {"b": 2}, {"c": 3}, {"d": "0123456789"}], \
        "stopped past 40 bytes of items (a null one counts as null)"
    assert files.read_items(str(tmp_path), "j", 4, 2) == ([{"c": 3}, {"d": "0123456789"}], 7)
    assert files.read_items(str(tmp_path), "missing", 0, 1) is None


def test_retention_removes_a_job_s_items(api):
    job = ended(api.store)
    write_items(api, job, [b"{}\n"])
    api.jobs._remove_files([job.id])
    assert not (api.items_dir / item_files.name(job.id)).exists()
    api.jobs._remove_files([job.id])  # already gone: nothing to do


def test_items_files_are_created_empty_for_their_job(tmp_path):
    (tmp_path / "j.jl").write_text("old")
    path = item_files.create(str(tmp_path), "j")
    assert path == str(tmp_path / "j.jl") and os.path.getsize(path) == 0
    os.symlink(tmp_path / "elsewhere", tmp_path / "k.jl")
    with pytest.raises(OSError):
        item_files.create(str(tmp_path), "k")   # never through a link


def test_the_options_of_what_a_crawl_did(tmp_path):
    path = tmp_path / "c.ini"
    path.write_text("[crawld]\nfail-on = unfinished, no-items\nitems = no\n"
                    "stats-interval = 2.5\n")
    loaded = config.load(str(path))
    assert (loaded.fail_on, loaded.items, loaded.stats_interval) == (
        ("no-items", "unfinished"), False, 2.5)
    defaults = config.Settings()
    assert (defaults.fail_on, defaults.items, defaults.stats_interval) == (
        ("all-requests-failed",), True, 5.0)
    for option, value in (("fail-on", "often"), ("fail-on", "none no-items"),
                          ("stats-interval", "0.5"), ("stats-interval", "7200"),
                          ("items", "maybe")):
        path.write_text(f"[crawld]\n{option} = {value}\n")
        with pytest.raises(ConfigError, match=f"\\[crawld\\] {option}"):
            config.load(str(path))


def test_set_stats_writes_a_running_job_only_and_leaves_updated(tmp_path):
    store = Store(":memory:", InlineExecutor())
    running = result(store.add_job(Job(
        id="r", status=JobStatus.RUNNING, actor=Actor.USER, schedule="now", project="p",
        spider="s", created=1, updated=5)))
    job = result(store.set_stats(running.id, '{"n":1}'))
    assert (job.stats, job.updated) == ('{"n":1}', 5)
    result(store.transition("r", [JobStatus.RUNNING], JobStatus.SUCCESSFUL, 9))
    assert result(store.set_stats("r", '{"n":2}')) is None
    assert result(store.get_job("r")).stats == '{"n":1}'
    assert result(store.set_stats("missing", "{}")) is None
