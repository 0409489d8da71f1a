"""``crawld keys add|list|revoke`` and ``crawld users add|list|remove``.

They edit ``<data-dir>/credentials.json`` (see auth/credfile.py for the format); a running
daemon picks the change up within a second, no restart. A new API key is printed once,
alone on stdout (``KEY=$(crawld keys add --role reader)`` works); only its hash is
kept. Listings show ids, names, roles and dates, never keys or hashes.

Mount on cli.py's subparsers with ``register(sub)``, then ``run(args)`` when
``args.command in COMMANDS``; ``main(argv, data_dir, out)`` is the same, standalone.
"""
from __future__ import annotations

import argparse
import getpass as getpass_module
import sys
import time
from typing import Any, Callable, Optional, Sequence, TextIO

from . import auth
from .errors import ConfigError

COMMANDS = ("keys", "users")
FIRST_CREDENTIAL = ("this is the first credential: a daemon that started without any and "
                    "without auth = required checks none until it restarts\n")


def _location(parser: argparse.ArgumentParser, leaf: bool = False) -> None:
    """--config and --data-dir, accepted before the action (``crawld keys --config F
    add``) and after it (``crawld keys add --config F``): a leaf sets them only when
    given, so it never hides what the group parsed."""
    extra = {"default": argparse.SUPPRESS} if leaf else {}
    parser.add_argument("--config", metavar="FILE",
                        help="INI file whose data-dir to use",
                        **extra)
    parser.add_argument("--data-dir", metavar="DIR",
                        help="the daemon's data directory (default: from the config, "
                        "else ./crawld-data)", **extra)


def register(sub: Any) -> None:
    """Add the ``keys`` and ``users`` commands to ``sub`` (an add_subparsers result)."""
    keys = sub.add_parser("keys", help="manage API keys (in the data directory)",
                          description="API keys: sent as 'Authorization: Bearer KEY', "
                          "'X-Api-Key: KEY' or ?key=KEY.")
    _location(keys)
    ksub = keys.add_subparsers(dest="action", required=True)
    add = ksub.add_parser("add", help="create a key and print it (once)")
    _location(add, leaf=True)
    add.add_argument("--role", required=True, choices=auth.KEY_ROLES,
                     help="reader: read-only GETs; operator: everything; worker: a worker "
                     "host's key for /cluster/* only ([cluster] launcher = celery)")
    add.add_argument("--name", default="", help="a label, e.g. who or what uses the key")
    _location(ksub.add_parser("list", help="list keys: id, role, created, name"), leaf=True)
    revoke = ksub.add_parser("revoke", help="delete a key")
    _location(revoke, leaf=True)
    revoke.add_argument("key", metavar="ID", help="the key's id (cwk_xxxxxxxx, from "
                        "'crawld keys list'), its unique name, or the key itself")

    users = sub.add_parser("users", help="manage users (HTTP Basic and Digest)",
                           description="Users log in with HTTP Basic or Digest (what "
                           "scrapy-do-cl --username/--password uses).")
    _location(users)
    usub = users.add_subparsers(dest="action", required=True)
    uadd = usub.add_parser("add", help="add a user; asks for the password")
    _location(uadd, leaf=True)
    uadd.add_argument("name", metavar="NAME")
    uadd.add_argument("--role", required=True, choices=auth.ROLES,
                      help="reader: read-only GETs; operator: everything")
    uadd.add_argument("--password-stdin", action="store_true",
                      help="read the password from the first line of stdin (scripts)")
    uadd.add_argument("--replace", action="store_true",
                      help="change the password and role of an existing user")
    _location(usub.add_parser("list", help="list users: name, role, realm, created"),
              leaf=True)
    remove = usub.add_parser("remove", help="delete a user")
    _location(remove, leaf=True)
    remove.add_argument("name", metavar="NAME")


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser with just the ``keys`` and ``users`` commands."""
    parser = argparse.ArgumentParser(prog="crawld")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def _data_dir(args: argparse.Namespace) -> tuple[str, Optional[str]]:
    """The data directory (and configured realm, if any) from --data-dir/--config."""
    from . import config

    settings = config.load(getattr(args, "config", None),
                           {"data_dir": getattr(args, "data_dir", None)})
    return settings.data_path, getattr(settings, "auth_realm", None)


def _read_password(args: argparse.Namespace, stdin: TextIO,
                   ask: Callable[[str], str]) -> str:
    if args.password_stdin:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        password = ask(f"Password for {args.name}: ")
        if password and ask("Repeat it: ") != password:
            raise auth.CredentialsError("the passwords do not match")
    if not password:
        raise auth.CredentialsError("the password may not be empty")
    return password


def _table(out: TextIO, header: Sequence[str], rows: list[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def run(args: argparse.Namespace, data_dir: Optional[str] = None,
        out: Optional[TextIO] = None, *, err: Optional[TextIO] = None,
        stdin: Optional[TextIO] = None, getpass: Optional[Callable[[str], str]] = None,
        realm: Optional[str] = None, kdf: auth.KdfParams = auth.DEFAULT_KDF,
        clock: Callable[[], float] = time.time) -> int:
    """Execute parsed ``keys``/``users`` arguments; returns the exit code.

    ``data_dir`` None: from ``--data-dir``/``--config`` as ``crawld serve`` would.
    ``realm`` None: the configured one (a Settings ``auth_realm``, if it exists), else
    "crawld"; it must equal the daemon's, or Digest fails for the user (Basic works).
    ``kdf`` is the scrypt cost of new password hashes (tests lower it).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        configured_realm = None
        if data_dir is None:
            data_dir, configured_realm = _data_dir(args)
        path = auth.credentials_path(data_dir)
        realm = realm or configured_realm or auth.DEFAULT_REALM
        if args.command == "keys":
            return _keys(args, path, out, err, clock)
        return _users(args, path, out, err, stdin or sys.stdin,
                      getpass or getpass_module.getpass, realm, kdf, clock)
    except (auth.CredentialsError, ConfigError) as exc:
        err.write(f"crawld {args.command} {args.action}: {exc}\n")
        return 2
    except OSError as exc:
        err.write(f"crawld {args.command} {args.action}: {exc}\n")
        return 1


def _keys(args: argparse.Namespace, path: str, out: TextIO, err: TextIO,
          clock: Callable[[], float]) -> int:
    if args.action == "add":
        was_empty = not auth.read_credentials(path)
        key, record = auth.add_key(path, args.role, args.name, clock)
        out.write(key + "\n")
        out.flush()
        err.write(f"added {record.role} key {record.id}"
                  + (f" ({record.name!r})" if record.name else "")
                  + ": keep it now, it is not shown again\n")
        if was_empty:
            err.write(FIRST_CREDENTIAL)
        return 0
    if args.action == "list":
        creds = auth.read_credentials(path)
        if not creds.keys:
            out.write("no API keys (crawld keys add --role reader|operator)\n")
            return 0
        _table(out, ("ID", "ROLE", "CREATED", "NAME"),
               [(k.id, k.role, k.created, k.name) for k in creds.keys])
        return 0
    record = auth.revoke_key(path, args.key)
    out.write(f"revoked {record.role} key {record.id}"
              + (f" ({record.name!r})" if record.name else "") + "\n")
    return 0


def _users(args: argparse.Namespace, path: str, out: TextIO, err: TextIO, stdin: TextIO,
           ask: Callable[[str], str], realm: str, kdf: auth.KdfParams,
           clock: Callable[[], float]) -> int:
    if args.action == "add":
        existing = auth.read_credentials(path)
        if args.name in existing.users and not args.replace:
            raise auth.CredentialsError(f"user {args.name!r} exists (use --replace to "
                                        "change it)")
        was_empty = not existing
        password = _read_password(args, stdin, ask)
        user = auth.add_user(path, args.name, password, args.role, realm=realm, kdf=kdf,
                             replace_existing=args.replace, clock=clock)
        out.write(f"{'replaced' if args.replace else 'added'} {user.role} user "
                  f"{user.name!r} (HTTP Basic, and Digest for realm {realm!r})\n")
        if was_empty:
            err.write(FIRST_CREDENTIAL)
        return 0
    if args.action == "list":
        creds = auth.read_credentials(path)
        if not creds.users:
            out.write("no users (crawld users add NAME --role reader|operator)\n")
            return 0
        _table(out, ("NAME", "ROLE", "CREATED", "DIGEST REALM"),
               [(u.name, u.role, u.created, u.digest_realm or "-")
                for u in creds.users.values()])
        return 0
    user = auth.remove_user(path, args.name)
    out.write(f"removed {user.role} user {user.name!r}\n")
    return 0


def main(argv: Sequence[str], data_dir: Optional[str], out: TextIO, **kwargs: Any) -> int:
    """Parse ``argv`` (e.g. ``["keys", "add", "--role", "reader"]``) and ``run`` it."""
    return run(build_parser().parse_args(list(argv)), data_dir, out, **kwargs)
