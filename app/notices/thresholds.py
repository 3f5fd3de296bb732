"""When an expiry notice is due: threshold buckets, occurrences and the digest time.

A rule's thresholds are days before expiry (60, 30, 14, 7, 1). A certificate is inside the
window of threshold t once ``not_after <= as_of + t days``; the threshold it is notified for
is the smallest one whose window it is inside (a certificate first seen 5 days before expiry
gets the 7-day notice, not 60, 30, 14 and 7 at once). Threshold 0 means "has expired": due
once ``not_after <= as_of``, for certificates that expired at most EXPIRED_GRACE ago (a rule
saved today does not mail about certificates that expired last year).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

MAX_DAYS = 3650
MAX_THRESHOLDS = 12
EXPIRED_GRACE = timedelta(days=7)


class ThresholdError(ValueError):
    """Thresholds that cannot be used; the message says which and why."""


def parse_days(text: str) -> list[int]:
    """ "60, 30, 14, 7, 1" -> [60, 30, 14, 7, 1] (descending, without repeats).

    Raises:
        ThresholdError: an item is not a whole number of days from 0 to MAX_DAYS, or there
            are none or more than MAX_THRESHOLDS.
    """
    items = [item.strip() for item in text.replace(";", ",").split(",") if item.strip()]
    days: list[int] = []
    for item in items:
        if not item.isdigit():
            raise ThresholdError(f"'{item}' is not a number of days (use e.g. 60, 30, 14, 7, 1)")
        days.append(int(item))
    return normalize_days(days)


def normalize_days(days: Iterable[int]) -> list[int]:
    """Descending, unique, checked.

    Raises:
        ThresholdError: see parse_days.
    """
    values = sorted({int(d) for d in days}, reverse=True)
    if not values:
        raise ThresholdError("give at least one number of days before expiry")
    if len(values) > MAX_THRESHOLDS:
        raise ThresholdError(f"at most {MAX_THRESHOLDS} thresholds")
    for value in values:
        if value < 0 or value > MAX_DAYS:
            raise ThresholdError(f"{value} days is outside 0 to {MAX_DAYS}")
    return values


def bounds(days: Sequence[int], as_of: datetime) -> list[tuple[int, datetime]]:
    """(threshold, not_after bound) pairs, smallest threshold first: a certificate belongs
    to the first pair whose bound its not_after does not exceed."""
    return [(t, as_of + timedelta(days=t)) for t in sorted(set(days))]


def window(days: Sequence[int], as_of: datetime) -> tuple[datetime, datetime]:
    """(exclusive lower, inclusive upper) bounds of not_after for certificates any threshold
    covers: expired ones only when 0 is a threshold."""
    lower = as_of - EXPIRED_GRACE if 0 in days else as_of
    return lower, as_of + timedelta(days=max(days))


def threshold_for(not_after: datetime, days: Sequence[int], as_of: datetime) -> int | None:
    """The threshold a certificate expiring at not_after is notified for at as_of (None:
    outside every window). The sweep computes the same in SQL."""
    lower, upper = window(days, as_of)
    if not (lower < not_after <= upper):
        return None
    for t, bound in bounds(days, as_of):
        if t == 0 and not_after > as_of:
            continue
        if not_after <= bound:
            return t
    return None


def occurrence(as_of: datetime, *, daily: bool, threshold: int) -> int:
    """0 for once-per-threshold notices (and the expiry notice, always once); the UTC day
    (proleptic ordinal) for daily ones, so one delivery per day."""
    if not daily or threshold == 0:
        return 0
    return as_of.astimezone(UTC).date().toordinal()


def days_left(not_after: datetime, as_of: datetime) -> int:
    """Whole days until expiry, rounded down (0 on the last day, negative once expired)."""
    return math.floor((not_after - as_of).total_seconds() / 86400)


def digest_time(as_of: datetime, hour: int) -> datetime:
    """The latest daily digest time (hour:00 UTC) at or before as_of."""
    at = as_of.astimezone(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return at if at <= as_of else at - timedelta(days=1)
