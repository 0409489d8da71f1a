"""auth.portal and auth.checkers: keys and Basic passwords through the Authenticator, the
thread that password hashing runs in, the failed-attempt limit, and what gets logged."""
from __future__ import annotations

import base64

import pytest
from twisted.internet.defer import CancelledError
from twisted.logger import formatEvent

from crawld import auth
from crawld.auth import limiter as limiting
from crawld.errors import CrawldError, ConfigError
from tests.unit.auth_env import (LOW, PASSWORD, READER_PW, URI, URL, FakeClock, Threads,
                                 basic, check, count_kdf, digest_challenge, digest_client,
                                 env)  # noqa: F401 (env is a fixture)
from tests.unit.fakes import result


# -- credential kinds -----------------------------------------------------------------
def test_api_key_in_each_place(env):
    ident = check(env, {"authorization": f"Bearer {env.reader_key}"})
    assert (ident.kind, ident.role, ident.name) == ("key", "reader", "ci")
    assert ident.key_id == env.reader_key[:12]
    assert check(env, {"x-api-key": env.operator_key}).role == "operator"
    assert check(env, key=env.reader_key).role == "reader"
    assert check(env, {"authorization": f"bearer  {env.operator_key}"}).role == "operator"


@pytest.mark.parametrize("headers,key", [
    ({"authorization": "Bearer cwk_wrong"}, None),
    ({"x-api-key": "cwk_wrong"}, None),
    ({}, "cwk_wrong"),
    ({"authorization": "Bearer "}, None),
])
def test_wrong_api_key_is_refused_with_both_challenges(env, headers, key):
    with pytest.raises(auth.Unauthorized) as info:
        check(env, headers, key)
    assert info.value.code == 401 and isinstance(info.value, CrawldError)
    values = info.value.response_headers()["WWW-Authenticate"]
    assert values[0].startswith('Digest realm="crawld", qop="auth", algorithm=MD5, nonce="')
    assert 'opaque="' in values[0] and "stale" not in values[0]
    assert values[1] == 'Basic realm="crawld", charset="UTF-8"'


def test_no_credentials_is_401_and_does_not_count(env):
    for _ in range(30):
        with pytest.raises(auth.Unauthorized):
            check(env)
    assert check(env, key=env.reader_key).role == "reader"


def test_authorization_header_wins_over_other_places(env):
    ident = check(env, {"authorization": f"Bearer {env.operator_key}",
                        "x-api-key": env.reader_key}, env.reader_key)
    assert ident.role == "operator"
    # an unknown scheme is ignored, the next place is used
    assert check(env, {"authorization": "Negotiate abc",
                       "x-api-key": env.reader_key}).role == "reader"


def test_basic(env):
    ident = check(env, basic("alice", PASSWORD))
    assert (ident.kind, ident.name, ident.role) == ("basic", "alice", "operator")
    assert check(env, basic("bob", READER_PW)).role == "reader"
    for headers in (basic("alice", "wrong"), basic("nobody", PASSWORD),
                    {"authorization": "Basic !!notbase64"},
                    {"authorization": "Basic " + base64.b64encode(b"nocolon").decode()}):
        with pytest.raises(auth.Unauthorized) as info:
            check(env, headers)
        assert info.value.msg == "invalid credentials"  # no hint which part was wrong


def test_basic_success_is_cached_but_not_across_password_change(env, monkeypatch):
    runs = count_kdf(monkeypatch, env.threads)
    check(env, basic("alice", PASSWORD))
    check(env, basic("alice", PASSWORD))
    assert runs == [True]  # once, in the thread
    with pytest.raises(auth.Unauthorized):
        check(env, basic("alice", "wrong"))
    auth.add_user(env.path, "alice", "new password", "operator", kdf=LOW,
                  replace_existing=True, clock=env.clock)
    env.clock.advance(1)
    with pytest.raises(auth.Unauthorized):
        check(env, basic("alice", PASSWORD))
    assert check(env, basic("alice", "new password")).name == "alice"


def test_mode_none_lets_everyone_in_as_operator(env):
    authn = auth.Authenticator(env.creds, mode="none", clock=env.clock)
    assert result(authn.authenticate({"authorization": "Bearer junk"}, None, "POST", "/",
                                     "1.2.3.4")) is auth.ANONYMOUS
    with pytest.raises(ConfigError):
        auth.Authenticator(env.creds, mode="optional")


# -- failed-attempt limit -------------------------------------------------------------
def test_lockout_and_recovery(env):
    for _ in range(10):
        with pytest.raises(auth.Unauthorized):
            check(env, key="cwk_guess")
    with pytest.raises(auth.TooManyAttempts) as info:
        check(env, key="cwk_guess")  # the guessing is refused
    assert info.value.code == 429
    assert info.value.response_headers() == {"Retry-After": ["60"]}
    assert check(env, key=env.reader_key).role == "reader"  # a right key is not (issue 10)
    with pytest.raises(auth.Unauthorized):
        check(env, key="cwk_guess", client="10.0.0.2")
    env.clock.advance(30)
    with pytest.raises(auth.TooManyAttempts) as info:
        check(env, key="cwk_guess")
    assert info.value.retry_after == 30
    env.clock.advance(30)
    with pytest.raises(auth.Unauthorized):
        check(env, key="cwk_guess")


def test_failures_spread_over_time_do_not_lock(env):
    for _ in range(30):
        with pytest.raises(auth.Unauthorized):
            check(env, key="cwk_guess")
        env.clock.advance(7)  # 60 s hold at most 9 of them
    assert check(env, key=env.reader_key).role == "reader"


def test_successes_do_not_reset_the_count(env):
    for _ in range(9):
        with pytest.raises(auth.Unauthorized):
            check(env, basic("alice", "guess"))
        check(env, key=env.reader_key)
        check(env, basic("alice", PASSWORD))
    with pytest.raises(auth.Unauthorized):
        check(env, basic("alice", "guess"))
    with pytest.raises(auth.TooManyAttempts):
        check(env, basic("alice", PASSWORD))
    assert check(env, key=env.reader_key).role == "reader"


def test_limiter_groups_ipv6_by_64_and_is_bounded():
    clock = FakeClock()
    limiter = auth.FailureLimiter(clock, max_failures=2, window=60, max_clients=3)

    claim = ("user", "alice")

    def failed(client: str) -> None:
        limiter.admit(client, claim)
        limiter.settle(client, claim, auth.FAILED)
    failed("2001:db8:1:2::1")
    failed("2001:db8:1:2:ffff::9")
    with pytest.raises(auth.TooManyAttempts):
        limiter.admit("2001:db8:1:2::77", claim)
    limiter.admit("2001:db8:1:3::1", claim)
    limiter.settle("2001:db8:1:3::1", claim, auth.PROVEN)
    for i in range(5):
        failed(f"192.0.2.{i}")
    # three clients are tracked: the /64, .0 and .1 were forgotten, .2 to .4 kept
    assert limiter.retry_after("2001:db8:1:2::1", claim) is None
    failed("192.0.2.2")
    assert limiter.retry_after("192.0.2.2", claim) == 60
    failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1", claim) is None
    assert limiting.client_bucket("::ffff:192.0.2.1") == "192.0.2.1"


# -- logs -----------------------------------------------------------------------------
def test_no_secret_in_logs_or_messages(env):
    secrets_sent = ["cwk_" + "S" * 43, "hunter2-secret", env.reader_key]
    chal = digest_challenge(env)
    digest_header = digest_client("alice", "hunter2-secret", chal).build_digest_header(
        "GET", URL)
    attempts = [
        ({"authorization": f"Bearer {secrets_sent[0]}"}, None),
        ({"x-api-key": secrets_sent[0]}, None),
        ({}, secrets_sent[0]),
        (basic("alice", "hunter2-secret"), None),
        (basic("mallory", "hunter2-secret"), None),
        ({"authorization": digest_header}, None),
    ]
    messages = []
    for headers, key in attempts:
        with pytest.raises(auth.Unauthorized) as info:
            check(env, headers, key)
        messages.append(info.value.msg)
    for _ in range(9):
        with pytest.raises((auth.Unauthorized, auth.TooManyAttempts)):
            check(env, basic("alice", "hunter2-secret"))
        with pytest.raises((auth.Unauthorized, auth.TooManyAttempts)):
            check(env, {}, secrets_sent[0])
    env.clock.advance(100)
    check(env, key=env.reader_key)
    text = "\n".join(formatEvent(e) + repr(e) for e in env.events) + "\n".join(messages)
    assert "authentication failed" in text
    assert "failed authentication attempts with user 'alice'" in text
    assert "failed authentication attempts with an API key" in text
    response = digest_header.split('response="')[1].split('"')[0]
    for secret in ("cwk_SSSS", "hunter2", "Bearer cwk", "aHVudGVy", response,
                   env.reader_key, env.reader_key[4:]):
        assert secret not in text


# -- password hashing off the reactor -------------------------------------------------
def queued(env):
    """An Authenticator on ``env``'s file whose thread work waits for ``threads.run()``
    (room for 16 checks at once: the bound has its own tests, in test_auth_limits)."""
    threads = Threads(inline=False)
    authn = auth.Authenticator(env.creds, clock=env.clock, kdf=LOW, to_thread=threads,
                               logger=env.logger, max_password_checks=16)
    return authn, threads


def login(authn, headers, client="10.0.0.1"):
    return authn.authenticate(headers, None, "GET", URI, client)


def test_basic_passwords_are_hashed_in_the_thread_never_on_the_reactor(env, monkeypatch):
    authn, threads = queued(env)
    runs = count_kdf(monkeypatch, threads)
    d = login(authn, basic("alice", PASSWORD))
    assert not d.called and runs == [] and len(threads.queue) == 1
    threads.run()
    assert result(d).name == "alice" and runs == [True]
    # a wrong password, and an unknown user (the dummy hash, made then checked)
    wrong, unknown = login(authn, basic("alice", "wrong")), login(authn, basic("nobody", "x"))
    assert not wrong.called and not unknown.called and len(runs) == 1
    threads.run()
    for d in (wrong, unknown):
        with pytest.raises(auth.Unauthorized) as info:
            result(d)
        assert info.value.challenges[1].startswith("Basic ")
    assert runs == [True] * 4


def test_a_remembered_basic_success_does_not_go_to_a_thread(env, monkeypatch):
    authn, threads = queued(env)
    runs = count_kdf(monkeypatch, threads)
    first = login(authn, basic("alice", PASSWORD))
    threads.run()
    assert result(first).name == "alice" and len(threads.calls) == 1
    again = login(authn, basic("alice", PASSWORD))
    assert again.called and result(again).name == "alice"
    assert len(threads.calls) == 1 and runs == [True]
    env.clock.advance(301)  # remembered for 300 s
    assert not login(authn, basic("alice", PASSWORD)).called and len(threads.calls) == 2


def test_password_guesses_in_flight_count_against_the_limit(env):
    authn, threads = queued(env)
    guesses = [login(authn, basic("alice", f"guess{i}")) for i in range(10)]
    with pytest.raises(auth.TooManyAttempts) as info:
        result(login(authn, basic("alice", "guess10")))
    assert info.value.retry_after == 1  # the guesses in flight end soon
    assert len(threads.queue) == 10  # the 11th never reached a thread
    assert result(login(authn, {"x-api-key": env.reader_key}, "10.0.0.2")).role == "reader"
    threads.run()
    for d in guesses:
        with pytest.raises(auth.Unauthorized):
            result(d)
    with pytest.raises(auth.TooManyAttempts) as info:
        result(login(authn, basic("alice", PASSWORD)))
    assert info.value.retry_after == 60
    assert result(login(authn, {"x-api-key": env.reader_key})).role == "reader"


def test_checks_in_flight_free_their_place_when_right_or_cancelled(env):
    authn, threads = queued(env)
    pending = [login(authn, basic("alice", PASSWORD)) for _ in range(10)]
    pending[0].cancel()  # the client went away: the check still ends and is counted
    with pytest.raises(CancelledError):
        result(pending[0])
    with pytest.raises(auth.TooManyAttempts):
        result(login(authn, basic("alice", PASSWORD)))
    assert result(login(authn, {"x-api-key": env.reader_key})).role == "reader"
    threads.run()
    assert [result(d).name for d in pending[1:]] == ["alice"] * 9
    assert result(login(authn, {"x-api-key": env.reader_key})).role == "reader"
    assert result(login(authn, basic("alice", PASSWORD))).name == "alice"  # remembered


def test_keys_and_digest_answer_at_once_without_a_thread(env):
    authn, threads = queued(env)
    d = login(authn, {"authorization": f"Bearer {env.operator_key}"})
    assert d.called and result(d).role == "operator"
    header = digest_client("bob", READER_PW, authn.challenges()[0]).build_digest_header(
        "GET", URL)
    d = login(authn, {"authorization": header})
    assert d.called
    ident = result(d)
    assert (ident.kind, ident.name) == ("digest", "bob")
    for headers in ({"x-api-key": "cwk_wrong"}, {}):
        d = login(authn, headers)
        assert d.called
        with pytest.raises(auth.Unauthorized):
            result(d)
    assert threads.calls == []
