"""Pushing, validating, versioning and removing projects against a real daemon."""
from __future__ import annotations

import io
import os
import zipfile

from tests.integration import project
from tests.integration.conftest import gone


def stored(daemon) -> list[str]:
    root = os.path.join(daemon.data_dir, "projects")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
    return found


def test_push_as_form_field_like_scrapy_do_cl(daemon):
    r = daemon.session.post(daemon.url + "/push-project.json",
                            data={"archive": project.build()}, timeout=120)
    body = daemon.ok(r)
    assert body["name"] == "demo" and "ok" in body["spiders"]
    assert daemon.ok(daemon.get("/list-projects.json"))["projects"] == ["demo"]


def test_broken_project_reports_stderr_tail_and_stores_nothing(daemon):
    broken = project.build(spiders="import no_such_module_anywhere\n")
    r = daemon.session.post(daemon.url + "/push-project.json", files={"archive": broken})
    assert r.status_code == 400
    msg = r.json()["msg"]
    assert "scrapy list" in msg and "no_such_module_anywhere" in msg
    assert daemon.ok(daemon.get("/list-projects.json"))["projects"] == []
    assert stored(daemon) == []


def test_hostile_archives_are_refused_before_anything_is_written(daemon):
    def zipped(entries: dict[str, str]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, text in entries.items():
                zf.writestr(name, text)
        return buf.getvalue()

    cfg = project.SCRAPY_CFG.format(name="demo")
    cases = {
        "not a zip": b"this is not a zip",
        "'..'": zipped({"demo/scrapy.cfg": cfg, "demo/../../evil.py": "x"}),
        "absolute": zipped({"demo/scrapy.cfg": cfg, "/tmp/evil.py": "x"}),
        "invalid project name": zipped({"../scrapy.cfg": project.SCRAPY_CFG.format(name="..")}),
        "no project": zipped({"readme.txt": "x"}),
    }
    for why, data in cases.items():
        r = daemon.session.post(daemon.url + "/push-project.json", files={"archive": data})
        assert r.status_code == 400, (why, r.text)
        assert r.json()["status"] == "error"
    assert stored(daemon) == []
    assert not os.path.exists("/tmp/evil.py")


def test_archive_over_the_size_limit_is_413(make_daemon):
    daemon = make_daemon("max-archive-size = 2KB\n").start()
    big = project.build(extra={"blob.txt": os.urandom(8000).hex()})
    r = daemon.session.post(daemon.url + "/push-project.json", files={"archive": big})
    assert r.status_code == 413 and "max-archive-size" in r.json()["msg"]
    # bodies far over the limit are dropped as they arrive, whatever their encoding
    flood = os.urandom(300_000)
    for kwargs in ({"files": {"archive": flood}}, {"data": {"archive": flood}},
                   {"data": iter([flood[:100_000], flood[100_000:]]),
                    "headers": {"Content-Type": "application/x-www-form-urlencoded"}}):
        r = daemon.session.post(daemon.url + "/push-project.json", timeout=60, **kwargs)
        assert r.status_code == 413, r.text
        assert "byte limit" in r.json()["msg"]
    assert stored(daemon) == []
    assert daemon.ok(daemon.get("/status.json"))


def test_repush_replaces_the_project_and_guards_scheduled_spiders(daemon):
    daemon.push()
    template = daemon.schedule("sleep", when="every 5 hours")
    without_sleep = project.SPIDERS.replace('name = "sleep"', 'name = "snooze"')
    r = daemon.session.post(daemon.url + "/push-project.json",
                            files={"archive": project.build(spiders=without_sleep)})
    assert r.status_code == 409 and "sleep" in r.json()["msg"]
    assert "sleep" in daemon.ok(daemon.get("/list-spiders.json", project="demo"))["spiders"]
    daemon.ok(daemon.post("/cancel-job.json", id=template))
    body = daemon.push(project.build(spiders=without_sleep))
    assert "snooze" in body["spiders"] and "sleep" not in body["spiders"]
    versions = os.listdir(os.path.join(daemon.data_dir, "projects", "demo"))
    assert versions == ["2"], "the old version is removed once unused"


def test_versions_are_unpacked_once_not_per_run(daemon):
    daemon.push()
    before = sorted(stored(daemon))
    for _ in range(2):
        daemon.wait_status(daemon.schedule("ok"), "SUCCESSFUL")
    assert sorted(stored(daemon)) == before


def test_remove_project_refused_while_scheduled_then_removed(daemon):
    daemon.push()
    template = daemon.schedule("ok", when="every monday at 12:30")
    r = daemon.post("/remove-project.json", name="demo")
    assert r.status_code == 409 and r.json()["status"] == "error"
    daemon.ok(daemon.post("/cancel-job.json", id=template))
    daemon.ok(daemon.post("/remove-project.json", name="demo"))
    assert daemon.ok(daemon.get("/list-projects.json"))["projects"] == []
    assert not os.path.exists(os.path.join(daemon.data_dir, "projects", "demo"))
    assert daemon.get("/list-spiders.json", project="demo").status_code == 404
    assert daemon.post("/remove-project.json", name="demo").status_code == 404


LEAVES_A_PROCESS = '''
import os, subprocess
import scrapy
pidfile = os.environ.get("CRAWLD_TEST_PIDFILE")
if pidfile and not os.environ.get("CRAWLD_JOB_ID"):  # while `scrapy list` imports it
    child = subprocess.Popen(["sleep", "120"], start_new_session=True)  # keeps our pipes
    open(pidfile, "w").write(str(child.pid))

class Ok(scrapy.Spider):
    name = "ok"
'''

HANGS = '''
import time
import scrapy
time.sleep(3600)

class Ok(scrapy.Spider):
    name = "ok"
'''


def test_push_does_not_wait_for_processes_scrapy_list_leaves_behind(make_daemon, tmp_path):
    import signal
    import time
    pidfile = tmp_path / "leftover.pid"
    daemon = make_daemon(env={"CRAWLD_TEST_PIDFILE": str(pidfile)}).start()
    started = time.monotonic()
    try:
        assert daemon.push(project.build(spiders=LEAVES_A_PROCESS))["spiders"] == ["ok"]
        assert time.monotonic() - started < 30, "the push waited for the leftover process"
        assert gone(int(pidfile.read_text())), "and the leftover did not outlive the push"
    finally:
        if pidfile.exists() and not gone(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_scrapy_list_past_list_timeout_fails_the_push(make_daemon):
    daemon = make_daemon("list-timeout = 2\n").start()
    r = daemon.session.post(daemon.url + "/push-project.json",
                            files={"archive": project.build(spiders=HANGS)}, timeout=60)
    assert r.status_code == 400 and "timed out after 2 s" in r.json()["msg"]
    assert daemon.ok(daemon.get("/list-projects.json"))["projects"] == []
    assert stored(daemon) == []


def test_malformed_multipart_is_a_json_400(daemon):
    r = daemon.session.post(daemon.url + "/push-project.json", data=b"--nope\r\ngarbage",
                            headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
    assert r.json()["status"] == "error"
