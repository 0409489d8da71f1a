"""The ``when`` grammar (crawld.spec): what parses, what is refused, and the fire times.

Expected instants are built from literal wall-clock datetimes in an explicit zone, so
every expectation is independent of the machine's local time.
"""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawld import spec
from crawld.errors import BadRequest, CrawldError
from crawld.spec import SpecError, parse

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
HOUR = 3600
DAY = 86400


def ts(*args: int, tz=UTC) -> float:
    """Epoch seconds of a wall-clock time in ``tz``."""
    return datetime(*args, tzinfo=tz).timestamp()


def local(epoch: float, tz=UTC) -> datetime:
    return datetime.fromtimestamp(epoch, tz)


# --------------------------------------------------------------------------- accepted


def test_now_parses_case_insensitively_and_is_a_one_off():
    for text in ("now", "NOW", "  Now  "):
        parsed = parse(text)
        assert parsed.is_now
        assert parsed.unit == ""


def test_now_first_fire_is_now_and_it_does_not_recur():
    now = ts(2026, 1, 5, 12, 0)
    parsed = parse("now")
    assert parsed.first(now, UTC) == now
    with pytest.raises(ValueError):
        parsed.following(now, now, UTC)


@pytest.mark.parametrize("text, unit, n, seconds", [
    ("every 10 seconds", "second", 10, 10),
    ("every 1 second", "second", 1, 1),
    ("every second", "second", 1, 1),
    ("every 5 minutes", "minute", 5, 300),
    ("every minute", "minute", 1, 60),
    ("every 1 minutes", "minute", 1, 60),
    ("EVERY 5 MINUTES", "minute", 5, 300),
    ("Every 3 Hours", "hour", 3, 3 * HOUR),
    ("every hour", "hour", 1, HOUR),
    ("every 2 days", "day", 2, 2 * DAY),
    ("every day", "day", 1, DAY),
    ("every week", "week", 1, 7 * DAY),
    ("every 2 weeks", "week", 2, 14 * DAY),
    ("  every   4   hours  ", "hour", 4, 4 * HOUR),
])
def test_fixed_interval_forms_parse_and_fire_one_interval_after_now(text, unit, n, seconds):
    parsed = parse(text)
    assert not parsed.is_now
    assert (parsed.unit, parsed.low, parsed.high, parsed.at, parsed.weekday) == (
        unit, n, n, None, None)
    now = ts(2026, 1, 5, 12, 0, 7)
    assert parsed.first(now, UTC) == now + seconds
    assert parsed.following(now + seconds, now + seconds, UTC) == now + 2 * seconds


def test_parsed_spec_keeps_the_original_text():
    assert parse("Every 5 Minutes").text == "Every 5 Minutes"


def test_every_n_to_m_draws_intervals_within_the_bounds_for_a_seeded_rng():
    parsed = parse("every 2 to 5 hours")
    assert (parsed.unit, parsed.low, parsed.high) == ("hour", 2, 5)
    rng = random.Random(20260105)
    now = ts(2026, 1, 5, 12, 0)
    firsts = [parsed.first(now, UTC, rng) - now for _ in range(200)]
    due = now
    gaps = []
    for _ in range(200):
        nxt = parsed.following(due, due, UTC, rng)
        gaps.append(nxt - due)
        due = nxt
    for gap in firsts + gaps:
        assert 2 * HOUR <= gap <= 5 * HOUR
        assert gap % HOUR == 0  # whole units
    # drawn anew each time, both ends of the range included (randint is inclusive)
    assert {g // HOUR for g in firsts} == {2, 3, 4, 5}
    assert {g // HOUR for g in gaps} == {2, 3, 4, 5}


def test_every_n_to_m_is_reproducible_with_the_same_seed():
    parsed = parse("every 1 to 10 minutes")
    now = ts(2026, 1, 5, 12, 0)
    a = [parsed.first(now, UTC, random.Random(7)) for _ in range(3)]
    b = [parsed.first(now, UTC, random.Random(7)) for _ in range(3)]
    assert a == b


def test_every_day_at_fires_today_if_still_ahead_else_tomorrow():
    parsed = parse("every day at 10:30")
    assert parsed.at == time(10, 30)
    assert parsed.first(ts(2026, 1, 5, 9, 0), UTC) == ts(2026, 1, 5, 10, 30)
    assert parsed.first(ts(2026, 1, 5, 11, 0), UTC) == ts(2026, 1, 6, 10, 30)


def test_every_day_at_exactly_now_fires_tomorrow_not_now():
    parsed = parse("every day at 10:30")
    now = ts(2026, 1, 5, 10, 30)
    assert parsed.first(now, UTC) == ts(2026, 1, 6, 10, 30)


def test_every_day_at_accepts_seconds_and_single_digit_hours():
    assert parse("every day at 10:30:15").at == time(10, 30, 15)
    assert parse("every day at 9:05").at == time(9, 5)
    assert parse("every day at 9:05").first(ts(2026, 1, 5, 12, 0), UTC) == ts(2026, 1, 6, 9, 5)


def test_every_n_days_at_steps_n_days_between_firings():
    parsed = parse("every 2 days at 10:30")
    due = ts(2026, 1, 5, 10, 30)
    assert parsed.following(due, due, UTC) == ts(2026, 1, 7, 10, 30)


def test_every_week_at_steps_seven_days():
    parsed = parse("every week at 08:00")
    due = ts(2026, 1, 5, 8, 0)
    assert parsed.following(due, due, UTC) == ts(2026, 1, 12, 8, 0)


@pytest.mark.parametrize("name, weekday", [
    ("monday", 0), ("tuesday", 1), ("wednesday", 2), ("thursday", 3),
    ("friday", 4), ("saturday", 5), ("sunday", 6)])
def test_every_weekday_parses_to_that_weekday(name, weekday):
    parsed = parse(f"every {name.upper()} at 12:30")
    assert parsed.weekday == weekday
    assert parsed.at == time(12, 30)
    # 2026-01-05 is a Monday; the first fire from the Sunday before is that weekday
    now = ts(2026, 1, 4, 13, 0)
    fired = local(parsed.first(now, UTC))
    assert fired.weekday() == weekday
    assert (fired.hour, fired.minute) == (12, 30)
    assert 0 < fired.timestamp() - now <= 7 * DAY


def test_every_monday_without_time_fires_at_midnight():
    parsed = parse("every monday")
    assert parsed.weekday == 0
    # Wednesday 2026-01-07 -> Monday 2026-01-12 00:00
    assert parsed.first(ts(2026, 1, 7, 15, 0), UTC) == ts(2026, 1, 12, 0, 0)


def test_every_monday_at_same_day_before_and_after_the_time():
    parsed = parse("every monday at 12:30")
    assert parsed.first(ts(2026, 1, 5, 12, 29), UTC) == ts(2026, 1, 5, 12, 30)
    assert parsed.first(ts(2026, 1, 5, 12, 30), UTC) == ts(2026, 1, 12, 12, 30)
    assert parsed.first(ts(2026, 1, 5, 12, 31), UTC) == ts(2026, 1, 12, 12, 30)


def test_every_monday_following_is_a_week_later():
    parsed = parse("every monday at 12:30")
    due = ts(2026, 1, 5, 12, 30)
    assert parsed.following(due, due, UTC) == ts(2026, 1, 12, 12, 30)


def test_every_hour_at_minute_fires_at_the_next_quarter_past():
    parsed = parse("every hour at :15")
    assert (parsed.unit, parsed.at) == ("hour", time(0, 15))
    assert parsed.first(ts(2026, 1, 5, 10, 10), UTC) == ts(2026, 1, 5, 10, 15)
    assert parsed.first(ts(2026, 1, 5, 10, 20), UTC) == ts(2026, 1, 5, 11, 15)
    assert parsed.first(ts(2026, 1, 5, 10, 15), UTC) == ts(2026, 1, 5, 11, 15)
    due = ts(2026, 1, 5, 11, 15)
    assert parsed.following(due, due, UTC) == ts(2026, 1, 5, 12, 15)


def test_every_hour_at_mm_ss_and_every_minute_at_ss():
    assert parse("every hour at 15:30").at == time(0, 15, 30)
    parsed = parse("every minute at :30")
    assert parsed.at == time(0, 0, 30)
    assert parsed.first(ts(2026, 1, 5, 10, 0, 10), UTC) == ts(2026, 1, 5, 10, 0, 30)
    assert parsed.first(ts(2026, 1, 5, 10, 0, 45), UTC) == ts(2026, 1, 5, 10, 1, 30)


# ------------------------------------------------------------- daylight saving, Paris
# 2026-03-29: 02:00 CET -> 03:00 CEST (02:xx does not exist).
# 2026-10-25: 03:00 CEST -> 02:00 CET (02:xx happens twice).


def test_at_1030_stays_1030_across_the_spring_change():
    parsed = parse("every day at 10:30")
    due = ts(2026, 3, 28, 10, 30, tz=PARIS)
    nxt = parsed.following(due, due, PARIS)
    assert nxt == ts(2026, 3, 29, 10, 30, tz=PARIS)
    assert nxt - due == 23 * HOUR
    after = parsed.following(nxt, nxt, PARIS)
    assert after == ts(2026, 3, 30, 10, 30, tz=PARIS)
    assert after - nxt == 24 * HOUR


def test_at_1030_stays_1030_across_the_autumn_change():
    parsed = parse("every day at 10:30")
    due = ts(2026, 10, 24, 10, 30, tz=PARIS)
    nxt = parsed.following(due, due, PARIS)
    assert nxt == ts(2026, 10, 25, 10, 30, tz=PARIS)
    assert nxt - due == 25 * HOUR
    assert (local(nxt, PARIS).hour, local(nxt, PARIS).minute) == (10, 30)


def test_first_at_1030_across_the_spring_change():
    parsed = parse("every day at 10:30")
    now = ts(2026, 3, 28, 12, 0, tz=PARIS)
    assert parsed.first(now, PARIS) == ts(2026, 3, 29, 10, 30, tz=PARIS)
    # 10:30 CEST is 08:30 UTC
    assert parsed.first(now, PARIS) == ts(2026, 3, 29, 8, 30)


def test_at_0230_fires_once_on_the_spring_change_day_then_back_at_0230():
    parsed = parse("every day at 02:30")
    due = ts(2026, 3, 28, 2, 30, tz=PARIS)
    on_change = parsed.following(due, due, PARIS)
    # 02:30 does not exist that night; it still fires that day, once, after the jump
    assert local(on_change, PARIS).date() == date(2026, 3, 29)
    assert ts(2026, 3, 29, 1, 0) <= on_change < ts(2026, 3, 30, 0, 30)  # >= 03:00 CEST
    assert on_change == ts(2026, 3, 29, 2, 30, tz=PARIS)
    nxt = parsed.following(on_change, on_change, PARIS)
    assert nxt == ts(2026, 3, 30, 2, 30, tz=PARIS)
    assert (local(nxt, PARIS).hour, local(nxt, PARIS).minute) == (2, 30)


def test_at_0230_fires_once_on_the_autumn_change_day():
    parsed = parse("every day at 02:30")
    due = ts(2026, 10, 24, 2, 30, tz=PARIS)
    on_change = parsed.following(due, due, PARIS)
    # the first 02:30 (CEST, 00:30 UTC) ...
    assert on_change == ts(2026, 10, 25, 0, 30)
    # ... and not again at the repeated 02:30 CET (01:30 UTC): next is the 26th
    nxt = parsed.following(on_change, on_change, PARIS)
    assert nxt == ts(2026, 10, 26, 2, 30, tz=PARIS)
    assert nxt == ts(2026, 10, 26, 1, 30)
    # a schedule created between the two 02:30s does not fire in the repeated hour
    between = ts(2026, 10, 25, 0, 45)  # 02:45 CEST
    assert parsed.first(between, PARIS) == ts(2026, 10, 26, 2, 30, tz=PARIS)


def test_every_monday_at_keeps_wall_time_across_the_spring_change():
    parsed = parse("every monday at 12:30")
    due = ts(2026, 3, 23, 12, 30, tz=PARIS)  # a Monday, CET
    nxt = parsed.following(due, due, PARIS)
    assert nxt == ts(2026, 3, 30, 12, 30, tz=PARIS)
    assert nxt - due == 7 * DAY - HOUR


def test_every_hour_at_15_created_in_the_repeated_autumn_hour_fires_within_the_hour():
    parsed = parse("every hour at :15")
    now = ts(2026, 10, 25, 0, 20)  # 02:20 CEST; the clock goes back to 02:00 CET at 01:00 UTC
    # next instant whose Paris minute is :15 is 02:15 CET = 01:15 UTC, 55 minutes later
    assert parsed.first(now, PARIS) == ts(2026, 10, 25, 1, 15)


def test_every_hour_at_15_following_keeps_real_hours_across_the_autumn_change():
    parsed = parse("every hour at :15")
    due = ts(2026, 10, 25, 0, 15)  # 02:15 CEST
    nxt = parsed.following(due, due, PARIS)
    assert nxt == ts(2026, 10, 25, 1, 15)  # 02:15 CET
    assert local(nxt, PARIS).minute == 15


# --------------------------------------------------------------------- after downtime


def test_following_after_long_downtime_continues_from_now_without_backlog():
    parsed = parse("every 10 minutes")
    due = ts(2026, 1, 1, 0, 0)
    now = ts(2026, 1, 31, 9, 3)  # 30 days of missed firings
    assert parsed.following(due, now, UTC) == now + 600


def test_following_after_downtime_keeps_the_daily_anchor():
    parsed = parse("every day at 10:30")
    due = ts(2026, 1, 1, 10, 30)
    assert parsed.following(due, ts(2026, 1, 20, 11, 0), UTC) == ts(2026, 1, 21, 10, 30)
    assert parsed.following(due, ts(2026, 1, 20, 9, 0), UTC) == ts(2026, 1, 20, 10, 30)


def test_following_after_downtime_keeps_the_weekday_and_hourly_anchor():
    monday = parse("every monday at 12:30")
    due = ts(2026, 1, 5, 12, 30)
    # down until Wednesday 2026-02-04: next is Monday 2026-02-09
    assert monday.following(due, ts(2026, 2, 4, 8, 0), UTC) == ts(2026, 2, 9, 12, 30)
    hourly = parse("every hour at :15")
    assert hourly.following(ts(2026, 1, 5, 1, 15), ts(2026, 1, 7, 9, 40), UTC) == \
        ts(2026, 1, 7, 10, 15)


def test_following_exactly_at_now_is_pushed_past_now():
    parsed = parse("every 10 minutes")
    due = ts(2026, 1, 5, 12, 0)
    now = due + 600  # the natural next fire equals now: not allowed
    assert parsed.following(due, now, UTC) == now + 600


RECURRING = ["every 7 seconds", "every 10 minutes", "every 3 hours", "every 2 days",
             "every week", "every 1 to 4 hours", "every day at 02:30", "every day at 10:30",
             "every 3 days at 23:59:59", "every monday", "every sunday at 02:30",
             "every hour at :15", "every 2 hours at 45:10", "every minute at :30"]

# 2025-06-01 .. 2027-06-01, so both DST changes of 2026 fall inside
EPOCHS = st.integers(min_value=int(ts(2025, 6, 1)), max_value=int(ts(2027, 6, 1)))


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.sampled_from(RECURRING), now=EPOCHS, frac=st.floats(0, 0.999),
       tz=st.sampled_from([UTC, PARIS]), seed=st.integers(0, 2**32))
def test_first_is_strictly_after_now(text, now, frac, tz, seed):
    t = now + frac
    assert parse(text).first(t, tz, random.Random(seed)) > t


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.sampled_from(RECURRING), due=EPOCHS, lag=st.integers(-DAY, 60 * DAY),
       tz=st.sampled_from([UTC, PARIS]), seed=st.integers(0, 2**32))
def test_following_is_never_at_or_before_now(text, due, lag, tz, seed):
    now = due + lag
    assert parse(text).following(due, now, tz, random.Random(seed)) > now


# --------------------------------------------------------------------------- rejected


@pytest.mark.parametrize("text, why", [
    ("every 0 minutes", "positive"),
    ("every -1 minutes", "positive"),
    ("every 5 to 2 minutes", "upper bound is below"),
    ("every 5 to 0 minutes", "positive"),
    ("every 5 fortnights", "unknown unit"),
    ("every 5 minutes please", "unexpected"),
    ("every 5 minutes at", "unexpected"),
    ("", "empty"),
    ("   ", "empty"),
    ("sometimes", 'starts with "every"'),
    ("now please", 'starts with "every"'),
    ("every", 'starts with "every"'),
    ("every 5", "unit is missing"),
    ("every 5 to minutes", "expected a number"),
    ("every 2 mondays", "unknown unit"),
    ("every 2 monday", "weekday cannot take a number"),
    ("every day at 25:00", "not a valid time"),
    ("every day at 10:60", "not a valid time"),
    ("every day at 10", "HH:MM"),
    ("every monday at 24:00", "not a valid time"),
    ("every hour at :75", "not a valid time"),
    ("every 10 seconds at :15", "cannot be used with seconds"),
    ("every 2 to 4 days at 10:30", "cannot be combined"),
])
def test_rejected_forms_raise_spec_error_saying_why_and_what_is_accepted(text, why):
    with pytest.raises(SpecError) as info:
        parse(text)
    message = str(info.value)
    assert why in message
    assert "accepted" in message
    assert info.value.msg == message
    assert info.value.code == 400


def test_non_string_when_is_rejected():
    with pytest.raises(SpecError, match="empty"):
        parse(None)  # type: ignore[arg-type]


def test_spec_error_is_a_bad_request_with_code_400():
    assert issubclass(SpecError, BadRequest)
    assert issubclass(SpecError, CrawldError)
    err = SpecError("every 0 minutes", "nope")
    assert isinstance(err, BadRequest)
    assert err.code == 400
    assert "every 0 minutes" in err.msg and "nope" in err.msg
    assert spec.ACCEPTED in err.msg


@pytest.mark.parametrize("text,unit,low,high", [
    ("every 2 minutes to 3", "minute", 2, 3),   # scrapy-do also takes "to" after the unit
    ("every minute to 5", "minute", 1, 5),
    ("every 1 monday", "week", 1, 1),
])
def test_scrapy_do_word_orders_are_accepted(text, unit, low, high):
    parsed = parse(text)
    assert (parsed.unit, parsed.low, parsed.high) == (unit, low, high)
