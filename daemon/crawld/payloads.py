"""JSON values from requests (a job's payload, a message to a browser job): parsed,
bounded in depth and valid Unicode, or a 400 that says which (pure).

``json.loads`` accepts what the rest of crawld cannot use: a value nested 100,000 deep
raises RecursionError, and ``"\\ud800"`` decodes to a lone surrogate that no UTF-8
encoder (the database, the answer, the job's command line) accepts. Both were 500s.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import BadRequest

#: How deep arrays and objects may nest in a JSON parameter (a payload is data, not a
#: tree to recurse over: 100 levels is far more than any spider argument needs).
MAX_DEPTH = 100


def parse_json(what: str, text: str) -> Any:
    """``text`` as a JSON value; BadRequest naming ``what`` (e.g. ``"payload"``) when
    it is not JSON, nests deeper than MAX_DEPTH or holds a lone surrogate."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadRequest(f"{what} is nested more than {MAX_DEPTH} deep") from None
    except ValueError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    _check(what, value)
    return value


def _check(what: str, value: Any) -> None:
    """Walk ``value`` without recursion: its depth, and every string (keys included)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise BadRequest(f"{what} is nested more than {MAX_DEPTH} deep")
            children = (list(item.keys()) + list(item.values()) if isinstance(item, dict)
                        else item)
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"{what} holds a lone surrogate (such as \\ud800), "
                                 "which is not a character") from None
