"""The ``when`` grammar: parse a schedule once, then ask it for fire times (pure).

Accepted (case-insensitive), as scrapy-do accepts them:

- ``now``
- ``every [N] second(s)|minute(s)|hour(s)|day(s)|week(s)``
- ``every N to M second(s)|minute(s)|...``: a random interval, drawn anew per firing
- ``every [N] day(s) at HH:MM[:SS]``, ``every [N] hour(s) at :MM`` / ``at MM:SS``,
  ``every [N] minute(s) at :SS``
- ``every monday..sunday [at HH:MM[:SS]]`` (00:00 when no time is given)
- ``cron:<5 fields>`` (minute hour day month weekday), ``cron:<6 fields>`` (seconds
  first), and ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``,
  ``@yearly`` (``@annually``), with or without ``cron:`` in front

Cron follows cron's rule for daylight saving: an expression with a fixed hour runs in
wall-clock time, so a 02:30 job runs once on the day 02:30 is skipped (at 03:30, an
hour after the jump) and once on the day it repeats (the first 02:30); an expression whose hour is a
wildcard (``*``, ``*/N``) runs in real time, every real hour.

Wall-clock arithmetic happens in ``tz`` (None: the system's local time), so "at 10:30"
stays 10:30 across daylight-saving changes. Times in and out are epoch seconds.
"""
from __future__ import annotations

import functools

import random
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Optional

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from .errors import BadRequest

ACCEPTED = ('accepted: "now", "every [N] seconds|minutes|hours|days|weeks", '
            '"every N to M minutes" (or any unit), "every [N] days at HH:MM", '
            '"every monday..sunday [at HH:MM]", "every hour at :MM", '
            '"cron:MIN HOUR DAY MONTH WEEKDAY" (or 6 fields, seconds first), '
            '"@hourly", "@daily", "@weekly", "@monthly", "@yearly"')
ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
           "@annually": "0 0 1 1 *"}

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
#: The longest interval a schedule may have: 100 years (36,500 days). Longer ones only
#: lead past the last date a datetime holds (year 9999), where showing them failed.
MAX_INTERVAL = 36500 * 86400
#: The last time crawld computes or shows: a year before datetime's end, so that any
#: zone's local time, and a day's shift from it, stay within what datetimes hold.
MAX_TIME = datetime(9999, 1, 1, tzinfo=timezone.utc).timestamp()
#: Longer than any IANA zone name (the longest has 32 characters).
MAX_ZONE_NAME = 64
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class SpecError(BadRequest):
    """A ``when`` that is not in the grammar; the message says what is accepted."""

    def __init__(self, text: str, why: str) -> None:
        super().__init__(f"invalid when {text!r}: {why}; {ACCEPTED}")


@dataclass(frozen=True)
class Spec:
    """A parsed schedule. ``now`` is a one-off; everything else recurs."""

    text: str
    unit: str = ""                      # "second" .. "week"; "" for now
    low: int = 0                        # interval (in units), or the low end of N to M
    high: int = 0                       # high end of N to M (== low when fixed)
    at: Optional[time] = None           # wall-clock anchor within the unit
    weekday: Optional[int] = None       # 0=monday, for "every monday"
    cron: str = ""                      # a cron expression (5 or 6 fields)

    @property
    def is_now(self) -> bool:
        return self.unit == "" and not self.cron

    def _interval(self, rng: random.Random) -> int:
        n = self.low if self.high == self.low else rng.randint(self.low, self.high)
        return n * UNITS[self.unit]

    def first(self, now: float, tz: Optional[tzinfo] = None,
              rng: Optional[random.Random] = None) -> float:
        """The first fire time of a schedule created at ``now`` (strictly after it)."""
        rng = rng or random.Random()
        if self.is_now:
            return now
        if self.cron:
            return _cron_after(self.cron, now, tz)
        if self.weekday is not None:
            return _next_weekday(now, self.weekday, self.at or time(0), tz)
        if self.at is not None:
            return _next_anchor(now, self.unit, self.at, tz)
        return now + self._interval(rng)

    def following(self, due: float, now: float, tz: Optional[tzinfo] = None,
                  rng: Optional[random.Random] = None) -> float:
        """The fire time after the one due at ``due``, never at or before ``now``.

        Missed firings are not replayed one by one: if the daemon was down past several
        of them, the series continues from ``now``.
        """
        rng = rng or random.Random()
        if self.is_now:
            raise ValueError("a 'now' spec does not recur")
        if self.cron:
            return _cron_after(self.cron, max(due, now), tz)
        if self.weekday is not None:
            nxt = _shift_days(due, 7 * self.low, self.at or time(0), tz)
        elif self.at is not None and self.unit in ("day", "week"):
            nxt = _shift_days(due, self.low * UNITS[self.unit] // 86400, self.at, tz)
        else:
            nxt = due + self._interval(rng)
        return nxt if nxt > now else self.first(now, tz, rng)


def _cron_after(expr: str, after: float, tz: Optional[tzinfo]) -> float:
    """The first time strictly after ``after`` that the cron expression names, in ``tz``."""
    fields = expr.split()
    six = len(fields) == 6
    hour = fields[2 if six else 1]
    if hour == "*" or hour.startswith("*/"):
        # Real time: every real hour counts, including a repeated one.
        start = datetime.fromtimestamp(after, tz) if tz else datetime.fromtimestamp(after).astimezone()
        it = croniter(expr, start, second_at_beginning=six)
        while True:
            nxt = it.get_next(datetime).timestamp()
            if nxt > after:
                return nxt
    # Wall-clock time: name each local time once; a time that does not exist maps (fold 0)
    # to just after the jump, a repeated one to its first occurrence.
    wall = datetime.fromtimestamp(after, tz).replace(tzinfo=None)
    it = croniter(expr, wall, second_at_beginning=six)
    for _ in range(100_000):
        nxt = it.get_next(datetime)
        ts = (nxt.replace(tzinfo=tz) if tz else nxt).timestamp()
        if ts > after:
            return ts
    raise SpecError(expr, "the expression never fires")


def _parse_cron(text: str, expr: str) -> Spec:
    expr = " ".join(ALIASES.get(expr.strip().lower(), expr).split())
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise SpecError(text, f"a cron expression has 5 fields (or 6, seconds first), "
                              f"got {len(fields)}")
    if not croniter.is_valid(expr, second_at_beginning=len(fields) == 6):
        raise SpecError(text, f"{expr!r} is not a valid cron expression")
    try:
        _cron_after(expr, 0.0, None)
    except CroniterBadDateError:
        raise SpecError(text, f"{expr!r} never fires (no such date)") from None
    except (ValueError, KeyError) as exc:
        raise SpecError(text, f"{expr!r} is not a valid cron expression: {exc}") from None
    return Spec(text=text, cron=expr)


def zone(name: str) -> tzinfo:
    """An IANA time zone by name (``Europe/Paris``); BadRequest for an unknown one.

    A name longer than any zone's (MAX_ZONE_NAME) is refused before the file system is
    asked (5,000 characters made the lookup fail with "File name too long"); so is a
    folder of zones (``America``), which the lookup reports as a directory."""
    try:
        if (not name or len(name) > MAX_ZONE_NAME or name.startswith(("/", "."))
                or ".." in name):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        raise BadRequest(f"unknown time zone {_shown(name)}: use an IANA name such as "
                         "Europe/Paris or UTC") from None


def _shown(name: str) -> str:
    """A client's name, quoted and cut short enough to repeat in an error message."""
    return repr(name) if len(name) <= MAX_ZONE_NAME else repr(name[:MAX_ZONE_NAME]) + "..."


def preview(spec: Spec, now: float, count: int, tz: Optional[tzinfo] = None,
            rng: Optional[random.Random] = None) -> list[float]:
    """The next ``count`` fire times of a recurring spec, as the scheduler would fire them."""
    if spec.is_now:
        return [now]
    times = [spec.first(now, tz, rng)]
    while len(times) < count:
        try:
            nxt = spec.following(times[-1], times[-1], tz, rng)
        except (OverflowError, ValueError, OSError):  # no date after year 9999
            break
        if nxt > MAX_TIME:  # fewer than ``count``: the series ends where dates do
            break
        times.append(nxt)
    return times


def _local(ts: float, tz: Optional[tzinfo]) -> datetime:
    return datetime.fromtimestamp(ts, tz)


def _at(day: date, at: time, tz: Optional[tzinfo]) -> float:
    return datetime.combine(day, at, tzinfo=tz).timestamp()


def _next_anchor(now: float, unit: str, at: time, tz: Optional[tzinfo]) -> float:
    """The next wall-clock instant after ``now`` matching ``at`` within a day/hour/minute."""
    here = _local(now, tz)
    if unit in ("day", "week"):
        candidate = _at(here.date(), at, tz)
        return candidate if candidate > now else _at(here.date() + timedelta(days=1), at, tz)
    # Step in absolute seconds: a wall-clock hour added in the hour the clocks go back
    # would land an hour late and skip a firing.
    if unit == "hour":
        base, step = here.replace(minute=at.minute, second=at.second, microsecond=0), 3600
    else:
        base, step = here.replace(second=at.second, microsecond=0), 60
    candidate = base.timestamp()
    return candidate if candidate > now else candidate + step


def _next_weekday(now: float, weekday: int, at: time, tz: Optional[tzinfo]) -> float:
    here = _local(now, tz)
    for ahead in range(0, 8):
        day = here.date() + timedelta(days=ahead)
        if day.weekday() == weekday:
            candidate = _at(day, at, tz)
            if candidate > now:
                return candidate
    raise AssertionError("unreachable: a weekday recurs within 8 days")


def _shift_days(due: float, days: int, at: time, tz: Optional[tzinfo]) -> float:
    return _at(_local(due, tz).date() + timedelta(days=days), at, tz)


def _parse_at(text: str, value: str, unit: str) -> time:
    """Parse the argument of ``at`` for a unit: HH:MM[:SS] for days, :MM|MM:SS for hours."""
    parts = value.split(":")
    if unit in ("day", "week"):
        if not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value):
            raise SpecError(text, f'"at" expects HH:MM, got {value!r}')
        h, m, s = (int(p) for p in (parts + ["0"])[:3])
    elif unit == "hour":
        if not re.fullmatch(r"\d{0,2}:\d{2}", value):
            raise SpecError(text, f'"at" for hours expects :MM or MM:SS, got {value!r}')
        h, m, s = (0, int(parts[1]), 0) if parts[0] == "" else (0, int(parts[0]), int(parts[1]))
    elif unit == "minute":
        if not re.fullmatch(r":\d{2}", value):
            raise SpecError(text, f'"at" for minutes expects :SS, got {value!r}')
        h, m, s = 0, 0, int(parts[1])
    else:
        raise SpecError(text, f'"at" cannot be used with {unit}s')
    if h > 23 or m > 59 or s > 59:
        raise SpecError(text, f'"at {value}" is not a valid time of day')
    return time(h, m, s)


_LIMIT_NOTE = f"an interval is at most {MAX_INTERVAL // 86400} days (100 years)"


def _number(text: str, token: str) -> int:
    if re.fullmatch(r"[+-]?\d*\.\d+", token):
        raise SpecError(text, f"intervals are whole numbers, got {token!r}")
    if not re.fullmatch(r"[+-]?\d+", token):
        raise SpecError(text, f"expected a number, got {token!r}")
    if len(token) > 20:  # int() of thousands of digits is slow, then refused
        raise SpecError(text, f"the interval {token[:20]}... is too large; "
                              f"{_LIMIT_NOTE}")
    n = int(token)
    if n <= 0:
        raise SpecError(text, f"the interval must be a positive number, got {n}")
    return n


def parse(text: str) -> Spec:
    """Parse a ``when`` string; raise SpecError (a 400) with what is accepted.

    Specs are immutable and many schedules share one (every hour, @daily...), so parses
    are cached: loading 100,000 schedules at start-up parses each distinct text once.
    """
    if not isinstance(text, str):
        raise SpecError(str(text), "it is empty")
    return _parse_cached(text)


@functools.lru_cache(maxsize=16384)
def _parse_cached(text: str) -> Spec:
    if not text.strip():
        raise SpecError(str(text), "it is empty")
    words = text.strip().lower().split()
    if words == ["now"]:
        return Spec(text="now")
    stripped = text.strip()
    if stripped.lower().startswith("cron:"):
        return _parse_cron(text, stripped[5:])
    if stripped.startswith("@"):
        if stripped.lower() not in ALIASES:
            raise SpecError(text, f"unknown alias {stripped!r}")
        return _parse_cron(text, stripped)
    if words[0] != "every" or len(words) < 2:
        raise SpecError(text, 'a schedule is "now" or starts with "every"')
    rest = words[1:]
    low = high = 1
    explicit = False
    if re.fullmatch(r"[+-]?\d*\.?\d+", rest[0]):
        low = high = _number(text, rest[0])
        explicit = True
        rest = rest[1:]
        if len(rest) >= 2 and rest[0] == "to":
            high = _number(text, rest[1])
            if high < low:
                raise SpecError(text, f'"{low} to {high}": the upper bound is below the lower')
            rest = rest[2:]
    if not rest:
        raise SpecError(text, "a unit is missing")
    word, rest = rest[0], rest[1:]
    at_value: Optional[str] = None
    if len(rest) >= 2 and rest[0] == "to" and high == low:  # "every 2 minutes to 5"
        high = _number(text, rest[1])
        if high < low:
            raise SpecError(text, f'"{low} to {high}": the upper bound is below the lower')
        rest = rest[2:]
    if rest:
        if rest[0] != "at" or len(rest) != 2:
            raise SpecError(text, f"unexpected {' '.join(rest)!r}")
        at_value = rest[1]
    if word in WEEKDAYS:
        if explicit and (low != 1 or high != 1):
            raise SpecError(text, "a weekday cannot take a number (use 'every monday')")
        at = _parse_at(text, at_value, "day") if at_value else None
        return Spec(text=text, unit="week", low=1, high=1, at=at, weekday=WEEKDAYS.index(word))
    unit = word[:-1] if word.endswith("s") else word
    if unit not in UNITS:
        raise SpecError(text, f"unknown unit {word!r}")
    if high * UNITS[unit] > MAX_INTERVAL:
        raise SpecError(text, f"an interval is at most {MAX_INTERVAL // UNITS[unit]} "
                              f"{unit}s (100 years)")
    at = _parse_at(text, at_value, unit) if at_value else None
    if at is not None and high != low:
        raise SpecError(text, '"at" cannot be combined with a random "N to M" interval')
    return Spec(text=text, unit=unit, low=low, high=high, at=at)
