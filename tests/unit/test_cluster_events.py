"""A remote browser job's live side (issue 14): its events stream and saved files come
home by offset, messages to it and live screenshot requests travel in heartbeat
answers, the screenshots come back through /cluster/screenshot. Daemon side, over the World of test_cluster.py."""
from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from tests.unit.fakes import result
from tests.unit.test_api import call_json
from tests.unit.test_cluster import World


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def send_file(world: World, key: str, name: str, offset: int, data: bytes
              ) -> tuple[int, dict]:
    return call_json(world.client, "post",
                     f"/cluster/file?key={key}&name={name}&offset={offset}", data=data,
                     headers={"Content-Type": ["application/octet-stream"]})


def event(n: int, kind: str, data: Any) -> bytes:
    return json.dumps({"id": n, "date": 1.0, "type": kind, "data": data}).encode() + b"\n"


def test_the_events_stream_lands_where_job_output_reads_it_and_the_end_waits_for_it(world):
    world.beat()
    job = world.job(kind="script")
    key = world.run(job)
    first = event(1, "progress", {"value": 0.5, "label": "half"})
    second = event(2, "post", {"n": 1})
    cut = len(first) + 5   # a line shipped in two pieces: read once it is whole
    assert world.output(key, "events", 0, (first + second)[:cut])[1]["offset"] == cut
    code, view = call_json(world.client, "get", f"/job-output.json?id={job.id}")
    assert code == 200 and [m["id"] for m in view["messages"]] == [1]
    assert view["progress"] == 0.5 and view["progress-label"] == "half"
    total = len(first + second)
    code, short = world.end(key, 0, offsets={"events": total})
    assert code == 409 and short["offsets"]["events"] == cut, "it lacks the rest"
    assert world.output(key, "events", cut, (first + second)[cut:])[1]["offset"] == total
    assert world.end(key, 0, offsets={"events": total})[0] == 200
    assert (world.log_dir / f"{job.id}.events").read_bytes() == first + second
    code, view = call_json(world.client, "get", f"/job-output.json?id={job.id}&from-message-id=1")
    assert [m["data"] for m in view["messages"]] == [{"n": 1}]


def test_saved_files_land_in_the_daemons_files_dir_by_offset_with_checked_names(world):
    world.beat()
    job = world.job(kind="script")
    key = world.run(job)
    assert send_file(world, key, "shot.png", 0, b"PNG1")[1]["offset"] == 4
    assert send_file(world, key, "shot.png", 2, b"G1")[1]["offset"] == 4, "lands on itself"
    code, gap = send_file(world, key, "shot.png", 9, b"x")
    assert code == 409 and gap["offset"] == 4
    assert send_file(world, key, "shot.png", 4, b"more")[1]["offset"] == 8
    assert (world.files_root / job.id / "shot.png").read_bytes() == b"PNG1more"
    for bad in (".hidden", "a%2Fb", ""):
        code, body = send_file(world, key, bad, 0, b"x")
        assert code == 400 and "plain file name" in body["msg"], bad
    assert not (world.files_root / job.id / ".hidden").exists()
    assert world.end(key, 0)[0] == 200
    assert send_file(world, key, "late.txt", 0, b"x")[0] == 409, "not current: nothing"
    assert not (world.files_root / job.id / "late.txt").exists()


def test_a_message_waits_for_the_next_heartbeat_of_the_worker_that_runs_the_job(world):
    world.beat()
    job = world.job(kind="script")
    code, body = call_json(world.client, "post", "/job-message.json",
                           data=f"id={job.id}&data=%7B%22a%22%3A1%7D".encode(),
                           headers={"Content-Type": ["application/x-www-form-urlencoded"]})
    assert code == 404, "not claimed by any worker yet: nowhere to send it"
    key = world.run(job)
    for n in (1, 2):
        code, body = call_json(world.client, "post", "/job-message.json",
                               data=f"id={job.id}&data=%7B%22a%22%3A{n}%7D".encode(),
                               headers={"Content-Type":
                                        ["application/x-www-form-urlencoded"]})
        assert code == 200 and body["identifier"] == job.id
    assert world.beat("w2", attempts=(key,))["messages"] == {}, "another worker's beat"
    assert world.beat(attempts=(key,))["messages"] == {key: [{"a": 1}, {"a": 2}]}
    assert world.beat(attempts=(key,))["messages"] == {}, "handed out once"


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"rest"


def ask_shot(world: World, job_id: str, full_page: bool = False) -> Deferred:
    """A job-screenshot.png request still waiting for its answer: its Deferred."""
    d = world.client.get(f"http://localhost/job-screenshot.png?id={job_id}"
                         + ("&full-page=1" if full_page else ""))
    world.client.flush()
    return d


def answered(world: World, d: Deferred) -> tuple[int, Any, bytes]:
    """The code, content type and body of a request that has been answered."""
    world.client.flush()
    seen: list = []
    d.addBoth(seen.append)
    assert seen, "not answered yet"
    response = seen[0]
    body = result(response.content())
    return response.code, response.headers.getRawHeaders("content-type"), body


def send_shot(world: World, key: str, req: int, data: bytes = b"", error: str = ""
              ) -> tuple[int, dict]:
    query = f"key={key}&req={req}" + (f"&error={error}" if error else "")
    return call_json(world.client, "post", f"/cluster/screenshot?{query}", data=data,
                     headers={"Content-Type": ["image/png"]})


def test_a_live_screenshot_of_a_remote_job_is_relayed_through_its_workers_heartbeat(world):
    world.beat()
    job = world.job(kind="script")
    code, body = call_json(world.client, "get", f"/job-screenshot.png?id={job.id}")
    assert code == 404, "not claimed by any worker yet: nobody to ask"
    key = world.run(job)
    d = ask_shot(world, job.id, full_page=True)
    assert world.beat("w2", attempts=(key,))["screenshots"] == {}, "another worker's beat"
    [asked] = world.beat(attempts=(key,))["screenshots"][key]
    assert asked["full_page"] is True and isinstance(asked["req"], int)
    assert world.beat(attempts=(key,))["screenshots"] == {}, "handed out once"
    assert send_shot(world, key, asked["req"], PNG)[0] == 200
    code, kind, data = answered(world, d)
    assert (code, kind, data) == (200, ["image/png"], PNG)
    code, body = send_shot(world, key, asked["req"], PNG)
    assert code == 409 and "no screenshot request" in body["msg"], "answered once"


def test_a_remote_screenshot_fails_times_out_and_ends_as_a_local_one_does(world):
    world.beat()
    job = world.job(kind="script")
    key = world.run(job)
    d = ask_shot(world, job.id)
    [asked] = world.beat(attempts=(key,))["screenshots"][key]
    assert asked["full_page"] is False
    assert send_shot(world, key, asked["req"], error="page%20closed")[0] == 200
    code, _, data = answered(world, d)
    assert code == 503 and json.loads(data)["msg"] == "screenshot failed: page closed"
    d = ask_shot(world, job.id)
    [asked] = world.beat(attempts=(key,))["screenshots"][key]
    assert send_shot(world, key, asked["req"], b"GIF89a")[0] == 200
    code, _, data = answered(world, d)
    assert code == 503 and "not a PNG" in json.loads(data)["msg"]
    d = ask_shot(world, job.id)
    world.clock.advance(14.9)
    world.client.flush()
    seen: list = []
    d.addBoth(lambda r: (seen.append(r), r)[1])
    assert not seen, "waits up to screenshot-timeout"
    world.clock.advance(0.2)
    code, _, data = answered(world, d)
    assert code == 503 and "within 15 s (screenshot-timeout)" in json.loads(data)["msg"]
    assert world.cluster.shots.pending == {}, "a request nobody waits for is forgotten"
    assert world.beat(attempts=(key,))["screenshots"] == {}
    waits = [ask_shot(world, job.id) for _ in range(4)]
    code, _, data = answered(world, ask_shot(world, job.id))
    assert code == 429 and "4 screenshot requests waiting" in json.loads(data)["msg"]
    assert world.end(key, 0)[0] == 200
    for d in waits:
        code, _, data = answered(world, d)
        assert code == 404 and "ended before its screenshot" in json.loads(data)["msg"]
    assert send_shot(world, key, 1, PNG)[0] == 409, "the attempt is not current"


def test_screenshot_uploads_check_their_input(world, monkeypatch):
    monkeypatch.setattr("crawld.http.routes_cluster.MAX_SHOT", 8)
    world.beat()
    job = world.job(kind="script")
    key = world.run(job)
    d = ask_shot(world, job.id)
    [asked] = world.beat(attempts=(key,))["screenshots"][key]
    code, body = call_json(world.client, "post", f"/cluster/screenshot?key={key}",
                           data=PNG)
    assert code == 400 and "'req'" in body["msg"]
    code, body = send_shot(world, key, asked["req"], PNG)
    assert code == 413 and "at most 8 bytes" in body["msg"]
    code, body = send_shot(world, "no key", asked["req"], PNG)
    assert code == 400
    assert world.cluster.shots.pending, "still waiting after bad uploads"
    assert send_shot(world, key, asked["req"], PNG[:8])[0] == 200
    assert answered(world, d)[0] == 200


def test_job_posts_of_a_remote_job_come_from_its_events_each_once(world):
    world.beat()
    job = world.job(kind="script")
    key = world.run(job)
    lines = event(1, "progress", {"value": 0.1}) + event(2, "post", {"n": 1})
    world.output(key, "events", 0, lines)

    def posts() -> list:
        code, body = call_json(world.client, "get", f"/job-posts.json?id={job.id}")
        assert code == 200, body
        return [p["data"] for p in body["posts"]]
    assert posts() == [{"n": 1}]
    assert posts() == [], "handed out once"
    more = event(3, "post", {"n": 2}) + event(4, "post", {"n": 3})
    world.output(key, "events", len(lines), more)
    assert world.end(key, 0, offsets={"events": len(lines + more)})[0] == 200
    assert posts() == [{"n": 2}, {"n": 3}], "also after the job ended"
    assert posts() == []


def test_a_file_over_the_limit_and_messages_over_the_queue_are_refused(world, monkeypatch):
    monkeypatch.setattr("crawld.cluster.MAX_FILE", 8)
    monkeypatch.setattr("crawld.cluster.MAX_WAITING", 2)
    world.beat()
    job = world.job(kind="script")
    key = world.run(job)
    assert send_file(world, key, "big.bin", 0, b"12345678")[0] == 200
    code, body = send_file(world, key, "big.bin", 8, b"9")
    assert code == 413 and "at most 8 bytes" in body["msg"]
    assert (world.files_root / job.id / "big.bin").read_bytes() == b"12345678"

    def message(n: int) -> tuple[int, dict]:
        return call_json(world.client, "post", "/job-message.json",
                         data=f"id={job.id}&data={n}".encode(),
                         headers={"Content-Type": ["application/x-www-form-urlencoded"]})
    assert [message(n)[0] for n in (1, 2)] == [200, 200]
    code, body = message(3)
    assert code == 409 and "2 messages waiting" in body["msg"]
    assert world.beat(attempts=(key,))["messages"] == {key: [1, 2]}, "nothing lost"
    assert message(4)[0] == 200
