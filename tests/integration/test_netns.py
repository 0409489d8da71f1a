"""The cluster tests' network namespaces, shown with plain processes (no crawld).

A process in a worker's namespace reaches a server listening on the namespace's host
side address, and nothing else: not the host's 127.0.0.1, not another namespace's host
side address, not the host's other addresses. Names and links are gone afterwards, also
when the test fails half-way.
"""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from typing import Any, Iterator

import pytest

from tests.conftest import wait_for
from tests.integration import broker, netns

pytestmark = pytest.mark.skipif(bool(netns.unavailable()),
                                reason=f"network namespaces: {netns.unavailable()}")


class Served:
    """A python http.server in the root namespace on ``host`` (a free port), in a thread."""

    def __init__(self, host: str, body: bytes) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def curl(space: netns.Namespace, url: str) -> subprocess.CompletedProcess:
    """curl ``url`` from inside ``space`` (3 s connect timeout; exit code 0 on success)."""
    return space.run(["curl", "-sS", "--noproxy", "*", "--connect-timeout", "3",
                      "--max-time", "10", url], timeout=30)


@pytest.fixture
def spaces() -> Iterator[list[netns.Namespace]]:
    made = [netns.Namespace(), netns.Namespace()]
    try:
        for space in made:
            space.create()
        yield made
    finally:
        for space in made:
            space.close()


def host_addresses() -> list[str]:
    """The root namespace's IPv4 addresses beyond loopback (eth0 and the like)."""
    out = netns.ip("-o", "-4", "addr", "show").stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        address = fields[3].split("/")[0]
        if not address.startswith("127.") and not fields[1].startswith("cv"):
            found.append(address)
    return found


def test_a_namespace_reaches_its_host_side_address_and_nothing_else(spaces):
    one, other = spaces
    assert one.host_ip != other.host_ip
    mine = Served(one.host_ip, b"host side of one")
    theirs = Served(other.host_ip, b"host side of the other")
    loopback = Served("127.0.0.1", b"host loopback")
    try:
        # reachable: the server on this namespace's host side address
        reached = curl(one, mine.url)
        assert reached.returncode == 0, reached.stderr
        assert reached.stdout == "host side of one"
        assert curl(other, theirs.url).stdout == "host side of the other"
        # the same port on the namespace's own 127.0.0.1 is its own loopback: refused
        inner = curl(one, loopback.url)
        assert inner.returncode != 0 and "host loopback" not in inner.stdout, inner
        assert loopback.url.startswith("http://127.0.0.1:")
        # the host's 127.0.0.1 is reachable from the host itself (the server is real)
        assert subprocess.run(["curl", "-sS", "--noproxy", "*", loopback.url],
                              capture_output=True, text=True, timeout=30
                              ).stdout == "host loopback"
        # the other namespace's host side: no route
        crossed = curl(one, theirs.url)
        assert crossed.returncode != 0 and crossed.stdout == "", crossed
        # and any other address of the host
        for address in host_addresses():
            probe = Served(address, b"host address")
            try:
                assert curl(one, probe.url).returncode != 0, address
            finally:
                probe.close()
        # what the namespace holds: lo and its veth end, one route (its /30)
        links = one.run(["ip", "-o", "link", "show"]).stdout
        assert [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()] \
            == ["lo", one.ns_if]
        routes = one.run(["ip", "-4", "route", "show"]).stdout.strip().splitlines()
        assert len(routes) == 1 and routes[0].startswith(f"{one.subnet} "), routes
    finally:
        for server in (mine, theirs, loopback):
            server.close()


def test_a_process_started_inside_runs_in_the_namespace_with_the_same_pid(spaces):
    space = spaces[0]
    proc = subprocess.Popen(space.argv(["sleep", "60"]))
    try:
        wait_for(lambda: proc.pid in space.pids(), 10, what="sleep in the namespace")
        assert netns.net_namespace_of(proc.pid) == space.inode()
        assert netns.net_namespace_of(proc.pid) != netns.net_namespace_of(os.getpid())
    finally:
        proc.kill()
        proc.wait(10)


def test_close_kills_what_runs_inside_and_removes_everything_even_half_made():
    space = netns.Namespace().create()
    proc = subprocess.Popen(space.argv(["sleep", "60"]))
    wait_for(lambda: proc.pid in space.pids(), 10, what="sleep in the namespace")
    space.close()
    assert proc.wait(10) == -9, "killed by close()"
    assert space.name not in netns.ip("netns", "list").stdout.split()
    assert netns.ip("link", "show", space.host_if, check=False).returncode != 0
    space.close()  # twice: nothing left to do, no error
    # a namespace whose veth could not be made (the name is too long for a link)
    broken = netns.Namespace()
    broken.host_if = "x" * 20
    with pytest.raises(RuntimeError):
        broken.create()
    broken.close()
    assert broken.name not in netns.ip("netns", "list").stdout.split()


def test_namespaces_a_dead_run_left_are_swept_and_live_ones_kept():
    dead = subprocess.Popen(["true"])
    dead.wait(10)  # a pid that no longer runs
    stale = netns.Namespace(f"{netns.PREFIX}{dead.pid}-1")
    live = netns.Namespace()
    try:
        stale.create()
        live.create()
        swept = netns.sweep_stale()
        assert stale.name in swept and live.name not in swept
        listed = netns.ip("netns", "list").stdout.split()
        assert stale.name not in listed and live.name in listed
        assert netns.ip("link", "show", stale.host_if, check=False).returncode != 0
    finally:
        stale.close()
        live.close()


def test_a_worker_namespace_reaches_the_daemon_and_redis_on_their_host_side_addresses(
        make_daemon, tmp_path, spaces):
    """What a cluster worker needs, and that the harness gives it: the daemon (with auth,
    as beyond loopback it must) and redis-server on the host side address of the
    namespace at fixed ports, and Redis keeping its data across a restart (AOF)."""
    space = spaces[0]
    redis = broker.RedisServer(str(tmp_path / "redis"), ["127.0.0.1", space.host_ip]).start()
    try:
        inside = redis_cli(space, redis, "RPUSH", "crawld.test", "from-inside")
        assert inside.returncode == 0 and inside.stdout.strip() == "1", inside
        assert redis.stop() == 0
        redis.start()
        assert redis_cli(space, redis, "LRANGE", "crawld.test", "0", "-1").stdout.split() \
            == ["from-inside"], "the AOF kept it"
        other = redis_cli(spaces[1], redis, "PING")
        assert other.returncode != 0, "another namespace cannot reach this one's address"
    finally:
        redis.stop()
    port = broker.free_port()
    d = make_daemon("[web]\nauth = required\n")
    d.listen = [f"127.0.0.1:{port}", f"{space.host_ip}:{port}"]
    os.makedirs(d.data_dir, exist_ok=True)
    key = subprocess.run([sys.executable, "-m", "crawld", "keys", "--data-dir", d.data_dir,
                          "add", "--role", "operator", "--name", "t"], capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    d.start()
    assert d.url == f"http://127.0.0.1:{port}"
    url = f"http://{space.host_ip}:{port}/status.json"
    denied = curl(space, url)
    assert denied.returncode == 0 and '"status": "error"' in denied.stdout
    answer = space.run(["curl", "-sS", "--noproxy", "*", "-H", f"Authorization: Bearer {key}",
                        url])
    assert json.loads(answer.stdout)["status"] == "ok"
    wait_for(lambda: f'crawld.access: "{space.ns_ip}" - - ' in d.log(), 10,
             what="the daemon to log the namespace's address as the client's")
    d.stop()
    d.start()  # the same addresses again: a worker's URL outlives a daemon restart
    assert d.url == f"http://127.0.0.1:{port}"
    again = space.run(["curl", "-sS", "--noproxy", "*", "-H", f"Authorization: Bearer {key}",
                       url])
    assert json.loads(again.stdout)["status"] == "ok"


def redis_cli(space: netns.Namespace, redis: Any, *command: str) -> subprocess.CompletedProcess:
    """redis-cli from inside ``space`` against ``redis`` on the namespace's host side."""
    return space.run(["redis-cli", "-h", space.host_ip, "-p", str(redis.port), *command])
