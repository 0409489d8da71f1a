"""Webhooks with a real daemon, real Scrapy jobs and real HTTP receivers on 127.0.0.1
that check the signature and record what they get."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from tests.conftest import wait_for
from tests.integration.conftest import DaemonProcess

SECRET = "webhook-secret-5f1e"
TOKEN = "TOKEN-in-the-url-77"


@dataclass
class Got:
    """One POST a receiver got, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    signed: bool

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["X-Crawld-Delivery"]


class Receiver:
    """A webhook receiver: checks X-Crawld-Signature (403 when wrong), records each POST
    and answers with the next of ``codes``, then 200."""

    def __init__(self, port: int = 0, codes: tuple[int, ...] = (),
                 secret: Optional[str] = SECRET) -> None:
        self.got: list[Got] = []
        self.codes = list(codes)
        self.secret = secret
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = receiver.verify(self.headers.get("X-Crawld-Signature"), body)
                with receiver.lock:
                    code = (receiver.codes.pop(0) if receiver.codes else 200) if signed else 403
                    receiver.got.append(Got(self.path, dict(self.headers), body, code, signed))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def verify(self, header: Optional[str], body: bytes) -> bool:
        if self.secret is None:
            return header is None
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return header is not None and hmac.compare_digest(header, expected)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Got]:
        with self.lock:
            return [g for g in self.got if 200 <= g.answered < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def hooks_config(url: str, **options: Any) -> str:
    lines = [f"url = {url}", f"secret = {SECRET}", "backoff = 0.3", "backoff-max = 1"]
    lines += [f"{k.replace('_', '-')} = {v}" for k, v in options.items()]
    return "[webhooks]\n" + "\n".join(lines) + "\n"


def deliveries(d: DaemonProcess, job_id: str) -> list[dict]:
    return d.ok(d.get("/webhook-deliveries.json", id=job_id))["deliveries"]


def settled(d: DaemonProcess, job_id: str, count: int = 1) -> list[dict]:
    """The job's deliveries once ``count`` of them exist and none is pending."""
    def check() -> Optional[list[dict]]:
        found = deliveries(d, job_id)
        return found if len(found) == count and all(
            x["state"] != "pending" for x in found) else None
    return wait_for(check, 60, what=f"the deliveries of {job_id} to settle")


def test_a_real_job_is_posted_started_and_ended_signed(make_daemon):
    receiver = Receiver()
    try:
        d = make_daemon(hooks_config(f"{receiver.url}?token={TOKEN}", events="started, ended"))
        d.start()
        d.push()
        job_id = d.schedule("ok")
        ended = d.wait_status(job_id, "SUCCESSFUL")
        got = wait_for(lambda: len(receiver.delivered()) == 2 and receiver.delivered(), 60,
                       what="two deliveries")
        assert all(g.signed for g in receiver.got) and len(receiver.got) == 2
        by_event = {g.headers["X-Crawld-Event"]: g for g in got}
        assert set(by_event) == {"started", "ended"}
        assert by_event["started"].json["status"] == "RUNNING"
        final = by_event["ended"].json
        assert final["status"] == "SUCCESSFUL" and final["event"] == "ended"
        assert final["delivery"] == by_event["ended"].delivery
        assert {k: final[k] for k in ended} == ended  # list-jobs' job object, as it ended
        for g in got:
            assert g.path == f"/hook?token={TOKEN}"
            assert g.headers["Content-Type"] == "application/json"
            assert g.headers["X-Crawld-Job"] == job_id and g.headers["X-Crawld-Attempt"] == "1"
            assert g.headers["User-Agent"].startswith("crawld/")
        listed = settled(d, job_id, 2)
        assert {x["event"]: x["state"] for x in listed} == {"started": "delivered",
                                                             "ended": "delivered"}
        assert all(x["url"] == f"http://127.0.0.1:{receiver.port}/…" for x in listed)
        assert all([a["code"] for a in x["attempts"]] == [200] for x in listed)
        assert TOKEN not in d.log() and SECRET not in d.log()
    finally:
        receiver.close()


def test_a_receiver_that_fails_at_first_gets_retries_of_the_same_delivery(make_daemon):
    receiver = Receiver(codes=(500, 503))
    try:
        d = make_daemon(hooks_config(receiver.url))
        d.start()
        d.push()
        job_id = d.schedule("fail")
        d.wait_status(job_id, "FAILED")
        [listed] = settled(d, job_id)
        assert listed["state"] == "delivered"
        assert [a["code"] for a in listed["attempts"]] == [500, 503, 200]
        assert [a["number"] for a in listed["attempts"]] == [1, 2, 3]
        got = receiver.got
        assert [g.answered for g in got] == [500, 503, 200]
        assert len({g.body for g in got}) == 1, "every attempt sends the same bytes"
        assert len({g.headers["X-Crawld-Signature"] for g in got}) == 1
        assert {g.delivery for g in got} == {listed["delivery"]}
        assert [g.headers["X-Crawld-Attempt"] for g in got] == ["1", "2", "3"]
        assert got[0].json["status"] == "FAILED" and got[0].json["exit-code"] == 3
    finally:
        receiver.close()


def test_a_restart_mid_retry_delivers_exactly_once_with_the_same_body(make_daemon):
    receiver = Receiver(codes=(500,))
    port = receiver.port
    d = make_daemon(hooks_config(receiver.url))
    try:
        d.start()
        d.push()
        job_id = d.schedule("ok")
        d.wait_status(job_id, "SUCCESSFUL")
        first = wait_for(lambda: receiver.got, 60, what="the first attempt")[0]
        assert first.answered == 500
        receiver.close()  # the receiver is down: attempts are refused
        wait_for(lambda: any(a["error"] == "connection refused"
                             for a in deliveries(d, job_id)[0]["attempts"]), 60,
                 what="a refused retry")
        assert d.stop() == 0
        d.start()
        tried = len(deliveries(d, job_id)[0]["attempts"])
        wait_for(lambda: len(deliveries(d, job_id)[0]["attempts"]) > tried, 60,
                 what="a retry after the restart")
        assert deliveries(d, job_id)[0]["state"] == "pending"
        receiver = Receiver(port=port)  # up again, on the same address
        [listed] = settled(d, job_id)
        assert listed["state"] == "delivered" and listed["attempts"][-1]["code"] == 200
        [again] = receiver.got
        assert again.body == first.body
        assert again.headers["X-Crawld-Signature"] == first.headers["X-Crawld-Signature"]
        assert again.delivery == first.delivery == listed["delivery"]
        # exactly once: after another restart a new job's delivery arrives, and nothing else
        assert d.stop() == 0
        d.start()
        later = d.schedule("ok")
        wait_for(lambda: len(receiver.got) >= 2, 60, what="the next job's delivery")
        assert [g.json["identifier"] for g in receiver.got] == [job_id, later]
        assert "webhooks: 1 pending deliveries to send" in d.log()
    finally:
        receiver.close()


def test_a_job_webhook_and_a_schedule_whose_runs_inherit_it(make_daemon):
    shared, own = Receiver(), Receiver()
    try:
        d = make_daemon(hooks_config(shared.url))
        d.start()
        d.push()
        bad = d.post("/schedule-job.json", project="demo", spider="ok", when="now",
                     webhook="ftp://127.0.0.1/x")
        assert bad.status_code == 400 and "webhook" in bad.json()["msg"]
        job_id = d.schedule("ok", webhook=f"{own.url}?token={TOKEN}")
        assert d.job(job_id)["webhook"] == f"http://127.0.0.1:{own.port}/…"
        d.wait_status(job_id, "SUCCESSFUL")
        assert len(settled(d, job_id, 2)) == 2
        assert [g.json["identifier"] for g in shared.delivered()] == [job_id]
        [mine] = own.delivered()
        assert mine.json["identifier"] == job_id and mine.path == f"/hook?token={TOKEN}"
        template = d.schedule("ok", when="every 1 hours", webhook=own.url)
        run = d.ok(d.post("/run-job.json", id=template))["identifier"]
        d.wait_status(run, "SUCCESSFUL")
        wait_for(lambda: len(own.delivered()) == 2, 60, what="the run's delivery")
        inherited = own.delivered()[1].json
        assert inherited["identifier"] == run and inherited["parent"] == template
        assert all(g.signed for g in shared.got + own.got)
        assert TOKEN not in d.log()
    finally:
        shared.close()
        own.close()


def test_an_endpoint_that_never_answers_delays_neither_jobs_nor_the_api(make_daemon):
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections complete in the backlog; nothing ever answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        d = make_daemon(hooks_config(url, events="started, ended", timeout=120,
                                     concurrency=1))
        d.start()
        d.push()
        jobs = [d.schedule("ok") for _ in range(3)]
        ended = [d.wait_status(j, "SUCCESSFUL", timeout=60) for j in jobs]
        assert all(e["duration"] < 30 for e in ended)
        began = time.monotonic()
        d.ok(d.get("/status.json"))
        d.ok(d.get("/list-jobs.json", status="COMPLETED"))
        assert time.monotonic() - began < 5
        # every delivery is still pending: the one attempt in flight hangs (concurrency 1)
        found = [x for j in jobs for x in deliveries(d, j)]
        assert len(found) == 6 and all(x["state"] == "pending" for x in found)
        assert all(x["attempts"] == [] for x in found)
        began = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - began < 20, "the hanging attempt is cut short at stop"
        d.start()
        cut = [a for j in jobs for x in deliveries(d, j) for a in x["attempts"]]
        assert [a["error"] for a in cut] == ["cut short: the daemon stopped"]
    finally:
        silent.close()
