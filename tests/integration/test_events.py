"""GET /events on a real daemon with real Scrapy jobs: a client sees each job go created,
started, ended; it disconnects and resumes with Last-Event-ID losing nothing; NDJSON; the
cap on streams; keep-alives past the idle timeout; the end of every stream at shutdown;
the reader role with authentication on."""
from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.conftest import DaemonProcess
from tests.integration.streams import Stream


def kinds_of(events: list[tuple[str, str, dict]], job_id: str) -> list[str]:
    """The kinds of one job's events, stats updates left out (a job may have any number)."""
    return [kind for _, kind, job in events if job.get("identifier") == job_id
            and kind != "stats"]


def ended(job_id: str) -> Any:
    return lambda s: any(kind == "ended" and job.get("identifier") == job_id
                         for _, kind, job in s.events())


def test_a_client_sees_jobs_from_created_to_ended_and_resumes_without_loss(daemon):
    daemon.push()
    stream = Stream(daemon.url, "/events?project=demo")
    assert stream.code == 200
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["cache-control"] == "no-store"
    ready = stream.until(lambda s: s.events(), what="the ready event")[0]
    assert ready[1] == "ready" and ready[2] == {"event": "ready", "id": ready[0]}
    first = daemon.schedule("ok")
    stream.until(ended(first), what=f"job {first} to end")
    events = stream.events()
    assert kinds_of(events, first) == ["created", "started", "ended"]
    job = [data for _, kind, data in events if kind == "ended"][0]
    assert (job["identifier"], job["status"], job["project"], job["spider"]) == (
        first, "SUCCESSFUL", "demo", "ok")
    assert job == daemon.job(first)  # the job object list-jobs.json shows
    boot, _, _ = ready[0].partition("-")
    numbers = [int(event_id.split("-")[1]) for event_id, _, _ in events]
    assert all(event_id.startswith(boot + "-") for event_id, _, _ in events)
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    last_id = events[-1][0]
    stream.close()

    # away: two more jobs run, one of another project (filtered out)
    second, failing = daemon.schedule("ok"), daemon.schedule("fail")
    daemon.push(name="other")
    other = daemon.schedule("ok", project="other")
    for job_id in (second, failing, other):
        daemon.wait_status(job_id, "SUCCESSFUL", "FAILED")

    back = Stream(daemon.url, "/events?project=demo", headers={"Last-Event-ID": last_id})
    back.until(lambda s: ended(failing)(s) and ended(second)(s), what="the missed events")
    replayed = back.events()
    assert replayed[0][:2] == (last_id, "ready")
    assert kinds_of(replayed, second) == ["created", "started", "ended"]
    assert kinds_of(replayed, failing) == ["created", "started", "ended"]
    assert kinds_of(replayed, other) == []
    assert {j["identifier"]: j["status"] for _, k, j in replayed if k == "ended"} == {
        second: "SUCCESSFUL", failing: "FAILED"}  # (they ran at once: either ends first)
    later = [int(event_id.split("-")[1]) for event_id, _, _ in replayed[1:]]
    assert min(later) > int(last_id.split("-")[1])  # nothing again, nothing skipped:
    assert replayed[1][1] == "created" and replayed[1][2]["identifier"] == second
    # and live again after the replay
    third = daemon.schedule("ok")
    back.until(ended(third), what="a live event after the replay")
    back.close()


def test_ndjson_and_an_id_filter(daemon):
    daemon.push()
    watched, unwatched = daemon.schedule("sleep"), daemon.schedule("ok")
    stream = Stream(daemon.url, f"/events?format=ndjson&id={watched}")
    assert stream.headers["content-type"] == "application/x-ndjson; charset=utf-8"
    daemon.wait_status(unwatched, "SUCCESSFUL")
    daemon.ok(daemon.post("/cancel-job.json", id=watched))
    lines = stream.until(lambda s: [o for o in s.ndjson() if o["event"] == "ended"]
                         and s.ndjson(), what="the watched job to end")
    assert lines[0]["event"] == "ready" and set(lines[0]) == {"id", "event"}
    assert {o["job"]["identifier"] for o in lines[1:] if "job" in o} == {watched}
    assert lines[-1]["event"] == "ended" and lines[-1]["job"]["status"] == "CANCELED"
    assert lines[-1]["id"] > lines[0]["id"] or len(lines[-1]["id"]) > len(lines[0]["id"])
    # a resume from that id in the query (clients that cannot set headers)
    again = Stream(daemon.url, f"/events?format=ndjson&last-event-id={lines[0]['id']}"
                               f"&id={watched}")
    replay = again.until(lambda s: len(s.ndjson()) >= len(lines) and s.ndjson())
    assert [o["id"] for o in replay] == [o["id"] for o in lines]
    for s in (stream, again):
        s.close()


def test_an_id_of_an_earlier_run_gets_a_reset(make_daemon):
    d = make_daemon()
    d.start()
    first = Stream(d.url, "/events")
    old_id = first.until(lambda s: s.events())[0][0]
    first.close()
    d.stop()
    d.start()
    stream = Stream(d.url, "/events", headers={"Last-Event-ID": old_id})
    event_id, kind, data = stream.until(lambda s: s.events())[0]
    assert kind == "reset" and event_id != old_id and "reload" in data["reason"]
    assert event_id.split("-")[0] != old_id.split("-")[0]
    stream.close()
    bad = Stream(d.url, "/events?last-event-id=nonsense")
    bad.to_end()
    assert bad.code == 400 and bad.json()["status"] == "error"


def test_past_max_streams_429_and_a_freed_slot_is_reused(make_daemon):
    d = make_daemon("[events]\nmax-streams = 2\n")
    d.start()
    open_ = [Stream(d.url, "/events"), Stream(d.url, "/events?format=ndjson")]
    for s in open_:
        s.until(lambda s: s.body, what="the first event")
    refused = Stream(d.url, "/events").to_end()
    assert refused.code == 429
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["status"] == "error" and "max-streams" in refused.json()["msg"]
    open_[0].close()  # the daemon sees the client go and frees its slot

    def another() -> Any:
        s = Stream(d.url, "/events")
        if s.code == 200:
            return s
        s.to_end()
        s.close()
        return None
    third = wait_for(another, 15, interval=0.2, what="a freed stream slot")
    third.close()
    open_[1].close()


def test_keep_alives_hold_a_quiet_stream_open_past_the_idle_timeout(make_daemon):
    d = make_daemon("[web]\nidle-timeout = 1\n[events]\nkeep-alive = 0.25\n")
    d.start()
    sse = Stream(d.url, "/events")
    nd = Stream(d.url, "/events?format=ndjson")
    # 8 keep-alives take 2 s: twice the idle timeout, and the stream is still open
    sse.until(lambda s: len([m for m in s.sse() if ":" in m]) >= 8, 30, what="keep-alives")
    nd.until(lambda s: len([o for o in s.ndjson() if o == {"event": "keep-alive"}]) >= 8, 30)
    assert not (sse.eof or sse.complete or nd.eof or nd.complete)
    for s in (sse, nd):
        s.close()


def test_the_daemon_stopping_ends_every_stream_cleanly(make_daemon):
    d = make_daemon()
    d.start()
    d.push()
    job_id = d.schedule("sleep")
    d.wait_status(job_id, "RUNNING")
    streams = [Stream(d.url, "/events"), Stream(d.url, "/events?format=ndjson")]
    for s in streams:
        s.until(lambda s: s.body)
    assert d.stop() == 0
    for s in streams:
        s.to_end(30)
        assert s.complete, "the chunked answer ended with its last chunk"
    # the job the shutdown ended was told before the streams closed
    # (RUNNING in list-jobs comes a moment before the launcher reports it started)
    assert kinds_of(streams[0].events(), job_id) in (["ended"], ["started", "ended"])
    assert streams[1].ndjson()[-1]["job"]["reason"] == "stopped by daemon shutdown"


def crawld_cli(data_dir: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "crawld", args[0], "--data-dir", data_dir,
                        *args[1:]], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


@pytest.mark.parametrize("path", ["/events", "/metrics"])
def test_readers_may_and_no_credentials_may_not(make_daemon, path):
    d = make_daemon()
    reader = crawld_cli(d.data_dir, "keys", "add", "--role", "reader").strip()
    d.start()
    refused = Stream(d.url, path).to_end()
    assert refused.code == 401 and refused.json()["status"] == "error"
    allowed = Stream(d.url, path, headers={"Authorization": f"Bearer {reader}"})
    assert allowed.code == 200
    allowed.until(lambda s: s.body, what="the answer's first bytes")
    allowed.close()
    wrong = Stream(d.url, path, headers={"Authorization": "Bearer nope"}).to_end()
    assert wrong.code == 401
