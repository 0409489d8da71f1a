"""The typed seams hold: every real class, and every fake the unit tests use, has each
member of the protocol it stands behind, accepting the calls the protocol describes.

A fake that drifts from the real class (a renamed method, a new parameter) fails here,
instead of letting a unit test pass against an interface the daemon no longer has.
"""
from __future__ import annotations

import pytest

from crawld.browser import Browsers
from crawld.events import JobEvents
from crawld.launch.celery import CeleryLauncher
from crawld.launch.local import LocalLauncher
from crawld.launch.protocol import Launcher, Reporter
from crawld.projects import Projects
from crawld.seams import (BrowserRunner, Clock, EventSink, EventSource, JobStore,
                          ProjectCatalog, Spawner)
from crawld.launch.spawner import DirectSpawner, ZygoteSpawner
from crawld.store import Store
from crawld.supervisor import Supervisor
from twisted.internet.task import Clock as TaskClock
from tests.unit.protocol_check import problems
from tests.unit.test_launcher_protocol import FakeLauncher
from tests.unit.test_webhooks import FakePoster
from crawld.webhook_client import AgentPoster, Poster


IMPLEMENTATIONS = [
    (Clock, [TaskClock]),
    (EventSink, [JobEvents]),
    (EventSource, [JobEvents]),
    (JobStore, [Store]),
    (ProjectCatalog, [Projects]),
    (BrowserRunner, [Browsers]),
    (Spawner, [DirectSpawner, ZygoteSpawner]),
    (Launcher, [LocalLauncher, CeleryLauncher, FakeLauncher]),
    (Reporter, [Supervisor]),
    (Poster, [AgentPoster, FakePoster]),
]


@pytest.mark.parametrize("protocol,impl", [(p, c) for p, classes in IMPLEMENTATIONS
                                           for c in classes],
                         ids=lambda x: getattr(x, "__name__", str(x)))
def test_the_class_implements_its_protocol(protocol, impl):
    assert problems(protocol, impl) == []


def test_a_drifted_fake_is_caught():
    """The check itself can fail: a class whose method lost a parameter is reported."""
    class Drifted:
        def publish(self) -> None:  # the job parameter is missing
            pass
    assert problems(EventSink, Drifted) == ["Drifted.publish: no parameter 'job'"]
