"""The daemon's services and the unit tests' fakes both implement the Protocols of
crawld.http.services: a method renamed, or given a new required parameter, on either
side fails here (there is no type checker in the toolchain to notice it)."""
from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from crawld import (auth, browser, cluster, feed, jobs, metrics, projects, status, supervisor, waits,
                    webhooks)
from crawld.http import services as http_services
from tests.unit import http_fakes
from tests.unit.protocol_check import accepts, declared, has_attribute, problems

REAL = {
    http_services.ReactorApi: Clock,
    http_services.JobsApi: jobs.Jobs,
    http_services.ProjectsApi: projects.Projects,
    http_services.SupervisorApi: supervisor.Supervisor,
    http_services.ChannelApi: browser.Channel,
    http_services.BrowsersApi: browser.Browsers,
    http_services.StatusApi: status.StatusReport,
    http_services.AuthenticatorApi: auth.Authenticator,
    http_services.WebhooksApi: webhooks.Webhooks,
    http_services.WaitsApi: waits.JobWaits,
    http_services.WaitApi: waits.Wait,
    http_services.FeedApi: feed.JobFeed,
    http_services.MetricsApi: metrics.Metrics,
    http_services.ClusterApi: cluster.Cluster,
}
FAKES = {
    http_services.JobsApi: http_fakes.FakeJobs,
    http_services.ProjectsApi: http_fakes.FakeProjects,
    http_services.SupervisorApi: http_fakes.FakeSupervisor,
    http_services.AuthenticatorApi: http_fakes.NoAuth,
}


@pytest.mark.parametrize("proto, cls", [*REAL.items(), *FAKES.items()],
                         ids=lambda v: v.__name__)
def test_implements_the_protocol(proto: type, cls: type) -> None:
    assert problems(proto, cls) == []


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


