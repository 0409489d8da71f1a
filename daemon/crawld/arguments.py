"""A spider job's arguments (``-a NAME=VALUE``) and Scrapy settings (``-s NAME=VALUE``):
parsed from a request, bounded, refused when they would undo crawld's safety (pure).

A job keeps both as JSON lists of ``[name, value]`` pairs (``Job.args``,
``Job.settings``), in the order they were given, and the job's ``scrapy crawl`` command
line carries them in that order (commands.crawl_command). Scrapy keeps the last value of
a name given twice, so the API shows each as an object of what the spider gets
(``as_object``).

Every bound is about what a command line can carry: Linux refuses an argument over 128
KiB (MAX_ARG_STRLEN) and a command line and environment over ~2 MiB (ARG_MAX) with
E2BIG, and a NUL ends a C string. The refused settings are those that would re-open what
crawld closes on every job (the telnet console, the remote-control extension) or replace
what crawld sets itself; see docs/security.md, "Jobs".
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Sequence

from .commands import FORCED_SETTINGS, stored_pairs
from .errors import BadRequest

#: Characters in an argument's or a setting's name.
MAX_NAME = 100
#: UTF-8 bytes in one value: ``NAME=VALUE`` stays far below Linux's 128 KiB per argument.
MAX_VALUE = 64 * 1024
#: Arguments, and settings, one job may have.
MAX_PAIRS = 64
#: UTF-8 bytes of all names and values together: well within a command line (~2 MiB).
MAX_TOTAL = 256 * 1024

#: Scrapy settings a job may not set (compared in upper case), with why. A prefix ends
#: with ``_``. crawld passes ``-s TELNETCONSOLE_ENABLED=0 -s REMOTE_CONTROL_ENABLED=0``;
#: the other settings of either extension (a port, a host, a password, a jobs
#: directory) would only matter to one that runs. EXTENSIONS and EXTENSIONS_BASE from the
#: command line replace the project's dicts wholesale, crawld's own extensions with them.
REFUSED_SETTINGS: tuple[tuple[str, str], ...] = (
    ("TELNETCONSOLE_", "Scrapy's telnet console runs code on a local port; crawld keeps "
                       "it off for every job"),
    ("REMOTE_CONTROL_", "Scrapy's RemoteControl extension runs code on a local port; "
                        "crawld keeps it off for every job"),
    ("EXTENSIONS", "it replaces the extensions crawld and the project enable"),
    ("EXTENSIONS_BASE", "it replaces Scrapy's base extensions, crawld's with them"),
)

#: A setting's name: ASCII letters, digits and ``_``, not starting with a digit.
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_name(kind: str, name: str) -> None:
    if len(name) > MAX_NAME:
        raise BadRequest(f"{kind} name {name[:40]!r}... is over {MAX_NAME} characters")


def _check_value(kind: str, name: str, value: str) -> int:
    """The value's size in bytes; BadRequest when over MAX_VALUE or holding a NUL."""
    if "\0" in value:
        raise BadRequest(f"{kind} {name!r} holds a NUL character, which no command line "
                         "can carry")
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE:
        raise BadRequest(f"{kind} {name!r} is {size} bytes; at most {MAX_VALUE}")
    return size


def _check_count(kind: str, pairs: Sequence[Any]) -> None:
    if len(pairs) > MAX_PAIRS:
        raise BadRequest(f"{len(pairs)} {kind}s; a job may have at most {MAX_PAIRS}")


def parse_args(given: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Spider arguments from ``(name, value)`` pairs (the ``arg-NAME`` parameters, in
    order): each name a Python identifier (it becomes a keyword argument of the spider
    and an attribute of it), ``payload`` excepted (crawld passes the ``payload``
    parameter under that name). BadRequest naming the first problem."""
    pairs = list(given)
    _check_count("spider argument", pairs)
    for name, value in pairs:
        if not name:
            raise BadRequest("parameter 'arg-' has no argument name: give "
                             "arg-NAME=VALUE, e.g. arg-category=books")
        _check_name("spider argument", name)
        if not name.isidentifier():
            raise BadRequest(f"spider argument name {name!r} (parameter 'arg-{name}') is "
                             "not a Python identifier (letters, digits and _, not "
                             "starting with a digit)")
        if name == "payload":
            raise BadRequest("spider argument 'payload' is given with the 'payload' "
                             "parameter (JSON), not with arg-payload")
        _check_value("spider argument", name, value)
    return pairs


def refusal(name: str) -> str | None:
    """Why the setting ``name`` may not be set on a job, or None when it may."""
    upper = name.upper()
    for refused, why in REFUSED_SETTINGS:
        if upper == refused or (refused.endswith("_") and upper.startswith(refused)):
            return why
    if upper in FORCED_SETTINGS:
        return "crawld sets it on every job"
    return None


def parse_settings(given: Iterable[str]) -> list[tuple[str, str]]:
    """Scrapy settings from ``NAME=VALUE`` texts (the ``setting`` parameters, in order):
    a name of ASCII letters, digits and ``_``, split at the first ``=``; refused
    settings (``refusal``) are a 400 that says why."""
    texts = list(given)
    _check_count("setting", texts)
    pairs = []
    for text in texts:
        name, eq, value = text.partition("=")
        if not eq:
            raise BadRequest(f"setting {text[:60]!r} has no '=': give setting=NAME=VALUE, "
                             "e.g. setting=DOWNLOAD_DELAY=2")
        _check_name("setting", name)
        if not _SETTING_NAME.fullmatch(name):
            raise BadRequest(f"setting name {name!r} must be ASCII letters, digits and _, "
                             "not starting with a digit (e.g. DOWNLOAD_DELAY)")
        why = refusal(name)
        if why is not None:
            raise BadRequest(f"setting {name} may not be set on a job: {why} "
                             "(see docs/security.md)")
        _check_value("setting", name, value)
        pairs.append((name, value))
    return pairs


def check_total(args: Sequence[tuple[str, str]], settings: Sequence[tuple[str, str]]
                ) -> None:
    """All names and values together within MAX_TOTAL bytes (a command line's room)."""
    total = sum(len(n.encode("utf-8")) + len(v.encode("utf-8")) + 1
                for n, v in (*args, *settings))
    if total > MAX_TOTAL:
        raise BadRequest(f"spider arguments and settings come to {total} bytes; at most "
                         f"{MAX_TOTAL} in all")


def to_json(pairs: Sequence[tuple[str, str]]) -> str:
    """Pairs as a job stores them: a JSON list of ``[name, value]``."""
    return json.dumps([list(p) for p in pairs], ensure_ascii=False) if pairs else "[]"


def as_object(text: str) -> dict[str, str]:
    """A stored list as the API shows it: name -> value, the last value of a name given
    twice (the one Scrapy uses), names in the order first given."""
    return dict(stored_pairs(text))
