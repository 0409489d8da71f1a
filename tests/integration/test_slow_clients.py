"""Clients that hold connections: header and body deadlines, idle timeout, caps on
streams and connections, the open files limit at start-up."""
from __future__ import annotations

import os
import select
import socket
import time
from typing import Any

import pytest
import requests

from tests.conftest import wait_for
from tests.integration.conftest import raw_socket, read_answer
from tests.integration.test_early_answers import spool_files


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


# ------------------------------------------------------------ issue 10, item 1
POST_HEAD = (b"POST /push-project.json HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Type: application/x-www-form-urlencoded\r\n"
             b"Content-Length: 1000000\r\n\r\n")


def test_a_client_trickling_its_body_gets_408_and_is_closed(make_daemon: Any) -> None:
    d = make_daemon("[web]\nbody-timeout = 1.5\nbody-min-rate = 1KB\nidle-timeout = 20\n")
    d.start()
    sock = raw_socket(d)
    sock.sendall(POST_HEAD)
    sent = time.monotonic()
    answer = b""
    for _ in range(100):  # a byte every 0.1 s: the idle timeout never fires
        try:
            sock.sendall(b"x")
        except OSError:
            break
        answer += read_answer(sock, timeout=0.1)
        if answer:
            break
    answer += read_answer(sock, timeout=5)
    took = time.monotonic() - sent
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80]
    assert b"came too slowly" in answer and took < 5, took
    assert "its request body came too slowly" in d.log()
    d.push()  # a body at an honest rate is not affected


def poll(socks: list[socket.socket], got: dict[int, bytes]) -> None:
    """Read what is waiting on any of ``socks`` into ``got`` (by index); a closed
    connection is marked by a trailing b"<EOF>"."""
    readable, _, _ = select.select(socks, [], [], 0.2)
    for sock in readable:
        i = socks.index(sock)
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        got[i] = got.get(i, b"") + (data or b"<EOF>")


def test_one_client_holds_at_most_its_cap_and_the_api_keeps_answering(
        make_daemon: Any, tmp_path: Any) -> None:
    # the report: 500 slow uploads from one client; under LimitNOFILE=400, ~190 of them
    # made the API stop answering (Too many open files)
    spool = str(tmp_path / "spool")
    os.makedirs(spool)
    d = make_daemon("job-slots = 2\n[web]\nmax-connections = 120\nbody-timeout = 4\n",
                    env={"TMPDIR": spool}, nofile=400)
    d.start()
    socks = []
    for _ in range(150):  # each announces 1 MB (a spooled file once let in), sends 1 byte
        sock = raw_socket(d, source="127.0.0.2")
        sock.sendall(POST_HEAD + b"x")
        socks.append(sock)
    got: dict[int, bytes] = {}
    wait_for(lambda: poll(socks, got) or len(got) >= 150 - 32, 30,
             what="the connections past the per-client cap to be answered")
    refused = [i for i, answer in got.items() if answer.startswith(b"HTTP/1.1 503 ")]
    assert len(refused) == len(got) == 150 - 32, {a[:40] for a in got.values()}
    assert all(got[i].endswith(b"<EOF>") or b"max-connections-per-client" in got[i]
               for i in refused)
    # the 32 held, with their spooled files: everyone else is served
    assert len(spool_files(d.proc.pid, spool)) == 32
    for _ in range(5):
        assert requests.get(d.url + "/status.json", timeout=10).status_code == 200
    # then each held upload gets its 408 when its time is up
    wait_for(lambda: poll(socks, got) or len(got) == 150, 30,
             what="the held uploads to be cut off by the body deadline")
    held = [got[i] for i in range(150) if i not in refused]
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in held), {a[:40] for a in held}
    for sock in socks:
        sock.close()
    wait_for(lambda: spool_files(d.proc.pid, spool) == [], 10,
             what="the spooled bodies of the cut uploads to be closed")
    again = raw_socket(d, source="127.0.0.2")  # the client's slots are free again
    again.sendall(b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert read_answer(again).startswith(b"HTTP/1.1 200 OK")
    assert "Too many open files" not in d.log()
    assert "max-connections-per-client" in d.log()  # refusals are logged (once a minute)


def test_connections_past_the_total_cap_get_503(make_daemon: Any) -> None:
    d = make_daemon("[web]\nmax-connections = 4\nmax-connections-per-client = 2\n").start()
    held = [raw_socket(d, source=source) for source in ("127.0.0.2", "127.0.0.2",
                                                        "127.0.0.3", "127.0.0.3")]
    extra = raw_socket(d, source="127.0.0.4")  # accepted after the 4 before it
    answer = read_answer(extra)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:80]
    assert b"Retry-After: 1" in answer and b"[web] max-connections allows" in answer
    held[0].close()

    def served() -> bool:
        try:
            return requests.get(d.url + "/status.json", timeout=10).status_code == 200
        except requests.ConnectionError:  # refused before the request was sent
            return False
    wait_for(served, 10, what="a closed connection to free its place")


def test_start_up_refuses_when_the_open_files_limit_cannot_hold_the_caps(
        make_daemon: Any) -> None:
    d = make_daemon("job-slots = 2\n", nofile=300)  # the defaults need about 600
    with pytest.raises(AssertionError, match="crawld exited 2"):
        d.start()
    log = d.log()
    assert "too few file descriptors" in log and "lower [web] max-connections (at most" in log
    assert "the open files limit (RLIMIT_NOFILE) is 300 and its hard limit 300" in log
