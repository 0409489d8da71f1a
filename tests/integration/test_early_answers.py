"""Issue 10, item 2: a request with a body is decided on its headers. Without valid
credentials, or with a Content-Length over the limit, the answer comes before the body
is read, and the connection closes: nothing is spooled, nothing held."""
from __future__ import annotations

import json
import os
import ssl
from typing import Any

import psutil
import requests
from requests.auth import HTTPBasicAuth, HTTPDigestAuth

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.conftest import raw_socket, read_answer
from tests.integration.test_auth import crawld_cli
from tests.integration.test_tls import make_cert

GIB = 1 << 30
MIB = 1 << 20


def head(path: str, length: int, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}",
             "Content-Type: application/x-www-form-urlencoded", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def split(answer: bytes) -> tuple[str, dict]:
    """The status line and headers (lower-case names) of a raw answer; its JSON body."""
    raw_head, _, body = answer.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers: dict = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0], {"headers": headers, "body": json.loads(body) if body else None}


def spool_files(pid: int, spool: str) -> list[str]:
    """The daemon's open files in the temporary directory (spooled bodies are unnamed
    there: /proc shows them as '<dir>/#123 (deleted)')."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(spool):
            found.append(target)
    return found


def pushed_until_refused(sock: Any, most: int) -> int:
    """Send body bytes until the connection refuses them (or ``most`` went out)."""
    sent = 0
    sock.settimeout(5)
    try:
        while sent < most:
            sent += sock.send(b"x" * MIB)
    except OSError:  # reset, broken pipe, or a send that blocks: nothing is read
        pass
    return sent


def test_unauthenticated_gigabyte_uploads_get_401_before_their_body_is_read(
        make_daemon: Any, tmp_path: Any) -> None:
    spool = str(tmp_path / "spool")
    os.makedirs(spool)
    d = make_daemon("[web]\nauth = required\n", env={"TMPDIR": spool})
    os.makedirs(d.data_dir, exist_ok=True)
    crawld_cli(d.data_dir, "keys", "add", "--role", "operator")
    d.start()
    daemon = psutil.Process(d.proc.pid)
    rss_before = daemon.memory_info().rss
    # five at once, as in the report (they grew /tmp by 449 MB): no body byte sent yet
    socks = [raw_socket(d) for _ in range(5)]
    for sock in socks:
        sock.sendall(head("/push-project.json", GIB))
    for sock in socks:
        answer = read_answer(sock, timeout=15)  # the server closes after its answer
        status, parts = split(answer)
        assert status == "HTTP/1.1 401 Unauthorized", answer[:200]
        assert parts["headers"]["connection"] == ["close"]
        assert any(c.startswith("Digest ") for c in parts["headers"]["www-authenticate"])
        assert parts["body"]["status"] == "error"
        assert parts["body"]["msg"].startswith("authentication required")
    bodies_not_read(d, socks, spool, rss_before, "/push-project.json")


def bodies_not_read(d: Any, socks: list, spool: str, rss_before: int, path: str) -> None:
    """The bodies that follow refused headers on ``socks`` are not read: what a client
    can push is what the sockets' buffers hold, not its gigabyte; nothing is spooled
    in ``spool`` nor held in memory; each refusal has its access line."""
    for sock in socks:
        assert pushed_until_refused(sock, 256 * MIB) < 64 * MIB
        sock.close()
    assert spool_files(d.proc.pid, spool) == [] and os.listdir(spool) == []
    assert psutil.Process(d.proc.pid).memory_info().rss - rss_before < 32 * MIB
    wait_for(lambda: d.log().count(f'"POST {path} HTTP/1.1" 401 ') >= len(socks), 15,
             what="an access line for each refused upload")


def test_a_key_and_a_length_over_the_limit_get_413_before_the_body(
        make_daemon: Any) -> None:
    d = make_daemon("[web]\nauth = required\n")
    os.makedirs(d.data_dir, exist_ok=True)
    key = crawld_cli(d.data_dir, "keys", "add", "--role", "operator").strip()
    d.start()
    sock = raw_socket(d)
    sock.sendall(head("/push-project.json", GIB, f"Authorization: Bearer {key}"))
    status, parts = split(read_answer(sock, timeout=15))
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    assert parts["body"]["msg"] == ("request body over the 157351936 byte limit "
                                    "(max-archive-size)")
    sock.close()
    # Expect: 100-continue is answered only once the request is let in
    refused = raw_socket(d)
    refused.sendall(head("/schedule-job.json", 10, "Expect: 100-continue"))
    answer = read_answer(refused, timeout=15)
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:80]
    assert b"100 Continue" not in answer
    allowed = raw_socket(d)
    form = b"project=nope&spider=ok&when=now"
    allowed.sendall(head("/schedule-job.json", len(form), "Expect: 100-continue",
                         f"X-Api-Key: {key}"))
    assert allowed.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    allowed.sendall(form)
    allowed.settimeout(15)
    answer = allowed.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ") or answer.startswith(b"HTTP/1.1 404 ")
    assert b"nope" in answer  # the body was read: its parameter is in the message


def test_passwords_are_checked_before_the_body_and_the_body_then_read(
        make_daemon: Any) -> None:
    d = make_daemon("[web]\nauth = required\n")
    os.makedirs(d.data_dir, exist_ok=True)
    crawld_cli(d.data_dir, "users", "add", "alice", "--role", "operator",
               "--password-stdin", stdin="s3cret-pass\n")
    d.start()
    wrong = raw_socket(d)
    wrong.sendall(head("/push-project.json", GIB, "Authorization: Basic YWxpY2U6bm9wZQ=="))
    answer = read_answer(wrong, timeout=15)  # scrypt in a thread, the body not read
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:80]
    assert pushed_until_refused(wrong, 256 * MIB) < 64 * MIB
    # the right password (checked in a thread while the connection waits, the body
    # that came with the headers kept), then Digest (its first request, without
    # credentials, gets the early 401 and the challenge; the retry is read whole)
    for auth in (HTTPBasicAuth("alice", "s3cret-pass"),
                 HTTPDigestAuth("alice", "s3cret-pass")):
        d.session = requests.Session()
        d.session.auth = auth
        d.push()  # a multipart body of a few KB, read whole once let in
        d.wait_status(d.schedule("ok"), "SUCCESSFUL")


def test_a_chunked_body_over_the_limit_gets_413_while_it_arrives(make_daemon: Any) -> None:
    d = make_daemon("max-archive-size = 10KB\n").start()  # bodies up to 96,256 bytes
    sock = raw_socket(d)
    sock.sendall(b"POST /push-project.json HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    sent = 0
    sock.settimeout(0.5)
    answer = b""
    try:
        while sent < 64 * MIB and not answer:
            sock.sendall(b"4000\r\n" + b"z" * 0x4000 + b"\r\n")
            sent += 0x4000
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
    except OSError:
        pass
    answer += read_answer(sock, timeout=10)
    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer[:80]
    assert sent < 4 * MIB, "answered as the limit passed, not at the body's end"


def test_over_tls_too(make_daemon: Any, tmp_path: Any) -> None:
    cert, key = make_cert(tmp_path, "tls", 1)
    d = make_daemon(f"[web]\nauth = required\nhttps = on\ncert = {cert}\nkey = {key}\n")
    os.makedirs(d.data_dir, exist_ok=True)
    crawld_cli(d.data_dir, "users", "add", "alice", "--role", "operator",
               "--password-stdin", stdin="s3cret-pass\n")
    d.start()
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with context.wrap_socket(raw_socket(d)) as tls:
        tls.sendall(head("/push-project.json", GIB))
        answer = read_answer(tls, timeout=15)
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:80]
    # the connection paused while a password is checked, over TLS
    pushed = requests.post(d.url + "/push-project.json", verify=cert, timeout=120,
                           auth=HTTPBasicAuth("alice", "s3cret-pass"),
                           files={"archive": ("p.zip", project.build("demo"))})
    assert pushed.status_code == 200 and pushed.json()["status"] == "ok", pushed.text
