"""app.reports.figures: scan history rows -> a Plotly figure that plotly itself accepts."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
import pytest

from app.reports.figures import SUMMARY_SERIES, ScanPoint, scan_history_figure, scan_points

T0 = dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC)


def run(at, summary, **fields):
    return {"finished_at": at, "counts": {"summary": summary}, **fields}


def summary(total, managed=0, external=None, self_signed=0, expired=0, expiring_30=0):
    return {
        "total": total,
        "managed": managed,
        "external": total - managed if external is None else external,
        "self_signed": self_signed,
        "expired": expired,
        "expiring_30": expiring_30,
    }


def test_points_come_oldest_first_and_skip_runs_without_a_summary():
    rows = [
        run(T0 + dt.timedelta(days=7), summary(5, 1), new_certificates=1, status="Successful"),
        run(T0, summary(4, 1, self_signed=1), new_certificates=4, tls_endpoints=6),
        {"finished_at": None, "started_at": T0, "counts": {}},  # still running
        {"started_at": T0, "counts": {"outcomes": {"refused": 3}}},  # no snapshot
    ]
    points = scan_points(rows)
    assert [p.total for p in points] == [4, 5]
    assert points[0] == ScanPoint(
        at=T0,
        total=4,
        managed=1,
        external=3,
        self_signed=1,
        expired=0,
        expiring_30=0,
        new=4,
        tls_endpoints=6,
    )
    assert points[1].status == "Successful"


def test_points_tolerate_junk_counts():
    (point,) = scan_points([run(T0, {"total": "7", "managed": None, "expired": -3})])
    assert (point.total, point.managed, point.expired, point.external) == (7, 0, 0, 0)


def test_a_point_needs_an_aware_time():
    with pytest.raises(ValueError, match="timezone-aware"):
        ScanPoint(dt.datetime(2026, 1, 1), 1, 0, 1, 0, 0, 0)


def test_figure_has_a_line_per_count_and_bars_for_new_certificates():
    points = scan_points(
        [
            run(T0, summary(4, 1, self_signed=1, expired=1), new_certificates=4),
            run(T0 + dt.timedelta(days=7), summary(6, 1, expiring_30=2), new_certificates=2),
        ]
    )
    figure = scan_history_figure(points, title="Loopback: counts per scan")
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["New certificates", *(label for _, label, _ in SUMMARY_SERIES)]
    by_name = {trace["name"]: trace for trace in figure["data"]}
    assert by_name["Total"]["y"] == [4, 6]
    assert by_name["Managed"]["y"] == [1, 1]
    assert by_name["External"]["y"] == [3, 5]
    assert by_name["Self-signed"]["y"] == [1, 0]
    assert by_name["Expired"]["y"] == [1, 0]
    assert by_name["Expiring in 30 days"]["y"] == [0, 2]
    assert by_name["New certificates"]["type"] == "bar"
    assert by_name["New certificates"]["y"] == [4, 2]
    assert by_name["Total"]["x"] == ["2026-03-28 23:30", "2026-04-04 23:30"]
    assert figure["layout"]["title"]["text"] == "Loopback: counts per scan"
    assert "annotations" not in figure["layout"]
    go.Figure(figure)  # plotly validates every property name and value
    json.dumps(figure)  # what the page embeds


def test_times_are_wall_clock_in_the_chosen_zone_across_dst():
    berlin = ZoneInfo("Europe/Berlin")
    points = scan_points(
        [
            run(T0, summary(1)),  # 2026-03-29 00:30 CET (+1)
            run(T0 + dt.timedelta(days=1), summary(1)),  # 2026-03-30 01:30 CEST (+2)
        ]
    )
    figure = scan_history_figure(points, title="t", zone=berlin, zone_name="Europe/Berlin")
    assert figure["data"][1]["x"] == ["2026-03-29 00:30", "2026-03-30 01:30"]
    assert figure["layout"]["xaxis"]["title"]["text"] == "Scan finished (Europe/Berlin)"


def test_scans_in_the_same_minute_stay_apart_by_number():
    rows = [
        {"id": 7, **run(T0, summary(4))},
        {"id": 8, **run(T0 + dt.timedelta(seconds=20), summary(5))},
    ]
    figure = scan_history_figure(scan_points(rows), title="t")
    assert figure["data"][0]["x"] == ["2026-03-28 23:30 #7", "2026-03-28 23:30 #8"]
    assert figure["layout"]["xaxis"]["type"] == "category"


def test_no_scans_yet_says_so():
    figure = scan_history_figure([], title="Empty")
    assert figure["layout"]["annotations"][0]["text"] == "No finished scans yet"
    assert all(trace["x"] == [] for trace in figure["data"])
    go.Figure(figure)


def test_small_counts_get_whole_number_ticks():
    """An axis up to 2 once read "0, 1, 1, 2, 2": Plotly stepped by 0.5 and "d" rounded."""
    rows = [run(T0, summary(2, 1), new_certificates=2), run(T0 + dt.timedelta(days=1), summary(2))]
    figure = scan_history_figure(scan_points(rows), title="t", zone=ZoneInfo("UTC"))
    axis = figure["layout"]["yaxis"]
    assert axis["dtick"] == 1 and axis["tick0"] == 0 and axis["tickformat"] == ",d"
    go.Figure(figure)  # plotly accepts the layout
    big = [run(T0, summary(40), new_certificates=40)]
    assert (
        "dtick"
        not in scan_history_figure(scan_points(big), title="t", zone=ZoneInfo("UTC"))["layout"][
            "yaxis"
        ]
    )
