"""``wait=SECONDS`` on list-jobs.json and schedule-job.json through the HTTP layer, on a
fake clock (StubTreq over the app with a real Jobs and Store): the answer comes when the
job ends or the wait runs out; bounds; a client that goes away releases its wait."""
from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from crawld.http.waiting import until_ended
from crawld.model import JobStatus
from tests.unit.fakes import result
from tests.unit.test_api import URL, call_json
from tests.unit.test_api_arguments import Env


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path, max_waits=2)


def end(env: Env, job_id: str, status: JobStatus = JobStatus.SUCCESSFUL,
        was: JobStatus = JobStatus.PENDING) -> None:
    """What the supervisor does when a job ends: the row, then the event."""
    now = env.clock.seconds()
    job = result(env.store.transition(job_id, [was], status, now, started=now - 1,
                                      finished=now, exit_code=0))
    env.events.publish(job)


def pending(env: Env, method: str, path: str, **kw: Any) -> Deferred:
    """A request whose answer is not expected yet: its response Deferred."""
    d = getattr(env.stub, method)(URL + path, **kw)
    env.stub.flush()
    return d


def done(d: Deferred) -> bool:
    """Whether the response has come (``called`` is true while it waits on another)."""
    seen: list = []
    d.addBoth(lambda r: (seen.append(r), r)[1])
    return bool(seen)


def answered(env: Env, d: Deferred) -> tuple[int, dict]:
    env.stub.flush()
    response = result(d)
    return response.code, json.loads(result(response.content()))


def new_job(env: Env) -> str:
    return env.schedule([])[1]["identifier"]


def test_list_jobs_wait_answers_when_the_job_ends(env):
    job_id = new_job(env)
    d = pending(env, "get", f"/list-jobs.json?id={job_id}&wait=30")
    assert not done(d) and env.waits.waiting(job_id) == 1
    env.clock.advance(10)
    assert not done(d)
    end(env, job_id)
    code, body = answered(env, d)
    assert code == 200 and body["jobs"][0]["status"] == "SUCCESSFUL"
    assert body["jobs"][0]["identifier"] == job_id
    assert env.waits.count == 0 and env.waits.by_job == {}


def test_list_jobs_wait_that_runs_out_shows_the_job_as_it_is(env):
    job_id = new_job(env)
    d = pending(env, "get", f"/list-jobs.json?id={job_id}&wait=2.5")
    env.clock.advance(2.4)
    assert not done(d)
    env.clock.advance(0.1)
    code, body = answered(env, d)
    assert code == 200 and body["jobs"][0]["status"] == "PENDING"
    assert env.waits.count == 0 and env.waits.by_job == {}


def test_list_jobs_wait_on_an_ended_job_answers_at_once(env):
    job_id = new_job(env)
    end(env, job_id, JobStatus.FAILED)
    code, body = call_json(env.stub, "get", f"/list-jobs.json?id={job_id}&wait=300")
    assert code == 200 and body["jobs"][0]["status"] == "FAILED"
    assert env.waits.count == 0 and env.waits.by_job == {}


@pytest.mark.parametrize("value", ["0", "-1", "300.5", "301", "nan", "inf", "soon", "1e9"])
def test_wait_out_of_bounds_is_a_400(env, value):
    job_id = new_job(env)
    code, body = call_json(env.stub, "get", f"/list-jobs.json?id={job_id}&wait={value}")
    assert code == 400 and "'wait'" in body["msg"] and "at most 300" in body["msg"]
    code, body = env.schedule([("wait", value)])
    assert code == 400 and "'wait'" in body["msg"]
    assert env.sup.queued == [job_id]  # nothing was created by the refused schedule


def test_wait_needs_an_id_and_unknown_jobs_are_404(env):
    code, body = call_json(env.stub, "get", "/list-jobs.json?status=ACTIVE&wait=5")
    assert code == 400 and "needs 'id'" in body["msg"]
    for job_id in ("00000000-0000-4000-8000-000000000000", "nope"):
        code, _ = call_json(env.stub, "get", f"/list-jobs.json?id={job_id}&wait=5")
        assert code == 404
    assert env.waits.count == 0 and env.waits.by_job == {}


def test_schedule_with_wait_answers_with_the_ended_job(env):
    body = "project=demo&spider=ok&when=now&wait=60&arg-a=1"
    d = pending(env, "post", "/schedule-job.json", data=body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    [job_id] = env.sup.queued
    assert not done(d) and env.waits.waiting(job_id) == 1
    end(env, job_id)
    code, answer = answered(env, d)
    assert code == 200 and answer["identifier"] == job_id
    assert answer["job"]["status"] == "SUCCESSFUL" and answer["job"]["args"] == {"a": "1"}


def test_schedule_with_a_wait_that_runs_out_gives_the_job_as_it_is(env):
    d = pending(env, "post", "/schedule-job.json?wait=5",
                data={"project": "demo", "spider": "ok", "when": "now"})
    env.clock.advance(5)
    code, answer = answered(env, d)
    assert code == 200 and answer["job"]["status"] == "PENDING"
    assert answer["identifier"] == answer["job"]["identifier"]


def test_schedule_without_wait_answers_only_the_identifier(env):
    code, body = env.schedule([])
    assert code == 200 and set(body) == {"status", "identifier"}


def test_wait_is_only_for_now_jobs(env):
    code, body = call_json(env.stub, "post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "every 5 minutes", "wait": "5"})
    assert code == 400 and "when=now" in body["msg"]
    assert call_json(env.stub, "get", "/list-jobs.json?status=ACTIVE")[1]["jobs"] == []


def test_waits_past_max_waits_get_429_and_schedule_creates_nothing(env):
    first, second = new_job(env), new_job(env)
    d1 = pending(env, "get", f"/list-jobs.json?id={first}&wait=60")
    d2 = pending(env, "get", f"/list-jobs.json?id={second}&wait=60")
    code, body = call_json(env.stub, "get", f"/list-jobs.json?id={first}&wait=60")
    assert code == 429 and "max-waits" in body["msg"]
    code, body = env.schedule([("wait", "60")])
    assert code == 429 and env.sup.queued == [first, second]  # no job was created
    # without wait, nothing is bounded
    assert call_json(env.stub, "get", f"/list-jobs.json?id={first}")[0] == 200
    end(env, first)
    assert answered(env, d1)[0] == 200
    d3 = pending(env, "get", f"/list-jobs.json?id={first}&wait=60")  # a place is free
    assert answered(env, d3)[0] == 200  # and the job had ended: at once
    env.clock.advance(60)
    assert answered(env, d2)[1]["jobs"][0]["status"] == "PENDING"
    assert env.waits.count == 0


def test_schedule_that_fails_gives_its_place_back(env):
    code, _ = call_json(env.stub, "post", "/schedule-job.json?wait=5",
                        data={"project": "demo", "spider": "nope", "when": "now"})
    assert code == 404 and env.waits.count == 0


class GoneRequest:
    """A request whose client can go away (``notifyFinish`` fails then)."""

    def __init__(self) -> None:
        self.finished: Deferred = Deferred()

    def notifyFinish(self) -> Deferred:  # noqa: N802 (Twisted's name)
        return self.finished

    def go_away(self) -> None:
        self.finished.errback(ConnectionError("the client closed the connection"))


def test_a_client_that_goes_away_releases_its_wait_at_once(env):
    job_id = new_job(env)
    request = GoneRequest()
    got: list = []
    until_ended(env.services, request, env.waits.take(), job_id, 60).addBoth(got.append)
    assert got == [] and env.waits.count == 1 and env.waits.waiting(job_id) == 1
    request.go_away()
    assert got == [None]  # no answer is made for nobody
    assert env.waits.count == 0 and env.waits.by_job == {}
    end(env, job_id)  # the job goes on; its end finds no wait
    env.clock.advance(60)
    assert got == [None]


def test_a_client_gone_before_the_job_was_read_leaves_nothing(env):
    job_id = new_job(env)
    request = GoneRequest()
    request.go_away()
    got: list = []
    until_ended(env.services, request, env.waits.take(), job_id, 60).addBoth(got.append)
    assert got == [None] and env.waits.count == 0 and env.waits.by_job == {}
