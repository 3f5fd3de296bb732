"""Schedules: every kind, previews, month-end clamping, DST both ways in two zones."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.recurrence import (
    Recurrence,
    ScheduleError,
    ScheduleKind,
    next_run,
    next_runs,
    parse_schedule,
    to_utc,
    validate_schedule,
)

UTC = dt.UTC


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def runs(after: dt.datetime, count: int = 5, **data: Any) -> list[dt.datetime]:
    return next_runs(parse_schedule(data), after, count)


# Spring forward: Berlin 2025-03-30 02:00 CET -> 03:00 CEST; New York 2025-03-09 02:00 EST ->
# 03:00 EDT. Fall back: Berlin 2025-10-26 03:00 CEST -> 02:00 CET; New York 2025-11-02
# 02:00 EDT -> 01:00 EST.


def test_berlin_spring_forward_fires_once_at_the_end_of_the_gap() -> None:
    found = runs(utc(2025, 3, 28, 12), 4, kind="daily", time="02:30", timezone="Europe/Berlin")
    assert found == [
        utc(2025, 3, 29, 1, 30),  # 02:30 CET
        utc(2025, 3, 30, 1, 0),  # 02:30 does not exist: 03:00 CEST, the first valid instant
        utc(2025, 3, 31, 0, 30),  # 02:30 CEST
        utc(2025, 4, 1, 0, 30),
    ]
    assert found[1].astimezone(ZoneInfo("Europe/Berlin")).time() == dt.time(3, 0)


def test_new_york_spring_forward_fires_once_at_the_end_of_the_gap() -> None:
    found = runs(utc(2025, 3, 7, 12), 3, kind="daily", time="02:30", timezone="America/New_York")
    assert found == [
        utc(2025, 3, 8, 7, 30),  # 02:30 EST
        utc(2025, 3, 9, 7, 0),  # 03:00 EDT
        utc(2025, 3, 10, 6, 30),  # 02:30 EDT
    ]
    assert found[1].astimezone(ZoneInfo("America/New_York")).time() == dt.time(3, 0)


def test_every_time_inside_a_gap_maps_to_the_transition() -> None:
    # Lord Howe springs forward half an hour (02:00 -> 02:30 local, 2025-10-05): 02:00 and
    # 02:15:59 both become 02:30, the instant the gap ends. Times beside the gap are
    # untouched.
    zone = ZoneInfo("Australia/Lord_Howe")
    transition = utc(2025, 10, 4, 15, 30)  # 02:00 +10:30 -> 02:30 +11:00
    assert to_utc(dt.datetime(2025, 10, 5, 2, 0), zone) == transition
    assert to_utc(dt.datetime(2025, 10, 5, 2, 15, 59), zone) == transition
    assert to_utc(dt.datetime(2025, 10, 5, 2, 30), zone) == transition
    assert to_utc(dt.datetime(2025, 10, 5, 1, 59), zone) == transition - dt.timedelta(minutes=1)
    berlin = ZoneInfo("Europe/Berlin")
    for minute in (0, 1, 30, 59):
        assert to_utc(dt.datetime(2025, 3, 30, 2, minute), berlin) == utc(2025, 3, 30, 1, 0)


def test_berlin_fall_back_fires_once_at_the_first_occurrence() -> None:
    found = runs(utc(2025, 10, 24, 12), 3, kind="daily", time="02:30", timezone="Europe/Berlin")
    assert found == [
        utc(2025, 10, 25, 0, 30),  # 02:30 CEST
        utc(2025, 10, 26, 0, 30),  # first 02:30 (CEST); the CET one at 01:30Z is skipped
        utc(2025, 10, 27, 1, 30),  # 02:30 CET
    ]


def test_new_york_fall_back_fires_once_at_the_first_occurrence() -> None:
    found = runs(utc(2025, 10, 31, 12), 3, kind="daily", time="01:30", timezone="America/New_York")
    assert found == [
        utc(2025, 11, 1, 5, 30),  # 01:30 EDT
        utc(2025, 11, 2, 5, 30),  # first 01:30 (EDT); the EST one at 06:30Z is skipped
        utc(2025, 11, 3, 6, 30),  # 01:30 EST
    ]


def test_weekly_across_a_dst_change_keeps_local_time() -> None:
    found = runs(utc(2025, 3, 20), 3, kind="weekly", weekday="sunday", time="09:00",
                 timezone="Europe/Berlin")  # fmt: skip
    assert found == [utc(2025, 3, 23, 8), utc(2025, 3, 30, 7), utc(2025, 4, 6, 7)]


def test_one_off_in_a_gap_and_in_a_fold() -> None:
    gap = {"kind": "once", "at": "2025-03-30T02:15", "timezone": "Europe/Berlin"}
    assert runs(utc(2025, 1, 1), **gap) == [utc(2025, 3, 30, 1, 0)]  # 03:00 CEST
    fold = {"kind": "once", "at": "2025-11-02T01:15", "timezone": "America/New_York"}
    assert runs(utc(2025, 1, 1), **fold) == [utc(2025, 11, 2, 5, 15)]  # first (EDT)
    assert runs(utc(2025, 12, 1), **fold) == []
    assert next_run(parse_schedule(fold), utc(2025, 12, 1)) is None


def test_monthly_clamps_to_the_last_day() -> None:
    found = runs(utc(2024, 1, 1), 6, kind="monthly", day_of_month=31, time="09:00")
    assert [r.date() for r in found] == [
        dt.date(2024, 1, 31),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 31),
        dt.date(2024, 4, 30),
        dt.date(2024, 5, 31),
        dt.date(2024, 6, 30),
    ]
    on_30th = runs(utc(2025, 1, 31, 12), 2, kind="monthly", day_of_month=30, time="09:00")
    assert [r.date() for r in on_30th] == [dt.date(2025, 2, 28), dt.date(2025, 3, 30)]
    on_15th = runs(utc(2025, 1, 15, 9), 2, kind="monthly", day_of_month=15, time="09:00")
    assert on_15th == [utc(2025, 2, 15, 9), utc(2025, 3, 15, 9)]  # strictly after


def test_quarterly_semiannual_annual() -> None:
    quarterly = runs(utc(2025, 1, 1), 4, kind="quarterly", month=2, day_of_month=31, time="06:00")
    assert [r.date() for r in quarterly] == [
        dt.date(2025, 2, 28), dt.date(2025, 5, 31), dt.date(2025, 8, 31), dt.date(2025, 11, 30),
    ]  # fmt: skip
    default_quarters = runs(utc(2025, 1, 2), 2, kind="quarterly", day_of_month=1, time="06:00")
    assert [r.date() for r in default_quarters] == [dt.date(2025, 4, 1), dt.date(2025, 7, 1)]
    semiannual = runs(utc(2025, 1, 1), 3, kind="semiannually", month=3, day_of_month=31,
                      time="06:00")  # fmt: skip
    assert [r.date() for r in semiannual] == [
        dt.date(2025, 3, 31), dt.date(2025, 9, 30), dt.date(2026, 3, 31),
    ]  # fmt: skip
    leap = runs(utc(2025, 1, 1), 4, kind="annually", month=2, day_of_month=29, time="00:00",
                timezone="Asia/Tokyo")  # fmt: skip
    assert [r.date() for r in leap] == [
        dt.date(2025, 2, 27), dt.date(2026, 2, 27), dt.date(2027, 2, 27), dt.date(2028, 2, 28),
    ]  # fmt: skip
    tokyo = ZoneInfo("Asia/Tokyo")
    assert [r.astimezone(tokyo).day for r in leap] == [28, 28, 28, 29]


def test_manual_never_fires() -> None:
    schedule = parse_schedule({"kind": "manual"})
    assert next_runs(schedule, utc(2025, 1, 1)) == []
    assert next_run(schedule, utc(2025, 1, 1)) is None


def test_preview_and_next_run_agree_and_are_utc() -> None:
    schedule = parse_schedule({"kind": "daily", "time": "23:45", "timezone": "Asia/Kolkata"})
    preview = next_runs(schedule, utc(2025, 6, 1), count=5)
    assert len(preview) == 5 and preview == sorted(preview)
    assert all(r.tzinfo is UTC for r in preview)
    assert preview[0] == utc(2025, 6, 1, 18, 15) == next_run(schedule, utc(2025, 6, 1))
    assert next_run(schedule, preview[0]) == preview[1]
    with pytest.raises(ValueError, match="timezone-aware"):
        next_runs(schedule, dt.datetime(2025, 6, 1))


def test_round_trip_and_description() -> None:
    cases = {
        "Manual only": {"kind": "manual"},
        "Once on 2025-05-01 08:00 (UTC)": {"kind": "once", "at": "2025-05-01T08:00"},
        "Daily at 02:30 (Europe/Berlin)": {"kind": "daily", "time": "2:30",
                                           "timezone": "Europe/Berlin"},
        "Weekly on Friday at 18:00 (UTC)": {"kind": "weekly", "weekday": 4, "time": "18:00"},
        "Monthly on day 31 at 09:00 (UTC)": {"kind": "monthly", "day_of_month": "31",
                                             "time": "09:00"},
        "Quarterly on day 1 in Jan, Apr, Jul, Oct at 06:00 (UTC)": {
            "kind": "quarterly", "day_of_month": 1, "time": "06:00"},
        "Semi-annually on day 15 in Jun, Dec at 06:00 (UTC)": {
            "kind": "semiannually", "month": 6, "day_of_month": 15, "time": "06:00"},
        "Annually on day 29 in Feb at 00:00 (UTC)": {
            "kind": "annually", "month": 2, "day_of_month": 29, "time": "00:00"},
    }  # fmt: skip
    for description, data in cases.items():
        schedule = parse_schedule(data)
        assert schedule.describe() == description
        assert parse_schedule(schedule.to_dict()) == schedule


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        ({"kind": "hourly"}, ["unknown schedule kind 'hourly' (one of: manual, once, daily, "
                              "weekly, monthly, quarterly, semiannually, annually)"]),
        ({"kind": "daily", "time": "25:00"}, ["'25:00' is not a time of day (HH:MM, 24-hour)"]),
        ({"kind": "daily", "time": "02:30", "timezone": "Mars/Olympus"},
         ["'Mars/Olympus' is not an IANA time zone (e.g. Europe/Berlin)"]),
        ({"kind": "once"}, ["a one-off schedule needs a date and time"]),
        ({"kind": "once", "at": "2025-13-01T10:00"},
         ["'2025-13-01T10:00' is not a date and time (YYYY-MM-DDTHH:MM)",
          "a one-off schedule needs a date and time"]),
        ({"kind": "once", "at": "2025-03-01T10:00+01:00"},
         ["give the one-off date and time without an offset; the schedule's time zone applies",
          "a one-off schedule needs a date and time"]),
        ({"kind": "weekly", "time": "10:00"}, ["choose a day of the week"]),
        ({"kind": "weekly", "time": "10:00", "weekday": "someday"},
         ["'someday' is not a day of the week", "choose a day of the week"]),
        ({"kind": "weekly", "time": "10:00", "weekday": 7}, ["choose a day of the week"]),
        ({"kind": "monthly", "time": "10:00"}, ["the day of the month must be 1-31"]),
        ({"kind": "monthly", "time": "10:00", "day_of_month": "32"},
         ["the day of the month must be 1-31"]),
        ({"kind": "monthly", "time": "10:00", "day_of_month": "last"},
         ["the day of the month must be a number", "the day of the month must be 1-31"]),
        ({"kind": "quarterly", "time": "10:00", "day_of_month": 1, "month": 4},
         ["the month must be 1-3"]),
        ({"kind": "annually", "time": "10:00", "day_of_month": 1, "month": 13},
         ["the month must be 1-12"]),
    ],
)  # fmt: skip
def test_validation_messages(data: dict[str, Any], messages: list[str]) -> None:
    assert validate_schedule(data) == messages
    with pytest.raises(ScheduleError):
        parse_schedule(data)


def test_schedules_are_always_valid_objects() -> None:
    with pytest.raises(ScheduleError, match="choose a day of the week"):
        Recurrence(ScheduleKind.WEEKLY)
    assert Recurrence(ScheduleKind.DAILY).time == dt.time(2, 0)
    assert parse_schedule({"kind": "weekly", "weekday": "Tue", "time": "07:05"}).weekday == 1
