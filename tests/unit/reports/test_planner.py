"""The validity-cap planner: renewal dates worked out by hand for one certificate, the caps'
boundaries (SC-081v3), manual versus automated work, the CSV and the figure."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from app.reports.planner import (
    PlannedCertificate,
    max_validity_days,
    month_range,
    plan,
    plan_csv,
    plan_figure,
)

UTC = dt.UTC


def cert(org: str, before: str, after: str, automated: bool = False) -> PlannedCertificate:
    return PlannedCertificate(
        org,
        dt.datetime.fromisoformat(before).replace(tzinfo=UTC),
        dt.datetime.fromisoformat(after).replace(tzinfo=UTC),
        automated,
    )


@pytest.mark.parametrize(
    ("day", "days"),
    [
        ("2026-03-14", 398),
        ("2026-03-15", 200),
        ("2027-03-14", 200),
        ("2027-03-15", 100),
        ("2029-03-14", 100),
        ("2029-03-15", 47),
        ("2035-01-01", 47),
    ],
)
def test_the_caps_change_on_their_days(day, days):
    assert max_validity_days(dt.date.fromisoformat(day)) == days


def test_a_one_year_certificate_renewed_by_hand_under_both_schedules():
    one = cert("Acme", "2026-02-01", "2027-02-01")
    result = plan([one], start=dt.date(2026, 12, 1), months=36)
    assert result.months[0] == "2026-12" and result.months[-1] == "2029-11"
    today = {m for (o, m, s), n in result.renewals.items() if s == "today"}
    # 2027-02-01 + 365 days, + 365 days (2028 is a leap year).
    assert today == {"2027-02", "2028-02", "2029-01"}
    caps = sorted(m for (o, m, s), n in result.renewals.items() if s == "caps" for _ in range(n))
    # Renewed 2027-02-01 under the 200-day cap -> 2027-08-20; then 100 days from
    # 2027-03-15 on: 11-28, 2028-03-07, 06-15, 09-23, 2029-01-01, 04-11; then 47 days from
    # 2029-03-15 on: 05-28, 07-14, 08-30, 10-16 (the next, 12-02, is past the horizon).
    assert caps == [
        "2027-02", "2027-08", "2027-11", "2028-03", "2028-06", "2028-09",
        "2029-01", "2029-04", "2029-05", "2029-07", "2029-08", "2029-10",
    ]  # fmt: skip
    assert sum(result.manual.values()) == 12  # nobody renews it but a person


def test_automated_certificates_are_not_manual_work_and_orgs_are_apart():
    result = plan(
        [
            cert("Acme", "2026-11-01", "2026-12-31", automated=True),
            cert("Beta", "2026-11-01", "2026-12-31"),
        ],
        start=dt.date(2026, 12, 1),
        months=1,
    )
    assert result.renewals == {
        ("Acme", "2026-12", "today"): 1,
        ("Acme", "2026-12", "caps"): 1,
        ("Beta", "2026-12", "today"): 1,
        ("Beta", "2026-12", "caps"): 1,
    }
    assert result.manual == {("Beta", "2026-12"): 1}
    assert result.organizations == ["Acme", "Beta"]


def test_renewals_before_the_start_are_not_counted():
    result = plan([cert("Acme", "2025-11-01", "2026-06-01")], start=dt.date(2026, 12, 1), months=2)
    # 212 days, expired in June: renewed (as if) then under the 200-day cap, 200 days on is
    # 2026-12-18: counted in December; June is before the start.
    assert result.renewals.get(("Acme", "2026-12", "caps")) == 1
    assert ("Acme", "2026-06", "caps") not in result.renewals


def test_the_csv_has_every_month_and_escapes_names():
    result = plan([cert("=Evil", "2026-11-01", "2026-12-31")], start=dt.date(2026, 12, 1), months=2)
    rows = list(csv.reader(io.StringIO(plan_csv(result, escape=lambda s: "'" + s))))
    assert rows == [
        ["organization", "month", "renewals_today", "renewals_caps", "manual_caps"],
        ["'=Evil", "2026-12", "1", "1", "1"],
        ["'=Evil", "2027-01", "0", "0", "0"],
    ]


def test_the_figure_stacks_manual_on_automated_and_marks_the_caps():
    result = plan([cert("Acme", "2026-11-01", "2026-12-31")], start=dt.date(2026, 12, 1), months=30)
    figure = plan_figure(result)
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["At today's lifetimes", "Under the caps: automated", "Under the caps: manual"]
    assert sum(figure["data"][2]["y"]) == sum(result.manual.values()) > 0
    assert [shape["x0"] for shape in figure["layout"]["shapes"]] == ["2027-03", "2029-03"]


def test_month_range_crosses_years():
    assert month_range(dt.date(2026, 11, 5), 3) == ["2026-11", "2026-12", "2027-01"]
