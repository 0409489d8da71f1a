"""A browser job on a worker (issue 14): its events file and saved files go home with
it, and messages from the daemon's heartbeat answers reach its control channel. Over
the fake daemon of tests/integration/fake_cluster_daemon.py (worker_fakes.Rig)."""
from __future__ import annotations

import json
import os
from typing import Any

import pytest

from crawld.launch.heartbeat import Heartbeat
from crawld.process import Exit
from tests.unit.worker_fakes import Rig


@pytest.fixture
def rig(tmp_path: Any) -> Rig:
    return Rig(tmp_path)


class FakeChannel:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def message(self, data: Any) -> None:
        self.got.append(data)


class FakeBrowsers:
    def __init__(self) -> None:
        self.channels: dict[str, FakeChannel] = {}


def run_browse(rig: Rig) -> tuple[str, str, Any, Any]:
    job = rig.add_job(code=None, kind="browse")
    d = rig.runtime.run({"job": job, "attempt": 1, "kind": "browse"})
    rig.flush()
    return job, f"{job}/1", d, rig.launcher.started[f"{job}/1"]


def test_events_and_saved_files_come_home_before_the_end(rig: Rig, tmp_path: Any) -> None:
    job, key, done, (attempt, reporter) = run_browse(rig)
    line = json.dumps({"id": 1, "date": 1.0, "type": "post", "data": {"n": 1}}).encode()
    rig.write(job, "events", line + b"\n")
    rig.clock.advance(0.5)
    rig.flush()
    assert rig.held(key, "events") == line + b"\n", "shipped while it runs"
    files = os.path.join(rig.dirs.files, job)
    os.makedirs(files)
    with open(os.path.join(files, "shot.png"), "wb") as fh:
        fh.write(b"\x89PNG" * 4)
    with open(os.path.join(files, "big.bin"), "wb") as fh:
        fh.write(b"x" * 100)   # over the fake daemon's 64 bytes: declined, not fatal
    with open(os.path.join(files, ".partial"), "wb") as fh:
        fh.write(b"hidden")
    secret = tmp_path / "secret"
    secret.write_bytes(b"not the job's")
    os.symlink(secret, os.path.join(files, "link"))
    rig.write(job, "events", line.replace(b'"id": 1', b'"id": 2') + b"\n")
    reporter.ended(attempt, Exit(0, None))
    outcome = rig.settle(done)
    assert outcome.endswith("reported")
    assert rig.state.ends[key]["offsets"]["events"] == 2 * (len(line) + 1)
    assert rig.held(key, "events").count(b"\n") == 2
    assert rig.held(key, "file:shot.png") == b"\x89PNG" * 4
    assert rig.held(key, "file:big.bin") == b"", "declined by the daemon"
    assert rig.held(key, "file:.partial") == b"" and rig.held(key, "file:link") == b""
    assert not os.path.exists(files), "the spool goes once the end is accepted"
    assert not os.path.exists(rig.dirs.streams(job)["events"])


def test_messages_in_a_heartbeat_answer_reach_the_jobs_channel(rig: Rig) -> None:
    browsers = rig.launcher.browsers = FakeBrowsers()
    job, key, done, _ = run_browse(rig)
    channel = browsers.channels[job] = FakeChannel()
    beat = Heartbeat(rig.clock, rig.client, rig.runtime, "w1", 1, ["browser"])
    rig.state.messages[key] = [{"a": 1}, "two"]
    rig.state.messages["other/1"] = ["not this worker's"]
    assert rig.settle(beat.beat()) is True
    assert channel.got == [{"a": 1}, "two"]
    assert rig.settle(beat.beat()) is True
    assert channel.got == [{"a": 1}, "two"], "delivered once"
    del browsers.channels[job]   # ended meanwhile: the message is dropped, as locally
    rig.state.messages[key] = ["late"]
    assert rig.settle(beat.beat()) is True
    assert channel.got == [{"a": 1}, "two"]
