"""Cron specs: grammar, aliases, time zones, daylight saving, and agreement with croniter."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from zoneinfo import ZoneInfo

from crawld import spec
from crawld.errors import BadRequest
from crawld.spec import SpecError, parse, preview

PARIS = ZoneInfo("Europe/Paris")
UTC = ZoneInfo("UTC")


def at(*args, tz=PARIS) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def fires(text: str, start: float, n: int, tz=PARIS) -> list[float]:
    return preview(parse(text), start, n, tz)


@pytest.mark.parametrize("text,expr", [
    ("cron:*/15 9-17 * * mon-fri", "*/15 9-17 * * mon-fri"),
    ("CRON: 0  3 * * *", "0 3 * * *"),
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"), ("cron:@daily", "0 0 * * *"),
    ("cron:30 */15 9 * * *", "30 */15 9 * * *"),
])
def test_cron_forms_are_accepted(text, expr):
    parsed = parse(text)
    assert parsed.cron == expr and not parsed.is_now


@pytest.mark.parametrize("text,words", [
    ("cron:61 * * * *", "not a valid cron"), ("cron:* * *", "5 fields"),
    ("cron:", "5 fields"), ("@often", "unknown alias"), ("cron:* * * * * * *", "5 fields"),
    ("cron:0 0 31 2 *", "never fires"),
])
def test_bad_cron_is_rejected_with_what_is_accepted(text, words):
    with pytest.raises(SpecError) as info:
        parse(text)
    assert words in str(info.value) and "cron:MIN HOUR" in str(info.value)
    assert info.value.code == 400


def test_weekday_business_hours():
    start = at(2026, 11, 20, 17, 20)  # a Friday
    assert fires("cron:*/15 9-17 * * mon-fri", start, 3) == [
        at(2026, 11, 20, 17, 30), at(2026, 11, 20, 17, 45), at(2026, 11, 23, 9, 0)]


def test_six_fields_put_seconds_first():
    assert fires("cron:30 */15 9 * * *", at(2026, 11, 20, 17, 20), 2) == [
        at(2026, 11, 21, 9, 0, 30), at(2026, 11, 21, 9, 15, 30)]


def test_daily_0230_runs_once_on_the_spring_forward_day():
    got = fires("cron:30 2 * * *", at(2026, 3, 28, 12, 0), 3)
    # 02:30 does not exist on 29 March: it runs once, an hour after the jump
    assert got == [at(2026, 3, 29, 1, 30, tz=UTC), at(2026, 3, 30, 2, 30), at(2026, 3, 31, 2, 30)]


def test_daily_0230_runs_once_on_the_fall_back_day():
    got = fires("cron:30 2 * * *", at(2026, 10, 24, 12, 0), 3)
    # 02:30 happens twice on 25 October: it runs at the first one only
    assert got == [at(2026, 10, 25, 0, 30, tz=UTC), at(2026, 10, 26, 2, 30),
                   at(2026, 10, 27, 2, 30)]


def test_hourly_runs_every_real_hour_across_fall_back():
    got = fires("@hourly", at(2026, 10, 25, 0, 30, tz=UTC), 3)
    assert [t - got[0] for t in got] == [0, 3600, 7200]
    assert got[0] == at(2026, 10, 25, 1, 0, tz=UTC)  # the second 02:00 (CET)


def test_zone_names():
    assert spec.zone("Europe/Paris") == PARIS
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "/etc/localtime"):
        with pytest.raises(BadRequest, match="unknown time zone"):
            spec.zone(bad)


_FIELD = st.sampled_from
EXPRESSIONS = st.tuples(
    _FIELD(["*", "0", "*/5", "15,45", "10-20", "*/7"]),
    _FIELD(["*", "3", "*/6", "9-17", "0,12"]),
    _FIELD(["*", "1", "15", "*/10"]),
    _FIELD(["*", "1", "6", "*/3"]),
    _FIELD(["*", "mon-fri", "0", "sat,sun"]),
).map(" ".join)


@settings(max_examples=150, deadline=None, database=None)
@given(EXPRESSIONS, st.integers(1_600_000_000, 1_900_000_000))
def test_cron_matches_croniter_and_strictly_increases(expr, start):
    got = fires(f"cron:{expr}", float(start), 6, tz=UTC)
    it = croniter(expr, datetime.fromtimestamp(start, timezone.utc))
    expected = [it.get_next(datetime).timestamp() for _ in range(6)]
    assert got == expected
    assert all(a < b for a, b in zip(got, got[1:])) and got[0] > start


@settings(max_examples=100, deadline=None, database=None)
@given(EXPRESSIONS, st.integers(1_600_000_000, 1_900_000_000),
       st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]))
def test_cron_in_any_zone_strictly_increases(expr, start, name):
    got = fires(f"cron:{expr}", float(start), 8, tz=ZoneInfo(name))
    assert got[0] > start and all(a < b for a, b in zip(got, got[1:]))
