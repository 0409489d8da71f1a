"""status.json (crawld.status): the uptime format and the report's keys and values."""
from __future__ import annotations

import socket
from datetime import datetime

import pytest
from twisted.internet.task import Clock

import crawld
from crawld.status import StatusReport, format_uptime

KEYS = {"memory-usage", "cpu-usage", "time", "timezone", "hostname", "uptime", "jobs-run",
        "jobs-successful", "jobs-failed", "jobs-canceled", "jobs-scheduled", "projects",
        "spiders", "daemon-version", "job-slots", "jobs-running", "jobs-pending"}


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"),
    (59, "59s"),
    (59.9, "59s"),  # whole seconds, truncated
    (60, "1m 0s"),
    (61, "1m 1s"),
    (3600, "1h 0s"),
    (3600 + 5, "1h 5s"),
    (86400, "1d 0s"),
    (86400 + 5, "1d 5s"),
    (86400 + 2 * 3600 + 12 * 60 + 24, "1d 2h 12m 24s"),
    (3 * 86400 + 60, "3d 1m 0s"),
    (400 * 86400 + 23 * 3600 + 59 * 60 + 59, "400d 23h 59m 59s"),
    (-5, "0s"),
])
def test_format_uptime(seconds, text):
    assert format_uptime(seconds) == text


@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_767_225_600)  # 2026-01-01T00:00:00Z
    return c


def test_build_has_exactly_the_scrapy_do_keys_plus_ours(clock):
    report = StatusReport(clock, clock.seconds()).build({}, 0, 0, 0)
    assert set(report) == KEYS


def test_build_uptime_follows_the_reactor_clock(clock):
    report = StatusReport(clock, clock.seconds())
    assert report.build({}, 0, 0, 0)["uptime"] == "0s"
    clock.advance(86400 + 3600 + 2 * 60 + 5)
    assert report.build({}, 0, 0, 0)["uptime"] == "1d 1h 2m 5s"


def test_build_time_is_the_reactor_time_in_local_time(clock):
    report = StatusReport(clock, clock.seconds())
    clock.advance(90)
    text = report.build({}, 0, 0, 0)["time"]
    assert datetime.fromisoformat(text) == datetime.fromtimestamp(1_767_225_690)


def test_build_reports_counters_and_fills_missing_ones_with_zero(clock):
    report = StatusReport(clock, clock.seconds()).build(
        {"jobs-run": 7, "jobs-failed": 2, "unrelated": 99}, 3, 2, 5)
    assert (report["jobs-run"], report["jobs-successful"], report["jobs-failed"],
            report["jobs-canceled"]) == (7, 0, 2, 0)
    assert (report["jobs-scheduled"], report["projects"], report["spiders"]) == (3, 2, 5)
    assert "unrelated" not in report


def test_build_identifies_host_and_version(clock):
    report = StatusReport(clock, clock.seconds()).build({}, 0, 0, 0)
    assert report["hostname"] == socket.gethostname()
    assert report["daemon-version"] == crawld.__version__
    assert ";" in report["timezone"]


def test_build_reports_process_usage_as_numbers(clock):
    report = StatusReport(clock, clock.seconds()).build({}, 0, 0, 0)
    assert isinstance(report["memory-usage"], float)
    assert report["memory-usage"] > 1  # MiB: a Python process with Twisted is well over 1
    assert isinstance(report["cpu-usage"], (int, float))
    assert report["cpu-usage"] >= 0


def test_memory_and_cpu_are_sampled_at_most_every_half_second():
    from twisted.internet.task import Clock
    from crawld.status import SAMPLE_PERIOD, StatusReport

    class CountingProcess:
        calls = 0

        def memory_info(self):
            CountingProcess.calls += 1
            return type("M", (), {"rss": CountingProcess.calls * 1024 * 1024})()

        def cpu_percent(self):
            return float(CountingProcess.calls)

    clock = Clock()
    clock.advance(1000)
    report = StatusReport(clock, clock.seconds())
    report.process = CountingProcess()
    first = report.build({}, 0, 0, 0)
    second = report.build({}, 0, 0, 0)
    assert (first["memory-usage"], first["cpu-usage"]) == (1.0, 1.0)
    assert (second["memory-usage"], second["cpu-usage"]) == (1.0, 1.0)
    clock.advance(SAMPLE_PERIOD)
    third = report.build({}, 0, 0, 0)
    assert (third["memory-usage"], third["cpu-usage"]) == (2.0, 2.0)


def test_answer_is_the_json_of_the_report_whatever_changes(clock):
    import json
    report = StatusReport(clock, clock.seconds())
    report.hostname = 'hôte "x"'  # non-ASCII, and a quote to escape
    for step in range(8):
        counters = {"jobs-run": step, "jobs-successful": step // 3}
        body = report.answer(counters, step % 2, 1, 2)
        shown = {"status": "ok", **report.build(counters, step % 2, 1, 2)}
        assert body == (json.dumps(shown, ensure_ascii=False) + "\n").encode("utf-8")
        assert list(json.loads(body))[:4] == ["status", "memory-usage", "cpu-usage", "time"]
        clock.advance(0.35 * step + 0.000123)
