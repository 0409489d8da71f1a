"""The scrapyd listener's jobs in memory (scrapyd/view.py): kept by the job events,
filled from the store once, and what status.json and listjobs.json answer from it,
without a round trip to the store per request."""
from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from crawld.events import JobEvents
from crawld.logs import StreamGate
from crawld.model import Actor, Job, JobStatus as S, RanJob
from crawld.scrapyd import ScrapydServices, ScrapydSettings
from crawld.scrapyd.front import ok_answer
from crawld.scrapyd.view import JobsView
from crawld.scrapyd.webservice import listjobs, status

from tests.unit.fakes import result


def job(job_id: str, status: S = S.PENDING, *, project: str = "p", spider: str = "s",
        t: float = 1.0, seq: int = 1, **fields: Any) -> Job:
    fields.setdefault("created", t)
    fields.setdefault("updated", t)
    return Job(id=job_id, status=status, actor=Actor.USER, schedule="now",
               project=project, spider=spider, seq=seq, **fields)


class Holder:
    """The supervisor as the view asks it: jobs it holds a slot for, their pids."""

    def __init__(self) -> None:
        self.held: dict[str, Job] = {}
        self.pids: dict[str, int] = {}

    def holding(self, job_id: str) -> Optional[Job]:
        return self.held.get(job_id)

    def pid(self, job_id: str) -> Optional[int]:
        return self.pids.get(job_id)


class Source:
    """jobs.Jobs as the view loads from it: counts its calls (the store's)."""

    def __init__(self, pending: list[Job] = (), running: list[RanJob] = (),
                 finished: list[RanJob] = ()) -> None:
        self.rows = (list(pending), list(running), list(finished))
        self.calls = 0

    def pending(self) -> Any:
        self.calls += 1
        return succeed(self.rows[0])

    def ran_spider_jobs(self, project: Optional[str] = None) -> Any:
        self.calls += 1
        return succeed((self.rows[1], self.rows[2]))


class Threads:
    """to_thread, run inline and counted (the items listing)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fn: Any, *args: Any) -> Any:
        self.calls += 1
        return succeed(fn(*args))


def made(source: Optional[Source] = None, items_dir: Optional[str] = None
         ) -> tuple[JobsView, JobEvents, Holder, Threads]:
    events, holder, threads = JobEvents(), Holder(), Threads()
    view = JobsView(events, holder, items_dir, threads)
    result(view.load(source or Source()))
    return view, events, holder, threads


def test_a_job_moves_from_pending_to_running_to_finished():
    view, events, holder, _ = made()
    events.publish(job("a", S.PENDING, priority=0.0, seq=1))
    assert view.state("a") == "pending" and view.state("a", "other") is None
    assert [j.id for j in view.queued()] == ["a"]
    # moved to RUNNING in the store, its process not reported yet: running, as there
    holder.held["a"] = job("a", S.RUNNING, t=2.0, started=2.0)
    assert view.state("a") == "running" and view.queued() == []
    assert [(j.id, j.pid) for j in view.started()] == [("a", None)]
    holder.pids["a"] = 42
    events.publish(job("a", S.RUNNING, t=2.0, started=2.0))  # the process started
    del holder.held["a"]
    assert view.state("a") == "running" and [j.pid for j in view.started()] == [42]
    events.publish(job("a", S.SUCCESSFUL, t=3.0, started=2.0, finished=3.0))
    assert view.state("a", "p") == "finished" and view.started() == []
    (done,) = view.ended()
    assert (done.id, done.pid, done.started, done.finished) == ("a", 42, 2.0, 3.0)
    # a late report of the finished job changes nothing
    events.publish(job("a", S.RUNNING, t=2.5, started=2.0))
    assert view.state("a") == "finished" and view.started() == []


def test_what_scrapyd_does_not_list_is_not_kept():
    view, events, _, _ = made()
    events.publish(job("never", S.PENDING))
    events.publish(job("never", S.CANCELED, t=2.0, finished=2.0))  # before it ran
    events.publish(job("shot", S.SUCCESSFUL, kind="browse", started=1.0, finished=2.0))
    events.publish(job("tmpl", S.SCHEDULED))
    for job_id in ("never", "shot", "tmpl", "unknown", "../x"):
        assert view.state(job_id) is None
    assert view.queued() == [] and view.ended() == []


def test_queue_and_listings_are_in_the_stores_order():
    view, events, _, _ = made()
    for job_id, priority, seq in (("low", 0.0, 1), ("high", 5.0, 2), ("low2", 0.0, 3)):
        events.publish(job(job_id, priority=priority, seq=seq))
    assert [j.id for j in view.queued()] == ["high", "low", "low2"]
    for job_id, updated, seq, project in (("b", 5.0, 2, "p"), ("a", 5.0, 1, "q"),
                                          ("c", 9.0, 3, "p"), ("d", 1.0, 4, "p")):
        events.publish(job(job_id, S.FAILED, t=updated, seq=seq, started=0.5,
                           finished=updated, project=project))
    assert [j.id for j in view.ended()] == ["c", "b", "a", "d"]  # updated, then seq
    assert [j.id for j in view.ended("p")] == ["c", "b", "d"]
    events.removed(["b", "d", "nothing"])  # retention
    assert [j.id for j in view.ended()] == ["c", "a"] and view.state("b") is None


def test_filled_from_the_store_and_events_heard_meanwhile_applied_after():
    events, holder, threads = JobEvents(), Holder(), Threads()
    view = JobsView(events, holder, None, threads)
    events.publish(job("late", S.SUCCESSFUL, t=8.0, seq=9, started=7.0, finished=8.0))
    assert not view.loaded and view.state("late") is None
    source = Source(pending=[job("w"), job("browse", kind="browse")],
                    running=[RanJob("r", "p", "s", S.RUNNING, 7, 1.0, None, 1.0, 2)],
                    finished=[RanJob("f", "p", "s", S.SUCCESSFUL, None, 1.0, 2.0, 2.0, 3)])
    result(view.load(source))
    assert view.loaded and source.calls == 2
    assert [view.state(i) for i in ("w", "browse", "r", "f", "late")] == [
        "pending", None, "running", "finished", "finished"]
    assert [j.id for j in view.ended()] == ["late", "f"]


class Projects:
    def names(self) -> list[str]:
        return ["p", "q"]


class NoStore:
    """jobs.Jobs that must not be asked: the answers come from the view."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was asked ({name})")


class Request:
    def __init__(self, **args: str) -> None:
        self.args = {k.encode(): [v.encode()] for k, v in args.items()}
        self.responseHeaders = Headers()
        self.code = 200

    def setResponseCode(self, code: int) -> None:
        self.code = code


def services(view: JobsView, items_dir: Optional[str] = None) -> ScrapydServices:
    return ScrapydServices(Clock(), NoStore(), Projects(), None, "/nowhere",
                           ScrapydSettings(node_name="node-ü"), items_dir=items_dir,
                           view=view, streams=StreamGate(4))


def answer(s: ScrapydServices, endpoint: Any, **args: str) -> bytes:
    request = Request(**args)
    data = endpoint(s, request)
    if not isinstance(data, (dict, bytes)):
        data = result(data)
    return ok_answer(request, s, data)


def whole(data: dict) -> bytes:
    """scrapyd's answer encoded in one go, as before the view (the reference)."""
    data = {**data, "status": "ok", "node_name": "node-ü"}
    return json.JSONEncoder(ensure_ascii=True).encode(data).encode() + b"\n"


def test_status_and_listjobs_answer_from_the_view_byte_for_byte(tmp_path):
    items = tmp_path / "items"
    items.mkdir()
    (items / "f1.jl").write_text("")
    (items / "r1.jl").write_text("")
    view, events, holder, threads = made(items_dir=str(items))
    s = services(view, str(items))
    events.publish(job("w1", priority=1.0, seq=5, version="2_0",
                       settings='[["A", "1"]]', args='[["x", "é"], ["_job", "w1"]]'))
    holder.pids["r1"] = 99
    events.publish(job("r1", S.RUNNING, t=100.0, seq=2, started=100.0))
    events.publish(job("f1", S.SUCCESSFUL, t=50.0, seq=1, started=40.0, finished=50.0))
    events.publish(job("f2", S.FAILED, t=60.0, seq=3, started=55.0, finished=60.0,
                       project="q"))
    assert answer(s, status, job="r1") == whole({"currstate": "running"})
    assert answer(s, status, job="f2", project="p") == whole({"currstate": None})
    from datetime import datetime
    t = lambda ts: str(datetime.fromtimestamp(ts))  # noqa: E731
    expected = {
        "pending": [{"id": "w1", "project": "p", "spider": "s", "version": "2_0",
                     "settings": {"A": "1"}, "args": {"x": "é"}}],
        "running": [{"id": "r1", "project": "p", "spider": "s", "pid": 99,
                     "start_time": t(100.0), "log_url": "/logs/p/s/r1.log",
                     "items_url": "/items/p/s/r1.jl"}],
        "finished": [{"id": "f2", "project": "q", "spider": "s", "start_time": t(55.0),
                      "end_time": t(60.0), "log_url": "/logs/q/s/f2.log",
                      "items_url": None},
                     {"id": "f1", "project": "p", "spider": "s", "start_time": t(40.0),
                      "end_time": t(50.0), "log_url": "/logs/p/s/f1.log",
                      "items_url": "/items/p/s/f1.jl"}]}
    assert answer(s, listjobs) == whole(expected)
    assert threads.calls == 1  # the items folder, listed once for the jobs it settles
    for _ in range(3):
        assert answer(s, listjobs) == whole(expected)
    only_p = {k: [e for e in v if e["project"] == "p"] for k, v in expected.items()}
    assert answer(s, listjobs, project="p") == whole(only_p)
    assert threads.calls == 1
    # a new finished job changes the answer (and is settled by one more listing)
    events.publish(job("r1", S.SUCCESSFUL, t=120.0, seq=2, started=100.0, finished=120.0))
    done = json.loads(answer(s, listjobs))
    assert [e["id"] for e in done["finished"]] == ["r1", "f2", "f1"]
    assert done["running"] == [] and done["finished"][0]["items_url"] == "/items/p/s/r1.jl"
    assert threads.calls == 1  # r1 was settled while it ran
    events.removed(["f1"])
    assert [e["id"] for e in json.loads(answer(s, listjobs))["finished"]] == ["r1", "f2"]
    # a job whose start the view has not heard of yet is listed, never settled
    holder.held["w1"] = job("w1", S.RUNNING, t=130.0, seq=5, started=130.0)
    listed = json.loads(answer(s, listjobs))
    assert [e["id"] for e in listed["running"]] == ["w1"] and listed["pending"] == []
    assert "w1" not in view.items and threads.calls == 2


def test_without_items_there_is_no_listing():
    view, events, _, threads = made()
    s = services(view)
    events.publish(job("f", S.SUCCESSFUL, started=1.0, finished=2.0))
    assert json.loads(answer(s, listjobs))["finished"][0]["items_url"] is None
    assert threads.calls == 0


def test_an_unknown_project_is_refused_before_the_view():
    view, _, _, _ = made()
    from crawld.errors import BadRequest
    with pytest.raises(BadRequest, match="project 'zz' not found"):
        status(services(view), Request(job="a", project="zz"))


class Counts:
    """jobs.Jobs's status_counts (the store's), answered when the test says."""

    def __init__(self) -> None:
        from twisted.internet.defer import Deferred
        self.asked: list[Deferred] = []
        self.make = Deferred

    def status_counts(self) -> Any:
        d = self.make()
        self.asked.append(d)
        return d


def test_daemonstatus_counts_are_kept_until_the_next_job_event():
    from crawld.scrapyd.webservice import daemonstatus
    view, events, _, _ = made()
    jobs = Counts()
    s = ScrapydServices(Clock(), jobs, Projects(), None, "/nowhere",
                        ScrapydSettings(node_name="node-ü"), view=view,
                        streams=StreamGate(4))

    def ask() -> Any:
        request = Request()
        data = daemonstatus(s, request)
        return request, data
    request, data = ask()
    jobs.asked[-1].callback({"PENDING": 2, "RUNNING": 1, "SUCCESSFUL": 3, "CANCELED": 1,
                             "SCHEDULED": 9})
    first = ok_answer(request, s, result(data))
    assert first == whole({"pending": 2, "running": 1, "finished": 4})
    for _ in range(3):  # from memory: the store is not asked again
        request, data = ask()
        assert ok_answer(request, s, data) == first
    assert len(jobs.asked) == 1
    events.publish(job("x", S.RUNNING, kind="browse", started=1.0))  # any job's event
    request, data = ask()
    assert len(jobs.asked) == 2
    events.removed(["old"])  # an event while the store answers: not kept
    jobs.asked[-1].callback({"RUNNING": 2})
    assert json.loads(ok_answer(request, s, result(data)))["running"] == 2
    ask()
    assert len(jobs.asked) == 3


def test_the_daemons_services_and_these_fakes_implement_the_protocols():
    from crawld import auth, events as job_events, jobs, projects, supervisor
    from crawld.scrapyd import services as sd, view as sd_view
    from tests.unit.protocol_check import problems
    real = {sd.ScrapydJobs: jobs.Jobs, sd.ScrapydProjects: projects.Projects,
            sd.ScrapydAuthenticator: auth.Authenticator, sd_view.Holder: supervisor.Supervisor,
            sd_view.Events: job_events.JobEvents, sd_view.Source: jobs.Jobs}
    assert set(sd.PROTOCOLS) <= set(real)
    fakes = {sd_view.Holder: Holder, sd_view.Source: Source}
    for proto, cls in [*real.items(), *fakes.items()]:
        assert problems(proto, cls) == [], (proto, cls)
