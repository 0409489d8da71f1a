"""The app as built by build_app: each call a new app, the wrapper's order with an
authenticator that answers later, `/`, form bodies through crawld's request class."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import pytest
from twisted.internet.defer import Deferred, succeed

from crawld import auth
from crawld.http import app as app_module
from crawld.http.app import build_app, build_router
from tests.unit.fakes import result
from tests.unit.http_fakes import FakeProjects, NoAuth, services, stub, with_web

URL = "http://localhost"


class LaterAuth:
    """An authenticator that answers when the test says (as scrypt in a thread would)."""

    def __init__(self, mode: str = "required") -> None:
        self.mode = mode
        self.asked: list[tuple[str, str]] = []
        self.pending: list[Deferred] = []

    def authenticate(self, headers: Any, query_key: Optional[str], method: str, uri: str,
                     client_host: str) -> Deferred:
        self.asked.append((method, uri))
        waiting: Deferred = Deferred()
        self.pending.append(waiting)
        return waiting


def fired(d: Deferred) -> bool:
    done: list[Any] = []
    d.addBoth(lambda r: (done.append(r), r)[1])
    return bool(done)


def body_of(response: Any) -> bytes:
    return result(response.content())


def test_each_build_is_a_new_app_with_its_own_settings():
    assert not any(type(v).__name__ == "Klein" for v in vars(app_module).values())
    plain = services()
    dashboard = with_web(plain, allowed_origins=frozenset({"https://dash.example"}))
    first, second = build_router(plain), build_router(dashboard)
    assert first.klein is not second.klein and first.methods == second.methods
    headers = {"Origin": "https://dash.example"}
    answer = result(stub(dashboard).get(URL + "/status.json", headers=headers))
    assert answer.headers.getRawHeaders("Access-Control-Allow-Origin") == [
        "https://dash.example"]
    answer = result(stub(plain).get(URL + "/status.json", headers=headers))
    assert answer.code == 200 and not answer.headers.hasHeader("Access-Control-Allow-Origin")


def test_root_is_the_dashboards_page():
    client = stub(services())
    response = result(client.get(URL + "/"))
    text = body_of(response).decode("utf-8")
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert '<script type="module" src="dashboard/app.js">' in text
    assert "openapi.json" in text  # where the API is described, for a browser without JS
    response = result(client.post(URL + "/"))
    assert response.code == 405 and response.headers.getRawHeaders("allow") == ["GET"]
    assert result(client.get(URL + "/nothing-here.json")).code == 404


def test_a_later_answer_from_the_authenticator_lets_the_route_run_then():
    later = LaterAuth()
    client = stub(services(authenticator=later))
    answer = client.get(URL + "/list-projects.json")
    assert not fired(answer) and later.asked == [("GET", "/list-projects.json")]
    later.pending[0].callback(auth.Identity("key", "ci", auth.READER, "cwk_12345678"))
    client.flush()
    response = result(answer)
    assert response.code == 200
    assert json.loads(body_of(response)) == {"status": "ok", "projects": ["demo"]}


def test_a_later_refusal_is_401_with_challenges_and_the_route_never_runs():
    later = LaterAuth()
    projects = FakeProjects()
    client = stub(services(authenticator=later, projects=projects))
    answer = client.post(URL + "/remove-project.json", data={"name": "demo"})
    later.pending[0].errback(auth.Unauthorized("invalid credentials", ["Basic realm=\"x\""]))
    client.flush()
    response = result(answer)
    assert response.code == 401 and json.loads(body_of(response))["msg"] == \
        "invalid credentials"
    assert response.headers.getRawHeaders("WWW-Authenticate") == ["Basic realm=\"x\""]
    assert projects.names() == ["demo"]


def test_a_reader_identity_is_refused_an_operator_route_after_a_later_answer():
    later = LaterAuth()
    client = stub(services(authenticator=later))
    answer = client.post(URL + "/remove-project.json", data={"name": "demo"})
    later.pending[0].callback(auth.Identity("key", "ci", auth.READER, "cwk_12345678"))
    client.flush()
    response = result(answer)
    assert response.code == 403 and "operator" in json.loads(body_of(response))["msg"]


def test_the_wrong_method_is_405_only_once_authenticated():
    later = LaterAuth()
    client = stub(services(authenticator=later))
    answer = client.get(URL + "/schedule-job.json")
    assert not fired(answer)  # nothing is told before the credentials are checked
    later.pending[0].errback(auth.Unauthorized("authentication required"))
    client.flush()
    assert result(answer).code == 401
    answer = client.get(URL + "/schedule-job.json")
    later.pending[1].callback(auth.ANONYMOUS)
    client.flush()
    assert result(answer).code == 405


def test_preflight_and_host_check_come_before_authentication():
    later = LaterAuth(mode="none")
    base = services(authenticator=later)
    client = stub(with_web(base, allowed_origins=frozenset({"https://dash.example"})))
    response = result(client.request("OPTIONS", URL + "/schedule-job.json", headers={
        "Origin": "https://dash.example", "Access-Control-Request-Method": "POST"}))
    assert response.code == 204
    response = result(client.get(URL + "/status.json", headers={"Host": "rebind.example"}))
    assert response.code == 403
    assert later.asked == []


def test_an_authenticator_that_answers_at_once_still_works():
    client = stub(services(authenticator=NoAuth()))
    assert result(client.get(URL + "/status.json")).code == 200


# -- form bodies, through crawld's request class ----------------------------------------
def multipart_body(parts: list[tuple[Optional[str], bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, value in parts:
        disposition = f'form-data; name="{name}"' if name else "form-data"
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}; filename=\"a.zip\"\r\n"
                f"Content-Type: application/zip\r\n\r\n").encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_a_multipart_archive_reaches_the_route_byte_for_byte():
    projects = FakeProjects()
    client = stub(services(projects=projects))
    archive = bytes(range(256)) * 40 + b"\r\n--XyY\r\n--Xy"  # all but the boundary
    body = multipart_body([(None, b"skipped"), ("archive", archive), ("archive", b"second")])
    response = result(client.post(URL + "/push-project.json", data=body, headers={
        "Content-Type": "multipart/form-data; boundary=XyZ"}))
    assert response.code == 200, body_of(response)
    assert projects.pushed == [archive]  # the first value of a repeated parameter


@pytest.mark.parametrize("body, ctype", [
    (b"--nope\r\ngarbage", "multipart/form-data; boundary=xyz"),
    (b"--XyZ\r\nContent-Disposition: form-data; name=\"archive\"\r\n\r\ncut short",
     "multipart/form-data; boundary=XyZ"),
    (b"--XyZ--\r\n", "multipart/form-data"),
])
def test_a_malformed_multipart_body_is_a_json_400(body, ctype):
    projects = FakeProjects()
    client = stub(services(projects=projects))
    response = result(client.post(URL + "/push-project.json", data=body,
                                  headers={"Content-Type": ctype}))
    assert response.code == 400
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert json.loads(body_of(response))["msg"].startswith("malformed multipart body: ")
    assert projects.pushed == []


def test_a_body_over_the_limit_is_413_and_never_parsed():
    projects = FakeProjects()
    client = stub(with_web(services(projects=projects), max_body=1000))
    response = result(client.post(URL + "/push-project.json", data={"archive": "x" * 2000}))
    assert response.code == 413 and "1000 byte limit" in json.loads(body_of(response))["msg"]
    assert projects.pushed == []


def test_query_values_come_before_the_body_values_of_the_same_name():
    projects = FakeProjects()
    projects.cache["other"] = dataclasses.replace(projects.cache["demo"], name="other")
    client = stub(services(projects=projects))
    response = result(client.post(URL + "/remove-project.json?name=other",
                                  data={"name": "demo"}))
    assert response.code == 200 and projects.names() == ["demo"]


def test_browsers_json_shows_what_the_browsers_service_describes():
    class Browsers:
        def describe(self) -> Deferred:
            return succeed({"name": "chromium", "executable": "/usr/bin/chromium",
                            "version": "Chromium 140"})

    response = result(stub(services(browsers=Browsers())).get(URL + "/browsers.json"))
    [found] = json.loads(body_of(response))["browsers"]
    assert found["version"] == "Chromium 140" and "playwright" in found
    response = result(stub(services()).get(URL + "/browsers.json"))
    assert json.loads(body_of(response))["browsers"] == []


def test_the_routes_the_app_serves_are_the_route_modules():
    served = set(build_router(services()).methods)
    assert {"/", "/status.json", "/list-jobs.json", "/browse.json",
            "/get-log/<string:anything>/<string:filename>"} <= served
    assert build_app(services()) is not build_app(services())
