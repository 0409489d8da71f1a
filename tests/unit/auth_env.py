"""Shared by the auth unit tests: a credentials file with keys and users, an
Authenticator on a fake clock and a fake ``to_thread``, and client-side helpers."""
from __future__ import annotations

import base64
from typing import Any, Callable

import pytest
from requests.auth import HTTPDigestAuth
from requests.utils import parse_dict_header
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from crawld import auth
from crawld.auth import passwords
from tests.unit.fakes import result

LOW = auth.KdfParams(n=16, r=1, p=1)  # tests only: the default costs ~50 ms per hash
URI = "/list-jobs.json?status=ACTIVE"
URL = "http://127.0.0.1:7654" + URI
PASSWORD = "correct horse battery"
READER_PW = "reader-pass-123"


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Threads:
    """A fake ``to_thread`` that records each call. ``inline``: the work runs at once
    (an already-fired Deferred); otherwise it waits in ``queue`` until ``run()``.
    ``inside`` is true while work runs, as if on a thread."""

    def __init__(self, inline: bool = True) -> None:
        self.inline = inline
        self.calls: list[Callable[..., Any]] = []
        self.queue: list[tuple[Callable[[], Any], Deferred]] = []
        self.inside = False

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred:
        self.calls.append(f)
        if self.inline:
            return self._work(f, *args)
        d: Deferred = Deferred()
        self.queue.append((lambda: f(*args), d))
        return d

    def _work(self, f: Callable[..., Any], *args: Any) -> Deferred:
        self.inside = True
        try:
            return maybeDeferred(f, *args)
        finally:
            self.inside = False

    def run(self) -> None:
        """Run the queued work, in order, and fire its Deferreds (also work queued
        meanwhile)."""
        while self.queue:
            self.step()

    def step(self) -> None:
        """Run the first queued work only, and fire its Deferred."""
        work, d = self.queue.pop(0)
        self._work(work).chainDeferred(d)


class Env:
    """What the ``env`` fixture gives a test (see ``make_env``)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


def make_env(tmp_path: Any) -> Env:
    """A credentials file with two keys and two users, an Authenticator and its log."""
    clock = FakeClock()
    path = str(tmp_path / "credentials.json")
    reader_key, _ = auth.add_key(path, "reader", "ci", clock)
    operator_key, _ = auth.add_key(path, "operator", "", clock)
    auth.add_user(path, "alice", PASSWORD, "operator", kdf=LOW, clock=clock)
    auth.add_user(path, "bob", READER_PW, "reader", kdf=LOW, clock=clock)
    events: list[dict] = []
    logger = Logger(namespace="crawld.auth", observer=events.append)
    creds = auth.Credentials(path, clock, logger=logger)
    threads = Threads()
    authn = auth.Authenticator(creds, clock=clock, kdf=LOW, logger=logger,
                               secret=b"s" * 32, to_thread=threads)
    return Env(clock=clock, path=path, reader_key=reader_key, operator_key=operator_key,
               events=events, creds=creds, auth=authn, logger=logger, threads=threads)


@pytest.fixture
def env(tmp_path: Any) -> Env:
    return make_env(tmp_path)


def check(env: Env, headers: Any = None, key: Any = None, method: str = "GET",
          uri: str = URI, client: str = "10.0.0.1") -> auth.Identity:
    """``env.auth.authenticate``'s Identity; raises its failure (it must have fired)."""
    return result(env.auth.authenticate(headers or {}, key, method, uri, client))


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def digest_client(user: str, password: str, challenge: str) -> HTTPDigestAuth:
    """requests' Digest client, as after its 401: the challenge parsed its own way."""
    client = HTTPDigestAuth(user, password)
    client.init_per_thread_state()
    client._thread_local.chal = parse_dict_header(challenge.split(" ", 1)[1])
    return client


def digest_challenge(env: Env) -> str:
    with pytest.raises(auth.Unauthorized) as info:
        check(env)
    return info.value.challenges[0]


def count_kdf(monkeypatch: Any, threads: Threads) -> list[bool]:
    """Record each scrypt run: True when it ran inside ``threads``' work."""
    runs: list[bool] = []
    real = passwords._scrypt

    def recorded(*args: Any) -> bytes:
        runs.append(threads.inside)
        return real(*args)
    monkeypatch.setattr(passwords, "_scrypt", recorded)
    return runs
