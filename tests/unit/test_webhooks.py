"""The webhooks service: signatures, the backoff schedule, the delivery state machine,
and deliveries persisted in a real SQLite database across a "restart" (a new service
over the same file), on a task.Clock with a fake poster."""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from crawld import deliveries as dv
from crawld.errors import BadRequest
from crawld.events import JobEvents
from crawld.hookurls import HostPolicy, parse_hosts
from crawld.http.views import job_dict
from crawld.model import Actor, Job, JobStatus
from crawld.store import InlineExecutor, Store
from crawld.webhook_client import Outcome
from crawld.webhooks import (STOP_GRACE, WebhookSettings, Webhooks, backoff_delay, decide,
                             event_of, retryable, sign)
from tests.unit.fakes import result

NOW = 1_800_000_000.0
HOOK = "http://127.0.0.1:9/hook?token=s3cret"
SECRET = "shh"


@dataclass
class Call:
    url: str
    body: bytes
    headers: dict[str, str]
    answer: Deferred = field(default_factory=Deferred)


class FakePoster:
    """Records each POST; the test answers it (or never does)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Deferred:
        call = Call(url, body, dict(headers))
        self.calls.append(call)
        return call.answer


class Rig:
    """A store on a real SQLite file, the event list and a webhooks service over them."""

    def __init__(self, path: str, settings: WebhookSettings, clock: Optional[Clock] = None,
                 start: bool = True, poster: Any = None) -> None:
        self.clock = clock or Clock()
        if clock is None:
            self.clock.advance(NOW)
        self.store = Store(path, InlineExecutor())
        self.events = JobEvents()
        self.poster = FakePoster()
        self.hooks = Webhooks(self.clock, self.store, self.events, settings, job_dict,
                              poster or self.poster)
        if start:
            result(self.hooks.start())

    def job(self, **changes: Any) -> Job:
        now = self.clock.seconds()
        job = Job(id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER, schedule="now", project="demo",
                  spider="ok", created=now, updated=now, **changes)
        return result(self.store.add_job(job))

    def end(self, job: Job, status: JobStatus = JobStatus.SUCCESSFUL) -> Job:
        now = self.clock.seconds()
        ended = result(self.store.transition(job.id, [job.status], status, now, finished=now))
        self.events.publish(ended)
        return ended

    def deliveries(self, job: Job) -> list[dv.Delivery]:
        return result(self.hooks.deliveries(job.id))


@pytest.fixture
def rig(tmp_path):
    return Rig(str(tmp_path / "crawld.db"), WebhookSettings(url=HOOK, secret=SECRET))


# -- pure parts ---------------------------------------------------------------------------
def test_the_signature_is_the_hmac_sha256_of_the_body_in_hex():
    # the published HMAC-SHA256 example (key "key")
    assert sign("key", b"The quick brown fox jumps over the lazy dog") == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    assert sign("key", b"a") != sign("key", b"b") != sign("other", b"b")


def test_the_backoff_doubles_from_backoff_up_to_backoff_max():
    s = WebhookSettings(backoff=5, backoff_max=600)
    assert [backoff_delay(s, n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320,
                                                           600, 600]
    assert backoff_delay(s, 10_000) == 600  # no overflow for a delivery tried for ever


def test_events_are_started_and_ended_only():
    job = Job("i", JobStatus.RUNNING, Actor.USER, "now", "p", "s", 0, 0)
    assert event_of(job) == "started"
    for status in (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELED):
        assert event_of(job.evolve(status=status)) == "ended"
    for status in (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.PAUSED):
        assert event_of(job.evolve(status=status)) is None


@pytest.mark.parametrize("code, again", [(None, True), (500, True), (503, True),
                                         (408, True), (429, True), (400, False),
                                         (401, False), (404, False), (410, False),
                                         (301, False), (302, False)])
def test_what_is_retried(code, again):
    assert retryable(Outcome(code)) is again


def test_the_state_machine():
    s = WebhookSettings(backoff=5, backoff_max=60, retry_for=100)
    d = dv.Delivery("d", "j", "ended", HOOK, b"{}", dv.PENDING, NOW, NOW, tried=0)
    assert decide(s, d, Outcome(200), NOW) == (dv.DELIVERED, None)
    assert decide(s, d, Outcome(204), NOW) == (dv.DELIVERED, None)
    assert decide(s, d, Outcome(404, "HTTP 404"), NOW) == (dv.FAILED, None)
    assert decide(s, d, Outcome(error="connection refused"), NOW) == (dv.PENDING, NOW + 5)
    third = dv.Delivery("d", "j", "ended", HOOK, b"{}", dv.PENDING, NOW, NOW, tried=2)
    assert decide(s, third, Outcome(500), NOW + 20) == (dv.PENDING, NOW + 40)
    # Retry-After is honoured, up to backoff-max
    assert decide(s, d, Outcome(429, "x", retry_after=30), NOW) == (dv.PENDING, NOW + 30)
    assert decide(s, d, Outcome(429, "x", retry_after=3600), NOW) == (dv.PENDING, NOW + 60)
    # a retry past retry-for after the event is not made
    assert decide(s, third, Outcome(500), NOW + 81) == (dv.FAILED, None)
    assert decide(WebhookSettings(retry_for=0), d, Outcome(500), NOW) == (dv.FAILED, None)


# -- the service --------------------------------------------------------------------------
def test_an_ended_job_is_posted_once_signed_and_recorded_delivered(rig):
    job = rig.job()
    ended = rig.end(job)
    assert len(rig.poster.calls) == 1
    call = rig.poster.calls[0]
    assert call.url == HOOK
    body = json.loads(call.body)
    delivery_id = call.headers["X-Crawld-Delivery"]
    assert body == {**job_dict(ended), "event": "ended", "delivery": delivery_id}
    expected = hmac.new(SECRET.encode(), call.body, hashlib.sha256).hexdigest()
    assert call.headers["X-Crawld-Signature"] == "sha256=" + expected
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["X-Crawld-Event"] == "ended"
    assert call.headers["X-Crawld-Job"] == job.id and call.headers["X-Crawld-Attempt"] == "1"
    [pending] = rig.deliveries(job)
    assert pending.state == dv.PENDING and pending.body == call.body
    rig.clock.advance(0.25)
    call.answer.callback(Outcome(200))
    [done] = rig.deliveries(job)
    assert done.state == dv.DELIVERED and done.next_attempt is None
    assert done.attempts == (dv.DeliveryAttempt(1, NOW, 0.25, 200, None),)
    rig.clock.advance(3600)
    assert len(rig.poster.calls) == 1


def test_no_secret_no_signature_and_no_url_no_delivery(tmp_path):
    unsigned = Rig(str(tmp_path / "a.db"), WebhookSettings(url=HOOK))
    unsigned.end(unsigned.job())
    assert "X-Crawld-Signature" not in unsigned.poster.calls[0].headers
    nowhere = Rig(str(tmp_path / "b.db"), WebhookSettings())
    job = nowhere.end(nowhere.job())
    assert nowhere.poster.calls == [] and nowhere.deliveries(job) == []


def test_started_is_sent_only_when_asked_for(tmp_path):
    default = Rig(str(tmp_path / "a.db"), WebhookSettings(url=HOOK))
    job = default.job()
    default.events.publish(result(default.store.transition(
        job.id, [JobStatus.PENDING], JobStatus.RUNNING, NOW, started=NOW)))
    assert default.poster.calls == []
    both = Rig(str(tmp_path / "b.db"), WebhookSettings(url=HOOK, events=("ended", "started")))
    job = both.job()
    running = result(both.store.transition(job.id, [JobStatus.PENDING], JobStatus.RUNNING,
                                           NOW, started=NOW))
    both.events.publish(running)
    both.end(running)
    assert [c.headers["X-Crawld-Event"] for c in both.poster.calls] == ["started", "ended"]
    assert json.loads(both.poster.calls[0].body)["status"] == "RUNNING"


def test_an_end_published_twice_is_delivered_once(rig):
    job = rig.job()
    ended = rig.end(job)
    rig.events.publish(ended)  # e.g. the supervisor's late record of an end
    assert len(rig.poster.calls) == 1 and len(rig.deliveries(job)) == 1


def test_a_failing_receiver_is_retried_on_the_backoff_schedule(tmp_path):
    r = Rig(str(tmp_path / "c.db"), WebhookSettings(url=HOOK, backoff=5, backoff_max=20,
                                                    retry_for=90))
    job = r.job()
    r.end(job)
    times = []
    for attempt in range(5):
        times.append(r.clock.seconds())
        r.poster.calls[-1].answer.callback(Outcome(500, "HTTP 500 Internal Server Error"))
        if attempt < 4:
            before = len(r.poster.calls)
            delay = [5, 10, 20, 20][attempt]
            r.clock.advance(delay - 0.01)
            assert len(r.poster.calls) == before, "tried before its backoff"
            r.clock.advance(0.01)
            assert len(r.poster.calls) == before + 1
    assert [t - NOW for t in times] == [0, 5, 15, 35, 55]
    [delivery] = r.deliveries(job)
    # the 6th comes at 75 s, within retry-for (90); a 7th would be at 95 s: not made
    assert delivery.state == dv.PENDING and delivery.next_attempt == NOW + 75
    r.clock.advance(20)
    r.poster.calls[-1].answer.callback(Outcome(error="connection refused"))
    [delivery] = r.deliveries(job)
    assert delivery.state == dv.FAILED and delivery.tried == 6
    assert [a.code for a in delivery.attempts] == [500] * 5 + [None]
    assert delivery.attempts[-1].error == "connection refused"
    r.clock.advance(3600)
    assert len(r.poster.calls) == 6


def test_a_4xx_gives_up_at_once(rig):
    job = rig.job()
    rig.end(job)
    rig.poster.calls[0].answer.callback(Outcome(404, "HTTP 404 Not Found"))
    rig.clock.advance(86400)
    [delivery] = rig.deliveries(job)
    assert delivery.state == dv.FAILED and len(rig.poster.calls) == 1
    assert delivery.attempts[0].error == "HTTP 404 Not Found"


def test_a_restart_resends_a_pending_delivery_with_the_same_body_and_signature(tmp_path):
    path = str(tmp_path / "crawld.db")
    settings = WebhookSettings(url=HOOK, secret=SECRET, backoff=5)
    first = Rig(path, settings)
    job = first.job()
    first.end(job)
    sent = first.poster.calls[0]
    sent.answer.callback(Outcome(503, "HTTP 503"))
    result(first.hooks.stop())
    result(first.store.close())
    first.clock.advance(3)

    second = Rig(path, settings, clock=first.clock, start=False)
    assert second.poster.calls == []
    result(second.hooks.start())
    assert second.poster.calls == [], "not due yet: its backoff runs on after a restart"
    second.clock.advance(2)
    [again] = second.poster.calls
    assert again.body == sent.body and again.url == HOOK
    assert again.headers["X-Crawld-Signature"] == sent.headers["X-Crawld-Signature"]
    assert again.headers["X-Crawld-Delivery"] == sent.headers["X-Crawld-Delivery"]
    assert again.headers["X-Crawld-Attempt"] == "2"
    again.answer.callback(Outcome(200))
    result(second.hooks.stop())
    result(second.store.close())

    third = Rig(path, settings, clock=first.clock)
    third.clock.advance(86400)
    assert third.poster.calls == [], "a delivered delivery is never sent again"
    [delivery] = third.deliveries(job)
    assert delivery.state == dv.DELIVERED and [a.code for a in delivery.attempts] == [503, 200]


def test_stop_waits_for_attempts_in_flight_and_starts_no_more(rig):
    job = rig.job()
    rig.end(job)
    stopping = rig.hooks.stop()
    assert not stopping.called
    rig.poster.calls[0].answer.callback(Outcome(500, "HTTP 500"))
    assert stopping.called
    rig.clock.advance(3600)
    assert len(rig.poster.calls) == 1
    [delivery] = rig.deliveries(job)
    assert delivery.state == dv.PENDING  # the next start sends it


def test_at_most_concurrency_attempts_are_in_flight(tmp_path):
    r = Rig(str(tmp_path / "d.db"), WebhookSettings(url=HOOK, concurrency=2))
    for _ in range(5):
        r.end(r.job())
    assert len(r.poster.calls) == 2
    r.poster.calls[0].answer.callback(Outcome(200))
    assert len(r.poster.calls) == 3
    for call in list(r.poster.calls[1:3]):
        call.answer.callback(Outcome(200))
    assert len(r.poster.calls) == 5


def test_a_job_webhook_gets_its_own_delivery_and_a_template_run_inherits_it(tmp_path):
    r = Rig(str(tmp_path / "e.db"), WebhookSettings(url=HOOK))
    own = "https://hooks.example.com/job"
    job = r.job(webhook=own)
    r.end(job)
    assert sorted(c.url for c in r.poster.calls) == sorted([HOOK, own])
    bodies = [json.loads(c.body) for c in r.poster.calls]
    assert bodies[0]["delivery"] != bodies[1]["delivery"]
    assert {b["webhook"] for b in bodies} == {"https://hooks.example.com/…"}
    same = r.job(webhook=HOOK)
    r.end(same)
    assert len(r.deliveries(same)) == 1  # the configured URL named again: sent once
    from tests.unit.fakes import scheduler_for
    scheduler, _ = scheduler_for(r.clock, r.store)
    child = scheduler.child_of(job.evolve(status=JobStatus.SCHEDULED), NOW)
    assert child.webhook == own


def test_a_job_purged_by_retention_takes_its_deliveries_along(rig):
    job = rig.job()
    rig.end(job)
    rig.poster.calls[0].answer.callback(Outcome(500, "HTTP 500"))
    assert len(rig.deliveries(job)) == 1
    assert result(rig.store.purge(0, 0)) == [job.id]
    assert rig.deliveries(job) == []
    count = rig.store.db.conn.execute("SELECT COUNT(*) FROM webhook_attempts").fetchone()[0]
    assert count == 0
    rig.clock.advance(3600)
    assert len(rig.poster.calls) == 1, "a purged delivery is not tried again"


def test_the_observer_only_submits_a_write(tmp_path):
    """The supervisor's publish returns at once even when the store is slow."""
    clock = Clock()
    clock.advance(NOW)

    class Slow:
        def __init__(self) -> None:
            self.added: list[Deferred] = []

        def add_delivery(self, delivery: dv.Delivery) -> Deferred:
            d: Deferred = Deferred()
            self.added.append(d)
            return d

    store = Slow()
    events = JobEvents()
    poster = FakePoster()
    Webhooks(clock, store, events, WebhookSettings(url=HOOK), job_dict, poster)
    events.publish(Job("j", JobStatus.FAILED, Actor.USER, "now", "p", "s", NOW, NOW))
    assert len(store.added) == 1 and poster.calls == []


def test_the_per_job_url_policy():
    assert Webhooks.vet.__doc__
    hooks = HostPolicy.of(True, parse_hosts("hooks.example.com, *.corp.example, 10.0.0.0/8"))
    assert hooks.refusal("https://hooks.example.com/x") == ""
    assert hooks.refusal("https://a.b.corp.example/x") == ""
    assert hooks.refusal("http://10.1.2.3:8080/") == ""
    assert "not one of" in hooks.refusal("http://corp.example/")  # the suffix needs a dot
    assert "not one of" in hooks.refusal("http://127.0.0.1/")
    assert "not one of" in hooks.refusal("http://evilhooks.example.com/")
    assert HostPolicy().refusal("http://169.254.169.254/") == ""
    assert "allow-job-urls = no" in HostPolicy(False).refusal("https://hooks.example.com/")
    clock = Clock()
    w = Webhooks(clock, None, JobEvents(), WebhookSettings(job_urls=hooks), job_dict,
                 FakePoster())
    w.vet("https://hooks.example.com/x")
    with pytest.raises(BadRequest, match="parameter 'webhook'"):
        w.vet("http://127.0.0.1/")


def test_an_attempt_still_unanswered_at_stop_is_cut_short_and_tried_at_the_next_start(
        tmp_path):
    path = str(tmp_path / "f.db")
    r = Rig(path, WebhookSettings(url=HOOK, backoff=5))
    job = r.job()
    r.end(job)
    stopping = r.hooks.stop()
    r.clock.advance(STOP_GRACE - 0.01)
    assert not stopping.called
    r.clock.advance(0.01)
    assert stopping.called
    [delivery] = r.deliveries(job)
    assert delivery.state == dv.PENDING
    assert delivery.attempts[0].error == "cut short: the daemon stopped"
    result(r.store.close())
    again = Rig(path, WebhookSettings(url=HOOK, backoff=5), clock=r.clock)
    r.clock.advance(5)
    assert [c.body for c in again.poster.calls] == [r.poster.calls[0].body]


def test_a_poster_that_raises_is_an_attempt_that_failed_and_is_retried(tmp_path):
    class Broken:
        def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Deferred:
            raise ValueError("no such URL")
    r = Rig(str(tmp_path / "g.db"), WebhookSettings(url=HOOK, backoff=5), poster=Broken())
    job = r.job()
    r.end(job)
    [delivery] = r.deliveries(job)
    assert delivery.state == dv.PENDING and delivery.next_attempt == NOW + 5
    assert delivery.attempts[0].error == "ValueError: no such URL"
