"""The live API against its own description: schemathesis fuzzes a real daemon.

One daemon for the module, with authentication required and an operator key made with
the CLI, is given a project of spiders and browser scripts, a schedule, finished jobs
with logs, events and an artifact, and a browser job that stays running. schemathesis
then loads ``GET /openapi.json`` from it and, for every operation, sends the spec's
boundary cases (coverage phase, valid and invalid) and a bounded number of generated
ones (fuzzing phase, seeded, derandomized). About half of the generated requests name
the things that exist (the project, the jobs, a spider that ends by itself), so that
the answers that do work are checked too, not only 400 and 404. Every answer must be
below 500, have a status code, content type and body that the spec documents.

Left out: browse.json (each call would start a browser on whatever URL was generated,
beyond this machine); /events (a stream that stays open: each generated request would
wait for the request timeout, and schemathesis checks a whole body, which a stream never
ends); both are checked by hand below. The request that would run a long or
memory-hungry spider (only ``ok`` and ``fail`` are named); removing the project is
allowed and it is pushed back. A valid ``wait`` is shortened to at most MAX_WAIT seconds
before the call: the boundary case (300 s) on the job that never ends would outlast the
request timeout.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from hypothesis import strategies as st

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.conftest import DaemonProcess
from tests.integration.streams import Stream

MAX_EXAMPLES = 50  # generated requests per operation (fuzzing phase), besides coverage
MAX_WAIT = 1.0  # seconds a generated wait= is cut to (the answer's shape is the same)
SEED = 20261122
CONFIG = "job-slots = 3\n"
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "response_headers_conformance",
    "unsupported_method", "allow_header_conformance")

SCRIPTS = {
    # everything a finished browser job can have: output, events of each kind, a file
    "report": '''
async def run(page, job):
    await page.set_content("<title>Report</title><p>hello</p>")
    print("reporting", flush=True)
    job.progress(0.5, "half way")
    job.post({"title": await page.title()})
    job.save("data.json", '{"saved": true}')
    job.progress(1.0, "done")
    return {"ok": True}
''',
    # stays running: messages, posts and screenshots have a job to work on
    "wait": '''
async def run(page, job):
    await page.set_content("<title>Waiting</title><p>waiting</p>")
    job.post({"ready": True})
    async for message in job.messages():
        job.post({"got": message})
''',
}

#: filled by the ``live`` fixture: values that name what exists in the daemon
REAL: dict[str, Any] = {}


def crawld_cli(data_dir: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "crawld", args[0], "--data-dir", data_dir,
                        *args[1:]], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def demo_project() -> bytes:
    return project.build("demo", extra={f"demo/scripts/{name}.py": text
                                        for name, text in SCRIPTS.items()})


@pytest.fixture(scope="module")
def live(tmp_path_factory: Any) -> Iterator[DaemonProcess]:
    """A daemon (auth required, operator key) holding something of every kind."""
    d = DaemonProcess(tmp_path_factory.mktemp("schemathesis"), CONFIG)
    os.makedirs(d.data_dir, exist_ok=True)
    key = crawld_cli(d.data_dir, "keys", "add", "--role", "operator", "--name",
                     "schemathesis").strip()
    d.start()
    try:
        assert requests.get(d.url + "/status.json", timeout=30).status_code == 401
        d.session.headers["Authorization"] = f"Bearer {key}"
        archive = demo_project()
        d.push(archive)
        schedule = d.schedule("ok", when="every day at 03:00")
        ok, failed = d.schedule("ok"), d.schedule("fail")
        report = d.ok(d.post("/schedule-job.json", project="demo", script="report",
                             when="now"))["identifier"]
        waiting = d.ok(d.post("/schedule-job.json", project="demo", script="wait",
                              when="now"))["identifier"]
        for job_id in (ok, failed, report):
            d.wait_status(job_id, "SUCCESSFUL", "FAILED")
        assert d.job(report)["status"] == "SUCCESSFUL", d.log_text(report, "err")
        wait_for(lambda: d.ok(d.get("/job-posts.json", id=waiting))["posts"], 60,
                 what="the waiting browser job to be ready")
        REAL.clear()
        REAL.update(key=key, schedule=schedule, ok=ok, failed=failed, report=report,
                    waiting=waiting, archive=archive, push=lambda: d.push(archive))
        yield d
    finally:
        d.stop()


def ids_for(path: str) -> list[str]:
    """Job ids worth naming on ``path``. The running browser job is not canceled (the
    message and screenshot routes need it); schedules change state but stay."""
    if path in ("/job-message.json", "/job-screenshot.png", "/job-posts.json"):
        return [REAL["waiting"], REAL["report"]]
    if path in ("/cancel-job.json", "/run-job.json"):
        return [REAL["schedule"], REAL["ok"]]
    if path in ("/pause-job.json", "/resume-job.json", "/update-job.json"):
        return [REAL["schedule"], REAL["failed"]]
    return [REAL["ok"], REAL["failed"], REAL["report"], REAL["waiting"], REAL["schedule"]]


def real_values(context: Any) -> dict[str, st.SearchStrategy]:
    """For each parameter name, a strategy of values that exist on the live daemon."""
    path = context.operation.path if context.operation is not None else ""
    job_ids = ids_for(path)
    return {
        "project": st.just("demo"),
        "name": st.just("data.json" if path.startswith("/job-files/") else "demo"),
        "spider": st.sampled_from(["ok", "fail"]),
        "script": st.just("report"),
        "when": st.sampled_from(["now", "every day at 03:00", "cron:30 2 * * *"]),
        "tz": st.sampled_from(["UTC", "Europe/Paris"]),
        "payload": st.sampled_from(["{}", '{"n": 1}']),
        "data": st.sampled_from(['{"go": true}', '"stop"', "42"]),
        "archive": st.just(REAL["archive"]),
        "id": st.sampled_from(job_ids),
        "job_id": st.sampled_from([REAL["report"], REAL["ok"]]),
        "logfile": st.sampled_from([f"{REAL['ok']}.out", f"{REAL['failed']}.err",
                                    f"{REAL['report']}.out"]),
    }


def with_real_values(context: Any, values: Any) -> st.SearchStrategy:
    """The generated values as they are, or with those the daemon knows put in."""
    if not isinstance(values, dict):
        return st.just(values)
    known = real_values(context)
    choices = {name: known[name] for name in values if name in known}
    if not choices:
        return st.just(values)
    return st.one_of(st.just(values),
                     st.fixed_dictionaries(choices).map(lambda real: {**values, **real}))


def load_schema(live: DaemonProcess) -> Any:
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "base-url": live.url,
        "headers": {"Authorization": f"Bearer {REAL['key']}"},
        "request-timeout": 60,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none",
                       # generated credentials would be wrong ones: 10 lock the client out
                       "with-security-parameters": False},
        "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
        # browse.json would open whatever URL was generated: never sent, by any method
        # /events streams until the daemon stops: checked by hand (test_events_...)
        "operations": [{"include-path": "/browse.json", "enabled": False},
                       {"include-path": "/events", "enabled": False}],
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })
    schema = schemathesis.openapi.from_url(
        live.url + "/openapi.json", config=config, timeout=30,
        headers={"Authorization": f"Bearer {REAL['key']}"})
    for target in ("query", "body", "path_parameters"):
        schema.hook(f"flatmap_{target}")(with_real_values)
    return schema


@pytest.fixture(scope="module")
def api_schema(live: DaemonProcess) -> Any:
    return load_schema(live)


schema = (schemathesis.pytest.from_fixture("api_schema").exclude(path="/browse.json")
          .exclude(path="/events"))


def shorten_wait(case: Any) -> None:
    """A valid ``wait`` in the query or the form body, cut to at most MAX_WAIT seconds."""
    for values in (case.query, case.body):
        if not isinstance(values, dict) or "wait" not in values:
            continue
        try:
            seconds = float(values["wait"])
        except (TypeError, ValueError):
            continue
        if MAX_WAIT < seconds <= 300:
            values["wait"] = MAX_WAIT


@schema.parametrize()
def test_the_live_api_answers_as_its_openapi_says(case: Any, live: DaemonProcess) -> None:
    assert case.path not in ("/browse.json", "/events"), "excluded: see the docstring"
    shorten_wait(case)
    response = case.call_and_validate()
    if case.path == "/remove-project.json" and response.status_code == 200:
        REAL["push"]()  # the next operations have the project again
    assert live.proc is not None and live.proc.poll() is None, "the daemon died"


def test_browse_answers_as_its_openapi_says(live: DaemonProcess, api_schema: Any) -> None:
    """browse.json by hand, with HTML rather than a URL: nothing leaves this machine."""
    del api_schema  # the daemon is known to serve its spec
    spec = schemathesis.openapi.from_url(
        live.url + "/openapi.json", headers={"Authorization": f"Bearer {REAL['key']}"})
    browse, download = spec["/browse.json"]["POST"], spec["/job-files/{job_id}/{name}"]["GET"]
    html = "PHRpdGxlPkJyb3dzZWQ8L3RpdGxlPg"  # <title>Browsed</title>, url-safe base64
    for data, code in (({"html": html}, 200),
                       ({"html": html, "url": "http://127.0.0.1:9/"}, 400),
                       ({"html": html, "timeout": "-1"}, 400),
                       ({"html": html, "block": "1", "screenshot": "1"}, 200)):
        r = live.session.post(live.url + "/browse.json", data=data, timeout=120)
        assert r.status_code == code, (data, r.text)
        browse.validate_response(r)
    body = r.json()
    assert body["ended"] and body["result"]["title"] == "Browsed", body
    assert [f["name"] for f in body["files"]] == ["screenshot.png"]
    r = live.session.get(live.url + body["files"][0]["url"], timeout=30)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    download.validate_response(r)


def test_events_answers_as_its_openapi_says(live: DaemonProcess, api_schema: Any) -> None:
    """/events by hand: its errors validated against the spec, and its streams' status
    and content types among those the spec documents (a stream has no end to validate)."""
    del api_schema  # the daemon is known to serve its spec
    headers = {"Authorization": f"Bearer {REAL['key']}"}
    spec = schemathesis.openapi.from_url(live.url + "/openapi.json", headers=headers)
    operation = spec["/events"]["GET"]
    for params, code in (({"format": "xml"}, 400), ({"id": "../nope"}, 400),
                         ({"last-event-id": "x"}, 400)):
        r = live.session.get(live.url + "/events", params=params, timeout=30)
        assert r.status_code == code, (params, r.text)
        operation.validate_response(r)
    r = requests.get(live.url + "/events", timeout=30)  # no credentials
    assert r.status_code == 401
    operation.validate_response(r)
    described = requests.get(live.url + "/openapi.json", headers=headers, timeout=30).json()
    documented = set(described["paths"]["/events"]["get"]["responses"]["200"]["content"])
    for fmt in ("sse", "ndjson"):
        stream = Stream(live.url, f"/events?format={fmt}&id={REAL['ok']}", headers=headers)
        assert stream.code == 200
        assert stream.headers["content-type"].split(";")[0] in documented
        stream.until(lambda s: s.body, what="the ready event")
        stream.close()
