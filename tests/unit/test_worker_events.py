"""A browser job on a worker (issue 14): its events file and saved files go home with
it, and messages from the daemon's heartbeat answers reach its control channel. Over
the fake daemon of tests/integration/fake_cluster_daemon.py (worker_fakes.Rig)."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import pytest
from twisted.internet.defer import Deferred

from crawld.browser import Settings
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
    def __init__(self, tmp_root: str = "/nonexistent") -> None:
        self.channels: dict[str, Any] = {}
        self.tmp_root = tmp_root
        self.settings = Settings(None, 1.0, screenshot_timeout=3.0)

    def tmp_dir(self, job_id: str) -> str:
        return os.path.join(self.tmp_root, job_id)


class ShotChannel:
    """A job's channel as browser.Channel answers screenshots: the reply comes later
    (``answer``), the PNG is at the path it was given."""

    def __init__(self) -> None:
        self.next_shot = 0
        self.asked: list[tuple[str, bool, Deferred]] = []

    def screenshot(self, path: str, full_page: bool) -> Deferred:
        self.next_shot += 1
        d: Deferred = Deferred()
        self.asked.append((path, full_page, d))
        return d

    def answer(self, n: int, png: Optional[bytes], error: Optional[str] = None) -> None:
        path, _, d = self.asked[n]
        if png is not None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(png)
        d.callback({"ok": png is not None, "error": error})


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


def test_screenshot_requests_in_a_heartbeat_answer_are_taken_and_uploaded(
        rig: Rig, tmp_path: Any) -> None:
    browsers = rig.launcher.browsers = FakeBrowsers(str(tmp_path / "tmp"))
    job, key, done, _ = run_browse(rig)
    channel = browsers.channels[job] = ShotChannel()
    beat = Heartbeat(rig.clock, rig.client, rig.runtime, "w1", 1, ["browser"])
    for req, full in ((7, True), (8, False), (9, False)):
        rig.state.shot_requests.setdefault(key, []).append({"req": req, "full_page": full})
    rig.state.shot_requests["other/1"] = [{"req": 1, "full_page": False}]
    assert rig.settle(beat.beat()) is True
    assert [(p, f) for p, f, _ in channel.asked] == [
        (os.path.join(str(tmp_path / "tmp"), job, "shots", f"{n}.png"), f)
        for n, f in ((1, True), (2, False), (3, False))], "asked as the daemon's route asks"
    png = b"\x89PNG\r\n\x1a\n" + b"IHDR" * 10
    channel.answer(0, png)
    channel.answer(1, None, "page crashed")
    rig.flush()
    assert rig.state.shots[f"{key} 7"] == {"data": png, "error": None}
    assert rig.state.shots[f"{key} 8"] == {"data": None, "error": "page crashed"}
    assert not os.path.exists(channel.asked[0][0]), "the worker's temp PNG is removed"
    rig.clock.advance(3.1)   # [browser] screenshot-timeout on the worker too
    rig.flush()
    assert "within 3 s" in rig.state.shots[f"{key} 9"]["error"]
    del browsers.channels[job]  # ended meanwhile
    rig.state.shot_requests[key] = [{"req": 10, "full_page": False}]
    assert rig.settle(beat.beat()) is True
    assert "no control channel" in rig.state.shots[f"{key} 10"]["error"]
    assert list(rig.state.shots) == [f"{key} {n}" for n in (7, 8, 9, 10)]
