"""Recurrence, pure: when a schedule fires (discovery tasks, reports, notification sweeps).

rrule + IANA zone -> UTC.

Kinds: manual (never fires by itself), once (at a local date and time), daily, weekly (a day
of the week), monthly, quarterly, semi-annually and annually (a day of the month; quarterly
and semi-annual cycles start at ``month``, annual runs happen in ``month``). Every kind
except manual/once fires at a local ``time`` (HH:MM) in ``timezone``.

Rules an admin can rely on:

- A day of the month the month lacks is clamped to its last day: "monthly on the 31st" runs
  Jan 31, Feb 28 (29), Mar 31, Apr 30; "annually on Feb 29" runs Feb 28 in common years.
  Done with rrule alone: ``bymonthday=(28..d), bysetpos=-1`` picks the latest existing day.
- Nonexistent local times (spring forward) fire at the first valid instant after the gap:
  a daily 02:30 job on the day Europe/Berlin or America/New_York skips 02:00-03:00 fires
  once, at 03:00 (cron's and most schedulers' rule; PEP 495's fold=0 alone would give 03:30).
- Ambiguous local times (fall back) fire once, at the first occurrence (``fold=0``).

Occurrences come from python-dateutil's rrule over local wall-clock times; zoneinfo turns
each into an aware UTC datetime. Nothing here reads the clock: callers pass ``after``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule  # type: ignore[import-untyped]

_TIME = re.compile(r"(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NO_OFFSET = "give the one-off date and time without an offset; the schedule's time zone applies"
_MAX_SCAN = 1_000  # occurrences examined per call; far more than any kind needs


class ScheduleError(ValueError):
    """A schedule is invalid; ``messages`` holds one human-readable line per problem."""

    def __init__(self, messages: Iterable[str]) -> None:
        self.messages: tuple[str, ...] = tuple(messages)
        super().__init__("; ".join(self.messages) or "invalid schedule")


class ScheduleKind(StrEnum):
    MANUAL = "manual"
    ONCE = "once"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    SEMIANNUALLY = "semiannually"
    ANNUALLY = "annually"


_BY_DAY_OF_MONTH = {
    ScheduleKind.MONTHLY,
    ScheduleKind.QUARTERLY,
    ScheduleKind.SEMIANNUALLY,
    ScheduleKind.ANNUALLY,
}
_LABELS = {
    ScheduleKind.MONTHLY: "Monthly",
    ScheduleKind.QUARTERLY: "Quarterly",
    ScheduleKind.SEMIANNUALLY: "Semi-annually",
    ScheduleKind.ANNUALLY: "Annually",
}
_CYCLE = {ScheduleKind.QUARTERLY: 3, ScheduleKind.SEMIANNUALLY: 6, ScheduleKind.ANNUALLY: 12}


@dataclass(frozen=True)
class Recurrence:
    """A validated schedule; build with parse_schedule() from form or JSON data.

    ``at`` (kind once) is a naive local date-time in ``timezone``; ``weekday`` is 0=Monday;
    ``month`` is the first month of a quarterly (1-3) / semi-annual (1-6) cycle, or the
    month of an annual run (1-12).
    """

    kind: ScheduleKind
    timezone: str = "UTC"
    time: dt.time = dt.time(2, 0)
    at: dt.datetime | None = None
    weekday: int | None = None
    day_of_month: int | None = None
    month: int | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ScheduleError(problems)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recurrence:
        """parse_schedule(data); raises ScheduleError."""
        return parse_schedule(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "timezone": self.timezone,
            "time": self.time.strftime("%H:%M"),
            "at": self.at.strftime("%Y-%m-%dT%H:%M") if self.at else None,
            "weekday": self.weekday,
            "day_of_month": self.day_of_month,
            "month": self.month,
        }

    def describe(self) -> str:
        """One line for lists and the form preview, e.g. 'Monthly on day 31 at 09:00 (UTC)'."""
        zone = f"({self.timezone})"
        when = f"at {self.time.strftime('%H:%M')} {zone}"
        day = f"on day {self.day_of_month}"
        kind = self.kind
        if kind is ScheduleKind.MANUAL:
            return "Manual only"
        if kind is ScheduleKind.ONCE:
            assert self.at is not None
            return f"Once on {self.at.strftime('%Y-%m-%d %H:%M')} {zone}"
        if kind is ScheduleKind.DAILY:
            return f"Daily {when}"
        if kind is ScheduleKind.WEEKLY:
            assert self.weekday is not None
            return f"Weekly on {WEEKDAYS[self.weekday].title()} {when}"
        months = ", ".join(dt.date(2000, m, 1).strftime("%b") for m in self.run_months())
        label = _LABELS[kind]
        scope = "" if kind is ScheduleKind.MONTHLY else f" in {months}"
        return f"{label} {day}{scope} {when}"

    def run_months(self) -> tuple[int, ...]:
        """Months a run can fall in (all twelve for monthly)."""
        cycle = _CYCLE.get(self.kind)
        if cycle is None:
            return tuple(range(1, 13))
        first = self.month or 1
        return tuple(sorted((first - 1 + step) % 12 + 1 for step in range(0, 12, cycle)))


def _problems(schedule: Recurrence) -> list[str]:
    problems: list[str] = []
    try:
        ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"'{schedule.timezone}' is not an IANA time zone (e.g. Europe/Berlin)")
    kind = schedule.kind
    if kind is ScheduleKind.ONCE and schedule.at is None:
        problems.append("a one-off schedule needs a date and time")
    if kind is ScheduleKind.WEEKLY and schedule.weekday not in range(7):
        problems.append("choose a day of the week")
    if kind in _BY_DAY_OF_MONTH and schedule.day_of_month not in range(1, 32):
        problems.append("the day of the month must be 1-31")
    cycle = _CYCLE.get(kind)
    month = schedule.month
    if cycle is not None and month is not None and month not in range(1, cycle + 1):
        problems.append(f"the month must be 1-{cycle}")
    return problems


def _parse_time(value: Any, problems: list[str]) -> dt.time:
    match = _TIME.fullmatch(str(value or "").strip())
    if match is None:
        problems.append(f"'{value}' is not a time of day (HH:MM, 24-hour)")
        return dt.time(0, 0)
    return dt.time(int(match["hour"]), int(match["minute"]))


def _parse_int(value: Any, label: str, problems: list[str]) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        problems.append(f"the {label} must be a number")
        return None


def _parse_weekday(value: Any, problems: list[str]) -> int | None:
    if isinstance(value, str) and value.strip() and not value.strip().isdecimal():
        name = value.strip().lower()
        matches = [i for i, day in enumerate(WEEKDAYS) if day.startswith(name[:3])]
        if len(name) >= 3 and len(matches) == 1 and WEEKDAYS[matches[0]].startswith(name):
            return matches[0]
        problems.append(f"'{value}' is not a day of the week")
        return None
    return _parse_int(value, "day of the week", problems)


def parse_schedule(data: Mapping[str, Any]) -> Recurrence:
    """A Recurrence from form/JSON data (the shape Recurrence.to_dict produces).

    Raises:
        ScheduleError: every problem, e.g. "'Mars/Olympus' is not an IANA time zone ...".
    """
    problems: list[str] = []
    try:
        kind = ScheduleKind(str(data.get("kind", "")).strip().lower())
    except ValueError:
        choices = ", ".join(k.value for k in ScheduleKind)
        message = f"unknown schedule kind '{data.get('kind')}' (one of: {choices})"
        raise ScheduleError([message]) from None
    needs_time = kind not in (ScheduleKind.MANUAL, ScheduleKind.ONCE)
    time = _parse_time(data.get("time"), problems) if needs_time else dt.time(0, 0)
    at = None
    if kind is ScheduleKind.ONCE and data.get("at") not in (None, ""):
        try:
            at = dt.datetime.fromisoformat(str(data["at"]).strip())
        except ValueError:
            problems.append(f"'{data['at']}' is not a date and time (YYYY-MM-DDTHH:MM)")
        else:
            if at.tzinfo is not None:
                problems.append(_NO_OFFSET)
                at = None
    timezone = str(data.get("timezone") or "UTC").strip()
    weekday = _parse_weekday(data.get("weekday"), problems)
    day_of_month = _parse_int(data.get("day_of_month"), "day of the month", problems)
    month = _parse_int(data.get("month"), "month", problems)
    try:
        schedule = Recurrence(kind, timezone, time, at, weekday, day_of_month, month)
    except ScheduleError as exc:
        problems.extend(exc.messages)
    if problems:
        raise ScheduleError(problems)
    return schedule


def validate_schedule(data: Mapping[str, Any]) -> list[str]:
    """The messages parse_schedule would raise (empty when valid), for form feedback."""
    try:
        parse_schedule(data)
    except ScheduleError as exc:
        return list(exc.messages)
    return []


def to_utc(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """A naive local wall time -> aware UTC, with the gap/fold rules in the module doc.

    An ambiguous time takes its first offset (PEP 495 fold=0). A time in a spring-forward
    gap is the transition instant itself, the first that exists after the gap: fold=0 and
    fold=1 convert it to two instants that bracket the transition (fold=0, the offset before
    the gap, lands gap-length later on the wall clock), and the transition is found between
    them to the second.
    """
    first = local.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local:
        return instant  # the time exists (once, or twice and fold=0 chose the first)
    offset_before = first.utcoffset()
    # Bisect whole seconds (tzdata transitions fall on them) for the first instant that has
    # the offset after the gap.
    low = math.floor(local.replace(tzinfo=zone, fold=1).timestamp())  # before the transition
    high = math.ceil(instant.timestamp())  # after it
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    return dt.datetime.fromtimestamp(high, dt.UTC)


def _rule(schedule: Recurrence, start: dt.datetime) -> Any:
    hour, minute = schedule.time.hour, schedule.time.minute
    common: dict[str, Any] = {"dtstart": start, "byhour": hour, "byminute": minute, "bysecond": 0}
    if schedule.kind is ScheduleKind.DAILY:
        return rrule.rrule(rrule.DAILY, **common)
    if schedule.kind is ScheduleKind.WEEKLY:
        return rrule.rrule(rrule.WEEKLY, byweekday=schedule.weekday, **common)
    day = schedule.day_of_month or 1
    if day > 28:  # clamp: the latest of 28..day that the month has
        common.update(bymonthday=tuple(range(28, day + 1)), bysetpos=-1)
    else:
        common.update(bymonthday=day)
    return rrule.rrule(rrule.MONTHLY, bymonth=schedule.run_months(), **common)


def _occurrences(schedule: Recurrence, after: dt.datetime) -> Iterator[dt.datetime]:
    zone = schedule.zone
    if schedule.kind is ScheduleKind.MANUAL:
        return
    if schedule.kind is ScheduleKind.ONCE:
        assert schedule.at is not None
        yield to_utc(schedule.at, zone)
        return
    # Start two local days early: DST shifts move instants by at most a few hours.
    local_after = after.astimezone(zone).replace(tzinfo=None)
    start = dt.datetime.combine(local_after.date() - dt.timedelta(days=2), dt.time(0, 0))
    for count, local in enumerate(_rule(schedule, start)):
        if count >= _MAX_SCAN:
            return
        yield to_utc(local, zone)


def next_runs(schedule: Recurrence, after: dt.datetime, count: int = 5) -> list[dt.datetime]:
    """The next ``count`` run instants strictly after ``after``, as aware UTC datetimes.

    Raises:
        ValueError: ``after`` is naive.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be timezone-aware")
    runs: list[dt.datetime] = []
    for instant in _occurrences(schedule, after):
        if instant > after and (not runs or instant > runs[-1]):
            runs.append(instant)
            if len(runs) >= count:
                break
    return runs


def next_run(schedule: Recurrence, after: dt.datetime) -> dt.datetime | None:
    """The next run strictly after ``after`` (aware UTC), or None (manual, past one-off)."""
    runs = next_runs(schedule, after, count=1)
    return runs[0] if runs else None
