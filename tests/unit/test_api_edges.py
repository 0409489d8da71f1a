"""Edge cases schemathesis found (tests/integration/test_schemathesis.py), pinned down."""
from __future__ import annotations

import json

import pytest
from twisted.web.test.requesthelper import DummyRequest

from crawld.http.files import read_output
from crawld.server import Utf8Only
from tests.unit.fakes import result
from tests.unit.test_api import call_json, client  # noqa: F401 (the fixture)

BIG = 2 ** 63  # one past SQLite's largest integer (and a file offset's)


@pytest.mark.parametrize("query", [
    f"limit={BIG}", f"offset={BIG}", "limit=" + "9" * 5000, "offset=%D9%A3",  # Arabic 3
    "limit=0", "offset=-1", "offset=1.5",
])
def test_list_jobs_paging_out_of_range_is_400_naming_it(client, query):  # noqa: F811
    stub, _ = client
    code, body = call_json(stub, "get", f"/list-jobs.json?status=ACTIVE&{query}")
    assert code == 400, body
    assert query.split("=")[0] in body["msg"] and "whole number" in body["msg"]


def test_list_jobs_paging_at_the_top_of_the_range_works(client):  # noqa: F811
    stub, _ = client
    code, body = call_json(stub, "get", f"/list-jobs.json?status=ACTIVE&limit={BIG - 1}"
                                        f"&offset={BIG - 1}")
    assert code == 200 and body["jobs"] == []


def test_preview_count_bounds(client):  # noqa: F811
    stub, _ = client
    assert call_json(stub, "get", "/preview-schedule.json?when=@daily&count=100")[0] == 200
    code, body = call_json(stub, "get", "/preview-schedule.json?when=@daily&count=101")
    assert code == 400 and "'count'" in body["msg"] and "100" in body["msg"]


def test_output_asked_from_past_the_end_is_empty_not_an_error(tmp_path):
    log = tmp_path / "x.out"
    log.write_bytes(b"hello\n")
    assert read_output(str(log), 2) == ("llo\n", 6)
    assert read_output(str(log), 6) == ("", 6)
    # far past the end: a seek there fails with EINVAL on some file systems
    assert read_output(str(log), 2896128373270061) == ("", 2896128373270061)
    assert read_output(str(log), BIG - 1) == ("", BIG - 1)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "BREW"])
def test_a_method_no_route_takes_gets_405_with_allow(client, method):  # noqa: F811
    stub, _ = client

    def send(path: str):
        response = result(stub.request(method, "http://localhost" + path))
        return response, result(response.content())
    response, body = send("/status.json")
    assert response.code == 405
    assert response.headers.getRawHeaders("allow") == ["GET"]
    assert json.loads(body)["msg"] == f"method {method} not allowed; use GET"
    response, body = send("/schedule-job.json")
    assert response.headers.getRawHeaders("allow") == ["POST"]
    response, body = send("/job-files/x/y")
    assert response.code == 405 and response.headers.getRawHeaders("allow") == ["GET"]
    response, body = send("/nothing-here.json")
    assert response.code == 404 and not response.headers.hasHeader("allow")


def test_a_path_that_is_not_utf8_is_a_json_400():
    rendered = []

    class Inner:
        def render(self, request):
            rendered.append(request)
            return b"inner"

    guard = Utf8Only(Inner())
    request = DummyRequest([b"job-files", b"0" * 36, b"\xff"])
    body = guard.render(request)
    assert request.responseCode == 400 and not rendered
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    assert json.loads(body)["msg"] == "the URL path or host is not valid UTF-8"
    request = DummyRequest([b"job-files", b"0" * 36, "é.txt".encode()])
    assert guard.render(request) == b"inner" and rendered == [request]
