"""How jobs are shown: the lean time formatting gives what datetime's naive path gave."""
from __future__ import annotations

import os
import random
import time
from datetime import datetime

import pytest

from crawld.http import views as jobview
from crawld.http.views import iso, iso_ms, job_dict
from crawld.model import Actor, Job, JobStatus


@pytest.fixture(params=["Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "UTC"])
def local_zone(request):
    saved = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    jobview._iso_ms.cache_clear()  # kept texts are local times of the zone in force
    yield request.param
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()
    jobview._iso_ms.cache_clear()


def test_local_times_match_the_naive_astimezone_way_across_dst(local_zone):
    rng = random.Random(local_zone)
    stamps = [rng.uniform(0, 2_100_000_000) for _ in range(3000)]
    # every 7 s across the 2026 transitions of the northern and southern hemispheres
    for base in (1_774_746_000, 1_792_890_000, 1_775_350_800, 1_788_220_800):
        stamps += [base + d + 0.25 for d in range(-7200, 7200, 7)]
    for ts in stamps + stamps[:100]:  # the second time from the kept texts
        local = datetime.fromtimestamp(ts).astimezone()
        assert iso_ms(ts) == local.isoformat(timespec="milliseconds"), ts
        assert iso(ts) == local.isoformat(timespec="seconds"), ts
    assert iso(None) is None and iso_ms(None) is None


def test_job_dict_keeps_its_keys_and_values():
    job = Job(id="j", status=JobStatus.SUCCESSFUL, actor=Actor.USER, schedule="now",
              project="p", spider="s", created=1_800_000_000.25, updated=1_800_000_010.5,
              started=1_800_000_001.0, finished=1_800_000_010.5, exit_code=0, signal=9)
    shown = job_dict(job)
    assert list(shown)[:10] == ["identifier", "status", "actor", "schedule", "project",
                                "spider", "description", "payload", "timestamp", "duration"]
    assert shown["timestamp"] == str(datetime.fromtimestamp(1_800_000_010.5))
    assert shown["started"] == datetime.fromtimestamp(1_800_000_001.0).astimezone().isoformat(
        timespec="milliseconds")
    assert (shown["duration"], shown["signal"], shown["next-run"], shown["last-run"]) == (
        9, "SIGKILL", None, None)
    template = job.evolve(status=JobStatus.SCHEDULED, next_fire=1_800_003_600.0,
                          last_run=1_800_000_000.0, tz="Asia/Tokyo")
    shown = job_dict(template)
    assert shown["next-run"] == "2027-01-15T18:00:00+09:00"
    assert shown["last-run"] == "2027-01-15T17:00:00+09:00"
