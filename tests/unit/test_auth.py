"""Authentication and authorization logic: keys, Basic, Digest, roles, limits, reload."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat

import pytest
from requests.auth import HTTPDigestAuth
from requests.utils import parse_dict_header
from twisted.logger import Logger, formatEvent

from crawld import auth
from crawld.errors import ConfigError, CrawldError, Forbidden

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


@pytest.fixture
def env(tmp_path):
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
    authn = auth.Authenticator(creds, clock=clock, kdf=LOW, logger=logger,
                               secret=b"s" * 32)

    class Env:
        pass

    e = Env()
    e.__dict__.update(clock=clock, path=path, reader_key=reader_key,
                      operator_key=operator_key, events=events, creds=creds, auth=authn,
                      logger=logger)
    return e


def check(env, headers=None, key=None, method="GET", uri=URI, client="10.0.0.1"):
    return env.auth.authenticate(headers or {}, key, method, uri, client)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def digest_client(user: str, password: str, challenge: str) -> HTTPDigestAuth:
    """requests' Digest client, as after its 401: the challenge parsed its own way."""
    client = HTTPDigestAuth(user, password)
    client.init_per_thread_state()
    client._thread_local.chal = parse_dict_header(challenge.split(" ", 1)[1])
    return client


def digest_challenge(env) -> str:
    with pytest.raises(auth.Unauthorized) as info:
        check(env)
    return info.value.challenges[0]


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


def test_key_stored_as_hash_only(env):
    text = open(env.path).read()
    assert env.reader_key not in text and env.operator_key not in text
    assert env.reader_key[:12] in text  # the id, for listing and revoking
    assert hashlib.sha256(env.reader_key.encode()).hexdigest() in text
    assert env.reader_key.startswith("cwk_") and len(env.reader_key) == 4 + 43


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
    calls = []
    real = auth._scrypt
    monkeypatch.setattr(auth, "_scrypt", lambda *a: calls.append(1) or real(*a))
    check(env, basic("alice", PASSWORD))
    check(env, basic("alice", PASSWORD))
    assert len(calls) == 1
    with pytest.raises(auth.Unauthorized):
        check(env, basic("alice", "wrong"))
    auth.add_user(env.path, "alice", "new password", "operator", kdf=LOW,
                  replace_existing=True, clock=env.clock)
    env.clock.advance(1)
    with pytest.raises(auth.Unauthorized):
        check(env, basic("alice", PASSWORD))
    assert check(env, basic("alice", "new password")).name == "alice"


# -- Digest ---------------------------------------------------------------------------
def test_digest_with_requests_client(env):
    client = digest_client("alice", PASSWORD, digest_challenge(env))
    header = client.build_digest_header("GET", URL)
    ident = check(env, {"authorization": header})
    assert (ident.kind, ident.name, ident.role) == ("digest", "alice", "operator")
    # requests reuses the nonce with nc=2, 3...: accepted
    second = client.build_digest_header("POST", "http://127.0.0.1:7654/cancel-job.json")
    assert 'nc=00000002' in second
    assert check(env, {"authorization": second}, method="POST",
                 uri="/cancel-job.json").name == "alice"
    # replaying an already used nc: stale, so an honest client just retries
    with pytest.raises(auth.Unauthorized) as info:
        check(env, {"authorization": header})
    assert "stale=true" in info.value.challenges[0]


def test_digest_by_hand_per_rfc(env):
    chal = parse_dict_header(digest_challenge(env).split(" ", 1)[1])
    ha1 = hashlib.md5(f"bob:crawld:{READER_PW}".encode()).hexdigest()
    ha2 = hashlib.md5(f"HEAD:{URI}".encode()).hexdigest()
    nc, cnonce = "00000001", "0a4f113b"
    response = hashlib.md5(
        f"{ha1}:{chal['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    header = (f'Digest username="bob", realm="crawld", nonce="{chal["nonce"]}", '
              f'uri="{URI}", qop=auth, nc={nc}, cnonce="{cnonce}", '
              f'response="{response}", opaque="{chal["opaque"]}"')
    assert check(env, {"authorization": header}, method="HEAD").role == "reader"


@pytest.mark.parametrize("order", ["digest-first", "basic-first"])
def test_requests_parses_our_combined_challenges(env, order):
    """urllib3 joins the two WWW-Authenticate headers with ', '; requests strips the
    first 'Digest ' and parses the rest as one dict: the result must still work."""
    values = env.auth.challenges()
    if order == "basic-first":
        values = values[::-1]
    combined = ", ".join(values)
    client = HTTPDigestAuth("alice", PASSWORD)
    client.init_per_thread_state()
    client._thread_local.chal = parse_dict_header(
        re.compile(r"digest ", flags=re.IGNORECASE).sub("", combined, count=1))
    header = client.build_digest_header("GET", URL)
    assert check(env, {"authorization": header}).name == "alice"


def test_digest_wrong_password_user_uri_method(env):
    chal = digest_challenge(env)
    bad = [
        (digest_client("alice", "wrong", chal).build_digest_header("GET", URL), "GET", URI),
        (digest_client("carol", PASSWORD, chal).build_digest_header("GET", URL), "GET", URI),
        # a header computed for another URI, sent on this request
        (digest_client("alice", PASSWORD, chal).build_digest_header(
            "GET", "http://x/status.json"), "GET", URI),
        # right uri in the header, but computed for GET and sent as POST
        (digest_client("alice", PASSWORD, chal).build_digest_header("GET", URL), "POST", URI),
    ]
    for header, method, uri in bad:
        with pytest.raises(auth.Unauthorized) as info:
            check(env, {"authorization": header}, method=method, uri=uri)
        assert "stale" not in info.value.challenges[0]


def test_digest_uri_mismatch_message(env):
    header = digest_client("alice", PASSWORD, digest_challenge(env)).build_digest_header(
        "GET", "http://x/status.json")
    with pytest.raises(auth.Unauthorized, match="uri does not match"):
        check(env, {"authorization": header})


def test_digest_stale_nonce_then_fresh_one_works(env):
    client = digest_client("alice", PASSWORD, digest_challenge(env))
    env.clock.advance(301)
    with pytest.raises(auth.Unauthorized) as info:
        check(env, {"authorization": client.build_digest_header("GET", URL)})
    assert info.value.challenges[0].endswith(", stale=true")
    # like requests' handle_401: take the new challenge, retry
    client._thread_local.chal = parse_dict_header(info.value.challenges[0].split(" ", 1)[1])
    assert check(env, {"authorization": client.build_digest_header("GET", URL)}).name == "alice"


def test_digest_nonce_from_another_daemon_is_stale(env):
    other = auth.Authenticator(env.creds, clock=env.clock, kdf=LOW, secret=b"o" * 32)
    chal = other.challenges()[0]
    header = digest_client("alice", PASSWORD, chal).build_digest_header("GET", URL)
    with pytest.raises(auth.Unauthorized) as info:
        check(env, {"authorization": header})
    assert "stale=true" in info.value.challenges[0]
    # a forged nonce with a wrong password is a plain failure, not stale
    header = digest_client("alice", "nope", chal).build_digest_header("GET", URL)
    with pytest.raises(auth.Unauthorized) as info:
        check(env, {"authorization": header})
    assert "stale" not in info.value.challenges[0]


def test_digest_other_realm_fails(env, tmp_path):
    authn = auth.Authenticator(env.creds, clock=env.clock, kdf=LOW, realm="elsewhere")
    chal = authn.challenges()[0]
    header = digest_client("alice", PASSWORD, chal).build_digest_header("GET", URL)
    with pytest.raises(auth.Unauthorized):
        authn.authenticate({"authorization": header}, None, "GET", URI, "10.0.0.1")


def test_digest_malformed_headers(env):
    for value in ("Digest ", 'Digest username="alice"', "Digest a=b=c, ,",
                  'Digest username="alice", realm="crawld", nonce="x", uri="/", '
                  'response="0", qop=auth-int, nc=00000001, cnonce="c"'):
        with pytest.raises(auth.Unauthorized):
            check(env, {"authorization": value})


def test_nonce_replay_table_is_bounded(env):
    counts = auth._NonceCounts(lifetime=300, cap=3)
    for i in range(5):
        assert counts.use(f"n{i}", 1, issued=100 + i, now=100 + i)
    assert len(counts._seen) == 3
    assert not counts.use("n0", 2, issued=100, now=110)  # forgotten: refused as stale
    assert counts.use("n5", 1, issued=106, now=110)


def test_non_ascii_header_values_are_plain_failures(env):
    for headers in ({"authorization": "Bearer cwk_\u00e9\u00e9"},
                    {"authorization": "Basic \u00e9"},
                    {"authorization": 'Digest username="alice", realm="crawld", '
                     'nonce="1.\u00e9.\u00e9", uri="/list-jobs.json?status=ACTIVE", '
                     'response="\u00e9", qop=auth, nc=00000001, cnonce="c", '
                     'opaque="\u00e9"'}):
        with pytest.raises(auth.Unauthorized):
            check(env, headers)
    # a right response on a non-ASCII nonce and opaque: stale, not a crash
    nonce = "1.\u00e9.\u00e9"
    ha1 = hashlib.md5(f"alice:crawld:{PASSWORD}".encode()).hexdigest()
    ha2 = hashlib.md5(f"GET:{URI}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:00000001:c:auth:{ha2}".encode()).hexdigest()
    header = (f'Digest username="alice", realm="crawld", nonce="{nonce}", uri="{URI}", '
              f'response="{response}", qop=auth, nc=00000001, cnonce="c", opaque="\u00e9"')
    with pytest.raises(auth.Unauthorized) as info:
        check(env, {"authorization": header})
    assert "stale=true" in info.value.challenges[0]


def test_parse_auth_params():
    assert auth.parse_auth_params('a=b, c="d, \\"e\\"",D=1') == {
        "a": "b", "c": 'd, "e"', "d": "1"}
    with pytest.raises(ValueError):
        auth.parse_auth_params("a=1, a=2")


# -- roles ----------------------------------------------------------------------------
EXPECTED_ROLES = {  # every route the app serves: a new one must be decided here
    "/": "reader",  # a pointer to the docs, until the dashboard exists
    "/openapi.json": "reader",  # the API's description: what docs/openapi.yaml says
    "/status.json": "reader",
    "/list-projects.json": "reader",
    "/list-spiders.json": "reader",
    "/preview-schedule.json": "reader",
    "/list-jobs.json": "reader",
    "/get-log/<string:anything>/<string:filename>": "reader",
    "/push-project.json": "operator",
    "/schedule-job.json": "operator",
    "/pause-job.json": "operator",
    "/resume-job.json": "operator",
    "/run-job.json": "operator",
    "/update-job.json": "operator",
    "/cancel-job.json": "operator",
    "/remove-project.json": "operator",
    "/list-scripts.json": "reader",
    "/job-output.json": "reader",
    "/job-screenshot.png": "reader",
    "/job-files.json": "reader",
    "/job-files/<string:job_id>/<string:name>": "reader",
    "/browsers.json": "reader",
    "/job-posts.json": "operator",   # reading hands each post out once
    "/job-message.json": "operator",
    "/browse.json": "operator",
}


def test_every_route_has_a_decided_role():
    from crawld.http.app import build_router
    from tests.unit.http_fakes import services
    routes = build_router(services()).methods
    assert set(routes) == set(EXPECTED_ROLES), "decide the role of new routes here"
    for path, methods in routes.items():
        concrete = re.sub(r"<string:\w+>", "x", path)
        roles = {auth.required_role(m, concrete) for m in methods}
        assert roles == {EXPECTED_ROLES[path]}, path


def test_role_table():
    assert auth.required_role("GET", "/status.json") == "reader"
    assert auth.required_role("HEAD", "/get-log/x/y.out") == "reader"
    assert auth.required_role("get", "/anything-unknown") == "reader"
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        assert auth.required_role(method, "/status.json") == "operator"
    for path in ("/download-project.json", "/Download-Project.json?name=x",
                 "/download%2Dproject.json", "//download-project.json",
                 "/x/../download-project.json", "/download-project.json/",
                 "/config.json", "/list-keys.json"):
        assert auth.required_role("GET", path) == "operator", path


def test_authorize():
    reader = auth.Identity("key", "ci", "reader", "cwk_abcdefgh")
    auth.authorize(reader, "reader")
    with pytest.raises(Forbidden) as info:
        auth.authorize(reader, "operator")
    assert info.value.code == 403 and "cwk_abcdefgh" in info.value.msg
    auth.authorize(auth.Identity("basic", "alice", "operator"), "operator")
    auth.authorize(auth.ANONYMOUS, "operator")


def test_mode_none_lets_everyone_in_as_operator(env):
    authn = auth.Authenticator(env.creds, mode="none", clock=env.clock)
    assert authn.authenticate({"authorization": "Bearer junk"}, None, "POST", "/",
                              "1.2.3.4") is auth.ANONYMOUS
    with pytest.raises(ConfigError):
        auth.Authenticator(env.creds, mode="optional")


# -- failed-attempt limit -------------------------------------------------------------
def test_lockout_and_recovery(env):
    for _ in range(10):
        with pytest.raises(auth.Unauthorized):
            check(env, key="cwk_guess")
    with pytest.raises(auth.TooManyAttempts) as info:
        check(env, key=env.reader_key)  # right key during lockout: still 429
    assert info.value.code == 429
    assert info.value.response_headers() == {"Retry-After": ["60"]}
    assert check(env, key=env.reader_key, client="10.0.0.2").role == "reader"
    env.clock.advance(30)
    with pytest.raises(auth.TooManyAttempts) as info:
        check(env, key=env.reader_key)
    assert info.value.retry_after == 30
    env.clock.advance(30)
    assert check(env, key=env.reader_key).role == "reader"


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
    with pytest.raises(auth.Unauthorized):
        check(env, basic("alice", "guess"))
    with pytest.raises(auth.TooManyAttempts):
        check(env, key=env.reader_key)


def test_limiter_groups_ipv6_by_64_and_is_bounded():
    clock = FakeClock()
    limiter = auth.FailureLimiter(clock, max_failures=2, window=60, max_clients=3)
    limiter.failed("2001:db8:1:2::1")
    limiter.failed("2001:db8:1:2:ffff::9")
    with pytest.raises(auth.TooManyAttempts):
        limiter.check("2001:db8:1:2::77")
    limiter.check("2001:db8:1:3::1")
    for i in range(5):
        limiter.failed(f"192.0.2.{i}")
    assert len(limiter) == 3  # the oldest were forgotten
    assert limiter.retry_after("2001:db8:1:2::1") is None
    assert auth.client_bucket("::ffff:192.0.2.1") == "192.0.2.1"


# -- the file and its reload ----------------------------------------------------------
def test_file_is_0600_and_json(env):
    assert stat.S_IMODE(os.stat(env.path).st_mode) == 0o600
    data = json.load(open(env.path))
    assert data["version"] == 1 and len(data["keys"]) == 2 and len(data["users"]) == 2
    alice = data["users"][0]
    assert alice["password"]["alg"] == "scrypt" and alice["digest"]["realm"] == "crawld"
    assert alice["digest"]["ha1"] == hashlib.md5(
        f"alice:crawld:{PASSWORD}".encode()).hexdigest()
    assert PASSWORD not in open(env.path).read()
    assert not [n for n in os.listdir(os.path.dirname(env.path)) if n.endswith(".tmp")]


def test_reload_after_change(env):
    assert check(env, key=env.reader_key).role == "reader"
    new_key, _ = auth.add_key(env.path, "operator", "late", env.clock)
    env.clock.advance(0.5)  # checked at most once a second
    with pytest.raises(auth.Unauthorized):
        check(env, key=new_key)
    env.clock.advance(0.5)
    assert check(env, key=new_key).name == "late"
    auth.revoke_key(env.path, env.reader_key[:12])
    env.clock.advance(1)
    with pytest.raises(auth.Unauthorized):
        check(env, key=env.reader_key, client="10.0.0.3")


def test_invalid_file_keeps_previous_on_reload_and_stops_start(env):
    check(env, key=env.reader_key)
    with open(env.path, "w") as fh:
        fh.write("{not json")
    env.clock.advance(1)
    assert check(env, key=env.reader_key).role == "reader"
    assert any("keeping the previous credentials" in formatEvent(e) for e in env.events)
    with pytest.raises(ConfigError, match="invalid credentials file"):
        auth.Credentials(env.path).load()


def test_missing_file_means_no_credentials(tmp_path):
    creds = auth.Credentials(str(tmp_path / "credentials.json"))
    assert not creds.has_any()


def test_loose_mode_is_warned(env):
    os.chmod(env.path, 0o644)
    auth.Credentials(env.path, logger=env.logger).load()
    assert any("chmod 600" in formatEvent(e) for e in env.events)


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
    for _ in range(5):
        with pytest.raises((auth.Unauthorized, auth.TooManyAttempts)):
            check(env, basic("alice", "hunter2-secret"))
    env.clock.advance(100)
    check(env, key=env.reader_key)
    text = "\n".join(formatEvent(e) + repr(e) for e in env.events) + "\n".join(messages)
    assert "authentication failed" in text and "refusing it" in text
    response = digest_header.split('response="')[1].split('"')[0]
    for secret in ("cwk_SSSS", "hunter2", "Bearer cwk", "aHVudGVy", response,
                   env.reader_key, env.reader_key[4:]):
        assert secret not in text


def test_redact_uri():
    assert auth.redact_uri("/status.json?key=cwk_x&a=1") == "/status.json?key=REDACTED&a=1"
    assert auth.redact_uri("/s?monkey=1") == "/s?monkey=1"


# -- start-up rule --------------------------------------------------------------------
def test_loopback():
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST.",
                 "::ffff:127.0.0.1"):
        assert auth.is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "example.com", "128.0.0.1"):
        assert not auth.is_loopback(host), host


def test_must_refuse_start():
    assert auth.must_refuse_start(["127.0.0.1", "::1"], None, False) is None
    msg = auth.must_refuse_start(["127.0.0.1", "0.0.0.0"], None, False)
    assert msg and "0.0.0.0" in msg and "auth = none" in msg and "keys add" in msg
    assert auth.must_refuse_start(["0.0.0.0"], "none", False) is None  # explicit choice
    assert auth.must_refuse_start(["0.0.0.0"], None, True) is None  # auto: required
    assert auth.must_refuse_start(["0.0.0.0"], "required", True) is None
    assert auth.must_refuse_start(["0.0.0.0"], "required", False) is None  # 401s only
    assert "expected none or required" in auth.must_refuse_start(["::1"], "maybe", True)


def test_resolve_mode_and_warnings():
    assert auth.resolve_mode(None, False) == "none"
    assert auth.resolve_mode(None, True) == "required"
    assert auth.resolve_mode("none", True) == "none"
    with pytest.raises(ConfigError):
        auth.resolve_mode("yes", True)
    assert "auth = none" in auth.start_warning(["0.0.0.0"], "none", True)
    assert "401" in auth.start_warning(["127.0.0.1"], "required", False)
    assert auth.start_warning(["127.0.0.1"], None, False) is None
    assert auth.start_warning(["0.0.0.0"], "required", True) is None
