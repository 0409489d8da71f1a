"""The daemon's services and the unit tests' fakes both implement the Protocols of
crawld.http.services: a method renamed, or given a new required parameter, on either
side fails here (there is no type checker in the toolchain to notice it)."""
from __future__ import annotations

import inspect
import re
from typing import Callable

import pytest
from twisted.internet.task import Clock

from crawld import auth, browser, jobs, projects, status, supervisor
from crawld.http import services as http_services
from tests.unit import http_fakes

REAL = {
    http_services.ReactorApi: Clock,
    http_services.JobsApi: jobs.Jobs,
    http_services.ProjectsApi: projects.Projects,
    http_services.SupervisorApi: supervisor.Supervisor,
    http_services.ChannelApi: browser.Channel,
    http_services.BrowsersApi: browser.Browsers,
    http_services.StatusApi: status.StatusReport,
    http_services.AuthenticatorApi: auth.Authenticator,
}
FAKES = {
    http_services.JobsApi: http_fakes.FakeJobs,
    http_services.ProjectsApi: http_fakes.FakeProjects,
    http_services.SupervisorApi: http_fakes.FakeSupervisor,
    http_services.AuthenticatorApi: http_fakes.NoAuth,
}


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


@pytest.mark.parametrize("proto, cls", [*REAL.items(), *FAKES.items()],
                         ids=lambda v: v.__name__)
def test_implements_the_protocol(proto: type, cls: type) -> None:
    methods, attributes = declared(proto)
    for name, wanted in methods.items():
        impl = getattr(cls, name, None)
        assert impl is not None, f"{cls.__name__} has no {name}()"
        assert accepts(impl, wanted) == [], f"{cls.__name__}.{name}"
    for name in attributes:
        assert has_attribute(cls, name), f"{cls.__name__} has no attribute {name}"


def test_every_protocol_is_checked_against_the_daemon() -> None:
    assert set(REAL) == set(http_services.PROTOCOLS)


def test_a_drifted_fake_would_be_seen() -> None:
    class Drifted:
        kill_grace = 1.0

        def is_running(self, job: str, strict: bool) -> bool:
            return False
    methods, _ = declared(http_services.SupervisorApi)
    assert accepts(Drifted.is_running, methods["is_running"]) == [
        "no parameter 'job_id'", "'job' is required but the API never passes it",
        "'strict' is required but the API never passes it"]
    assert not has_attribute(Drifted, "mode")
    assert isinstance(http_fakes.NoAuth(), http_services.AuthenticatorApi)


def test_services_count_their_own_streams() -> None:
    built = http_fakes.services(web=http_services.WebSettings(max_streams=3))
    assert built.streams.limit == 3 and not built.streams.full
    assert http_fakes.services().streams is not http_fakes.services().streams
    with pytest.raises(Exception):
        built.jobs = None  # type: ignore[misc]  # frozen: wired once


