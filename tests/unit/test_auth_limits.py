"""The front door's limits: the failed-attempt limiter counts per (client, claimed user or
key) so that valid credentials always get in; key derivations are bounded (503 past the
queue); the client address comes from X-Forwarded-For only through trusted proxies."""
from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from twisted.logger import formatEvent
from twisted.web.http_headers import Headers

from crawld import auth, config
from crawld.auth import clients
from tests.unit.auth_env import (LOW, PASSWORD, READER_PW, URI, FakeClock, Threads, basic,
                                 check, count_kdf, env)  # noqa: F401 (env is a fixture)
from tests.unit.fakes import result

ALICE = ("user", "alice")


# -- the limiter, alone ---------------------------------------------------------------
def fail_once(limiter: auth.FailureLimiter, client: str, claim: Any) -> None:
    limiter.admit(client, claim)
    limiter.settle(client, claim, auth.FAILED)


def test_the_limit_is_per_client_and_claim():
    limiter = auth.FailureLimiter(FakeClock(), max_failures=3, max_client_failures=100)
    for _ in range(3):
        fail_once(limiter, "10.0.0.1", ALICE)
    with pytest.raises(auth.TooManyAttempts) as info:
        limiter.admit("10.0.0.1", ALICE)
    assert info.value.retry_after == 60
    # the same address claiming someone else, and alice from elsewhere, may try
    assert limiter.retry_after("10.0.0.1", ("user", "bob")) is None
    assert limiter.retry_after("10.0.0.1", ("key", "cwk_Ab3dEf9h")) is None
    assert limiter.retry_after("10.0.0.2", ALICE) is None


def test_the_address_wide_cap_spares_claims_proven_from_that_address():
    clock = FakeClock()
    limiter = auth.FailureLimiter(clock, max_failures=3, max_client_failures=5)
    limiter.admit("10.0.0.1", ALICE)
    limiter.settle("10.0.0.1", ALICE, auth.PROVEN)  # alice logged in from there
    for i in range(5):  # password spraying: one try per user name
        fail_once(limiter, "10.0.0.1", ("user", f"u{i}"))
    with pytest.raises(auth.TooManyAttempts) as info:
        limiter.admit("10.0.0.1", ("user", "carol"))  # a new name: refused
    assert info.value.retry_after == 60
    limiter.admit("10.0.0.1", ALICE)  # alice was proven from there: still admitted
    limiter.settle("10.0.0.1", ALICE, auth.FAILED)
    assert limiter.retry_after("10.0.0.2", ("user", "carol")) is None
    clock.advance(60)
    assert limiter.retry_after("10.0.0.1", ("user", "carol")) is None


def test_a_proven_claim_is_still_limited_on_its_own():
    limiter = auth.FailureLimiter(FakeClock(), max_failures=3)
    limiter.admit("10.0.0.1", ALICE)
    limiter.settle("10.0.0.1", ALICE, auth.PROVEN)
    for _ in range(3):
        fail_once(limiter, "10.0.0.1", ALICE)
    with pytest.raises(auth.TooManyAttempts):  # else alice's password could be guessed
        limiter.admit("10.0.0.1", ALICE)


def test_attempts_in_flight_count_per_claim_and_per_address():
    limiter = auth.FailureLimiter(FakeClock(), max_failures=2, max_client_failures=3)
    limiter.admit("10.0.0.1", ALICE)
    limiter.admit("10.0.0.1", ALICE)
    with pytest.raises(auth.TooManyAttempts) as info:
        limiter.admit("10.0.0.1", ALICE)
    assert info.value.retry_after == 1
    limiter.admit("10.0.0.1", ("user", "bob"))
    with pytest.raises(auth.TooManyAttempts):
        limiter.admit("10.0.0.1", ("user", "carol"))  # 3 in flight from the address
    limiter.settle("10.0.0.1", ALICE, auth.VOID)  # neither right nor wrong: not counted
    limiter.admit("10.0.0.1", ("user", "carol"))


def test_the_limiter_is_bounded_in_clients_and_claims():
    clock = FakeClock()
    limiter = auth.FailureLimiter(clock, max_failures=1, max_client_failures=5,
                                  max_clients=3)
    for i in range(5):
        fail_once(limiter, f"192.0.2.{i}", ALICE)
    assert limiter.retry_after("192.0.2.0", ALICE) is None  # forgotten, least recent
    assert limiter.retry_after("192.0.2.4", ALICE) == 60
    for i in range(50):  # slowly, under the cap: old claims are forgotten
        fail_once(limiter, "192.0.2.9", ("user", f"n{i}"))
        clock.advance(13)
    assert limiter.tracked_claims("192.0.2.9") <= 5
    assert limiter.retry_after("192.0.2.9", ("user", "n49")) == 60 - 13
    clock.advance(60)
    proven = [("user", f"p{i}") for i in range(30)]
    for claim in proven:
        limiter.admit("192.0.2.9", claim)
        limiter.settle("192.0.2.9", claim, auth.PROVEN)
    for claim in proven:  # they pass the address-wide cap: still at most 2 x 5 kept
        fail_once(limiter, "192.0.2.9", claim)
    assert limiter.tracked_claims("192.0.2.9") == 10
    assert limiter.retry_after("192.0.2.9", ("user", "p29")) == 60


# -- through the Authenticator ---------------------------------------------------------
def test_wrong_keys_do_not_lock_out_a_right_key_or_user_from_that_address(env):
    for _ in range(12):
        with pytest.raises((auth.Unauthorized, auth.TooManyAttempts)):
            check(env, key="cwk_guessguessguess", client="127.0.0.1")
    with pytest.raises(auth.TooManyAttempts):  # the guessing itself is refused
        check(env, key="cwk_guessguessguess", client="127.0.0.1")
    assert check(env, key=env.reader_key, client="127.0.0.1").role == "reader"
    assert check(env, basic("alice", PASSWORD), client="127.0.0.1").name == "alice"
    assert check(env, {"authorization": f"Bearer {env.operator_key}"},
                 client="127.0.0.1").role == "operator"


def test_guessing_one_users_password_locks_only_that_user_from_that_address(env,
                                                                           monkeypatch):
    for _ in range(10):
        with pytest.raises(auth.Unauthorized):
            check(env, basic("alice", "guess"), client="127.0.0.1")
    runs = count_kdf(monkeypatch, env.threads)
    with pytest.raises(auth.TooManyAttempts) as info:
        check(env, basic("alice", PASSWORD), client="127.0.0.1")  # even the right one
    assert info.value.retry_after == 60 and runs == []  # refused without scrypt
    assert check(env, basic("bob", READER_PW), client="127.0.0.1").name == "bob"
    assert check(env, key=env.reader_key, client="127.0.0.1").role == "reader"
    assert check(env, basic("alice", PASSWORD), client="10.9.9.9").name == "alice"
    text = "\n".join(formatEvent(e) for e in env.events)
    assert "127.0.0.1: 10 failed authentication attempts with user 'alice'" in text


def test_spraying_many_names_from_one_address_spares_keys_and_known_users(env):
    check(env, basic("bob", READER_PW), client="127.0.0.1")  # bob used it before
    for i in range(100):
        with pytest.raises(auth.Unauthorized):
            check(env, basic(f"user{i}", "Summer2024!"), client="127.0.0.1")
    with pytest.raises(auth.TooManyAttempts):
        check(env, basic("alice", "Summer2024!"), client="127.0.0.1")
    assert check(env, basic("bob", READER_PW), client="127.0.0.1").name == "bob"
    assert check(env, key=env.reader_key, client="127.0.0.1").role == "reader"


def test_wrong_keys_never_log_any_part_of_the_key(env):
    for _ in range(11):
        with pytest.raises((auth.Unauthorized, auth.TooManyAttempts)):
            check(env, key="cwk_SECRETSECRETSECRET")
    text = repr(env.events)
    assert "failed authentication attempts" in text and "SECRET" not in text


# -- a bounded number of key derivations ------------------------------------------------
def bounded(env, checks: int = 2, waiting: int = 3):
    threads = Threads(inline=False)
    authn = auth.Authenticator(env.creds, clock=env.clock, kdf=LOW, to_thread=threads,
                               logger=env.logger, max_password_checks=checks,
                               password_queue=waiting)
    return authn, threads


def login(authn, headers, client="10.0.0.1"):
    return authn.authenticate(headers, None, "GET", URI, client)


def fired(d) -> bool:
    """Whether ``d`` has its result (``called`` is also true while it waits on another)."""
    out: list = []
    d.addBoth(lambda r: out.append(r) or r)
    return bool(out)


def test_key_derivations_are_bounded_and_refused_past_the_queue(env):
    authn, threads = bounded(env, checks=2, waiting=3)
    # wrong passwords and unknown users alike, each from its own address
    tries = [login(authn, basic("alice" if i % 2 else f"nobody{i}", "pw"), f"10.1.0.{i}")
             for i in range(5)]
    assert len(threads.queue) == 2  # two derivations run, three wait
    busy = login(authn, basic("nobody", "pw"), "10.1.0.99")
    with pytest.raises(auth.PasswordChecksBusy) as info:
        result(busy)
    assert info.value.code == 503
    assert info.value.response_headers() == {"Retry-After": ["1"]}
    # keys need no derivation: they answer while the queue is full
    assert result(login(authn, {"x-api-key": env.reader_key}, "10.1.0.99")).role == "reader"
    while threads.queue:  # each finished derivation lets one waiting start
        assert len(threads.queue) <= 2
        threads.step()
    for d in tries:
        with pytest.raises(auth.Unauthorized):
            result(d)
    assert len(threads.calls) == 5
    # the 503 was not a failure: that address may try again at once
    assert authn.limiter.retry_after("10.1.0.99", ("user", "nobody")) is None


def test_unknown_users_and_wrong_passwords_take_the_same_path(env, monkeypatch):
    authn, threads = bounded(env, checks=1, waiting=10)
    login(authn, basic("nobody", "pw"))  # the dummy hash is made once, first
    threads.run()
    runs = count_kdf(monkeypatch, threads)
    unknown = login(authn, basic("nobody", "pw"), "10.2.0.1")
    wrong = login(authn, basic("alice", "pw"), "10.2.0.2")
    assert len(threads.queue) == 1 and not fired(unknown) and not fired(wrong)
    threads.step()
    assert len(threads.queue) == 1  # the second waited for the first
    threads.step()
    assert runs == [True, True] and not threads.queue
    messages = []
    for d in (unknown, wrong):
        with pytest.raises(auth.Unauthorized) as info:
            result(d)
        messages.append((info.value.msg, info.value.response_headers()))
    assert messages[0][0] == messages[1][0] == "invalid credentials"


def test_names_that_cannot_be_users_are_refused_without_a_derivation(env):
    authn, threads = bounded(env)
    for name in ("", "a" * 65, "bad name", "-dash", "x\u00e9"):
        d = login(authn, basic(name, "pw"))
        assert fired(d)
        with pytest.raises(auth.Unauthorized):
            result(d)
    assert threads.calls == []


def test_a_remembered_success_skips_the_full_queue(env):
    authn, threads = bounded(env, checks=1, waiting=0)
    first = login(authn, basic("bob", READER_PW))
    threads.run()
    assert result(first).name == "bob"
    login(authn, basic("alice", "wrong"), "10.3.0.1")  # occupies the only slot
    with pytest.raises(auth.PasswordChecksBusy):
        result(login(authn, basic("alice", "wrong"), "10.3.0.2"))
    assert result(login(authn, basic("bob", READER_PW))).name == "bob"


# -- the client address ---------------------------------------------------------------
TRUSTED = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"),
           ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize("peer,forwarded,expected", [
    ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),  # untrusted peer: header ignored
    ("127.0.0.1", [], "127.0.0.1"),  # a trusted proxy's own request
    ("127.0.0.1", ["203.0.113.1"], "203.0.113.1"),
    ("127.0.0.1", ["1.1.1.1, 203.0.113.1"], "203.0.113.1"),  # rightmost untrusted hop
    ("127.0.0.1", ["203.0.113.1, 10.1.2.3"], "203.0.113.1"),  # through two proxies
    ("127.0.0.1", ["1.1.1.1", "203.0.113.1, 10.1.2.3"], "203.0.113.1"),  # several lines
    ("127.0.0.1", ["10.1.2.3, 10.4.5.6"], "10.1.2.3"),  # every hop trusted: the first
    ("::ffff:127.0.0.1", ["203.0.113.1"], "203.0.113.1"),  # IPv4-mapped peer
    ("::1", ["2001:db8::5"], "2001:db8::5"),
    ("127.0.0.1", ["[2001:db8::5]:4711"], "2001:db8::5"),
    ("127.0.0.1", ["203.0.113.1:4711"], "203.0.113.1"),
    ("127.0.0.1", ["garbage, 203.0.113.1"], "203.0.113.1"),
    ("127.0.0.1", ["203.0.113.1, garbage"], "127.0.0.1"),  # not an address: stop there
    ("127.0.0.1", ["unknown"], "127.0.0.1"),
])
def test_forwarded_client(peer, forwarded, expected):
    assert clients.forwarded_client(peer, forwarded, TRUSTED) == expected


class Peer:
    host = "127.0.0.1"


class FakeRequest:
    def __init__(self, forwarded: list[bytes]) -> None:
        self.requestHeaders = Headers({b"X-Forwarded-For": forwarded} if forwarded else {})

    def getClientAddress(self) -> Peer:
        return Peer()


def test_client_address_of_a_request():
    request = FakeRequest([b"203.0.113.1", b"198.51.100.2"])
    assert auth.client_address(request, ()) == "127.0.0.1"
    assert auth.client_address(request, TRUSTED) == "198.51.100.2"
    assert auth.client_address(FakeRequest([]), TRUSTED) == "127.0.0.1"


# -- configuration --------------------------------------------------------------------
def test_the_options_load_and_bad_values_name_the_option(tmp_path):
    path = tmp_path / "crawld.ini"
    path.write_text("[web]\ntrusted-proxies = 127.0.0.1, 10.0.0.0/8 ::1\n"
                    "max-password-checks = 3\n")
    s = config.load(str(path))
    assert s.trusted_proxies == TRUSTED and s.max_password_checks == 3
    assert config.Settings().trusted_proxies == () and config.Settings().max_password_checks == 2
    for option, value in (("trusted-proxies", "proxy.lan"), ("trusted-proxies", "10.0.0.0/33"),
                          ("max-password-checks", "0"), ("max-password-checks", "9"),
                          ("max-password-checks", "two")):
        path.write_text(f"[web]\n{option} = {value}\n")
        with pytest.raises(config.ConfigError) as info:
            config.load(str(path))
        assert f"[web] {option}" in str(info.value)
