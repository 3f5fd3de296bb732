"""Dashboard figures: what each chart draws and where a click leads."""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go

from app.reports import charts


def test_bars_carry_their_list_urls_and_validate_with_plotly():
    figure = charts.bar_figure(
        "By status",
        [
            charts.Bar("Issued", 3, "/admin/ssl_certs/?flt0_0=Issued"),
            charts.Bar("Revoked", 0, "/x"),
        ],
    )
    go.Figure(figure)  # plotly accepts it as is
    trace = figure["data"][0]
    assert trace["x"] == ["Issued", "Revoked"] and trace["y"] == [3, 0]
    assert trace["customdata"] == ["/admin/ssl_certs/?flt0_0=Issued", "/x"]


def test_an_empty_chart_says_so_instead_of_drawing_nothing():
    figure = charts.bar_figure("By status", [charts.Bar("Issued", 0)])
    assert figure["data"] == [] and figure["layout"]["annotations"][0]["text"] == "nothing yet"
    assert charts.donut_figure("Keys", [])["data"] == []


def test_donut_leaves_out_zero_slices():
    figure = charts.donut_figure("Keys", [charts.Bar("EC-256", 2), charts.Bar("RSA-1024", 0)])
    go.Figure(figure)
    assert figure["data"][0]["labels"] == ["EC-256"]


def test_expiry_windows_are_ordered_by_urgency():
    bars = charts.expiry_bars([5, 1, 0, 2], ["/a", "/b"])
    assert [b.label for b in bars] == [
        "up to 7 days",
        "8 to 30 days",
        "31 to 60 days",
        "61 to 90 days",
    ]
    assert [b.url for b in bars] == ["/a", "/b", "", ""]
    assert bars[0].colour == charts.EXPIRY_COLOURS[0]
    assert len(charts.EXPIRY_WINDOWS) == len(bars)


def test_top_bars_keep_the_largest_and_sum_the_rest():
    counts = {f"CA {i}": i for i in range(1, 11)} | {"": 4}
    bars = charts.top_bars(counts, {"CA 10": "/ten"}, limit=3)
    assert [(b.label, b.count) for b in bars] == [
        ("CA 10", 10),
        ("CA 9", 9),
        ("CA 8", 8),
        ("other", sum(range(1, 8)) + 4),
    ]
    assert bars[0].url == "/ten" and bars[-1].url == ""
    assert charts.top_bars({"": 2}, {})[0].label == "unknown"


def test_month_starts_cross_the_year():
    starts = charts.month_starts(dt.date(2026, 2, 17), months=4)
    assert starts == [
        dt.date(2025, 11, 1),
        dt.date(2025, 12, 1),
        dt.date(2026, 1, 1),
        dt.date(2026, 2, 1),
    ]
    assert charts.next_month(dt.date(2025, 12, 1)) == dt.date(2026, 1, 1)


def test_series_figure_stacks_with_whole_number_axis_and_links():
    series = [
        charts.Series("a", "#000", [charts.Bar("SSL", 1, "/ssl-a"), charts.Bar("Client", 0, "")]),
        charts.Series("b", "#111", [charts.Bar("SSL", 2, "/ssl-b"), charts.Bar("Client", 3, "")]),
    ]
    figure = charts.series_figure("t", ["SSL", "Client"], series, stacked=True)
    assert figure["layout"]["barmode"] == "stack"
    assert figure["layout"]["yaxis"]["tickformat"] == ",d"
    assert figure["layout"]["yaxis"]["dtick"] == 1  # top 3 stacked: one tick per unit
    assert figure["data"][1]["customdata"] == ["/ssl-b", ""]
    empty = charts.series_figure("t", ["SSL"], [charts.Series("a", "#000", [charts.Bar("SSL", 0)])])
    assert empty["data"] == [] and empty["layout"]["annotations"]


def test_discovery_trend_keeps_runs_without_flag_counts_as_gaps():
    points = [
        charts.RunPoint("DC 12-01 10:00", "/assets?task=1", 10, 8, None),
        charts.RunPoint("DC 12-02 10:00", "/assets?task=1", 12, 9, 3),
    ]
    figure = charts.discovery_trend_figure(points)
    flagged = figure["data"][2]
    assert flagged["y"] == [None, 3] and flagged["customdata"] == ["/assets?task=1"] * 2
    assert figure["layout"]["yaxis"]["tickformat"] == ",d"
    assert charts.discovery_trend_figure([])["data"] == []
