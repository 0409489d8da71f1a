"""auth.digest: HTTP Digest through the Authenticator, nonces, replays, parameters."""
from __future__ import annotations

import hashlib
import re

import pytest
from requests.auth import HTTPDigestAuth
from requests.utils import parse_dict_header

from crawld import auth
from crawld.auth import digest
from tests.unit.auth_env import (LOW, PASSWORD, READER_PW, URI, URL, check, digest_challenge,
                                 digest_client, env)  # noqa: F401 (env is a fixture)
from tests.unit.fakes import result


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
        result(authn.authenticate({"authorization": header}, None, "GET", URI, "10.0.0.1"))


def test_digest_malformed_headers(env):
    for value in ("Digest ", 'Digest username="alice"', "Digest a=b=c, ,",
                  'Digest username="alice", realm="crawld", nonce="x", uri="/", '
                  'response="0", qop=auth-int, nc=00000001, cnonce="c"'):
        with pytest.raises(auth.Unauthorized):
            check(env, {"authorization": value})


def test_nonce_replay_table_is_bounded(env):
    counts = digest._NonceCounts(lifetime=300, cap=3)
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
    assert digest.parse_auth_params('a=b, c="d, \\"e\\"",D=1') == {
        "a": "b", "c": 'd, "e"', "d": "1"}
    with pytest.raises(ValueError):
        digest.parse_auth_params("a=1, a=2")
