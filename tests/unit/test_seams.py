"""The typed seams hold: every real class, and every fake the unit tests use, has each
member of the protocol it stands behind, with the same parameters.

A fake that drifts from the real class (a renamed method, a new parameter) fails here,
instead of letting a unit test pass against an interface the daemon no longer has.
"""
from __future__ import annotations

import inspect
from typing import Any

import pytest

from crawld.browser import Browsers
from crawld.events import JobEvents
from crawld.launch.local import LocalLauncher
from crawld.launch.protocol import Launcher, Reporter
from crawld.projects import Projects
from crawld.seams import BrowserRunner, Clock, EventSink, JobStore, ProjectCatalog, Spawner
from crawld.launch.spawner import DirectSpawner, ZygoteSpawner
from crawld.store import Store
from crawld.supervisor import Supervisor
from twisted.internet.task import Clock as TaskClock
from tests.unit.test_launcher_protocol import FakeLauncher


def members(protocol: type) -> dict[str, Any]:
    """The protocol's own methods and annotated attributes."""
    found: dict[str, Any] = {name: None for name in getattr(protocol, "__annotations__", {})}
    for name, value in vars(protocol).items():
        if callable(value) and not name.startswith("_"):
            found[name] = value
    return found


def parameters(fn: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()
            if p.name != "self"]


IMPLEMENTATIONS = [
    (Clock, [TaskClock]),
    (EventSink, [JobEvents]),
    (JobStore, [Store]),
    (ProjectCatalog, [Projects]),
    (BrowserRunner, [Browsers]),
    (Spawner, [DirectSpawner, ZygoteSpawner]),
    (Launcher, [LocalLauncher, FakeLauncher]),
    (Reporter, [Supervisor]),
]


@pytest.mark.parametrize("protocol,impl", [(p, c) for p, classes in IMPLEMENTATIONS
                                           for c in classes],
                         ids=lambda x: getattr(x, "__name__", str(x)))
def test_the_class_has_every_member_of_its_protocol_with_the_same_parameters(protocol, impl):
    for name, declared in members(protocol).items():
        if declared is None:  # an attribute: set in __init__, so look at an annotation
            assert name in getattr(impl, "__annotations__", {}) or hasattr(impl, name) \
                or name in inspect.getsource(impl.__init__), f"{impl.__name__} lacks {name}"
            continue
        actual = getattr(impl, name, None)
        assert actual is not None, f"{impl.__name__} lacks {name}()"
        assert parameters(actual) == parameters(declared), (
            f"{impl.__name__}.{name}{inspect.signature(actual)} differs from "
            f"{protocol.__name__}.{name}{inspect.signature(declared)}")


def test_a_drifted_fake_is_caught():
    """The check itself can fail: a class whose method lost a parameter is reported."""
    class Drifted:
        def publish(self) -> None:  # the job parameter is missing
            pass
    with pytest.raises(AssertionError, match="publish"):
        test_the_class_has_every_member_of_its_protocol_with_the_same_parameters(
            EventSink, Drifted)
