"""Honest outcomes (outcomes.py): fail-on conditions parsed, and judged on literal stats."""
from __future__ import annotations

import pytest

from crawld import outcomes
from crawld.errors import BadRequest

REFUSED = {"downloader/request_count": 3, "downloader/exception_count": 3,
           "downloader/exception_type_count/scrapy.exceptions.DownloadConnectionRefusedError": 3,
           "log_count/ERROR": 2, "finish_reason": "finished"}
GOOD = {"downloader/request_count": 4, "response_received_count": 4,
        "item_scraped_count": 12, "finish_reason": "finished", "log_count/INFO": 9}


@pytest.mark.parametrize("text, parsed", [
    ("all-requests-failed", ("all-requests-failed",)),
    ("unfinished, no-items", ("no-items", "unfinished")),   # in the order of CONDITIONS
    (" Error-Log ,error-log  no-items", ("no-items", "error-log")),
    ("none", ()),
    ("NONE, none", ()),
])
def test_conditions_are_parsed_in_a_fixed_order(text, parsed):
    assert outcomes.parse(text) == parsed


@pytest.mark.parametrize("text, words", [
    ("sometimes", "unknown condition 'sometimes'"),
    ("none,no-items", "none cannot be combined"),
    (" , ", "give one or more"),
])
def test_bad_conditions_say_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        outcomes.parse(text)
    with pytest.raises(BadRequest, match="parameter 'fail-on': " + words):
        outcomes.normalize(text)


def test_a_request_s_conditions_are_stored_normalized():
    assert outcomes.normalize("unfinished no-items") == "no-items,unfinished"
    assert outcomes.normalize("None") == "none"


def test_a_job_without_conditions_of_its_own_has_the_daemon_s():
    assert outcomes.conditions_of(None, ("error-log",)) == ("error-log",)
    assert outcomes.conditions_of("none", ("error-log",)) == ()
    assert outcomes.conditions_of("no-items", ("error-log",)) == ("no-items",)
    assert outcomes.conditions_of("from-the-future", ("error-log",)) == ("error-log",)


def test_all_requests_failed_names_the_failures():
    assert outcomes.check("all-requests-failed", REFUSED) == (
        "all 3 requests failed: connection refused")
    dns = {"downloader/request_count": 1,
           "downloader/exception_type_count/twisted.internet.error.DNSLookupError": 1}
    assert outcomes.check("all-requests-failed", dns) == (
        "the only request failed: DNS lookup failed")
    mixed = {"downloader/request_count": 6,
             "downloader/exception_type_count/twisted.internet.error.TimeoutError": 1,
             "downloader/exception_type_count/scrapy.exceptions.CannotResolveHostError": 2,
             "downloader/exception_type_count/twisted.internet.error.DNSLookupError": 1,
             "downloader/exception_type_count/my.own.WeirdError": 2}
    assert outcomes.check("all-requests-failed", mixed) == (
        "all 6 requests failed: DNS lookup failed (3), WeirdError (2), timed out (1)")
    assert outcomes.check("all-requests-failed", {"downloader/request_count": 2}) == (
        "all 2 requests failed: no exception was recorded")


@pytest.mark.parametrize("stats", [
    GOOD,
    {},                                                    # no request at all
    {"downloader/request_count": 5, "response_received_count": 1},
    {"downloader/request_count": True},                    # not a count
])
def test_all_requests_failed_needs_requests_and_no_response(stats):
    assert outcomes.check("all-requests-failed", stats) is None


def test_the_other_conditions():
    assert outcomes.check("no-items", REFUSED) == "no items scraped (0 response(s) received)"
    assert outcomes.check("no-items", GOOD) is None
    assert outcomes.check("error-log", REFUSED) == "2 ERROR log line(s) (see the .err log)"
    assert outcomes.check("error-log", GOOD) is None
    assert outcomes.check("unfinished", GOOD) is None
    assert outcomes.check("unfinished", {"finish_reason": "closespider_timeout"}) == (
        "the crawl ended with finish_reason 'closespider_timeout'")
    assert outcomes.check("unfinished", {}) == "the crawl did not report how it finished"


def test_judge_names_every_condition_met_and_nothing_without_stats():
    assert outcomes.judge(outcomes.CONDITIONS, REFUSED) == (
        "all 3 requests failed: connection refused (fail-on all-requests-failed); "
        "no items scraped (0 response(s) received) (fail-on no-items); "
        "2 ERROR log line(s) (see the .err log) (fail-on error-log)")
    assert outcomes.judge(outcomes.CONDITIONS, GOOD) is None
    assert outcomes.judge((), REFUSED) is None
    assert outcomes.judge(outcomes.DEFAULT, None) is None
