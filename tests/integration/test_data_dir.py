"""A data directory whose database is gone: crawld refuses to start over its projects and
logs as if it were new, and ``crawld serve --reinit`` rebuilds what it can from disk."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.conftest import DaemonProcess


def refused(daemon: DaemonProcess) -> str:
    """Start crawld over ``daemon``'s data directory, expecting it to refuse: its log.
    (If it starts listening instead, it is stopped and the test fails at once.)"""
    log_path = os.path.join(os.path.dirname(daemon.data_dir), "refused.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "crawld", "serve", "--config",
                                 daemon.config_path, "--listen", "127.0.0.1:0",
                                 "--data-dir", daemon.data_dir], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=daemon.env)

    def said() -> str:
        with open(log_path) as fh:
            return fh.read()
    try:
        wait_for(lambda: proc.poll() is not None or "crawld listening" in said(), 60,
                 what="crawld to refuse (or listen)")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    assert "crawld listening" not in said(), said()
    assert proc.returncode == 2, said()
    return said()


def test_a_lost_database_refuses_to_start_and_reinit_rebuilds_the_projects(daemon):
    daemon.push()
    daemon.push(project.build("other"))
    daemon.push()  # demo version 2
    ran = daemon.wait_status(daemon.schedule("ok"), "SUCCESSFUL")
    assert daemon.stop() == 0
    db = os.path.join(daemon.data_dir, "crawld.db")

    os.remove(db)
    said = refused(daemon)
    assert db in said and "--reinit" in said and "missing" in said
    assert not os.path.exists(db)  # nothing was created in its place

    open(db, "wb").close()  # truncated: an empty file
    said = refused(daemon)
    assert db in said and "--reinit" in said and "empty" in said
    assert os.path.getsize(db) == 0

    daemon.start("--reinit")
    assert sorted(daemon.ok(daemon.get("/list-projects.json"))["projects"]) == [
        "demo", "other"]
    spiders = daemon.ok(daemon.get("/list-spiders.json", project="demo"))["spiders"]
    assert sorted(spiders) == project.SPIDER_NAMES
    log = daemon.log().split("---- start 2\n")[-1]
    assert "project demo version 2" in log and "could not rebuild" in log
    assert "logs/" in log  # the earlier job's logs are said to be left there
    # the rebuilt project runs, and the next push is version 3
    job = daemon.wait_status(daemon.schedule("ok"), "SUCCESSFUL", "FAILED")
    assert job["status"] == "SUCCESSFUL", job["reason"]
    daemon.push()
    assert os.listdir(os.path.join(daemon.data_dir, "projects", "demo")) == ["3"]
    assert os.path.exists(os.path.join(daemon.data_dir, "logs", f"{ran['identifier']}.err"))

    # a database that is there again needs no flag
    assert daemon.stop() == 0
    daemon.start()
    assert "demo" in daemon.ok(daemon.get("/list-projects.json"))["projects"]


def test_a_new_data_directory_starts_fresh_without_a_flag(make_daemon):
    daemon = make_daemon().start()
    assert daemon.ok(daemon.get("/list-projects.json"))["projects"] == []
    assert daemon.stop() == 0
    # started once, nothing pushed or run: losing the database loses nothing
    os.remove(os.path.join(daemon.data_dir, "crawld.db"))
    daemon.start()
    assert daemon.ok(daemon.get("/status.json"))["jobs-run"] == 0


def test_a_file_that_is_not_a_database_refuses_and_reinit_keeps_it_aside(daemon):
    daemon.push()
    assert daemon.stop() == 0
    db = os.path.join(daemon.data_dir, "crawld.db")
    with open(db, "wb") as fh:
        fh.write(b"this is not an SQLite database\n" * 100)
    said = refused(daemon)
    assert db in said and "--reinit" in said and "not an SQLite database" in said
    daemon.start("--reinit")
    assert daemon.ok(daemon.get("/list-projects.json"))["projects"] == ["demo"]
    aside = [n for n in os.listdir(daemon.data_dir) if n.startswith("crawld.db.damaged-")]
    assert len(aside) == 1
    with open(os.path.join(daemon.data_dir, aside[0]), "rb") as fh:
        assert fh.read().startswith(b"this is not an SQLite database")


def test_reinit_names_a_project_it_could_not_rebuild(daemon):
    daemon.push()
    daemon.push(project.build("broken"))
    assert daemon.stop() == 0
    os.remove(os.path.join(daemon.data_dir, "crawld.db"))
    settings = os.path.join(daemon.data_dir, "projects", "broken", "1", "broken", "settings.py")
    with open(settings, "a") as fh:
        fh.write("\nraise SystemExit('settings broken on purpose')\n")
    shutil.rmtree(os.path.join(daemon.data_dir, "projects", "demo", "1", "demo"))
    os.makedirs(os.path.join(daemon.data_dir, "projects", "not a name!"))
    daemon.start("--reinit")
    assert daemon.ok(daemon.get("/list-projects.json"))["projects"] == []
    log = daemon.log().split("---- start 2\n")[-1]
    assert "could not rebuild project broken" in log and "settings broken on purpose" in log
    assert "could not rebuild project demo" in log
