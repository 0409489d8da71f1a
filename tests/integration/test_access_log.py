"""The daemon's access log: one line per request, keys redacted, and ``access-log = no``."""
from __future__ import annotations

import re
import uuid
from typing import Any

import requests

from tests.conftest import wait_for

LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d info  crawld\.access: "127\.0\.0\.1" - - '
                  r'\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "(?P<request>[^"]*)" '
                  r'(?P<code>\d{3}) (?P<size>\d+|-) "-" "(?P<agent>[^"]*)"$', re.M)


def lines_for(d: Any, marker: str) -> list[re.Match]:
    return [m for m in LINE.finditer(d.log()) if marker in m.group("request")]


def test_each_request_gets_one_line_in_the_daemon_log_without_its_key(make_daemon: Any):
    d = make_daemon().start()
    marker = uuid.uuid4().hex
    session = requests.Session()
    for path in (f"/status.json?m={marker}&key=cwk_secret", f"/list-jobs.json?m={marker}",
                 f"/nothing?m={marker}"):
        session.get(d.url + path, headers={"User-Agent": "probe/1"}, timeout=30)
    found = wait_for(lambda: (lambda f: f if len(f) == 3 else None)(lines_for(d, marker)),
                     10, what="three access lines")
    assert [(m.group("request"), m.group("code")) for m in found] == [
        (f"GET /status.json?m={marker}&key=REDACTED HTTP/1.1", "200"),
        (f"GET /list-jobs.json?m={marker} HTTP/1.1", "400"),
        (f"GET /nothing?m={marker} HTTP/1.1", "404")]
    assert all(m.group("agent") == "probe/1" for m in found)
    assert "cwk_secret" not in d.log()


def test_access_log_no_leaves_requests_out_of_the_log(make_daemon: Any):
    d = make_daemon("[web]\naccess-log = no\n").start()
    marker = uuid.uuid4().hex
    assert d.get(f"/status.json?m={marker}").status_code == 200
    d.stop()  # the log is complete once the daemon has stopped
    assert "crawld stopped" in d.log() and marker not in d.log()
