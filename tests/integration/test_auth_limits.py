"""The front door's limits on a real daemon: failed attempts lock out neither valid keys
nor other users, clients behind a trusted proxy are limited one by one, and a flood of
Basic password checks is bounded (503) while API keys keep working."""
from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.auth import HTTPBasicAuth, HTTPDigestAuth

from tests.conftest import wait_for
from tests.integration.test_auth import crawld_cli

PASSWORD = "s3cret-pass"


def with_credentials(make_daemon: Any, config: str = "") -> tuple[Any, str]:
    """A daemon (not started) with a reader key and an operator user ``alice``, made
    with the CLI as an operator does; returns it and the key."""
    d = make_daemon(config)
    os.makedirs(d.data_dir, exist_ok=True)
    key = crawld_cli(d.data_dir, "keys", "add", "--role", "reader").strip()
    crawld_cli(d.data_dir, "users", "add", "alice", "--role", "operator",
               "--password-stdin", stdin=PASSWORD + "\n")
    return d, key


def status(d: Any, **kwargs: Any) -> requests.Response:
    return requests.get(d.url + "/status.json", timeout=30, **kwargs)


def test_wrong_keys_lock_out_neither_a_valid_key_nor_a_user_from_that_address(
        make_daemon: Any) -> None:
    d, key = with_credentials(make_daemon)
    d.start()
    codes = [status(d, headers={"X-Api-Key": "cwk_wrongwrongwrong"}).status_code
             for _ in range(12)]
    assert codes == [401] * 10 + [429] * 2, codes
    assert status(d, headers={"X-Api-Key": key}).status_code == 200
    assert status(d, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert status(d, auth=HTTPBasicAuth("alice", PASSWORD)).status_code == 200
    assert status(d, auth=HTTPDigestAuth("alice", PASSWORD)).status_code == 200
    again = status(d, headers={"X-Api-Key": "cwk_wrongwrongwrong"})
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
    # guessing alice's password locks alice from here, not bob's key or the address
    guesses = [status(d, auth=HTTPBasicAuth("alice", f"guess{i}")).status_code
               for i in range(11)]
    assert guesses == [401] * 10 + [429], guesses
    assert status(d, auth=HTTPBasicAuth("alice", PASSWORD)).status_code == 429
    assert status(d, headers={"X-Api-Key": key}).status_code == 200
    assert "refusing user 'alice' from 127.0.0.1" in d.log()
    assert "cwk_wrong" not in d.log()


def wrong_key(d: Any, forwarded: str) -> int:
    return status(d, headers={"X-Api-Key": "cwk_wrongwrongwrong",
                              "X-Forwarded-For": forwarded}).status_code


def test_clients_behind_a_trusted_proxy_are_limited_one_by_one(make_daemon: Any) -> None:
    d, key = with_credentials(make_daemon, "[web]\ntrusted-proxies = 127.0.0.1, ::1\n")
    d.start()
    first = [wrong_key(d, "198.51.100.1") for _ in range(11)]
    assert first == [401] * 10 + [429], first
    assert wrong_key(d, "198.51.100.2") == 401  # another client behind the proxy
    # what a client writes left of the address the proxy appended changes nothing
    assert wrong_key(d, "198.51.100.2, 198.51.100.1") == 429
    assert "authentication failed from 198.51.100.2" in d.log()
    assert status(d, headers={"X-Api-Key": key,
                              "X-Forwarded-For": "198.51.100.1"}).status_code == 200


def test_x_forwarded_for_is_ignored_without_trusted_proxies(make_daemon: Any) -> None:
    d, _ = with_credentials(make_daemon)
    d.start()
    first = [wrong_key(d, "198.51.100.1") for _ in range(10)]
    assert first == [401] * 10, first
    assert wrong_key(d, "198.51.100.2") == 429  # the same client: 127.0.0.1
    assert "authentication failed from 127.0.0.1" in d.log()
    assert "authentication failed from 198.51.100" not in d.log()


def test_a_flood_of_password_checks_is_bounded_while_keys_keep_working(
        make_daemon: Any) -> None:
    # every try from its own address, as through a proxy: the per-client limit is out
    # of the way, only the bound on password checks stands between the flood and the
    # threads everything else shares
    d, key = with_credentials(make_daemon, "[web]\ntrusted-proxies = 127.0.0.1\n"
                                           "max-password-checks = 1\n")
    d.start()
    stop = threading.Event()
    codes: Counter = Counter()
    retry_after: set = set()
    lock = threading.Lock()

    def flood(worker: int) -> None:
        session = requests.Session()
        n = 0
        while not stop.is_set():
            n += 1
            r = session.get(d.url + "/status.json", timeout=60,
                            auth=HTTPBasicAuth("nosuchuser" if n % 2 else "alice", "pw"),
                            headers={"X-Forwarded-For": f"10.{worker}.{n // 250}.{n % 250}"})
            with lock:
                codes[r.status_code] += 1
                if r.status_code == 503:
                    retry_after.add(r.headers.get("Retry-After"))

    with ThreadPoolExecutor(32) as pool:
        workers = [pool.submit(flood, i) for i in range(32)]
        try:
            wait_for(lambda: codes[503] > 0, 60, what="password checks to be refused")
            for _ in range(40):  # while the flood goes on, a key answers every time
                assert status(d, headers={"X-Api-Key": key}).status_code == 200
            assert not any(w.done() for w in workers)  # the flood was still on
        finally:
            stop.set()
        for w in workers:
            w.result()
    assert set(codes) == {401, 503}, codes
    assert codes[401] > 0 and retry_after == {"1"}
    # the queue drains: alice's password is checked again
    wait_for(lambda: status(d, auth=HTTPBasicAuth("alice", PASSWORD)).status_code == 200,
             30, what="alice's password to be checked")


def test_odd_methods_need_credentials_and_a_huge_url_gets_414(make_daemon: Any) -> None:
    """Issue 10, item 5, on a real daemon: TRACE and PROPFIND are authenticated before
    anything else is said (401, no Allow), and a 1 MB query string is answered 414
    instead of a connection closed without a reply."""
    d, key = with_credentials(make_daemon)
    d.start()
    for method in ("TRACE", "PROPFIND"):
        r = requests.request(method, d.url + "/status.json", timeout=30)
        assert r.status_code == 401 and "allow" not in r.headers, (method, r.text)
        r = requests.request(method, d.url + "/status.json", timeout=30,
                             headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403 and "allow" not in r.headers, (method, r.text)  # a reader
        r = requests.request(method, d.url + "/status.json", timeout=30,
                             auth=HTTPBasicAuth("alice", PASSWORD))  # an operator
        assert r.status_code == 405 and r.headers["allow"] == "GET", (method, r.text)
    r = requests.get(d.url + "/status.json?x=" + "a" * (1 << 20), timeout=30)
    assert r.status_code == 414 and r.json()["status"] == "error", r.text[:200]
    assert status(d, headers={"Authorization": f"Bearer {key}"}).status_code == 200
