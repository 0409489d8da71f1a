"""The API's side of webhooks without a socket: the webhook= parameter of schedule-job
and update-job, the job object's webhook field and GET /webhook-deliveries.json, over
real Jobs, Scheduler, Webhooks and Store (in memory) and a fake poster."""
from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.task import Clock

from crawld.events import JobEvents
from crawld.hookurls import HostPolicy, parse_hosts, redact
from crawld.http.views import job_dict
from crawld.jobs import Jobs
from crawld.model import JobStatus
from crawld.scheduler import Scheduler
from crawld.store import InlineExecutor, Store
from crawld.webhook_client import Outcome
from crawld.webhooks import WebhookSettings, Webhooks
from tests.unit.fakes import result
from tests.unit.http_fakes import FakeProjects, FakeSupervisor, services, stub
from tests.unit.test_api import call_json, result_of
from tests.unit.test_webhooks import FakePoster

HOOK = "http://127.0.0.1:9/all?token=abc"


class Api:
    def __init__(self, tmp_path, settings: WebhookSettings) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = Store(":memory:", InlineExecutor())
        self.events = JobEvents()
        self.poster = FakePoster()
        self.hooks = Webhooks(self.clock, self.store, self.events, settings, job_dict,
                              self.poster)
        result(self.hooks.start())
        sup = FakeSupervisor()
        scheduler = Scheduler(self.clock, self.store, sup.enqueue, self.events,
                              tz=ZoneInfo("UTC"))
        self.jobs = Jobs(self.clock, self.store, FakeProjects(), scheduler, sup, self.events,
                         str(tmp_path), 1000, 30, to_thread=result_of,
                         vet_webhook=self.hooks.vet)
        self.client = stub(services(self.clock, jobs=self.jobs, supervisor=sup,
                                    log_dir=str(tmp_path), webhooks=self.hooks))

    def call(self, method: str, path: str, **kw):
        return call_json(self.client, method, path, **kw)

    def end(self, job_id: str, status: JobStatus = JobStatus.FAILED) -> None:
        job = result(self.store.get_job(job_id))
        now = self.clock.seconds()
        self.events.publish(result(self.store.transition(job_id, [job.status], status, now,
                                                         finished=now, reason="broke")))


@pytest.fixture
def api(tmp_path):
    return Api(tmp_path, WebhookSettings(url=HOOK))


def test_a_job_webhook_is_stored_shown_redacted_and_posted(api):
    code, body = api.call("post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "now",
        "webhook": "https://hooks.example.com/services/T0/B0/SECRET"})
    assert code == 200, body
    job_id = body["identifier"]
    assert result(api.store.get_job(job_id)).webhook == \
        "https://hooks.example.com/services/T0/B0/SECRET"
    code, listed = api.call("get", f"/list-jobs.json?id={job_id}")
    assert listed["jobs"][0]["webhook"] == "https://hooks.example.com/…"
    assert "SECRET" not in json.dumps(listed)
    api.end(job_id)
    assert sorted(c.url for c in api.poster.calls) == sorted(
        [HOOK, "https://hooks.example.com/services/T0/B0/SECRET"])
    api.poster.calls[0].answer.callback(Outcome(200))
    api.clock.advance(1.5)
    api.poster.calls[1].answer.callback(Outcome(500, "HTTP 500 Internal Server Error"))
    code, body = api.call("get", f"/webhook-deliveries.json?id={job_id}")
    assert code == 200 and body["identifier"] == job_id
    found = {d["url"]: d for d in body["deliveries"]}
    assert set(found) == {"http://127.0.0.1:9/…", "https://hooks.example.com/…"}
    first = found[redact(api.poster.calls[0].url)]
    assert first["state"] == "delivered" and first["next-attempt"] is None
    assert first["attempts"][0]["code"] == 200 and first["attempts"][0]["error"] is None
    other = [d for d in body["deliveries"] if d is not first][0]
    assert other["state"] == "pending" and other["next-attempt"] is not None
    assert other["attempts"] == [{"number": 1, "at": other["attempts"][0]["at"],
                                  "duration": 1.5, "code": 500,
                                  "error": "HTTP 500 Internal Server Error"}]
    assert {d["event"] for d in body["deliveries"]} == {"ended"}
    assert "token" not in json.dumps(body) and "SECRET" not in json.dumps(body)


def test_deliveries_of_an_unknown_job_are_a_404(api):
    code, body = api.call("get", "/webhook-deliveries.json?id=1b4e28ba-2fa1-11d2-883f-"
                                 "0016d3cca427")
    assert code == 404 and body["status"] == "error"
    assert api.call("get", "/webhook-deliveries.json?id=nope")[0] == 404
    assert api.call("get", "/webhook-deliveries.json")[0] == 400
    assert api.call("post", "/webhook-deliveries.json")[0] == 405


@pytest.mark.parametrize("url, why", [
    ("ftp://h/x", "http:// or https://"), ("http://u:p@h/", "credentials"),
    ("http://h/" + "a" * 3000, "longer than 2048"), ("not a url", "ASCII without spaces"),
])
def test_an_invalid_webhook_is_a_400_and_stores_nothing(api, url, why):
    code, body = api.call("post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "now", "webhook": url})
    assert code == 400 and why in body["msg"] and "'webhook'" in body["msg"]
    assert result(api.store.list_jobs(list(JobStatus))) == []


def test_the_host_policy_refuses_with_a_400(tmp_path):
    policy = HostPolicy.of(True, parse_hosts("hooks.example.com"))
    api = Api(tmp_path, WebhookSettings(job_urls=policy))
    code, body = api.call("post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "now", "webhook": "http://127.0.0.1:1/"})
    assert code == 400 and "job-url-hosts" in body["msg"]
    code, _ = api.call("post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "now",
        "webhook": "https://hooks.example.com/x"})
    assert code == 200
    off = Api(tmp_path, WebhookSettings(job_urls=HostPolicy(False)))
    code, body = off.call("post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "every 1 hour",
        "webhook": "https://hooks.example.com/x"})
    assert code == 400 and "allow-job-urls = no" in body["msg"]
    assert result(off.store.list_jobs(list(JobStatus))) == []


def test_a_schedule_keeps_its_webhook_and_update_job_changes_or_removes_it(api):
    code, body = api.call("post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "every 1 hour",
        "webhook": "https://a.example/x"})
    assert code == 200
    template = body["identifier"]
    assert result(api.store.get_job(template)).webhook == "https://a.example/x"
    code, run = api.call("post", "/run-job.json", data={"id": template})
    assert result(api.store.get_job(run["identifier"])).webhook == "https://a.example/x"
    code, _ = api.call("post", "/update-job.json", data={"id": template,
                                                          "webhook": "https://b.example/y"})
    assert code == 200 and result(api.store.get_job(template)).webhook == "https://b.example/y"
    code, _ = api.call("post", "/update-job.json", data={"id": template, "webhook": "none"})
    assert code == 200 and result(api.store.get_job(template)).webhook is None
    code, body = api.call("post", "/update-job.json", data={"id": template,
                                                             "webhook": "gopher://x/"})
    assert code == 400 and result(api.store.get_job(template)).webhook is None
