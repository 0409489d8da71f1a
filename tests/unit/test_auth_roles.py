"""auth.roles: the role each request needs, authorization, modes and the start-up rule."""
from __future__ import annotations

import re

import pytest

from crawld.auth import roles
from crawld.errors import ConfigError, Forbidden


EXPECTED_ROLES = {  # every route the app serves: a new one must be decided here
    # served without credentials: the dashboard's page and files hold no data; login,
    # logout and whoami look at the credentials themselves (routes_session.py)
    "/": "public",
    "/dashboard/<string:name>": "public",
    "/login.json": "public",
    "/logout.json": "public",
    "/whoami.json": "public",
    "/job-history.json": "reader",
    "/openapi.json": "reader",  # the API's description: what docs/openapi.yaml says
    "/status.json": "reader",
    "/list-projects.json": "reader",
    "/list-spiders.json": "reader",
    "/preview-schedule.json": "reader",
    "/list-jobs.json": "reader",
    "/get-log/<string:anything>/<string:filename>": "reader",
    "/job-stats.json": "reader",
    "/job-items.json": "reader",       # what the crawl scraped, as readable as its logs
    "/job-items/<string:itemsfile>": "reader",
    "/push-project.json": "operator",
    "/schedule-job.json": "operator",
    "/pause-job.json": "operator",
    "/resume-job.json": "operator",
    "/run-job.json": "operator",
    "/update-job.json": "operator",
    "/cancel-job.json": "operator",
    "/remove-project.json": "operator",
    "/list-scripts.json": "reader",
    "/list-versions.json": "reader",
    "/delete-version.json": "operator",
    "/job-output.json": "reader",
    "/job-screenshot.png": "reader",
    "/job-files.json": "reader",
    "/job-files/<string:job_id>/<string:name>": "reader",
    "/browsers.json": "reader",
    "/job-posts.json": "operator",   # reading hands each post out once
    "/job-message.json": "operator",
    "/browse.json": "operator",
    "/webhook-deliveries.json": "reader",  # attempts, codes and redacted URLs only
    "/events": "reader",   # job objects as list-jobs.json shows them, as they change
    "/metrics": "reader",  # counts and durations by project and spider
    # issue 14: what crawld workers call, with worker keys only (and nothing else)
    "/cluster/claim": "worker",
    "/cluster/started": "worker",
    "/cluster/output": "worker",
    "/cluster/file": "worker",
    "/cluster/screenshot": "worker",
    "/cluster/stats": "worker",
    "/cluster/heartbeat": "worker",
    "/cluster/ended": "worker",
    "/cluster/code/<string:digest>.zip": "worker",
}


def test_every_route_has_a_decided_role():
    from crawld.http.app import build_router
    from tests.unit.http_fakes import services
    router = build_router(services())
    routes = router.methods
    assert set(routes) == set(EXPECTED_ROLES), "decide the role of new routes here"
    assert router.public == {p for p, role in EXPECTED_ROLES.items() if role == "public"}
    for path, methods in routes.items():
        if path in router.public:
            continue
        concrete = re.sub(r"<string:\w+>", "x", path)
        needed = {roles.required_role(m, concrete) for m in methods}
        assert needed == {EXPECTED_ROLES[path]}, path


def test_role_table():
    assert roles.required_role("GET", "/status.json") == "reader"
    assert roles.required_role("HEAD", "/get-log/x/y.out") == "reader"
    assert roles.required_role("get", "/anything-unknown") == "reader"
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        assert roles.required_role(method, "/status.json") == "operator"
    for path in ("/download-project.json", "/Download-Project.json?name=x",
                 "/download%2Dproject.json", "//download-project.json",
                 "/x/../download-project.json", "/download-project.json/",
                 "/config.json", "/list-keys.json"):
        assert roles.required_role("GET", path) == "operator", path


def test_authorize():
    reader = roles.Identity("key", "ci", "reader", "cwk_abcdefgh")
    roles.authorize(reader, "reader")
    with pytest.raises(Forbidden) as info:
        roles.authorize(reader, "operator")
    assert info.value.code == 403 and "cwk_abcdefgh" in info.value.msg
    roles.authorize(roles.Identity("basic", "alice", "operator"), "operator")
    roles.authorize(roles.ANONYMOUS, "operator")


# -- start-up rule --------------------------------------------------------------------
def test_loopback():
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST.",
                 "::ffff:127.0.0.1"):
        assert roles.is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "example.com", "128.0.0.1"):
        assert not roles.is_loopback(host), host


def test_must_refuse_start():
    assert roles.must_refuse_start(["127.0.0.1", "::1"], None, False) is None
    msg = roles.must_refuse_start(["127.0.0.1", "0.0.0.0"], None, False)
    assert msg and "0.0.0.0" in msg and "auth = none" in msg and "keys add" in msg
    assert roles.must_refuse_start(["0.0.0.0"], "none", False) is None  # explicit choice
    assert roles.must_refuse_start(["0.0.0.0"], None, True) is None  # auto: required
    assert roles.must_refuse_start(["0.0.0.0"], "required", True) is None
    assert roles.must_refuse_start(["0.0.0.0"], "required", False) is None  # 401s only
    assert "expected none or required" in roles.must_refuse_start(["::1"], "maybe", True)


def test_resolve_mode_and_warnings():
    assert roles.resolve_mode(None, False) == "none"
    assert roles.resolve_mode(None, True) == "required"
    assert roles.resolve_mode("none", True) == "none"
    with pytest.raises(ConfigError):
        roles.resolve_mode("yes", True)
    assert "auth = none" in roles.start_warning(["0.0.0.0"], "none", True)
    assert "401" in roles.start_warning(["127.0.0.1"], "required", False)
    assert roles.start_warning(["127.0.0.1"], None, False) is None
    assert roles.start_warning(["0.0.0.0"], "required", True) is None
