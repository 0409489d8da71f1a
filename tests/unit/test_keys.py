"""``crawld keys|users``: the credentials file edited from the shell."""
from __future__ import annotations

import argparse
import base64
import io
import os
import stat

import pytest
from twisted.internet.defer import maybeDeferred

from crawld import auth, keys
from tests.unit.fakes import result

LOW = auth.KdfParams(n=16, r=1, p=1)


def cli(data_dir, *argv, stdin="", getpass=None):
    """Run one command; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = keys.main(list(argv), str(data_dir), out, err=err, stdin=io.StringIO(stdin),
                     getpass=getpass or (lambda prompt: pytest.fail("getpass called")),
                     kdf=LOW)
    return code, out.getvalue(), err.getvalue()


def login(data_dir, headers):
    """Who ``headers`` prove to be to a daemon of ``data_dir`` (scrypt run inline)."""
    creds = auth.Credentials(auth.credentials_path(str(data_dir)))
    authn = auth.Authenticator(creds, kdf=LOW, to_thread=lambda f, *a: maybeDeferred(f, *a))
    return result(authn.authenticate(headers, None, "GET", "/", "127.0.0.1"))


def test_keys_add_prints_the_key_once_and_it_works(tmp_path):
    code, out, err = cli(tmp_path, "keys", "add", "--role", "reader", "--name", "ci")
    assert code == 0
    key = out.strip()
    assert out == key + "\n" and key.startswith("cwk_")  # alone on stdout
    assert key[:12] in err and "not shown again" in err and key not in err
    ident = login(tmp_path, {"x-api-key": key})
    assert (ident.role, ident.name) == ("reader", "ci")
    path = auth.credentials_path(str(tmp_path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key not in open(path).read()


def test_keys_list_never_shows_keys_or_hashes(tmp_path):
    assert cli(tmp_path, "keys", "list")[1].startswith("no API keys")
    _, k1, _ = cli(tmp_path, "keys", "add", "--role", "reader", "--name", "ci")
    _, k2, _ = cli(tmp_path, "keys", "add", "--role", "operator")
    code, out, _ = cli(tmp_path, "keys", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "ROLE", "CREATED", "NAME"]
    assert k1.strip()[:12] in out and k2.strip()[:12] in out and "ci" in out
    records = auth.read_credentials(auth.credentials_path(str(tmp_path))).keys
    for secret in (k1.strip(), k2.strip(), *(r.sha256 for r in records)):
        assert secret not in out


def test_keys_revoke_by_id_name_or_key(tmp_path):
    keys_made = [cli(tmp_path, "keys", "add", "--role", "reader", "--name", n)[1].strip()
                 for n in ("a", "b", "c")]
    assert cli(tmp_path, "keys", "revoke", keys_made[0][:12])[0] == 0
    assert cli(tmp_path, "keys", "revoke", "b")[0] == 0
    code, out, _ = cli(tmp_path, "keys", "revoke", keys_made[2])
    assert code == 0 and keys_made[2] not in out
    assert cli(tmp_path, "keys", "list")[1].startswith("no API keys")
    code, _, err = cli(tmp_path, "keys", "revoke", "cwk_nothere")
    assert code == 2 and "no key" in err


def test_keys_revoke_ambiguous_name(tmp_path):
    cli(tmp_path, "keys", "add", "--role", "reader", "--name", "same")
    cli(tmp_path, "keys", "add", "--role", "reader", "--name", "same")
    code, _, err = cli(tmp_path, "keys", "revoke", "same")
    assert code == 2 and "revoke by id" in err


def test_keys_add_needs_a_valid_role(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(tmp_path, "keys", "add")
    with pytest.raises(SystemExit):
        cli(tmp_path, "keys", "add", "--role", "admin")


def test_users_add_from_stdin_and_login(tmp_path):
    code, out, err = cli(tmp_path, "users", "add", "alice", "--role", "operator",
                         "--password-stdin", stdin="pa:ss word\n")
    assert code == 0 and "alice" in out and "pa:ss" not in out + err
    token = base64.b64encode(b"alice:pa:ss word").decode()
    ident = login(tmp_path, {"authorization": f"Basic {token}"})
    assert (ident.kind, ident.role) == ("basic", "operator")
    path = auth.credentials_path(str(tmp_path))
    assert "pa:ss word" not in open(path).read()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_users_add_interactive_confirms(tmp_path):
    answers = iter(["s3cret", "s3cret"])
    code, _, _ = cli(tmp_path, "users", "add", "bob", "--role", "reader",
                     getpass=lambda prompt: next(answers))
    assert code == 0
    answers = iter(["one", "two"])
    code, _, err = cli(tmp_path, "users", "add", "carol", "--role", "reader",
                       getpass=lambda prompt: next(answers))
    assert code == 2 and "do not match" in err


def test_users_refuse_empty_password_duplicates_and_bad_names(tmp_path):
    code, _, err = cli(tmp_path, "users", "add", "alice", "--role", "reader",
                       "--password-stdin", stdin="\n")
    assert code == 2 and "empty" in err
    code, _, err = cli(tmp_path, "users", "add", "dave", "--role", "reader",
                       getpass=lambda prompt: "")
    assert code == 2 and "empty" in err
    code, _, err = cli(tmp_path, "users", "add", "a:b", "--role", "reader",
                       "--password-stdin", stdin="x\n")
    assert code == 2 and "user names" in err
    assert cli(tmp_path, "users", "add", "alice", "--role", "reader", "--password-stdin",
               stdin="x\n")[0] == 0
    code, _, err = cli(tmp_path, "users", "add", "alice", "--role", "reader",
                       "--password-stdin", stdin="y\n")
    assert code == 2 and "--replace" in err
    assert cli(tmp_path, "users", "add", "alice", "--role", "operator", "--replace",
               "--password-stdin", stdin="y\n")[0] == 0
    users = auth.read_credentials(auth.credentials_path(str(tmp_path))).users
    assert users["alice"].role == "operator"


def test_users_list_and_remove(tmp_path):
    assert cli(tmp_path, "users", "list")[1].startswith("no users")
    cli(tmp_path, "users", "add", "alice", "--role", "operator", "--password-stdin",
        stdin="pw-alice\n")
    code, out, _ = cli(tmp_path, "users", "list")
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "ROLE", "CREATED",
                                                         "DIGEST", "REALM"]
    assert "alice" in out and "crawld" in out
    user = auth.read_credentials(auth.credentials_path(str(tmp_path))).users["alice"]
    assert user.digest_ha1 not in out and user.password["hash"] not in out
    assert cli(tmp_path, "users", "remove", "alice")[0] == 0
    code, _, err = cli(tmp_path, "users", "remove", "alice")
    assert code == 2 and "no user" in err


def test_register_mounts_on_another_parser_and_reads_data_dir_flag(tmp_path):
    parser = argparse.ArgumentParser(prog="crawld")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve")
    keys.register(sub)
    args = parser.parse_args(["keys", "--data-dir", str(tmp_path / "d"), "add",
                              "--role", "operator"])
    assert args.command in keys.COMMANDS
    out, err = io.StringIO(), io.StringIO()
    assert keys.run(args, out=out, err=err) == 0
    assert os.path.exists(auth.credentials_path(str(tmp_path / "d")))
    assert "first credential" in err.getvalue()


def test_data_dir_and_config_work_before_and_after_the_action(tmp_path):
    from crawld import keys
    parser = keys.build_parser()
    for argv in (["keys", "--data-dir", str(tmp_path), "add", "--role", "reader"],
                 ["keys", "add", "--role", "reader", "--data-dir", str(tmp_path)],
                 ["users", "list", "--config", "c.ini"]):
        args = parser.parse_args(argv)
        given = "--data-dir" if "--data-dir" in argv else "--config"
        value = argv[argv.index(given) + 1]
        assert getattr(args, given[2:].replace("-", "_")) == value, argv
    args = parser.parse_args(["keys", "list"])
    assert args.data_dir is None and args.config is None
