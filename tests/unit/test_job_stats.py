"""The daemon's side of the stats: reports decoded and stored at most once a second per
job (stats.py), a job's stats FIFO (launch/statspipe.py), and the supervisor judging a
job that exited 0 by its last stats (fail-on), over the local launcher."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, Optional

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from crawld.events import JobEvents
from crawld.launch.local import LocalLauncher, LocalSettings
from crawld.launch.spawner import DirectSpawner
from crawld.launch.statspipe import StatsPipe, clear, fifo_path
from crawld.model import Actor, Job, JobStatus
from crawld.stats import JobStats, decode_report, encode
from crawld.store import InlineExecutor, Store
from crawld.supervisor import Supervisor
from tests.unit.fakes import FakeProcessReactor, result
from tests.unit.test_supervisor import signals  # noqa: F401 (a fixture)

REFUSED = {"downloader/request_count": 3, "finish_reason": "finished",
           "downloader/exception_type_count/twisted.internet.error.DNSLookupError": 3}


def test_stats_are_stored_as_compact_sorted_valid_json():
    assert encode({"b": 1, "a": "é", "c": "\ud800"}) == '{"a":"é","b":1,"c":"?"}'


@pytest.mark.parametrize("line, found", [
    (b'{"stats": {"item_scraped_count": 2}}', {"item_scraped_count": 2}),
    (b'{"stats": {"x": NaN, "y": -Infinity, "z": 1e999, "w": 1.5}}',
     {"x": None, "y": None, "z": None, "w": 1.5}),
    (b'{"stats": []}', None),
    (b'{"other": {}}', None),
    (b'[1, 2]', None),
    (b'{"stats": {"a": "\xff"}}', None),   # not UTF-8
    (b'{"stats": ' + b"[" * 100_000, None),
    (b"garbage", None),
])
def test_report_lines_are_decoded_or_refused(line, found):
    assert decode_report(line) == found


class FakeStore:
    """Records set_stats; the job runs unless ``ended`` names it."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []
        self.ended: set[str] = set()

    def set_stats(self, job_id: str, stats: str):
        self.writes.append((job_id, stats))
        if job_id in self.ended:
            return succeed(None)
        return succeed(Job(id=job_id, status=JobStatus.RUNNING, actor=Actor.USER,
                           schedule="now", project="p", spider="s", created=1, updated=1,
                           stats=stats))


@pytest.fixture
def kept():
    clock = Clock()
    store = FakeStore()
    events = JobEvents()
    published: list[Job] = []
    events.subscribe(published.append)
    return clock, store, JobStats(clock, store, events), published


def test_a_report_is_written_at_once_then_at_most_once_a_second(kept):
    clock, store, keeper, published = kept
    keeper.report("j", {"n": 1})
    assert store.writes == [("j", '{"n":1}')]
    assert [json.loads(j.stats) for j in published] == [{"n": 1}], "a stats update"
    clock.advance(0.3)
    keeper.report("j", {"n": 2})
    keeper.report("j", {"n": 3})
    assert len(store.writes) == 1, "too soon: the newest waits"
    clock.advance(0.7)
    assert store.writes[1:] == [("j", '{"n":3}')] and len(published) == 2
    clock.advance(5)
    keeper.report("j", {"n": 3})
    assert len(store.writes) == 2, "the same stats are not written again"
    keeper.report("other", {"n": 1})
    assert store.writes[-1] == ("other", '{"n":1}'), "each job has its own pace"


def test_the_end_takes_the_last_report_and_cancels_the_planned_write(kept):
    clock, store, keeper, published = kept
    keeper.report("j", {"n": 1})
    keeper.report("j", {"n": 2})
    assert keeper.finish("j") == {"n": 2}
    clock.advance(10)
    assert store.writes == [("j", '{"n":1}')] and keeper.finish("j") is None
    assert keeper.finish("never") is None


def test_a_job_that_no_longer_runs_is_not_published(kept):
    clock, store, keeper, published = kept
    store.ended.add("j")
    keeper.report("j", {"n": 1})
    assert store.writes and published == []


class PipeReactor(FakeProcessReactor):
    """A process reactor on a Clock that also records the readers added."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: set = set()

    def addReader(self, reader: Any) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.discard(reader)


def writer(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_NONBLOCK)


def test_the_pipe_hands_on_the_newest_report_then_pauses(tmp_path):
    reactor = PipeReactor()
    got: list[dict] = []
    pipe = StatsPipe(reactor, str(tmp_path / "j.stats"), got.append, "j", gap=0.5)
    pipe.open()
    assert os.path.exists(pipe.path) and oct(os.stat(pipe.path).st_mode & 0o777) == "0o600"
    assert reactor.readers == {pipe}
    w = writer(pipe.path)
    os.write(w, b'{"stats": {"n": 1}}\n{"stats": {"n": 2}}\n{"stats": {"n": ')
    pipe.doRead()
    assert got == [{"n": 2}], "only the newest complete line is decoded"
    assert reactor.readers == set(), "paused"
    reactor.advance(0.5)
    assert reactor.readers == {pipe}
    os.write(w, b'3}}\nnot json\n')
    pipe.doRead()
    assert got[-1] == {"n": 3}, "a bad line does not hide the good one before it"
    reactor.advance(0.5)
    os.write(w, b'{"stats": {"n": 4}}\n')
    os.close(w)
    pipe.close()  # the job ended: what it left is read now
    assert got[-1] == {"n": 4} and reactor.readers == set()
    assert not os.path.exists(pipe.path) and pipe.read_fd == pipe.keep_fd == -1
    pipe.close()  # once


def test_a_read_with_nothing_new_keeps_reading(tmp_path):
    reactor = PipeReactor()
    got: list[dict] = []
    pipe = StatsPipe(reactor, str(tmp_path / "j.stats"), got.append, "j")
    pipe.open()
    pipe.doRead()  # woken for nothing (EAGAIN)
    assert got == [] and reactor.readers == {pipe}
    pipe.close()


def test_stale_fifos_are_cleared(tmp_path):
    os.mkfifo(tmp_path / "old.stats")
    (tmp_path / "keep.txt").write_text("x")
    clear(str(tmp_path))
    assert os.listdir(tmp_path) == ["keep.txt"]
    clear(str(tmp_path / "missing"))


# -- the supervisor judges a job by its last stats ------------------------------------
def world(tmp_path, fail_on=("all-requests-failed",), run_dir=True, items=True):
    reactor = PipeReactor()
    reactor.advance(1_700_000_000)
    store = Store(":memory:", InlineExecutor())
    (tmp_path / "proj").mkdir(exist_ok=True)
    for name in ("run", "items"):
        (tmp_path / name).mkdir(exist_ok=True)
    settings = LocalSettings("/py", str(tmp_path), lambda name: str(tmp_path / "proj"),
                             lambda project, script: "", base_env={},
                             run_dir=str(tmp_path / "run") if run_dir else None,
                             stats_interval=2.0,
                             items_dir=str(tmp_path / "items") if items else None)
    launcher = LocalLauncher(settings, DirectSpawner(reactor),
                             to_thread=lambda f, *a: succeed(f(*a)), reactor=reactor)
    events = JobEvents()
    published: list[Job] = []
    events.subscribe(published.append)
    sup = Supervisor(reactor, store, launcher, events, str(tmp_path), slots=2, kill_grace=5,
                     fail_on=fail_on)
    return reactor, store, sup, published


def start(store: Store, sup: Supervisor, fail_on: Optional[str] = None,
          kind: str = "spider") -> Job:
    job = result(store.add_job(Job(
        id=str(uuid.uuid4()), status=JobStatus.PENDING, actor=Actor.USER, schedule="now",
        project="p", spider="s", created=1, updated=1, fail_on=fail_on, kind=kind)))
    sup.enqueue(job.id)
    return job


def report(sup: Supervisor, job: Job, stats: dict) -> None:
    sup.stats(sup.running[job.id].attempt, stats)


def final(store: Store, job: Job) -> Job:
    return result(store.get_job(job.id))


def test_a_spider_s_command_gets_its_stats_channel_and_items_file(tmp_path, signals):
    reactor, store, sup, _ = world(tmp_path)
    job = start(store, sup)
    spawned = reactor.spawned[0]
    env = spawned["env"]
    assert env["CRAWLD_STATS_FD"] == "3" and env["CRAWLD_STATS_INTERVAL"] == "2"
    assert env["CRAWLD_ITEMS"] == str(tmp_path / "items" / f"{job.id}.jl")
    assert os.path.getsize(env["CRAWLD_ITEMS"]) == 0, "created empty, before the job"
    assert set(spawned["childFDs"]) == {0, 1, 2, 3}
    fifo = fifo_path(str(tmp_path / "run"), job.id)
    w = writer(fifo)  # as the job's extension: its last report, then it exits
    os.write(w, b'{"stats": ' + json.dumps(REFUSED).encode() + b'}\n')
    os.close(w)
    reactor.end(0)
    ended = final(store, job)
    assert ended.status is JobStatus.FAILED and ended.exit_code == 0
    assert ended.reason == ("all 3 requests failed: DNS lookup failed "
                            "(fail-on all-requests-failed)")
    assert json.loads(ended.stats) == REFUSED, "recorded with the end"
    assert not os.path.exists(fifo) and reactor.readers == set()
    assert result(store.counters())["jobs-failed"] == 1


def test_without_a_run_dir_or_items_a_spider_gets_neither(tmp_path, signals):
    reactor, store, sup, _ = world(tmp_path, run_dir=False, items=False)
    start(store, sup)
    env = reactor.spawned[0]["env"]
    assert not {"CRAWLD_STATS_FD", "CRAWLD_ITEMS"} & set(env)
    assert set(reactor.spawned[0]["childFDs"]) == {0, 1, 2}
    reactor.end(0)


def test_reports_while_running_are_stored_and_published(tmp_path, signals):
    reactor, store, sup, published = world(tmp_path)
    job = start(store, sup)
    report(sup, job, {"item_scraped_count": 1})
    running = final(store, job)
    assert running.status is JobStatus.RUNNING and running.updated == running.started
    assert json.loads(running.stats) == {"item_scraped_count": 1}
    assert published[-1].stats == running.stats and published[-1].status is JobStatus.RUNNING
    good = {"downloader/request_count": 2, "response_received_count": 2,
            "finish_reason": "finished", "item_scraped_count": 5}
    report(sup, job, good)
    attempt = sup.running[job.id].attempt
    reactor.end(0)
    ended = final(store, job)
    assert (ended.status, ended.reason, json.loads(ended.stats)) == (
        JobStatus.SUCCESSFUL, None, good)
    sup.stats(attempt, {"late": 1})  # a report of an attempt that ended: ignored
    assert json.loads(final(store, job).stats) == good


@pytest.mark.parametrize("own, daemon, status", [
    ("none", ("all-requests-failed",), JobStatus.SUCCESSFUL),     # the job's own wins
    (None, (), JobStatus.SUCCESSFUL),                              # fail-on = none
    ("unfinished", ("all-requests-failed",), JobStatus.SUCCESSFUL),
    ("no-items", (), JobStatus.FAILED),
])
def test_the_job_s_conditions_or_the_daemon_s(tmp_path, signals, own, daemon, status):
    reactor, store, sup, _ = world(tmp_path, fail_on=daemon)
    job = start(store, sup, fail_on=own)
    report(sup, job, REFUSED)
    reactor.end(0)
    assert final(store, job).status is status


def test_exit_codes_cancels_and_missing_stats_are_not_judged(tmp_path, signals):
    reactor, store, sup, _ = world(tmp_path)
    failed = start(store, sup)
    report(sup, failed, {"downloader/request_count": 1, "response_received_count": 1})
    reactor.end(0, code=2)
    assert (final(store, failed).status, final(store, failed).reason) == (
        JobStatus.FAILED, "exit code 2")
    canceled = start(store, sup)
    report(sup, canceled, REFUSED)
    sup.cancel(canceled.id)
    reactor.end(1, code=0)
    assert final(store, canceled).status is JobStatus.CANCELED
    silent = start(store, sup)   # its project switched the extension off
    reactor.end(2, code=0)
    assert (final(store, silent).status, final(store, silent).stats) == (
        JobStatus.SUCCESSFUL, None)


def test_a_browser_job_is_judged_by_its_exit_alone(tmp_path, signals):
    reactor, store, sup, _ = world(tmp_path)
    job = start(store, sup)
    # as if a browser job reported what would fail a spider (they report nothing)
    sup.running[job.id].job = job.evolve(kind="script")
    report(sup, job, REFUSED)
    reactor.end(0)
    assert final(store, job).status is JobStatus.SUCCESSFUL
