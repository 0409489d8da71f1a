"""Clients that hold connections: header deadline, idle timeout, cap on streams."""
from __future__ import annotations

import socket
import time
from typing import Any

import requests

from tests.conftest import wait_for


def test_a_client_trickling_its_headers_is_cut_off(make_daemon: Any) -> None:
    d = make_daemon("[web]\nheader-timeout = 1.5\nidle-timeout = 20\n").start()
    d.push()
    host, port = d.url.split("://")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sent = time.monotonic()
    closed_after = None
    try:
        sock.sendall(b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(40):  # one byte every 0.2 s: the idle timeout never fires
            try:
                sock.sendall(b"X")
                sock.settimeout(0.2)
                if sock.recv(1024) == b"":
                    closed_after = time.monotonic() - sent
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_after = time.monotonic() - sent
                break
    finally:
        sock.close()
    assert closed_after is not None, "the server kept a trickling client for 8 s"
    assert closed_after < 5, closed_after
    # a well-behaved keep-alive client is not affected, across several requests
    session = requests.Session()
    for _ in range(3):
        assert session.get(d.url + "/status.json", timeout=10).status_code == 200
        time.sleep(0.6)  # together longer than the header deadline: re-armed per request
    assert "no complete request headers within 1.5 s" in d.log()


def test_streams_past_max_streams_get_429(make_daemon: Any) -> None:
    d = make_daemon("[web]\nmax-streams = 1\n").start()
    d.push()
    job_id = d.schedule("sleep")
    d.said(job_id)
    first = requests.get(f"{d.url}/get-log/data/{job_id}.out", stream=True, timeout=30)
    assert first.status_code == 200
    second = requests.get(f"{d.url}/get-log/data/{job_id}.out", timeout=30)
    assert second.status_code == 429 and "max-streams" in second.json()["msg"]
    first.close()
    wait_for(lambda: requests.get(f"{d.url}/get-log/data/{job_id}.err", stream=True,
                                  timeout=30).status_code == 200, 30, interval=0.2,
             what="the stream slot to be free again once the client left")
    d.ok(d.post("/cancel-job.json", id=job_id))
