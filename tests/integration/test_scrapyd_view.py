"""What the scrapyd listener keeps in memory (scrapyd/view.py) is what the store keeps:
jobs finished before a restart are listed after it, and retention's removals leave
listjobs.json, status.json and /logs/ with the store's rows (real daemon, real jobs)."""
from __future__ import annotations

from tests.conftest import wait_for
from tests.integration.scrapyd import scrapyd_daemon


def finished_ids(d) -> list[str]:
    return [j["id"] for j in d.sd_get("/listjobs.json", project="demo")["finished"]]


def test_listjobs_follows_retention_and_restarts(tmp_path):
    d = scrapyd_daemon(tmp_path, "completed-cap = 2\n")
    try:
        d.push()
        ran = []
        for n in range(3):
            job = d.sd_post("/schedule.json", project="demo", spider="ok", jobid=f"j{n}")
            ran.append(job["jobid"])
            wait_for(lambda: d.sd_get("/status.json", job=ran[-1])["currstate"] == "finished",
                     60, what=f"{ran[-1]} to finish")
        # retention keeps the newest two (completed-cap): the oldest leaves the store
        # and, told by the removal event, the listener's lists
        wait_for(lambda: finished_ids(d) == ["j2", "j1"], 30, what="j0 to be removed")
        assert d.sd_get("/status.json", job="j0")["currstate"] is None
        assert d.get("/list-jobs.json", id="j0").status_code == 404
        assert "j0.log" not in d.sd.get(d.scrapyd_url + "/logs/demo/ok/", timeout=30).text
        assert d.sd.get(d.scrapyd_url + "/logs/demo/ok/j0.log", timeout=30).status_code == 404
        # the finished ones, across a restart
        assert d.stop() == 0
        d.start()
        assert finished_ids(d) == ["j2", "j1"]
        assert d.sd_get("/status.json", job="j1", project="demo")["currstate"] == "finished"
        assert d.sd_get("/status.json", job="j1", project="other")["message"] == (
            "project 'other' not found")
        again = d.sd_post("/schedule.json", project="demo", spider="ok", jobid="j0")
        assert again["status"] == "ok"  # its identifier is free again, and reused cleanly
        wait_for(lambda: finished_ids(d) == ["j0", "j2"], 60,
                 what="the new j0 to finish and j1 to be removed")
        assert d.sd_get("/daemonstatus.json")["finished"] == 2
    finally:
        d.stop()
