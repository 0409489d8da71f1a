"""Network namespaces for the cluster tests: a worker that sees only the daemon and Redis.

Each :class:`Namespace` is an ``ip netns`` of its own joined to the root namespace by one
veth pair carrying a /30: the root (host) side gets ``.1``, the namespace side ``.2``.
Inside there is a loopback of its own and one route, to that /30: the daemon and Redis
listen on the host side address and are reachable; the host's 127.0.0.1, its other
addresses and the other namespaces are not (no default route, no forwarding path).

Names carry the test run's pid (``crawld-<pid>-<n>``, veths ``cv<pid>x<n>h``/``n``), so
two runs on one machine never collide, and namespaces a crashed run left behind (its pid
gone) are removed by the next one (:func:`sweep_stale`). :meth:`Namespace.close` kills
what still runs inside (by pid, from ``ip netns pids``), then deletes the namespace and
the veth; it is safe to call twice and after a half-made :meth:`Namespace.create`.
"""
from __future__ import annotations

import ipaddress
import itertools
import os
import random
import re
import signal
import subprocess
from typing import Any, Optional, Sequence

from tests.conftest import wait_for

PREFIX = "crawld-"
POOL = ipaddress.ip_network("10.237.0.0/16")  # where the /30s are picked from
_sequence = itertools.count(1)
_usable: Optional[str] = None  # cached answer of unavailable(): "" = usable


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip ARGS`` (iproute2) and return the finished process."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def unavailable() -> str:
    """Why namespaces cannot be used here ("" when they can): not root, no ``ip``, or
    the kernel/container refuses ``ip netns add`` or a veth pair. Probed once per run."""
    global _usable
    if _usable is not None:
        return _usable
    if os.geteuid() != 0:
        _usable = "not running as root"
    else:
        probe = Namespace()
        try:
            probe.create()
            _usable = ""
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            _usable = f"ip netns does not work here: {exc}"
        finally:
            probe.close()
    return _usable


def sweep_stale() -> list[str]:
    """Delete the namespaces (and their host side veths) of earlier runs whose pid is
    gone; returns their names. Never touches a live run's namespaces."""
    listed = ip("netns", "list", check=False).stdout
    removed = []
    for name in re.findall(rf"^({PREFIX}(\d+)-\d+)", listed, re.M):
        full, pid = name
        if not os.path.exists(f"/proc/{pid}"):
            Namespace(full).close()
            removed.append(full)
    return removed


def _taken_networks() -> list[Any]:
    """The IPv4 networks of every address and route of the root namespace."""
    found = []
    for line in (ip("-o", "-4", "addr", "show").stdout + "\n"
                 + ip("-4", "route", "show", "table", "all").stdout).splitlines():
        for token in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", line):
            try:
                found.append(ipaddress.ip_network(token, strict=False))
            except ValueError:
                continue
    return found


def _free_subnet() -> Any:
    """A /30 of POOL that no address or route of the host overlaps."""
    taken = _taken_networks()
    subnets = POOL.num_addresses // 4
    for _ in range(200):
        candidate = ipaddress.ip_network(
            (int(POOL.network_address) + 4 * random.randrange(subnets), 30))
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise RuntimeError(f"no free /30 in {POOL}")


class Namespace:
    """One network namespace with a veth pair to the root namespace (see module doc)."""

    def __init__(self, name: Optional[str] = None) -> None:
        n = next(_sequence)
        self.name = name or f"{PREFIX}{os.getpid()}-{n}"
        tag = self.name[len(PREFIX):].replace("-", "x")
        self.host_if, self.ns_if = f"cv{tag}h"[:15], f"cv{tag}n"[:15]
        self.host_ip = ""  # the root namespace's side: what servers listen on
        self.ns_ip = ""    # the namespace's own address
        self.subnet = ""   # the /30 of the two, e.g. "10.237.4.8/30"
        self.created = False

    def create(self) -> "Namespace":
        """Make the namespace, the veth pair and the /30; bring the links up."""
        subnet = _free_subnet()
        host, inner = list(subnet.hosts())
        self.host_ip, self.ns_ip, self.subnet = str(host), str(inner), str(subnet)
        self.created = True  # from here on close() has something to undo
        ip("netns", "add", self.name)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
           "netns", self.name)
        ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        ip("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        ip("-n", self.name, "link", "set", self.ns_if, "up")
        ip("-n", self.name, "link", "set", "lo", "up")
        # the host side needs a moment to leave "tentative"/NO-CARRIER: wait until the
        # namespace's side sees a working link (state UP)
        wait_for(lambda: "state UP" in ip("-n", self.name, "link", "show", self.ns_if).stdout
                 or "LOWER_UP" in ip("-n", self.name, "link", "show", self.ns_if).stdout,
                 10, what=f"veth {self.ns_if} up")
        return self

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the namespace to its end."""
        return subprocess.run(self.argv(argv), capture_output=True, text=True,
                              timeout=timeout)

    def pids(self) -> list[int]:
        """The pids of every process in the namespace."""
        out = ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def inode(self) -> int:
        """The namespace's inode: what ``/proc/PID/ns/net`` links to for its processes."""
        return os.stat(f"/run/netns/{self.name}").st_ino

    def close(self) -> None:
        """Kill what runs inside, delete the namespace and the host side veth."""
        if self.name in ip("netns", "list", check=False).stdout.split():
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_for(lambda: not self.pids(), 10, what=f"{self.name} to be empty")
            ip("netns", "del", self.name, check=False)
        if ip("link", "show", self.host_if, check=False).returncode == 0:
            ip("link", "del", self.host_if, check=False)
        self.created = False


def net_namespace_of(pid: int) -> int:
    """The inode of the network namespace process ``pid`` runs in."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino
