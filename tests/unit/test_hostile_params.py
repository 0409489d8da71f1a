"""Hostile parameters: each is a 400 (or a 404) that names the problem, never a 500.

Absurd schedules (intervals and times beyond what datetimes hold) are refused, and a row
already stored with such a time still lists; payloads nested 100,000 deep or holding a
lone surrogate; a 5,000-character time zone; double slashes in routes with path
parameters, with authentication off and on."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
from twisted.internet.defer import Deferred

from crawld import spec as specs
from crawld.errors import BadRequest
from crawld.http import views
from crawld.jobs import normalize_payload, validate_policies
from crawld.model import Actor, Job, JobStatus
from crawld.payloads import MAX_DEPTH as MAX_JSON_DEPTH, parse_json
from tests.unit.fakes import result
from tests.unit.http_fakes import services, stub
from tests.unit.test_api import call_json, client  # noqa: F401 (the fixture)

NOW = 1_800_000_000.0
YEAR = 365 * 86400


# ---------------------------------------------------------------- absurd schedules


@pytest.mark.parametrize("when", [
    "every 99999999999999 weeks", "every 2147483648 hours at :30",
    "every 1 to 99999999999999 seconds", "every 36501 days", "every 5215 weeks",
    "every 36501 days at 10:00", "every 876001 hours",
])
def test_an_interval_beyond_the_limit_is_refused_naming_it(when):
    with pytest.raises(specs.SpecError, match="at most .* \\(100 years\\)") as info:
        specs.parse(when)
    assert info.value.code == 400


@pytest.mark.parametrize("when", ["every 36500 days", "every 5214 weeks at 10:00",
                                  "every 876000 hours at :30", "every 1 to 5214 weeks"])
def test_an_interval_at_the_limit_is_accepted_and_its_times_show(when):
    parsed = specs.parse(when)
    first = parsed.first(NOW)
    assert NOW < first <= NOW + specs.MAX_INTERVAL
    assert views.iso(first) is not None


def test_a_preview_stops_where_datetimes_end_instead_of_failing():
    times = specs.preview(specs.parse("every 5214 weeks"), NOW, 100)
    assert 1 <= len(times) < 100
    assert all(t <= specs.MAX_TIME for t in times)
    assert all(views.iso(t) is not None for t in times)


def test_preview_schedule_of_an_absurd_interval_is_a_400(client):  # noqa: F811
    stub_, _ = client
    code, body = call_json(stub_, "get",
                           "/preview-schedule.json?when=every+99999999999999+weeks")
    assert code == 400 and "100 years" in body["msg"]
    code, body = call_json(stub_, "get", "/preview-schedule.json?when=every+5214+weeks"
                                          "&count=100")
    assert code == 200 and 1 <= len(body["next"]) < 100 and None not in body["next"]


@pytest.mark.parametrize("ts", [6.048e19, 1e300, math.inf, -math.inf, math.nan, -1e20])
def test_a_time_no_datetime_holds_is_shown_as_null(ts):
    assert views.iso(ts) is None
    assert views.iso_ms(ts) is None


def absurd_template(store, clock) -> Job:
    job = Job(id="0b3a5a52-4b1e-4d7f-9a63-3c1f2d4e5f60", status=JobStatus.SCHEDULED,
              actor=Actor.USER, schedule="every 99999999999999 weeks", project="demo",
              spider="ok", description="", payload="{}", created=clock.seconds(),
              updated=clock.seconds(), next_fire=clock.seconds() + 6.048e19, last_run=1e300)
    return result(store.add_job(job))


def test_a_stored_row_with_an_absurd_next_fire_lists_fine(client):  # noqa: F811
    """As left by a crawld that accepted the schedule: list-jobs (ACTIVE, SCHEDULED, by
    id) answers, with null for the times no date can show."""
    stub_, _ = client
    store = stub_.services.jobs.store
    job = absurd_template(store, stub_.clock)
    for query in ("status=ACTIVE", "status=SCHEDULED", f"id={job.id}"):
        code, body = call_json(stub_, "get", f"/list-jobs.json?{query}")
        assert code == 200, body
        [shown] = body["jobs"]
        assert shown["identifier"] == job.id
        assert shown["next-run"] is None and shown["last-run"] is None
        assert shown["created"] is not None


def test_updating_a_stored_absurd_schedule_says_why_and_a_new_when_fixes_it(client):  # noqa: F811,E501
    stub_, _ = client
    job = absurd_template(stub_.services.jobs.store, stub_.clock)
    code, body = call_json(stub_, "post", "/update-job.json",
                           data={"id": job.id, "description": "x"})
    assert code == 400 and "100 years" in body["msg"]
    assert call_json(stub_, "get", f"/list-jobs.json?id={job.id}")[1]["jobs"][0][
        "description"] == ""  # nothing was changed
    code, body = call_json(stub_, "post", "/update-job.json",
                           data={"id": job.id, "when": "every 2 hours"})
    assert code == 200 and body["job"]["next-run"] is not None
    code, body = call_json(stub_, "post", f"/cancel-job.json?id={job.id}")
    assert code == 200 and body["job-status"] == "CANCELED"


def test_scheduling_an_absurd_interval_is_a_400_and_stores_nothing(client):  # noqa: F811
    stub_, _ = client
    for when in ("every 99999999999999 weeks", "every 2147483648 hours at :30"):
        code, body = call_json(stub_, "post", "/schedule-job.json",
                               data={"project": "demo", "spider": "ok", "when": when})
        assert code == 400 and "at most" in body["msg"], body
    assert call_json(stub_, "get", "/list-jobs.json?status=ACTIVE")[1]["jobs"] == []


# ---------------------------------------------------------------- payloads


def test_a_payload_nested_100000_deep_is_a_400():
    for deep in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        with pytest.raises(BadRequest, match=f"nested more than {MAX_JSON_DEPTH} deep"):
            normalize_payload(deep)


def test_a_payload_nested_just_past_the_limit_is_a_400_and_at_it_accepted():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert normalize_payload(at_limit) == at_limit
    over = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(BadRequest, match="nested more than"):
        normalize_payload(over)
    nested = '{"a": ' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH
    assert json.loads(normalize_payload(nested))


@pytest.mark.parametrize("text", ['{"a": "\\ud800"}', '"\\udfff x"', '{"\\ud83d": 1}',
                                  '["ok", {"b": ["\\udc00"]}]'])
def test_a_payload_with_a_lone_surrogate_is_a_400(text):
    with pytest.raises(BadRequest, match="lone surrogate"):
        normalize_payload(text)


def test_a_payload_with_a_surrogate_pair_is_a_character_and_accepted():
    assert normalize_payload('{"a": "\\ud83d\\ude00"}') == '{"a": "\U0001F600"}'


def test_parse_json_names_the_parameter():
    with pytest.raises(BadRequest, match="^parameter 'data' is not valid JSON"):
        parse_json("parameter 'data'", "{nope")


@pytest.mark.parametrize("payload", ["[" * 20_000 + "]" * 20_000, '{"a": "\\ud800"}'],
                         ids=["deep", "surrogate"])
def test_schedule_job_with_a_hostile_payload_is_a_400(client, payload):  # noqa: F811
    stub_, sup = client
    code, body = call_json(stub_, "post", "/schedule-job.json",
                           data={"project": "demo", "spider": "ok", "when": "now",
                                 "payload": payload})
    assert code == 400 and "payload" in body["msg"] and len(body["msg"]) < 300
    assert sup.queued == []


# ---------------------------------------------------------------- time zones


@pytest.mark.parametrize("name", ["A" * 5000, "Europe/" + "x" * 300, "America",
                                  "Europe/", "UTC\x00", "Etc/../UTC"],
                         ids=["5000", "300", "folder", "slash", "nul", "dotdot"])
def test_a_time_zone_that_is_no_zone_is_a_400_with_a_short_message(name):
    with pytest.raises(BadRequest, match="unknown time zone") as info:
        specs.zone(name)
    assert len(str(info.value)) < 200
    with pytest.raises(BadRequest, match="unknown time zone"):
        validate_policies(tz=name)


def test_a_5000_character_tz_is_a_400_on_every_route_that_takes_one(client):  # noqa: F811
    stub_, _ = client
    tz = "A" * 5000
    code, body = call_json(stub_, "post", "/schedule-job.json",
                           data={"project": "demo", "spider": "ok",
                                 "when": "every 5 minutes", "tz": tz})
    assert code == 400 and "unknown time zone" in body["msg"]
    code, body = call_json(stub_, "get", f"/preview-schedule.json?when=@daily&tz={tz}")
    assert code == 400 and "unknown time zone" in body["msg"]


# ---------------------------------------------------------------- double slashes


class Refuses:
    """Authentication on, and every request without credentials: it is never asked."""

    mode = "required"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def authenticate(self, headers, query_key, method, uri, client_host) -> Deferred:
        self.asked.append(uri)
        raise AssertionError("a path no route serves needs no authentication")


@pytest.mark.parametrize("path", ["/job-files/a//b", "/get-log/data//x.err",
                                  "/job-files//a/b", "/get-log//data/x.err",
                                  "/get-log/data/x.err//", "/job-files/a/b//"])
@pytest.mark.parametrize("authenticator", [None, Refuses])
def test_double_slashes_in_a_route_with_parameters_are_a_json_404(path, authenticator):
    auth = authenticator() if authenticator else None
    client_ = stub(services(authenticator=auth))
    for method in ("get", "post", "head"):
        response = result(getattr(client_, method)("http://localhost" + path))
        body = result(response.content())
        assert response.code == 404, (method, body)
        assert not response.headers.hasHeader("location")
        if method != "head":
            assert response.headers.getRawHeaders("content-type") == ["application/json"]
            assert json.loads(body) == {"status": "error", "msg": f"no such endpoint: {path}"}
    assert auth is None or auth.asked == []


# ---------------------------------------------------------------- browser messages


class OneChannel:
    """Browser jobs with one channel, whatever the job: records the messages sent."""

    settings = None
    tmp_root = files_root = "/nonexistent"
    next_shot = 0

    def __init__(self) -> None:
        self.sent: list = []

    def channel(self, job_id: str) -> "OneChannel":
        return self

    def message(self, data) -> None:
        self.sent.append(data)


@pytest.mark.parametrize("data, words", [
    ("[" * 20_000 + "]" * 20_000, "nested more than"), ('{"a": "\\udfff"}', "lone surrogate"),
    ("{nope", "not valid JSON")], ids=["deep", "surrogate", "bad"])
def test_a_hostile_message_to_a_browser_job_is_a_400(client, data, words):  # noqa: F811
    stub_, _ = client
    job_id = call_json(stub_, "post", "/schedule-job.json",
                       data={"project": "demo", "spider": "ok", "when": "now"})[1]["identifier"]
    browsers = OneChannel()
    with_browsers = stub(dataclasses.replace(stub_.services, browsers=browsers))
    code, body = call_json(with_browsers, "post", "/job-message.json",
                           data={"id": job_id, "data": data})
    assert code == 400 and "parameter 'data'" in body["msg"] and words in body["msg"]
    assert browsers.sent == []
    code, body = call_json(with_browsers, "post", "/job-message.json",
                           data={"id": job_id, "data": '{"ok": [1]}'})
    assert code == 200 and browsers.sent == [{"ok": [1]}]
