"""Dashboard sessions (auth/sessions.py and Authenticator.login/logout): a password
checked once for a token, which then proves the user until it is not used for
``ttl`` seconds, the user changes, or it is ended."""
from __future__ import annotations

import json
import os

import pytest

from crawld import auth
from crawld.auth import sessions
from crawld.auth.sessions import Sessions
from tests.unit.auth_env import LOW, PASSWORD, READER_PW, basic, check, env, make_env  # noqa: F401
from tests.unit.fakes import result


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def login(env, name: str = "alice", password: str = PASSWORD, client: str = "10.0.0.1") -> str:
    token, identity = result(env.auth.login(name, password, client))
    assert identity == auth.Identity("session", name, identity.role)
    return token


def test_a_login_gives_a_token_that_proves_the_user_with_its_role(env):
    token = login(env)
    assert token.startswith("cws_") and len(token) == 4 + 43
    assert check(env, bearer(token)) == auth.Identity("session", "alice", "operator")
    reader = login(env, "bob", READER_PW)
    assert check(env, bearer(reader)).role == "reader"
    assert token != login(env), "each login is a new session"


def test_a_wrong_password_is_401_and_counted_as_basic_is(env):
    for _ in range(10):
        with pytest.raises(auth.Unauthorized):
            result(env.auth.login("alice", "wrong", "10.0.0.9"))
    with pytest.raises(auth.TooManyAttempts):  # the same limit as Basic, per claimed user
        result(env.auth.login("alice", PASSWORD, "10.0.0.9"))
    with pytest.raises(auth.TooManyAttempts):
        check(env, basic("alice", PASSWORD), client="10.0.0.9")
    assert login(env, client="10.0.0.1")  # another client is not held up


def test_the_password_is_checked_in_a_thread_once(env):
    token = login(env)
    calls = len(env.threads.calls)
    for _ in range(20):
        check(env, bearer(token))
    assert len(env.threads.calls) == calls, "a session never costs a password check"


def test_sessions_slide_then_expire(tmp_path):
    env = make_env(tmp_path)
    ttl = env.auth.sessions.ttl
    token = login(env)
    for _ in range(5):  # used within ttl each time: alive long after the first ttl
        env.clock.advance(ttl - 1)
        assert check(env, bearer(token)).name == "alice"
    env.clock.advance(ttl + 1)
    with pytest.raises(auth.Unauthorized) as info:
        check(env, bearer(token))
    assert "log in again" in info.value.msg
    assert len(env.auth.sessions) == 0


def test_the_ttl_comes_from_the_authenticator(tmp_path):
    env = make_env(tmp_path)
    authn = auth.Authenticator(env.creds, clock=env.clock, kdf=LOW, to_thread=env.threads,
                               session_ttl=30)
    assert authn.session_ttl == 30
    token, _ = result(authn.login("alice", PASSWORD, "10.0.0.1"))
    env.clock.advance(31)
    with pytest.raises(auth.Unauthorized):
        result(authn.authenticate(bearer(token), None, "GET", "/", "10.0.0.1"))


def test_removing_a_user_or_changing_the_password_ends_its_sessions(env):
    alice, bob = login(env), login(env, "bob", READER_PW)
    auth.remove_user(env.path, "alice")
    env.clock.advance(2)  # the credentials file is looked at again
    with pytest.raises(auth.Unauthorized):
        check(env, bearer(alice))
    auth.add_user(env.path, "bob", "another password", "reader", kdf=LOW, clock=env.clock,
                  replace_existing=True)
    env.clock.advance(2)
    with pytest.raises(auth.Unauthorized):
        check(env, bearer(bob))


def test_a_role_change_applies_to_open_sessions(env):
    token = login(env, "bob", READER_PW)
    with open(env.path) as fh:
        data = json.load(fh)
    found = data["users"]["bob"] if isinstance(data["users"], dict) else next(
        u for u in data["users"] if u["name"] == "bob")
    found["role"] = "operator"  # the same password: an edit of the role alone
    with open(env.path + ".new", "w") as fh:
        json.dump(data, fh)
    os.replace(env.path + ".new", env.path)
    env.clock.advance(2)
    assert check(env, bearer(token)).role == "operator"


def test_logout_ends_the_session_and_only_it(env):
    first, second = login(env), login(env)
    assert env.auth.logout(bearer(first)) is True
    assert env.auth.logout(bearer(first)) is False  # twice: nothing left to end
    with pytest.raises(auth.Unauthorized):
        check(env, bearer(first))
    assert check(env, bearer(second)).name == "alice"
    assert env.auth.logout(bearer(env.operator_key)) is False  # a key is no session
    assert check(env, bearer(env.operator_key)).role == "operator"
    assert env.auth.logout({}) is False


def test_a_wrong_token_is_a_wrong_key_for_the_limiter(env):
    for _ in range(10):
        with pytest.raises(auth.Unauthorized):
            check(env, bearer("cws_" + "x" * 43), client="10.0.0.7")
    with pytest.raises(auth.TooManyAttempts):
        check(env, bearer("cws_" + "y" * 43), client="10.0.0.7")
    token = login(env)
    assert check(env, bearer(token), client="10.0.0.7").name == "alice", \
        "a valid session, like a valid key, always gets in"


def test_sessions_are_bounded_and_tokens_are_not_kept(tmp_path):
    env = make_env(tmp_path)
    kept = Sessions(env.creds, env.clock, ttl=100, max_sessions=3)
    tokens = [kept.open("alice") for _ in range(5)]
    assert len(kept) == 3
    assert kept.identity(tokens[0]) is None and kept.identity(tokens[1]) is None
    assert kept.identity(tokens[4]).name == "alice"
    assert not any(t.encode() in repr(kept._open).encode() for t in tokens)
    env.clock.advance(101)
    kept.open("alice")  # opening one forgets those that expired
    assert len(kept) == 1
    with pytest.raises(Exception):
        kept.open("nobody")


def test_bearer_tokens_are_told_apart_by_their_prefix():
    from crawld.auth.portal import credential_of
    from crawld.auth.checkers import ApiKeyCredential
    assert isinstance(credential_of(bearer("cws_abc"), None, "GET", "/"),
                      sessions.SessionCredential)
    assert isinstance(credential_of(bearer("cwk_abc"), None, "GET", "/"), ApiKeyCredential)
    assert "cws_abc" not in repr(credential_of(bearer("cws_abc"), None, "GET", "/"))
