"""The scrapyd listener's guards, as the native listener's: a request with a body is
decided on its headers (scrapyd's 401 before any body byte, nothing spooled), its
``/logs/`` downloads count against ``[web] max-streams`` with the native API's
streams, and ``schedule.json``'s settings meet the native API's refusals."""
from __future__ import annotations

import os
import socket

import psutil

from tests.conftest import wait_for
from tests.integration.conftest import read_answer
from tests.integration.scrapyd import scrapyd_daemon
from tests.integration.test_early_answers import GIB, MIB, bodies_not_read


def connect(url: str) -> socket.socket:
    host, port = url.split("://")[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def post_head(path: str, length: int, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}",
             "Content-Type: multipart/form-data; boundary=x", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_unauthenticated_gigabyte_eggs_get_scrapyds_401_before_their_body(tmp_path):
    spool = str(tmp_path / "spool")
    os.makedirs(spool)
    d = scrapyd_daemon(tmp_path, env={"TMPDIR": spool})
    try:
        rss_before = psutil.Process(d.proc.pid).memory_info().rss
        socks = [connect(d.scrapyd_url) for _ in range(5)]
        # no credentials: bodies under the limit (else the length alone is refused)
        # and over it; no body byte sent yet
        for sock, length in zip(socks[:4], (100 * MIB, 100 * MIB, GIB, GIB)):
            sock.sendall(post_head("/addversion.json", length))
        # wrong ones (a Basic password checked in a thread, the body still not read)
        socks[4].sendall(post_head("/addversion.json", GIB,
                                   "Authorization: Basic aGVsbG8xMjM0NTpub3Bl"))
        for sock in socks:
            answer = read_answer(sock, timeout=15)  # closed after the answer
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:200]
            assert b'WWW-Authenticate: Basic realm="Scrapyd"' in head
            assert b"Connection: close" in head
            assert body == b"Unauthorized"
        bodies_not_read(d, socks, spool, rss_before, "/addversion.json")
        # with credentials, a length over the limit is 413 on the headers, scrapyd-shaped
        sock = connect(d.scrapyd_url)
        sock.sendall(post_head("/addversion.json", GIB,
                               "Authorization: Basic aGVsbG8xMjM0NTo2Nzg5MHdvcmxk"))
        head, _, body = read_answer(sock, timeout=15).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert b'"status": "error", "message": "request body over the' in body
        assert b'"node_name": ' in body and body.endswith(b"}\n")
        sock.close()
        # and a request let in is served as before (its body read, authenticated once)
        assert d.sd_post("/schedule.json", project="nope", spider="s") == {
            "status": "error", "message": "project 'nope' not found",
            "node_name": d.sd_get("/daemonstatus.json")["node_name"]}
    finally:
        d.stop()


def test_log_downloads_count_against_max_streams_with_the_native_api(tmp_path):
    d = scrapyd_daemon(tmp_path, "[web]\nmax-streams = 1\n")
    try:
        d.push()
        job_id = d.sd_post("/schedule.json", project="demo", spider="ok")["jobid"]
        wait_for(lambda: d.sd_get("/status.json", job=job_id)["currstate"] == "finished",
                 60, what="the job to finish")
        # a log far bigger than the sockets' buffers: its download stays open while the
        # client does not read
        with open(os.path.join(d.data_dir, "logs", f"{job_id}.err"), "wb") as fh:
            fh.write(b"x" * (64 * MIB))
        url = f"{d.scrapyd_url}/logs/demo/ok/{job_id}.log"
        first = d.sd.get(url, stream=True, timeout=30)
        assert first.status_code == 200
        second = d.sd.get(url, timeout=30)
        assert second.status_code == 429
        assert second.json()["message"] == ("1 log and file streams are open, the most "
                                            "[web] max-streams allows; retry later")
        # one count for both listeners: the native get-log is refused too
        native = d.get(f"/get-log/data/{job_id}.out")
        assert native.status_code == 429 and "max-streams" in native.json()["msg"]
        first.close()
        wait_for(lambda: d.sd.get(url, stream=True, timeout=30).status_code == 200, 30,
                 interval=0.2, what="the stream slot to be free once the client left")
    finally:
        d.stop()
