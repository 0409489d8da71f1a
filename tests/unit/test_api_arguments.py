"""Spider arguments and settings through the HTTP layer (StubTreq over the app with a real
Jobs, Scheduler and Store): stored, listed, inherited by a template's runs, refused with
a clear 400 that loses nothing."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.task import Clock

from crawld.commands import crawl_command
from crawld.events import JobEvents
from crawld.jobs import Jobs
from crawld.scheduler import Scheduler
from crawld.store import InlineExecutor, Store
from crawld.waits import JobWaits
from tests.unit.fakes import result
from tests.unit.http_fakes import FakeProjects, FakeSupervisor, services, stub
from tests.unit.test_api import call_json, result_of


class Env:
    """The app over real Jobs (in-memory store) and a fake supervisor."""

    def __init__(self, tmp_path: Any, max_waits: int = 4) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = Store(":memory:", InlineExecutor())
        self.sup = FakeSupervisor()
        self.events = JobEvents()
        scheduler = Scheduler(self.clock, self.store, self.sup.enqueue, self.events,
                              tz=ZoneInfo("UTC"))
        self.jobs = Jobs(self.clock, self.store, FakeProjects(), scheduler, self.sup,
                         self.events, str(tmp_path), 1000, 30,
                         to_thread=lambda f, *a: result_of(f, *a))
        self.waits = JobWaits(self.clock, self.events, max_waits)
        self.services = services(self.clock, jobs=self.jobs, projects=FakeProjects(),
                                 supervisor=self.sup, log_dir=str(tmp_path),
                                 waits=self.waits)
        self.stub = stub(self.services)

    def schedule(self, pairs: list[tuple[str, str]], **kw: Any) -> tuple[int, dict]:
        """POST schedule-job.json with ``pairs`` (repeatable names, in order)."""
        base = [("project", "demo"), ("spider", "ok"), ("when", "now")]
        body = urlencode(base + pairs).encode()
        return call_json(self.stub, "post", "/schedule-job.json", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, **kw)

    def job(self, job_id: str) -> dict:
        code, body = call_json(self.stub, "get", f"/list-jobs.json?id={job_id}")
        assert code == 200
        return body["jobs"][0]

    def stored(self, job_id: str) -> Any:
        return result(self.store.get_job(job_id))


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def test_arguments_and_settings_are_stored_in_order_and_listed_as_objects(env):
    code, body = env.schedule([
        ("arg-category", "books"), ("setting", "DOWNLOAD_DELAY=2"), ("arg-tag", "a"),
        ("arg-tag", "b"), ("setting", "USER_AGENT=x=y"), ("arg-note", "é ☃ a=b"),
        ("payload", '{"n": 1}')])
    assert code == 200
    job_id = body["identifier"]
    assert env.sup.queued == [job_id]
    stored = env.stored(job_id)
    assert stored.args == ('[["category", "books"], ["tag", "a"], ["tag", "b"], '
                           '["note", "é ☃ a=b"]]')
    assert stored.settings == '[["DOWNLOAD_DELAY", "2"], ["USER_AGENT", "x=y"]]'
    shown = env.job(job_id)
    assert shown["args"] == {"category": "books", "tag": "b", "note": "é ☃ a=b"}
    assert shown["settings"] == {"DOWNLOAD_DELAY": "2", "USER_AGENT": "x=y"}
    assert shown["payload"] == '{"n": 1}'  # payload works as it did
    listed = call_json(env.stub, "get", "/list-jobs.json?status=PENDING")[1]["jobs"]
    assert listed[0]["args"] == shown["args"]
    # what the spider will get: the same pairs on its command line, in order
    cmd = crawl_command(stored, "/d", "/py", {})
    assert cmd.scrapy_args[-10:] == ("-a", "category=books", "-a", "tag=a", "-a", "tag=b",
                                     "-a", "note=é ☃ a=b", "-a", 'payload={"n": 1}')


def test_a_job_without_arguments_lists_empty_objects(env):
    job_id = env.schedule([])[1]["identifier"]
    shown = env.job(job_id)
    assert shown["args"] == {} and shown["settings"] == {}


def test_arguments_in_the_query_string_count_too(env):
    code, body = call_json(env.stub, "post", "/schedule-job.json?arg-page=3&setting=A_B=1",
                           data={"project": "demo", "spider": "ok", "when": "now"})
    assert code == 200
    shown = env.job(body["identifier"])
    assert shown["args"] == {"page": "3"} and shown["settings"] == {"A_B": "1"}


def test_a_templates_runs_inherit_its_arguments_and_settings(env):
    base = [("project", "demo"), ("spider", "ok"), ("when", "every 5 minutes"),
            ("overlap", "allow"), ("arg-category", "books"), ("setting", "LOG_LEVEL=DEBUG")]
    code, body = call_json(env.stub, "post", "/schedule-job.json",
                           data=urlencode(base).encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 200
    template = body["identifier"]
    assert env.job(template)["args"] == {"category": "books"}
    # a run by hand (run-job.json) and a run of the scheduler's own firing
    code, run = call_json(env.stub, "post", f"/run-job.json?id={template}")
    assert code == 200
    env.clock.advance(301)
    fired = [j for j in call_json(env.stub, "get", "/list-jobs.json?status=PENDING")[1]["jobs"]
             if j["actor"] == "SCHEDULER"]
    assert len(fired) == 1
    for child in (run["identifier"], fired[0]["identifier"]):
        shown = env.job(child)
        assert shown["parent"] == template
        assert shown["args"] == {"category": "books"}
        assert shown["settings"] == {"LOG_LEVEL": "DEBUG"}
        assert env.stored(child).settings == '[["LOG_LEVEL", "DEBUG"]]'


@pytest.mark.parametrize("pairs,words", [
    ([("arg-", "x")], "parameter 'arg-' has no argument name"),
    ([("arg-1x", "x")], "not a Python identifier"),
    ([("arg-payload", "x")], "'payload' parameter"),
    ([("setting", "DOWNLOAD_DELAY")], "has no '='"),
    ([("setting", "=1")], "must be ASCII letters"),
    ([("setting", "TELNETCONSOLE_ENABLED=1")], "TELNETCONSOLE_ENABLED may not be set"),
    ([("setting", "TELNETCONSOLE_PORT=6023")], "telnet console"),
    ([("setting", "REMOTE_CONTROL_ENABLED=True")], "RemoteControl"),
    ([("setting", "EXTENSIONS={}")], "replaces the extensions"),
    ([("setting", "EXTENSIONS_BASE={}")], "may not be set"),
    ([("arg-big", "x" * (64 * 1024 + 1))], "at most 65536"),
])
def test_bad_arguments_and_settings_are_a_400_that_creates_nothing(env, pairs, words):
    code, body = env.schedule(pairs)
    assert code == 400 and body["status"] == "error" and words in body["msg"], body
    assert env.sup.queued == []
    assert call_json(env.stub, "get", "/list-jobs.json?status=ACTIVE")[1]["jobs"] == []


def test_an_argument_that_is_not_utf8_is_a_400(env):
    code, body = call_json(env.stub, "post", "/schedule-job.json",
                           data=b"project=demo&spider=ok&when=now&arg-x=%FF",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 400 and "'arg-x' is not valid UTF-8" in body["msg"]
    code, body = call_json(env.stub, "post", "/schedule-job.json",
                           data=b"project=demo&spider=ok&when=now&arg-%FF=1",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 400 and "not valid UTF-8" in body["msg"]


def test_browser_scripts_take_no_arguments_or_settings(env):
    for pair in (("arg-x", "1"), ("setting", "A=1")):
        code, body = call_json(env.stub, "post", "/schedule-job.json", data={
            "project": "demo", "script": "s", "when": "now", pair[0]: pair[1]})
        assert code == 400 and "job.argument" in body["msg"]
    assert env.sup.queued == []


def test_update_job_refuses_to_change_arguments_and_changes_nothing(env):
    code, body = call_json(env.stub, "post", "/schedule-job.json", data={
        "project": "demo", "spider": "ok", "when": "every 5 minutes", "arg-a": "1"})
    template = body["identifier"]
    for extra in ({"arg-a": "2"}, {"setting": "A=1"}):
        code, body = call_json(env.stub, "post", "/update-job.json",
                               data={"id": template, "description": "new", **extra})
        assert code == 400 and "cannot be changed" in body["msg"]
    shown = env.job(template)
    assert shown["args"] == {"a": "1"} and shown["description"] == ""
