"""get-log for jobs that have no log file: a queued job has an empty log to follow, and a
404 says why there is none without claiming retention removed it (issue 10, item 12)."""
from __future__ import annotations

from crawld.model import Actor, Job, JobStatus
from tests.unit.fakes import result
from tests.unit.test_api import URL, call, call_json, client  # noqa: F401 (a fixture)

ID = "6c3e0000-0000-4000-8000-00000000000{}"


def add(stub, n: int, status: JobStatus, started=None) -> str:
    job = Job(id=ID.format(n), status=status, actor=Actor.USER, schedule="now",
              project="demo", spider="ok", created=1, updated=1, started=started)
    result(stub.services.jobs.store.add_job(job))
    return job.id


def test_a_pending_job_has_an_empty_log(client):  # noqa: F811
    stub, _ = client
    job_id = add(stub, 1, JobStatus.PENDING)
    for ext in ("out", "err"):
        d = stub.get(f"{URL}/get-log/data/{job_id}.{ext}")
        body = d.addCallback(lambda response: (response, response.content()))
        for _ in range(3):
            stub.clock.advance(0)  # the follower reads, finds nothing, and ends
            stub.flush()
        response, content = result(body)
        assert response.code == 200 and result(content) == b""
        assert response.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
        assert call(stub, "head", f"/get-log/data/{job_id}.{ext}")[0].code == 200


def test_a_job_with_no_log_file_is_404_saying_why(client):  # noqa: F811
    stub, _ = client
    never = add(stub, 2, JobStatus.CANCELED)
    code, body = call_json(stub, "get", f"/get-log/data/{never}.err")
    assert code == 404 and body["msg"] == f"job {never} has no err log (it has not started)"
    lost = add(stub, 3, JobStatus.FAILED, started=5.0)
    code, body = call_json(stub, "get", f"/get-log/data/{lost}.out")
    assert code == 404 and body["msg"] == f"job {lost} has no out log (its file is missing)"
