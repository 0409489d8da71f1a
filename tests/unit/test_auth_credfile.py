"""auth.credfile: the credentials file, written safely and reloaded when it changes."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest
from twisted.logger import formatEvent

from crawld import auth
from crawld.errors import ConfigError
from tests.unit.auth_env import PASSWORD, check, env  # noqa: F401 (env is a fixture)


def test_key_stored_as_hash_only(env):
    text = open(env.path).read()
    assert env.reader_key not in text and env.operator_key not in text
    assert env.reader_key[:12] in text  # the id, for listing and revoking
    assert hashlib.sha256(env.reader_key.encode()).hexdigest() in text
    assert env.reader_key.startswith("cwk_") and len(env.reader_key) == 4 + 43


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
    assert not creds.current()


def test_loose_mode_is_warned(env):
    os.chmod(env.path, 0o644)
    auth.Credentials(env.path, logger=env.logger).load()
    assert any("chmod 600" in formatEvent(e) for e in env.events)


