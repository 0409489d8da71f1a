"""The HTTP layer without a socket (treq's StubTreq): shapes, codes, headers, validation."""
from __future__ import annotations

import dataclasses
import json
from zoneinfo import ZoneInfo

import pytest
from treq.testing import StubTreq

from crawld.events import JobEvents
from crawld.jobs import Jobs
from crawld.scheduler import Scheduler
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import result
from tests.unit.http_fakes import FakeProjects, FakeSupervisor, NoAuth, services, stub, with_web
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

URL = "http://localhost"
JOB_KEYS = {"identifier", "status", "actor", "schedule", "project", "spider", "description",
            "payload", "timestamp", "duration", "created", "started", "finished", "exit-code",
            "parent"}


@pytest.fixture
def client(tmp_path):
    """StubTreq over the app, with real Jobs, Scheduler and Store (in memory) over a fake
    supervisor and projects. ``stub.services`` is what the app was built from; tests
    that need other settings build another app from it (``stub.rebuild``)."""
    clock = Clock()
    clock.advance(1_800_000_000)
    store = Store(":memory:", InlineExecutor())
    projects = FakeProjects()
    sup = FakeSupervisor()
    events = JobEvents()
    scheduler = Scheduler(clock, store, sup.enqueue, events, tz=ZoneInfo("UTC"))
    jobs = Jobs(clock, store, projects, scheduler, sup, events, str(tmp_path), 1000, 30,
                to_thread=lambda f, *a: result_of(f, *a))
    built = services(clock, jobs=jobs, projects=projects, supervisor=sup,
                     log_dir=str(tmp_path))
    client = stub(built)
    client.clock = clock
    client.services = built
    return client, sup


def result_of(f, *a):
    return succeed(f(*a))


def call(stub: StubTreq, method: str, path: str, **kw):
    response = result(getattr(stub, method)(URL + path, **kw))
    body = result(response.content())
    return response, body


def call_json(stub, method, path, **kw):
    response, body = call(stub, method, path, **kw)
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert not response.headers.hasHeader("access-control-allow-origin")
    return response.code, json.loads(body)


def test_status_has_every_scrapy_do_key(client):
    stub, _ = client
    code, body = call_json(stub, "get", "/status.json")
    assert code == 200 and body["status"] == "ok"
    for key in ("memory-usage", "cpu-usage", "time", "timezone", "hostname", "uptime",
                "jobs-run", "jobs-successful", "jobs-failed", "jobs-canceled",
                "jobs-scheduled", "projects", "spiders", "daemon-version"):
        assert key in body, key
    assert body["projects"] == 1 and body["spiders"] == 2 and body["uptime"] == "0s"


def test_unknown_path_is_json_404_and_wrong_method_json_405(client):
    stub, _ = client
    assert call_json(stub, "get", "/nothing-here.json")[0] == 404
    code, body = call_json(stub, "get", "/schedule-job.json")
    assert code == 405 and body["status"] == "error" and "POST" in body["msg"]
    response, _ = call(stub, "post", "/status.json")
    assert response.code == 405 and response.headers.getRawHeaders("allow") == ["GET"]


def test_schedule_now_queues_and_lists_with_every_key(client):
    stub, sup = client
    code, body = call_json(stub, "post", "/schedule-job.json",
                           data={"project": "demo", "spider": "ok", "when": "now",
                                 "payload": '{"a":  1}'})
    assert code == 200
    job_id = body["identifier"]
    assert sup.queued == [job_id]
    code, body = call_json(stub, "get", f"/list-jobs.json?id={job_id}")
    [job] = body["jobs"]
    assert JOB_KEYS <= set(job)
    assert job["status"] == "PENDING" and job["payload"] == '{"a": 1}' and job["duration"] is None
    code, body = call_json(stub, "get", "/list-jobs.json?status=ACTIVE")
    assert [j["identifier"] for j in body["jobs"]] == [job_id]
    assert call_json(stub, "get", "/list-jobs.json?status=COMPLETED")[1]["jobs"] == []


def test_recurring_job_is_a_scheduled_template_with_next_run(client):
    stub, sup = client
    code, body = call_json(stub, "post", "/schedule-job.json",
                           data={"project": "demo", "spider": "ok", "when": "every 5 minutes"})
    assert code == 200 and sup.queued == []
    [job] = call_json(stub, "get", "/list-jobs.json?status=SCHEDULED")[1]["jobs"]
    assert job["schedule"] == "every 5 minutes" and job["next-run"]
    assert call_json(stub, "get", "/status.json")[1]["jobs-scheduled"] == 1
    code, body = call_json(stub, "post", f"/cancel-job.json?id={job['identifier']}")
    assert code == 200 and body["job-status"] == "CANCELED"
    assert call_json(stub, "get", "/status.json")[1]["jobs-scheduled"] == 0


@pytest.mark.parametrize("data,code,words", [
    ({"spider": "ok", "when": "now"}, 400, "'project'"),
    ({"project": "demo", "when": "now"}, 400, "'spider'"),
    ({"project": "demo", "spider": "ok"}, 400, "'when'"),
    ({"project": "nope", "spider": "ok", "when": "now"}, 404, "unknown project"),
    ({"project": "demo", "spider": "nope", "when": "now"}, 404, "unknown spider"),
    ({"project": "demo", "spider": "ok", "when": "every 0 minutes"}, 400, "positive"),
    ({"project": "demo", "spider": "ok", "when": "every 5 to 2 hours"}, 400, "below"),
    ({"project": "demo", "spider": "ok", "when": "now", "payload": "{bad"}, 400, "payload"),
])
def test_schedule_rejects_bad_input_with_a_message(client, data, code, words):
    stub, sup = client
    got, body = call_json(stub, "post", "/schedule-job.json", data=data)
    assert got == code and body["status"] == "error" and words in body["msg"]
    assert sup.queued == []


def test_list_jobs_validation_and_paging(client):
    stub, _ = client
    assert call_json(stub, "get", "/list-jobs.json")[0] == 400
    assert call_json(stub, "get", "/list-jobs.json?status=DONE")[0] == 400
    assert call_json(stub, "get", "/list-jobs.json?status=ACTIVE&limit=x")[0] == 400
    ids = [call_json(stub, "post", "/schedule-job.json",
                     data={"project": "demo", "spider": "ok", "when": "now"})[1]["identifier"]
           for _ in range(3)]
    page = call_json(stub, "get", "/list-jobs.json?status=PENDING&limit=2&offset=1")[1]["jobs"]
    assert len(page) == 2 and {j["identifier"] for j in page} <= set(ids)


def test_logs_of_unknown_jobs_are_404(client):
    stub, _ = client
    for path in ("/get-log/data/00000000-0000-4000-8000-000000000000.out",
                 "/get-log/data/not-a-uuid.out", "/get-log/data/../../etc/passwd"):
        assert call(stub, "get", path)[0].code == 404


def test_push_without_archive_is_400(client):
    stub, _ = client
    code, body = call_json(stub, "post", "/push-project.json", data={"other": "x"})
    assert code == 400 and "archive" in body["msg"]


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_cross_site_browser_posts_are_refused(client, headers):
    stub, sup = client
    code, body = call_json(stub, "post", "/schedule-job.json", headers=headers,
                           data={"project": "demo", "spider": "ok", "when": "now"})
    assert code == 403 and "cross-" in body["msg"]
    assert sup.queued == []


def test_same_origin_browser_posts_and_cross_site_reads_are_allowed(client):
    stub, sup = client
    code, _ = call_json(stub, "post", "/schedule-job.json",
                        headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
                        data={"project": "demo", "spider": "ok", "when": "now"})
    assert code == 200 and len(sup.queued) == 1
    assert call_json(stub, "get", "/status.json", headers={"Origin": "http://evil.example"})[0] == 200


def test_head_is_served_on_get_endpoints_without_a_body(client):
    stub, _ = client
    response, body = call(stub, "head", "/status.json")
    assert response.code == 200 and body == b""
    assert call(stub, "head", "/schedule-job.json")[0].code == 405


def test_schedule_policies_are_stored_and_listed(client):
    stub, _ = client
    code, body = call_json(stub, "post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "cron:30 2 * * *", "tz": "Europe/Paris",
        "jitter": "30", "misfire": "skip", "misfire-grace": "120", "overlap": "queue"})
    assert code == 200
    [job] = call_json(stub, "get", f"/list-jobs.json?id={body['identifier']}")[1]["jobs"]
    assert (job["tz"], job["jitter"], job["misfire"], job["misfire-grace"], job["overlap"]) == (
        "Europe/Paris", 30.0, "skip", 120.0, "queue")
    assert job["next-run"] and job["last-run"] is None


@pytest.mark.parametrize("extra,words", [
    ({"tz": "Mars/Olympus"}, "unknown time zone"),
    ({"jitter": "-1"}, "'jitter'"), ({"jitter": "nan"}, "'jitter'"),
    ({"jitter": "100000"}, "at most"), ({"misfire": "twice"}, "'misfire'"),
    ({"overlap": "sometimes"}, "'overlap'"), ({"misfire-grace": "soon"}, "'misfire-grace'"),
    ({"when": "cron:99 * * * *"}, "not a valid cron"),
])
def test_bad_schedule_policies_are_400(client, extra, words):
    stub, sup = client
    data = {"project": "demo", "spider": "ok", "when": "every 5 minutes", **extra}
    code, body = call_json(stub, "post", "/schedule-job.json", data=data)
    assert code == 400 and words in body["msg"]
    assert call_json(stub, "get", "/list-jobs.json?status=SCHEDULED")[1]["jobs"] == []


def test_preview_schedule_lists_the_next_fire_times(client):
    stub, _ = client
    code, body = call_json(stub, "get", "/preview-schedule.json?when=cron:0%209%20*%20*%20*"
                                        "&tz=Asia/Tokyo&count=3")
    assert code == 200 and body["tz"] == "Asia/Tokyo" and len(body["next"]) == 3
    assert all(t.endswith("T09:00:00+09:00") for t in body["next"])
    days = [t[:10] for t in body["next"]]
    assert days == sorted(set(days)), "three different days, in order"
    assert call_json(stub, "get", "/preview-schedule.json?when=every%200%20minutes")[0] == 400
    assert call_json(stub, "get", "/preview-schedule.json?when=@daily&count=101")[0] == 400
    assert call_json(stub, "get", "/preview-schedule.json")[0] == 400


def _template(stub, when="every 5 minutes", **extra):
    code, body = call_json(stub, "post", "/schedule-job.json",
                           data={"project": "demo", "spider": "ok", "when": when, **extra})
    assert code == 200
    return body["identifier"]


def _job(stub, job_id):
    return call_json(stub, "get", f"/list-jobs.json?id={job_id}")[1]["jobs"][0]


def test_pause_and_resume_a_schedule(client):
    stub, _ = client
    job_id = _template(stub)
    code, body = call_json(stub, "post", f"/pause-job.json?id={job_id}")
    assert code == 200 and body["job-status"] == "PAUSED"
    paused = _job(stub, job_id)
    assert paused["status"] == "PAUSED" and paused["next-run"] is None
    assert [j["identifier"] for j in call_json(stub, "get", "/list-jobs.json?status=ACTIVE")[1]["jobs"]] == [job_id]
    assert call_json(stub, "get", "/status.json")[1]["jobs-scheduled"] == 0
    assert call_json(stub, "post", f"/pause-job.json?id={job_id}")[0] == 409
    code, body = call_json(stub, "post", f"/resume-job.json?id={job_id}")
    assert code == 200 and body["job-status"] == "SCHEDULED" and body["next-run"]
    assert call_json(stub, "get", "/status.json")[1]["jobs-scheduled"] == 1
    assert call_json(stub, "post", f"/resume-job.json?id={job_id}")[0] == 409


def test_run_job_fires_once_outside_the_series(client):
    stub, sup = client
    job_id = _template(stub)
    before = _job(stub, job_id)["next-run"]
    code, body = call_json(stub, "post", f"/run-job.json?id={job_id}")
    assert code == 200 and body["parent"] == job_id and sup.queued == [body["identifier"]]
    child = _job(stub, body["identifier"])
    assert child["parent"] == job_id and child["actor"] == "USER" and child["status"] == "PENDING"
    after = _job(stub, job_id)
    assert after["next-run"] == before and after["last-run"]
    assert call_json(stub, "post", f"/run-job.json?id={body['identifier']}")[0] == 409


def test_update_job_changes_when_and_policies(client):
    stub, _ = client
    job_id = _template(stub)
    code, body = call_json(stub, "post", "/update-job.json",
                           data={"id": job_id, "when": "@daily", "tz": "Asia/Tokyo",
                                 "overlap": "allow", "description": "nightly",
                                 "payload": '{"a":  1}'})
    assert code == 200
    job = body["job"]
    assert (job["schedule"], job["tz"], job["overlap"], job["description"], job["payload"]) == (
        "@daily", "Asia/Tokyo", "allow", "nightly", '{"a": 1}')
    from datetime import datetime
    tokyo = datetime.fromisoformat(job["next-run"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (tokyo.hour, tokyo.minute) == (0, 0), "midnight in the job's own zone"
    assert _job(stub, job_id)["schedule"] == "@daily"
    for bad in ({"when": "now"}, {"when": "every 0 hours"}, {}, {"overlap": "x"}):
        assert call_json(stub, "post", "/update-job.json", data={"id": job_id, **bad})[0] == 400
    assert _job(stub, job_id)["schedule"] == "@daily", "a refused update changes nothing"


def test_cancel_a_paused_schedule(client):
    stub, _ = client
    job_id = _template(stub)
    call_json(stub, "post", f"/pause-job.json?id={job_id}")
    code, body = call_json(stub, "post", f"/cancel-job.json?id={job_id}")
    assert code == 200 and body["job-status"] == "CANCELED"


def test_a_paused_schedule_does_not_fire_until_resumed(client):
    stub, sup = client
    job_id = _template(stub, when="every 1 minutes")
    call_json(stub, "post", f"/pause-job.json?id={job_id}")
    stub.clock.advance(600)
    assert sup.queued == []
    call_json(stub, "post", f"/resume-job.json?id={job_id}")
    stub.clock.advance(60)
    assert len(sup.queued) == 1 and _job(stub, sup.queued[0])["parent"] == job_id


def test_an_updated_schedule_fires_on_its_new_times(client):
    stub, sup = client
    job_id = _template(stub, when="every 1 hours")
    call_json(stub, "post", "/update-job.json", data={"id": job_id, "when": "every 2 minutes"})
    stub.clock.advance(119)
    assert sup.queued == []
    stub.clock.advance(1)
    assert len(sup.queued) == 1


def test_next_run_is_shown_in_the_schedule_own_zone(client):
    stub, _ = client
    job_id = _template(stub, when="cron:0 9 * * *", tz="Asia/Kolkata")
    assert _job(stub, job_id)["next-run"].endswith("T09:00:00+05:30")


def test_resume_reports_next_run_in_the_schedule_own_zone(client):
    stub, _ = client
    job_id = _template(stub, when="cron:0 9 * * *", tz="Asia/Kolkata")
    call_json(stub, "post", f"/pause-job.json?id={job_id}")
    body = call_json(stub, "post", f"/resume-job.json?id={job_id}")[1]
    assert body["next-run"].endswith("T09:00:00+05:30")
    assert body["next-run"] == _job(stub, job_id)["next-run"]


def test_listed_origins_get_cors_and_may_post_others_get_nothing(client):
    base, sup = client
    stub = rebuilt(base, with_web(base.services,
                                  allowed_origins=frozenset({"https://dash.example.com"})))
    response = result(stub.request("OPTIONS", URL + "/schedule-job.json", headers={
        "Origin": "https://dash.example.com", "Access-Control-Request-Method": "POST"}))
    assert response.code == 204
    got = response.headers
    assert got.getRawHeaders("Access-Control-Allow-Origin") == ["https://dash.example.com"]
    assert got.getRawHeaders("Access-Control-Allow-Methods") == ["POST"]
    response, _ = call(stub, "post", "/schedule-job.json",
                       headers={"Origin": "https://dash.example.com",
                                "Sec-Fetch-Site": "cross-site"},
                       data={"project": "demo", "spider": "ok", "when": "now"})
    assert response.code == 200 and len(sup.queued) == 1
    assert response.headers.getRawHeaders("Vary") == ["Origin"]
    response, _ = call(stub, "get", "/status.json", headers={"Origin": "http://evil.example"})
    assert response.headers.getRawHeaders("Access-Control-Allow-Origin") is None
    code, _ = call_json(stub, "post", "/schedule-job.json",
                        headers={"Origin": "http://evil.example"},
                        data={"project": "demo", "spider": "ok", "when": "now"})
    assert code == 403 and len(sup.queued) == 1


def rebuilt(base, built):
    """Another app over ``built`` (the fixture's services with some changed)."""
    other = stub(built)
    other.clock = base.clock
    other.services = built
    return other


@pytest.mark.parametrize("host, code", [
    ("127.0.0.1:7654", 200), ("localhost:7654", 200), ("[::1]:7654", 200),
    ("crawl.internal", 200), ("rebind.attacker.example", 403), ("", 403),
])
def test_without_auth_only_our_own_names_are_served_dns_rebinding(client, host, code):
    base, _ = client
    assert isinstance(base.services.authenticator, NoAuth)
    stub = rebuilt(base, with_web(base.services, hostnames=frozenset({"crawl.internal"})))
    response, body = call(stub, "get", "/status.json", headers={"Host": host})
    assert response.code == code, body
    if code == 403:
        assert b"[web] hostnames" in body


def test_gets_that_act_are_refused_cross_site(client):
    stub, _ = client
    for path in ("/job-posts.json", "/job-screenshot.png"):
        code, body = call_json(stub, "get", path + "?id=00000000-0000-0000-0000-000000000000",
                               headers={"Sec-Fetch-Site": "cross-site"})
        assert code == 403 and "cross-" in body["msg"]
    assert call_json(stub, "get", "/list-projects.json",
                     headers={"Sec-Fetch-Site": "cross-site"})[0] == 200


def test_a_lockout_is_429_too_many_requests_with_retry_after(client):
    from crawld import auth
    stub, _ = client

    class Locked:
        mode = "required"

        def authenticate(self, *args, **kwargs):
            raise auth.TooManyAttempts("too many failed attempts; retry later", 30)
    stub = rebuilt(stub, dataclasses.replace(stub.services, authenticator=Locked()))
    response, body = call(stub, "get", "/status.json")
    assert (response.code, response.phrase) == (429, b"Too Many Requests")
    assert response.headers.getRawHeaders("Retry-After") == ["30"]
    assert json.loads(body)["msg"].startswith("too many failed attempts")


def test_acting_gets_are_refused_cross_site_however_the_path_is_spelled(client):
    stub, _ = client
    response, _ = call(stub, "get", "/job-posts%2Ejson?id=00000000-0000-0000-0000-000000000000",
                       headers={"Sec-Fetch-Site": "cross-site"})
    assert response.code == 403  # the router reads it as /job-posts.json
    for path in ("/job-posts.json/", "/job%2Dscreenshot.png"):
        response, body = call(stub, "get", path + "?id=00000000-0000-0000-0000-000000000000",
                              headers={"Sec-Fetch-Site": "cross-site"})
        assert response.code in (403, 404), (path, body)
        if response.code == 404:
            assert b"no such endpoint" in body, (path, body)  # never reached the route


def _logged_job(stub, tmp_path, text: bytes) -> str:
    """A queued job with ``text`` already in its .out log."""
    _, body = call_json(stub, "post", "/schedule-job.json",
                        data={"project": "demo", "spider": "ok", "when": "now"})
    job_id = body["identifier"]
    (tmp_path / f"{job_id}.out").write_bytes(text)
    return job_id


def _read_log(stub, job_id: str, query: str):
    pending = stub.get(f"{URL}/get-log/data/{job_id}.out?{query}")
    for _ in range(20):  # the follower pumps on the reactor's next turns
        stub.clock.advance(0.2)
        stub.flush()
    response = result(pending)
    return response, result(response.content())


@pytest.mark.parametrize("query, part, start", [
    ("follow=0", b"0123456789", 0),
    ("follow=0&offset=-4", b"6789", 6),
    ("follow=0&offset=3&limit=4", b"3456", 3),
    ("offset=-100&limit=2", b"01", 0),       # a limit never follows
    ("follow=0&offset=99", b"", 10),
])
def test_a_part_of_a_log_from_an_offset_and_a_limit(client, tmp_path, query, part, start):
    stub, _ = client
    job_id = _logged_job(stub, tmp_path, b"0123456789")
    response, body = _read_log(stub, job_id, query)
    assert response.code == 200 and body == part
    assert response.headers.getRawHeaders("x-log-offset") == [str(start)]
    assert response.headers.getRawHeaders("x-log-size") == ["10"]


@pytest.mark.parametrize("query", ["offset=x", "offset=-", "limit=0", "follow=maybe"])
def test_bad_log_parts_are_400(client, tmp_path, query):
    stub, _ = client
    job_id = _logged_job(stub, tmp_path, b"0123456789")
    response, body = _read_log(stub, job_id, query)
    assert response.code == 400 and json.loads(body)["status"] == "error"


def test_delete_version_answers_the_version_deleted_or_why_not(client):
    stub, _ = client
    code, body = call_json(stub, "post", "/delete-version.json",
                           data={"project": "demo", "version": "9"})
    assert code == 404 and body["msg"] == "unknown version '9' of project 'demo'"
    code, body = call_json(stub, "post", "/delete-version.json",
                           data={"project": "nope", "version": "1"})
    assert code == 404 and body["msg"] == "unknown project 'nope'"
    code, body = call_json(stub, "post", "/delete-version.json", data={"project": "demo"})
    assert code == 400 and "version" in body["msg"]
    code, body = call_json(stub, "post", "/delete-version.json",
                           data={"project": "demo", "version": "1"})
    assert (code, body) == (200, {"status": "ok", "project": "demo", "version": "1",
                                  "current": None})
    assert call_json(stub, "get", "/list-projects.json")[1]["projects"] == []


def test_pause_resume_update_and_run_now_publish_the_schedule_as_changed(client):
    """Each is a job event, so a dashboard's list of schedules follows them live."""
    from crawld.feed import JobFeed
    stub, _ = client
    feed = JobFeed(stub.clock, stub.services.jobs.events)
    seen: list = []
    feed.listen(lambda e: seen.append((e.kind, e.job.id, e.job.status.value)))
    job_id = _template(stub)
    assert seen == [("created", job_id, "SCHEDULED")]
    stub.clock.advance(1)  # the feed tells "created" by updated == created
    call_json(stub, "post", f"/pause-job.json?id={job_id}")
    call_json(stub, "post", f"/resume-job.json?id={job_id}")
    call_json(stub, "post", "/update-job.json", data={"id": job_id, "description": "new"})
    child = call_json(stub, "post", f"/run-job.json?id={job_id}")[1]["identifier"]
    template_events = [e for e in seen[1:] if e[1] == job_id]
    assert template_events == [("changed", job_id, "PAUSED"), ("changed", job_id, "SCHEDULED"),
                               ("changed", job_id, "SCHEDULED"),
                               ("changed", job_id, "SCHEDULED")]
    assert ("created", child, "PENDING") in seen
    feed.stop()
