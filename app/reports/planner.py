"""The validity-cap planner: how many TLS renewals the coming maximum validities imply, per
organization and month; pure (rows in, counts and a Plotly figure out).

CA/B Forum ballot SC-081v3 (TLS BR §6.3.2) caps the validity of a TLS certificate issued
on or after 2026-03-15 at 200 days, on or after 2027-03-15 at 100 days and on or after
2029-03-15 at 47 days (398 days before). Two schedules are projected for every certificate
from its current notAfter to the end of the horizon:

- "today": each renewal keeps the certificate's present lifetime (what the workload would
  be without the caps);
- "caps": each renewal gets the shorter of its present lifetime and the cap in force on
  the day it is renewed.

A certificate is renewed on its notAfter (the month a renewal falls in is what matters
here); one that is not renewed automatically counts as manual work in the "caps" schedule.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# (from this day on, at most this many days) in date order; SC-081v3.
CAPS: Final[tuple[tuple[dt.date, int], ...]] = (
    (dt.date(1, 1, 1), 398),
    (dt.date(2026, 3, 15), 200),
    (dt.date(2027, 3, 15), 100),
    (dt.date(2029, 3, 15), 47),
)
SCHEDULES: Final = ("today", "caps")


def max_validity_days(issued: dt.date) -> int:
    """The longest validity a TLS certificate issued on ``issued`` may have."""
    days = CAPS[0][1]
    for start, cap in CAPS:
        if issued >= start:
            days = cap
    return days


@dataclass(frozen=True)
class PlannedCertificate:
    """A TLS certificate in scope: where it belongs, its validity, and whether something
    renews it without a person (auto-renew; ACME and API enrollment when they exist)."""

    organization: str
    not_before: dt.datetime
    not_after: dt.datetime
    automated: bool


@dataclass
class Plan:
    """Renewals per (organization, month, schedule), and the manual ones under the caps."""

    months: list[str]  # "2027-03", in order
    renewals: dict[tuple[str, str, str], int] = field(default_factory=dict)
    manual: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def organizations(self) -> list[str]:
        return sorted({org for org, _, _ in self.renewals} | {org for org, _ in self.manual})

    def total(self, schedule: str, month: str) -> int:
        return sum(n for (_, m, s), n in self.renewals.items() if s == schedule and m == month)

    def manual_total(self, month: str) -> int:
        return sum(n for (_, m), n in self.manual.items() if m == month)


def _month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_range(start: dt.date, months: int) -> list[str]:
    out = []
    year, month = start.year, start.month
    for _ in range(months):
        out.append(f"{year:04d}-{month:02d}")
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return out


def plan(certificates: Iterable[PlannedCertificate], *, start: dt.date, months: int = 36) -> Plan:
    """Project the renewals of ``certificates`` over ``months`` months from ``start``."""
    labels = month_range(start, months)
    end = _end_of(labels[-1])
    result = Plan(months=labels)
    wanted = set(labels)
    for cert in certificates:
        lifetime = max((cert.not_after - cert.not_before).days, 1)
        for schedule in SCHEDULES:
            renewal = cert.not_after.date()
            current = lifetime
            # A horizon of a few years and lifetimes of at least one day: bounded.
            while renewal <= end:
                if renewal >= start:
                    label = _month(renewal)
                    if label in wanted:
                        key = (cert.organization, label, schedule)
                        result.renewals[key] = result.renewals.get(key, 0) + 1
                        if schedule == "caps" and not cert.automated:
                            mkey = (cert.organization, label)
                            result.manual[mkey] = result.manual.get(mkey, 0) + 1
                if schedule == "caps":
                    current = min(current, max_validity_days(renewal))
                renewal = renewal + dt.timedelta(days=max(current, 1))
    return result


def _end_of(label: str) -> dt.date:
    year, month = (int(part) for part in label.split("-"))
    first_next = dt.date(year + (month == 12), month % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


CSV_COLUMNS: Final = ("organization", "month", "renewals_today", "renewals_caps", "manual_caps")


def plan_csv(result: Plan, escape: Any = str) -> str:
    """The plan as CSV, one row per organization and month (``escape`` formula-escapes
    text cells: organization names are the admins')."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for org in result.organizations:
        for month in result.months:
            writer.writerow(
                (
                    escape(org),
                    month,
                    result.renewals.get((org, month, "today"), 0),
                    result.renewals.get((org, month, "caps"), 0),
                    result.manual.get((org, month), 0),
                )
            )
    return buffer.getvalue()


def plan_figure(result: Plan) -> dict[str, Any]:
    """Renewals per month under both schedules, and the manual share under the caps."""
    months: Sequence[str] = result.months
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "At today's lifetimes",
                "x": list(months),
                "y": [result.total("today", m) for m in months],
                "line": {"color": "#6c757d", "dash": "dot"},
            },
            {
                "type": "bar",
                "name": "Under the caps: automated",
                "x": list(months),
                "y": [result.total("caps", m) - result.manual_total(m) for m in months],
                "marker": {"color": "#28a745"},
            },
            {
                "type": "bar",
                "name": "Under the caps: manual",
                "x": list(months),
                "y": [result.manual_total(m) for m in months],
                "marker": {"color": "#dc3545"},
            },
        ],
        "layout": {
            "title": {"text": "TLS renewals per month", "font": {"size": 14}},
            "barmode": "stack",
            "height": 360,
            "margin": {"l": 50, "r": 10, "t": 40, "b": 60},
            "legend": {"orientation": "h"},
            "shapes": [
                {
                    "type": "line",
                    "x0": _month(day),
                    "x1": _month(day),
                    "yref": "paper",
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": "#007bff", "width": 1},
                }
                for day, _ in CAPS[1:]
                if _month(day) in months
            ],
        },
    }
