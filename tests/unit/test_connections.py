"""Issue 10, item 1: the caps on connections (in total, per client) and the file
descriptors they need, checked against RLIMIT_NOFILE at start-up."""
from __future__ import annotations

import ipaddress
import resource

import pytest

from crawld.errors import ConfigError, TooManyConnections
from crawld.connections import (PER_CONNECTION, PER_JOB, RESERVE, ConnectionLimits,
                                     descriptors_needed, ensure_descriptors)


def test_one_client_gets_at_most_its_cap_and_others_are_not_affected():
    limits = ConnectionLimits(total=10, per_client=3)
    keys = [limits.admit("192.0.2.7") for _ in range(3)]
    with pytest.raises(TooManyConnections) as refused:
        limits.admit("192.0.2.7")
    assert refused.value.code == 503 and "max-connections-per-client" in refused.value.msg
    assert refused.value.response_headers() == {"Retry-After": ["1"]}
    assert limits.admit("192.0.2.8") == "192.0.2.8"
    limits.release(keys[0])
    assert limits.admit("192.0.2.7") == "192.0.2.7"  # a slot freed is a slot again
    assert limits.open == 4 and limits.by_client == {"192.0.2.7": 3, "192.0.2.8": 1}


def test_the_total_cap_holds_whoever_asks():
    limits = ConnectionLimits(total=4, per_client=3)
    for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):
        limits.admit(host)
    with pytest.raises(TooManyConnections) as refused:
        limits.admit("192.0.2.5")
    assert "[web] max-connections allows" in refused.value.msg
    assert limits.open == 4 and "192.0.2.5" not in limits.by_client


def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4():
    limits = ConnectionLimits(total=10, per_client=2)
    limits.admit("2001:db8:1:2::1")
    limits.admit("2001:db8:1:2::ffff")  # the same /64: one host rotating addresses
    with pytest.raises(TooManyConnections):
        limits.admit("2001:db8:1:2:abcd::9")
    assert limits.admit("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert limits.admit("::ffff:192.0.2.9") == "192.0.2.9"


def test_a_trusted_proxy_meets_only_the_total():
    proxy = (ipaddress.ip_network("127.0.0.1/32"),)
    limits = ConnectionLimits(total=5, per_client=1, trusted=proxy)
    assert [limits.admit("127.0.0.1") for _ in range(5)] == [""] * 5
    with pytest.raises(TooManyConnections):
        limits.admit("127.0.0.1")
    limits.release("")
    assert limits.open == 4 and limits.by_client == {}


def test_refusals_are_logged_at_most_once_a_minute_with_their_count(monkeypatch):
    lines = []
    from crawld import connections
    monkeypatch.setattr(connections.log, "warn", lambda fmt, **kw: lines.append(kw))
    now = [1000.0]
    limits = ConnectionLimits(total=1, per_client=1, clock=lambda: now[0])
    limits.admit("192.0.2.1")
    for _ in range(50):
        with pytest.raises(TooManyConnections):
            limits.admit("192.0.2.2")
    now[0] += 61
    with pytest.raises(TooManyConnections):
        limits.admit("192.0.2.2")
    assert [line["n"] for line in lines] == [1, 50]


def test_the_descriptors_needed_count_connections_jobs_and_what_is_open():
    assert descriptors_needed(20, 8, 256) == 20 + RESERVE + 8 * PER_JOB + 256 * PER_CONNECTION


class Limits:
    """RLIMIT_NOFILE as getrlimit/setrlimit see it."""

    def __init__(self, soft: int, hard: int) -> None:
        self.soft, self.hard = soft, hard
        self.set: list[tuple[int, int]] = []

    def get(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def put(self, which: int, values: tuple[int, int]) -> None:
        self.set.append(values)
        self.soft, self.hard = values


def test_a_limit_that_fits_is_left_alone():
    limits = Limits(1024, 4096)
    assert ensure_descriptors(20, 8, 256, limits.get, limits.put) is None
    assert limits.set == []


def test_the_soft_limit_is_raised_as_far_as_needed_within_the_hard_one():
    limits = Limits(1024, 524288)
    said = ensure_descriptors(20, 64, 512, limits.get, limits.put)
    needed = descriptors_needed(20, 64, 512)
    assert limits.set == [(needed, 524288)]
    assert said == (f"raised the open files limit (RLIMIT_NOFILE) from 1024 to {needed} "
                    "for 512 connections and 64 job slots")


def test_a_hard_limit_too_low_refuses_to_start_and_says_what_would_fit():
    limits = Limits(400, 400)  # the LimitNOFILE=400
    with pytest.raises(ConfigError) as refused:
        ensure_descriptors(20, 8, 256, limits.get, limits.put)
    fit = (400 - 20 - RESERVE - 8 * PER_JOB) // PER_CONNECTION
    msg = str(refused.value)
    assert f"lower [web] max-connections (at most {fit} fit)" in msg
    assert "the open files limit (RLIMIT_NOFILE) is 400 and its hard limit 400" in msg
    assert "LimitNOFILE=" in msg and limits.set == []
    with pytest.raises(ConfigError, match=r"; lower \[crawld\] job-slots, or raise"):
        ensure_descriptors(20, 100, 1, limits.get, limits.put)
    assert ensure_descriptors(20, 8, fit, limits.get, limits.put) is None
