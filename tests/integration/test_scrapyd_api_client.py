"""python-scrapyd-api (PyPI ``python-scrapyd-api``, the client Gerapy drives scrapyd
with) against crawld's scrapyd listener, unchanged: a real egg added as a version, a
spider scheduled with a setting and an argument, its state followed through
``job_status`` (which reads listjobs.json), ``list_jobs``, a running job canceled,
the version deleted."""
from __future__ import annotations

import pytest
from scrapyd_api import ScrapydAPI
from scrapyd_api.exceptions import ScrapydResponseError

from tests.conftest import wait_for
from tests.integration.scrapyd import PASSWORD, USER, scrapyd_daemon
from tests.integration.test_scrapyd_eggs import build_egg


def test_python_scrapyd_api_drives_the_listener(tmp_path):
    d = scrapyd_daemon(tmp_path)
    try:
        api = ScrapydAPI(d.scrapyd_url, auth=(USER, PASSWORD), timeout=60)
        egg = build_egg(tmp_path, "1")
        assert api.add_version("demo", "1.0", egg) == 7
        assert api.list_projects() == ["demo"] and api.list_versions("demo") == ["1_0"]
        assert "echo" in api.list_spiders("demo")

        job = api.schedule("demo", "echo", settings={"CRAWLD_ECHO": "from-api"},
                           color="green")
        said = d.said(job)
        assert said["setting"] == "from-api" and said["color"] == "green"
        wait_for(lambda: api.job_status("demo", job) == "finished", 60,
                 what="job_status to say finished")
        listed = api.list_jobs("demo")
        assert [j["id"] for j in listed["finished"]] == [job]
        assert listed["finished"][0]["log_url"] == f"/logs/demo/echo/{job}.log"
        assert listed["node_name"] and "status" not in listed  # the client pops it

        sleeper = api.schedule("demo", "sleep")
        wait_for(lambda: api.job_status("demo", sleeper) == "running", 60,
                 what="the sleeper to run")
        assert api.cancel("demo", sleeper) == "running"
        wait_for(lambda: api.job_status("demo", sleeper) == "finished", 60,
                 what="the canceled sleeper to be finished")
        assert d.job(sleeper)["status"] == "CANCELED"
        assert api.job_status("demo", "no-such-job") == ""

        # refusals come back as the client's error, with scrapyd's message
        with pytest.raises(ScrapydResponseError, match="may not be set on a job"):
            api.schedule("demo", "echo", settings={"TELNETCONSOLE_ENABLED": "1"})
        with pytest.raises(ScrapydResponseError, match="spider 'nope' not found"):
            api.schedule("demo", "nope")

        assert api.delete_version("demo", "1.0") is True
        assert api.list_projects() == []
    finally:
        d.stop()
