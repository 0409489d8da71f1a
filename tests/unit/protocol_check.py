"""Checks that a class implements a typing.Protocol: every method the protocol declares
exists and accepts the calls the protocol describes, every attribute exists. Used by the
seams' tests (test_seams.py, test_http_services.py): there is no type checker in the
toolchain, so this is how a fake that drifts from the real class is caught."""
from __future__ import annotations

import inspect
import re
from typing import Callable


def declared(proto: type) -> tuple[dict[str, Callable], set[str]]:
    """A Protocol's own methods and data attributes."""
    methods = {name: value for name, value in vars(proto).items()
               if callable(value) and not name.startswith("_")}
    return methods, set(getattr(proto, "__annotations__", {}))


def accepts(impl: Callable, wanted: Callable) -> list[str]:
    """What a call made as ``wanted`` declares would not fit ``impl`` (empty: fits)."""
    have = inspect.signature(impl).parameters
    want = [p for name, p in inspect.signature(wanted).parameters.items() if name != "self"]
    kinds = {p.kind for p in have.values()}
    problems = []
    for p in want:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name not in have and not ({p.VAR_POSITIONAL, p.VAR_KEYWORD} & kinds):
            problems.append(f"no parameter {p.name!r}")
        elif p.name in have and p.default is not p.empty and have[p.name].default is p.empty:
            problems.append(f"{p.name!r} must be optional")
    names = {p.name for p in want}
    for name, p in have.items():
        if (name != "self" and name not in names and p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)):
            problems.append(f"{name!r} is required but the API never passes it")
    return problems


def has_attribute(cls: type, name: str) -> bool:
    """Set on the class, annotated on it, or assigned to ``self`` in its source."""
    if hasattr(cls, name) or name in getattr(cls, "__annotations__", {}):
        return True
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return False
    return re.search(rf"self\.{name}\s*(:[^=]*)?=[^=]", source) is not None


def problems(proto: type, cls: type) -> list[str]:
    """Every way ``cls`` fails to implement ``proto`` (empty: it does)."""
    methods, attributes = declared(proto)
    found = []
    for name, wanted in methods.items():
        impl = getattr(cls, name, None)
        if impl is None:
            found.append(f"{cls.__name__} has no {name}()")
            continue
        found += [f"{cls.__name__}.{name}: {p}" for p in accepts(impl, wanted)]
    found += [f"{cls.__name__} has no attribute {name}" for name in attributes
              if not has_attribute(cls, name)]
    return found
