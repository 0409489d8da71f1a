"""The worker's runtime against a fake daemon (no socket, a Clock): claim, ship, end,
heartbeat signals and refusals, the restart sweep, the code cache."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from crawld import tree
from crawld.launch import attempt_records as records
from crawld.launch.codecache import CodeUnavailable
from crawld.launch.heartbeat import Heartbeat
from crawld.launch.runtime import BadMessage, job_from_wire, parse_message
from crawld.launch.shipper import CHUNK, Shipper
from crawld.process import Exit
from tests.conftest import wait_for
from tests.unit.worker_fakes import Rig, now_thread


@pytest.fixture
def rig(tmp_path: Any) -> Rig:
    return Rig(tmp_path)


def start(rig: Rig, job_id: str, attempt: int = 1, kind: str = "spider") -> Deferred:
    d = rig.runtime.run({"job": job_id, "attempt": attempt, "kind": kind})
    rig.flush()
    return d


def test_a_refused_claim_starts_nothing(rig: Rig) -> None:
    job = rig.add_job()
    rig.state.claims[f"{job}/1"] = "other"   # another worker claimed it first
    outcome = rig.settle(start(rig, job))
    assert outcome == f"{job}/1: not started (attempt {job}/1 was already claimed by " \
        "worker other)"
    assert rig.launcher.started == {}
    assert os.listdir(rig.dirs.attempts) == []
    stale = rig.settle(start(rig, job, attempt=2))  # not the current attempt
    assert "is not the job's current attempt" in stale and rig.launcher.started == {}


def test_an_attempt_runs_ships_and_ends(rig: Rig) -> None:
    digest = rig.publish({"scrapy.cfg": "[settings]\ndefault = demo.settings\n"})
    job = rig.add_job(code=digest)
    key = f"{job}/1"
    done = start(rig, job)
    attempt, reporter = rig.launcher.started[key]
    assert attempt.job.version == digest        # the launcher finds the code by hash
    assert rig.code.version_dir("demo", digest) == rig.code.path(digest)
    assert open(os.path.join(rig.code.path(digest), "scrapy.cfg")).read().startswith(
        "[settings]")
    assert rig.state.started[key]["pid"] == 4001
    assert json.load(open(records.path(rig.dirs.attempts, job)))["pid"] == 4001
    rig.write(job, "out", b"hello\n")
    rig.write(job, "err", b"log line\n")
    rig.clock.advance(0.5)
    rig.flush()
    assert rig.held(key, "out") == b"hello\n" and rig.held(key, "err") == b"log line\n"
    reporter.stats(attempt, {"item_scraped_count": 2})
    rig.write(job, "items", b'{"n": 1}\n')
    reporter.ended(attempt, Exit(0, None))
    outcome = rig.settle(done)
    assert outcome.endswith("reported")
    assert rig.state.ends[key]["offsets"] == {"out": 6, "err": 9, "items": 9, "events": 0}
    assert rig.state.ends[key]["code"] == 0
    assert rig.held(key, "items") == b'{"n": 1}\n'
    assert rig.state.stats[key] == {"item_scraped_count": 2}
    assert os.listdir(rig.dirs.attempts) == []
    assert not any(os.path.exists(p) for p in rig.dirs.streams(job).values())


def test_two_attempts_of_one_version_fetch_it_once(rig: Rig) -> None:
    digest = rig.publish({"scrapy.cfg": "x"})
    first, second = rig.add_job(code=digest), rig.add_job(code=digest)
    start(rig, first), start(rig, second)
    assert set(rig.launcher.started) == {f"{first}/1", f"{second}/1"}
    assert rig.state.fetches == {digest: 1} and rig.code.fetches == 1


def test_unknown_or_altered_code_is_refused(rig: Rig, tmp_path: Any) -> None:
    with pytest.raises(CodeUnavailable, match="not a sha256"):
        rig.settle(rig.code.get("../etc"))
    with pytest.raises(CodeUnavailable, match="HTTP 404"):
        rig.settle(rig.code.get("a" * 64))
    digest = rig.publish({"scrapy.cfg": "x"})
    other = "b" * 64
    os.rename(os.path.join(rig.code_dir, f"{digest}.zip"),
              os.path.join(rig.code_dir, f"{other}.zip"))
    with pytest.raises(CodeUnavailable, match=f"sha256 is {digest}"):
        rig.settle(rig.code.get(other))
    assert not os.path.exists(rig.code.path(other))
    # an attempt whose code cannot be had ends at once, with why
    job = rig.add_job(code="c" * 64)
    outcome = rig.settle(start(rig, job))
    assert "could not start" in outcome and rig.launcher.started == {}
    assert "could not start on worker w1" in rig.state.ends[f"{job}/1"]["reason"]


def test_shipping_resumes_from_the_daemons_offset_after_a_409(rig: Rig, tmp_path: Any
                                                              ) -> None:
    job = rig.add_job()
    key = f"{job}/1"
    data = os.urandom(CHUNK + 1000)  # two requests' worth
    rig.write(job, "out", data)
    shipper = Shipper(rig.clock, rig.client, key, rig.dirs.streams(job),
                      to_thread=now_thread)
    shipper.held["out"] = CHUNK + 10  # it thinks the daemon has more than it does
    rig.state.held[f"{key} out"] = bytearray(data[:100])   # the daemon holds 100 bytes
    rig.settle(shipper.round())
    assert rig.held(key, "out") == data
    assert shipper.held["out"] == len(data)
    # the end: the daemon lost its copy meanwhile; it answers 409 with 0, gets it again
    rig.state.held[f"{key} out"] = bytearray()
    assert rig.settle(shipper.finish(0, None, None)) is True
    assert rig.held(key, "out") == data and rig.state.end_calls[key] == 2


def test_the_spool_is_kept_while_the_daemon_is_down(rig: Rig) -> None:
    job = rig.add_job()
    key = f"{job}/1"
    done = start(rig, job)
    attempt, reporter = rig.launcher.started[key]
    rig.agent.down = True
    rig.write(job, "out", b"while the daemon was away\n")
    reporter.ended(attempt, Exit(1, None))
    for _ in range(10):              # 0.5, 1, 2, 4, 5, 5 ... seconds between tries
        rig.clock.advance(5)
        rig.flush()
    tries = rig.agent.refused
    rig.clock.advance(4.9)           # the backoff never grows beyond 5 s
    rig.flush()
    rig.clock.advance(0.2)
    rig.flush()
    assert rig.agent.refused > tries and not done.called
    assert open(rig.dirs.streams(job)["out"], "rb").read() == b"while the daemon was away\n"
    assert os.path.exists(records.path(rig.dirs.attempts, job))
    rig.agent.down = False           # back: it resumes from what the daemon holds
    outcome = rig.settle(done, seconds=10)
    assert outcome.endswith("reported")
    assert rig.held(key, "out") == b"while the daemon was away\n"
    assert rig.state.ends[key]["code"] == 1
    assert not os.path.exists(rig.dirs.streams(job)["out"])


def test_a_heartbeat_signal_is_applied_once(rig: Rig) -> None:
    job = rig.add_job()
    key = f"{job}/1"
    start(rig, job)
    beat = Heartbeat(rig.clock, rig.client, rig.runtime, "w1", 3, ["spider"])
    assert beat.interval == 2.0
    assert rig.settle(beat.beat()) is True
    assert beat.interval == 0.5 and beat.lost_after == 15
    sent = rig.state.heartbeats[-1]
    assert sent == {"worker": "w1", "slots": 3, "queues": ["spider"],
                    "attempts": [{"key": key, "pid": 4001, "rss": 1000}]}
    rig.state.signals[key] = signal.SIGTERM
    rig.settle(beat.beat())
    rig.settle(beat.beat())   # the daemon repeats it: the worker sends it once
    assert rig.launcher.signals == [(key, signal.SIGTERM)]
    rig.state.signals[key] = signal.SIGKILL
    rig.settle(beat.beat())
    assert rig.launcher.signals == [(key, signal.SIGTERM), (key, signal.SIGKILL)]


def test_the_heartbeat_loop_beats_while_idle(rig: Rig) -> None:
    beat = Heartbeat(rig.clock, rig.client, rig.runtime, "w1", 1, ["spider", "browser"])
    beat.start()
    rig.clock.advance(0)
    rig.flush()
    assert rig.state.beats == 1 and rig.state.heartbeats[-1]["attempts"] == []
    rig.clock.advance(0.5)   # the daemon's interval from its first answer
    rig.flush()
    assert rig.state.beats == 2
    rig.agent.down = True    # unreachable: tried again next beat
    rig.clock.advance(0.5)
    rig.flush()
    rig.agent.down = False
    rig.clock.advance(0.5)
    rig.flush()
    assert rig.state.beats == 3
    beat.stop()
    rig.clock.advance(5)
    assert rig.state.beats == 3


def test_a_refused_attempt_is_killed_and_its_end_not_reported(rig: Rig) -> None:
    job = rig.add_job()
    key = f"{job}/1"
    done = start(rig, job)
    attempt, reporter = rig.launcher.started[key]
    rig.state.refused.add(key)
    beat = Heartbeat(rig.clock, rig.client, rig.runtime, "w1", 1, ["spider"])
    rig.settle(beat.beat())
    assert rig.launcher.signals == [(key, signal.SIGKILL)]
    calls = rig.state.output_calls
    rig.write(job, "out", b"more")
    rig.clock.advance(2)
    rig.flush()
    assert rig.state.output_calls == calls    # no more shipping
    reporter.ended(attempt, Exit(None, signal.SIGKILL))
    assert rig.settle(done).endswith("refused by the daemon")
    assert key not in rig.state.ends
    assert os.listdir(rig.dirs.attempts) == []


def test_a_restarted_worker_sweeps_what_it_left(rig: Rig) -> None:
    job = rig.add_job()
    key = f"{job}/1"
    left = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        records.write(rig.dirs.attempts, records.AttemptRecord(
            key, left.pid, tree.start_time(left.pid)))
        rig.write(job, "out", b"before the crash\n")
        rig.write(job, "err", b"err\n")
        assert rig.settle(rig.runtime.sweep()) == 1
        assert left.wait(10) == -signal.SIGKILL    # killed before anything new starts
        rig.settle(rig.runtime.sweeping[0].finish(None, None, "unused"), seconds=2)
        end = rig.state.ends[key]
        assert end["reason"] == "the worker restarted" and end["code"] is None
        assert rig.held(key, "out") == b"before the crash\n"
        wait_for(lambda: os.listdir(rig.dirs.attempts) == [], 5, what="the record to go")
        assert not os.path.exists(rig.dirs.streams(job)["out"])
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()


def test_stop_ends_running_attempts(rig: Rig) -> None:
    job = rig.add_job()
    key = f"{job}/1"
    done = start(rig, job)
    attempt, reporter = rig.launcher.started[key]
    stopped = rig.runtime.stop()
    assert rig.launcher.signals == [(key, signal.SIGTERM)]
    rig.clock.advance(2.0)     # the grace
    assert rig.launcher.signals[-1] == (key, signal.SIGKILL)
    reporter.ended(attempt, Exit(None, signal.SIGKILL))
    rig.settle(done)
    rig.settle(stopped, seconds=1)
    assert rig.state.ends[key]["signal"] == signal.SIGKILL and rig.launcher.stopped
    assert rig.state.ends[key]["reason"] == "ended by the stop of worker w1"
    assert "stopping" in rig.settle(start(rig, rig.add_job()))


@pytest.mark.parametrize("message", [
    None, [], {"job": "a/b", "attempt": 1, "kind": "spider"},
    {"job": "ok", "attempt": "1", "kind": "spider"}, {"job": "ok", "attempt": True,
                                                      "kind": "spider"},
    {"job": "ok", "attempt": 1, "kind": "shell"}])
def test_bad_messages_are_refused(message: Any) -> None:
    with pytest.raises(BadMessage):
        parse_message(message)


def test_a_job_from_the_wire_ignores_fields_it_does_not_know(rig: Rig) -> None:
    job_id = rig.add_job(kind="browse")
    wire = dict(rig.state.jobs[job_id]["job"], future_field=1)
    job = job_from_wire(wire)
    assert job.id == job_id and job.kind == "browse" and job.status.value == "RUNNING"


def test_a_start_the_daemon_refuses_kills_the_tree(rig: Rig) -> None:
    job = rig.add_job()
    key = f"{job}/1"
    rig.launcher.hold = Deferred()
    done = start(rig, job)
    rig.state.claims[key] = "w2"   # meanwhile another worker holds it (a zombie's claim)
    rig.launcher.hold.callback(None)
    rig.flush()
    assert rig.launcher.signals == [(key, signal.SIGKILL)]
    attempt, reporter = rig.launcher.started[key]
    reporter.ended(attempt, Exit(None, signal.SIGKILL))
    assert rig.settle(done).endswith("refused by the daemon")
    assert key not in rig.state.ends


def test_an_attempt_refused_while_it_starts_is_killed_once_it_runs(rig: Rig) -> None:
    job = rig.add_job()
    key = f"{job}/1"
    rig.launcher.hold = Deferred()
    start(rig, job)
    rig.state.refused.add(key)
    beat = Heartbeat(rig.clock, rig.client, rig.runtime, "w1", 1, ["spider"])
    rig.settle(beat.beat())
    assert rig.state.heartbeats[-1]["attempts"] == [{"key": key, "pid": None, "rss": 0}]
    assert rig.launcher.signals == []          # nothing runs yet
    rig.launcher.hold.callback(None)
    rig.flush()
    assert rig.launcher.signals == [(key, signal.SIGKILL)]
    assert key not in rig.state.started


def test_the_ca_file_must_hold_a_certificate(tmp_path: Any) -> None:
    from crawld.launch.daemon_client import tls_policy
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="no PEM certificate"):
        tls_policy(str(empty))
    assert tls_policy(None) is not None
