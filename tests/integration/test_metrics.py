"""GET /metrics on a real daemon after real Scrapy jobs: the counters, gauges and histograms
the issue names, HTTP requests by route pattern, and counters that continue across a
restart (and past retention)."""
from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.integration.conftest import zygote_pid


def scrape(d: Any) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    r = d.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def finished(samples: dict, spider: str, status: str, project: str = "demo") -> float:
    return samples.get(("crawld_jobs_finished_total",
                        (("project", project), ("spider", spider), ("status", status))), 0)


def test_metrics_after_jobs_ran_and_across_a_restart(make_daemon):
    # completed-cap = 1: retention keeps one finished job; the counters keep them all
    d = make_daemon("job-slots = 3\ncompleted-cap = 1\n")
    d.start()
    zygote_pid(d)
    d.push()
    ran = [d.schedule("ok"), d.schedule("ok"), d.schedule("fail")]
    for job_id in ran:
        d.wait_status(job_id, "SUCCESSFUL", "FAILED")
    for _ in range(3):
        d.get("/status.json")
    d.get("/no-such-endpoint")
    d.get(f"/get-log/data/{ran[0]}.out")
    before = scrape(d)
    assert finished(before, "ok", "SUCCESSFUL") == 2
    assert finished(before, "fail", "FAILED") == 1
    assert ("crawld_items_scraped_total", (("project", "demo"), ("spider", "ok"))) in before
    assert before[("crawld_job_slots", ())] == 3
    assert before[("crawld_zygote_up", ())] == 1
    assert before[("crawld_jobs_running", ())] == 0 and before[("crawld_jobs_pending", ())] == 0
    ok = (("project", "demo"), ("spider", "ok"))
    assert before[("crawld_job_duration_seconds_count", ok)] == 2
    assert before[("crawld_job_duration_seconds_bucket", (("le", "+Inf"), *ok))] == 2
    assert before[("crawld_http_requests_total",
                   (("code", "200"), ("route", "/status.json")))] >= 3
    assert before[("crawld_http_requests_total", (("code", "404"), ("route", "unmatched")))] == 1
    get_log = ("route", "/get-log/<string:anything>/<string:filename>")
    assert before[("crawld_http_requests_total", (("code", "200"), get_log))] >= 1
    assert not any("no-such-endpoint" in str(labels) or ran[0] in str(labels)
                   for _, labels in before)  # a route's pattern, never a raw path
    assert before[("crawld_http_request_duration_seconds_count",
                   (("route", "/status.json"),))] >= 3
    assert ("process_resident_memory_bytes", ()) in before
    # retention (a second after jobs end) removes all but one finished job
    wait_for(lambda: len(d.jobs("COMPLETED")) == 1, 30, what="retention")
    assert finished(scrape(d), "ok", "SUCCESSFUL") == 2  # the counters keep them

    # a running and a pending job, read at scrape time
    sleeping = [d.schedule("sleep") for _ in range(4)]
    wait_for(lambda: scrape(d)[("crawld_jobs_running", ())] == 3, 60, what="3 running")
    assert scrape(d)[("crawld_jobs_pending", ())] == 1
    for job_id in reversed(sleeping):  # the queued one first: it never runs
        d.ok(d.post("/cancel-job.json", id=job_id))
    # all four ended (retention, which keeps one finished job here, may already have
    # removed a canceled one, so wait for none to be active rather than for each row)
    wait_for(lambda: not [j for j in d.jobs("ACTIVE") if j["identifier"] in sleeping],
             60, what="the sleeping jobs to end")

    d.stop()
    d.start()
    after = scrape(d)
    assert finished(after, "ok", "SUCCESSFUL") == 2 and finished(after, "fail", "FAILED") == 1
    # the queued one was canceled before it ran: only the three that ran are counted
    assert finished(after, "sleep", "CANCELED") == 3
    assert after[("crawld_zygote_up", ())] in (0, 1)  # (the new zygote may be starting)
    # the histograms and the HTTP counters are this process' own: they start again
    assert ("crawld_job_duration_seconds_count", ok) not in after
    d.wait_status(d.schedule("ok"), "SUCCESSFUL")
    assert finished(scrape(d), "ok", "SUCCESSFUL") == 3
    assert scrape(d)[("crawld_job_duration_seconds_count", ok)] == 1


def test_a_schedule_firing_is_observed_as_lateness(make_daemon):
    d = make_daemon()
    d.start()
    d.push()
    d.schedule("ok", when="every 1 seconds")
    wait_for(lambda: scrape(d).get(("crawld_scheduler_lateness_seconds_count", ()), 0) >= 2,
             30, what="two firings")
    samples = scrape(d)
    count = samples[("crawld_scheduler_lateness_seconds_count", ())]
    assert samples[("crawld_scheduler_lateness_seconds_bucket", (("le", "+Inf"),))] == count
    assert 0 <= samples[("crawld_scheduler_lateness_seconds_sum", ())] < count * 5
