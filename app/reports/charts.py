"""Dashboard charts: counts -> Plotly figure dicts with click-through links. Pure.

Every bar or slice carries the URL of the list it summarises in ``customdata``; the
console's script opens it on click (the "breakdown" of the chart).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STATUS_COLOURS: Mapping[str, str] = {
    "Issued": "#28a745",
    "Expired": "#6c757d",
    "Revoked": "#dc3545",
    "Replaced": "#17a2b8",
    "External": "#343a40",
}
EXPIRY_COLOURS = ("#a71d2a", "#dc3545", "#fd7e14", "#ffc107")
EXPIRY_WINDOWS = ((0, 7), (7, 30), (30, 60), (60, 90))  # days from now: [start, end)
TIMELINE_WEEKS = 52  # the 12-month expiry timeline: one bar per week from now


@dataclass(frozen=True)
class Bar:
    """One bar (or slice): its label, count and the list that shows those certificates."""

    label: str
    count: int
    url: str = ""
    colour: str = "#007bff"


def _layout(title: str, *, empty: bool) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}},
        "margin": {"l": 40, "r": 10, "t": 40, "b": 40},
        "height": 260,
        "showlegend": False,
    }
    if empty:
        layout["annotations"] = [
            {"text": "nothing yet", "showarrow": False, "font": {"color": "#6c757d"}}
        ]
        layout["xaxis"] = {"visible": False}
        layout["yaxis"] = {"visible": False}
    return layout


def bar_figure(title: str, bars: Sequence[Bar]) -> dict[str, Any]:
    """A vertical bar chart; bars with a zero count are kept (a zero is information)."""
    empty = not any(bar.count for bar in bars)
    data = (
        []
        if empty
        else [
            {
                "type": "bar",
                "x": [bar.label for bar in bars],
                "y": [bar.count for bar in bars],
                "marker": {"color": [bar.colour for bar in bars]},
                "customdata": [bar.url for bar in bars],
                "hovertemplate": "%{x}: %{y}<extra></extra>",
            }
        ]
    )
    layout = _layout(title, empty=empty)
    if not empty:
        layout["yaxis"] = count_axis(max(bar.count for bar in bars))
    return {"data": data, "layout": layout}


def count_axis(top: int) -> dict[str, Any]:
    """An axis of counts: whole-number ticks only. Plotly picks a step of 0.5 for small
    ranges, and a "d" tick format then rounds 0.5 and 1.5 to repeated labels (0, 1, 1, 2,
    2), so small ranges get one tick per unit and larger ones Plotly's integer steps."""
    axis: dict[str, Any] = {"rangemode": "tozero", "tickformat": ",d"}
    if top <= 6:
        axis.update(tick0=0, dtick=1)
    return axis


def donut_figure(title: str, slices: Sequence[Bar]) -> dict[str, Any]:
    """A donut of the non-zero slices."""
    shown = [s for s in slices if s.count]
    data = (
        []
        if not shown
        else [
            {
                "type": "pie",
                "hole": 0.5,
                "labels": [s.label for s in shown],
                "values": [s.count for s in shown],
                "customdata": [s.url for s in shown],
                "textinfo": "label+value",
                "hovertemplate": "%{label}: %{value}<extra></extra>",
            }
        ]
    )
    return {"data": data, "layout": _layout(title, empty=not shown)}


def expiry_bars(counts: Sequence[int], urls: Sequence[str] = ()) -> list[Bar]:
    """The 0-7, 8-30, 31-60 and 61-90 day windows (EXPIRY_WINDOWS), most urgent darkest."""
    labels = ("up to 7 days", "8 to 30 days", "31 to 60 days", "61 to 90 days")
    links = list(urls) + [""] * (len(labels) - len(urls))
    return [Bar(labels[i], counts[i], links[i], EXPIRY_COLOURS[i]) for i in range(len(labels))]


def top_bars(counts: Mapping[str, int], urls: Mapping[str, str], *, limit: int = 8) -> list[Bar]:
    """The largest ``limit`` groups, largest first (ties by name), the rest as one "other"
    bar without a link (it is no single filter)."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    bars = [Bar(label or "unknown", n, urls.get(label, "")) for label, n in ordered[:limit]]
    rest = sum(n for _, n in ordered[limit:])
    if rest:
        bars.append(Bar("other", rest, "", "#adb5bd"))
    return bars


def week_windows(weeks: int = TIMELINE_WEEKS) -> list[tuple[int, int]]:
    """Days from now of each week of the timeline: (0, 7), (7, 14), ..."""
    return [(7 * i, 7 * (i + 1)) for i in range(weeks)]


def timeline_figure(
    counts: Sequence[int], today: dt.date, urls: Sequence[str] = ()
) -> dict[str, Any]:
    """Live certificates expiring in each week of the next twelve months, labelled by the
    week's first day; each bar links to the list of that week."""
    links = list(urls) + [""] * (len(counts) - len(urls))
    bars = [
        Bar((today + dt.timedelta(days=7 * i)).strftime("%Y-%m-%d"), n, links[i], "#fd7e14")
        for i, n in enumerate(counts)
    ]
    figure = bar_figure("Expiring by week, next 12 months", bars)
    if any(counts):
        figure["layout"]["xaxis"] = {"type": "category", "tickangle": -45, "nticks": 13}
        figure["layout"]["margin"] = {"l": 40, "r": 10, "t": 40, "b": 70}
        figure["data"][0]["hovertemplate"] = "week of %{x}: %{y}<extra></extra>"
    return figure


# How long pending requests have waited for approval: days [start, end), end None = open.
PENDING_AGES: tuple[tuple[int, int | None], ...] = ((0, 1), (1, 7), (7, 30), (30, None))
PENDING_AGE_LABELS = ("under a day", "1 to 7 days", "7 to 30 days", "over 30 days")
PENDING_AGE_COLOURS = ("#28a745", "#ffc107", "#fd7e14", "#dc3545")
TREND_MONTHS = 12  # requests vs issued: this month and the eleven before


def age_key(start: int, end: int | None) -> str:
    """The filter value of a pending-age bucket: "0-1", ..., "30-"."""
    return f"{start}-{'' if end is None else end}"


def month_starts(today: dt.date, months: int = TREND_MONTHS) -> list[dt.date]:
    """The first days of the last ``months`` months, oldest first, this month last."""
    year, month = today.year, today.month
    starts = []
    for _ in range(months):
        starts.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts[::-1]


def next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)


@dataclass(frozen=True)
class Series:
    """One trace of a multi-series chart: a name, a colour and one Bar per category."""

    name: str
    colour: str
    bars: Sequence[Bar]


def series_figure(
    title: str, categories: Sequence[str], series: Sequence[Series], *, stacked: bool = False
) -> dict[str, Any]:
    """Grouped (or stacked) bars: one trace per series, one bar per category; each bar
    links to its list. Counts on a whole-number axis."""
    empty = not any(bar.count for s in series for bar in s.bars)
    data = (
        []
        if empty
        else [
            {
                "type": "bar",
                "name": s.name,
                "x": list(categories),
                "y": [bar.count for bar in s.bars],
                "marker": {"color": s.colour},
                "customdata": [bar.url for bar in s.bars],
                "hovertemplate": f"{s.name}, %{{x}}: %{{y}}<extra></extra>",
            }
            for s in series
        ]
    )
    layout = _layout(title, empty=empty)
    if not empty:
        totals = [sum(s.bars[i].count for s in series) for i in range(len(categories))]
        top = max(totals) if stacked else max(bar.count for s in series for bar in s.bars)
        layout["yaxis"] = count_axis(top)
        layout["xaxis"] = {"type": "category"}
        layout["barmode"] = "stack" if stacked else "group"
        layout["showlegend"] = True
        layout["legend"] = {"orientation": "h", "y": -0.2, "font": {"size": 11}}
        layout["margin"] = {"l": 40, "r": 10, "t": 40, "b": 60}
        layout["height"] = 300
    return {"data": data, "layout": layout}


@dataclass(frozen=True)
class RunPoint:
    """One finished discovery run on the dashboard's trend: its label, link and counts
    (``flagged`` None for runs from before health flags were counted per run)."""

    label: str
    url: str
    tls_endpoints: int
    certificates: int
    flagged: int | None


def discovery_trend_figure(points: Sequence[RunPoint]) -> dict[str, Any]:
    """TLS endpoints, certificates and endpoints with a health flag per discovery run,
    oldest first; a click on any point opens the run's task in Network Assets."""
    if not points:
        return {"data": [], "layout": _layout("Discovery trends", empty=True)}
    x = [p.label for p in points]
    urls = [p.url for p in points]
    lines = (
        ("TLS endpoints", "#007bff", [p.tls_endpoints for p in points]),
        ("Certificates", "#343a40", [p.certificates for p in points]),
        ("With a health flag", "#dc3545", [p.flagged for p in points]),
    )
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": x,
            "y": values,
            "line": {"color": colour, "width": 2},
            "marker": {"size": 7},
            "customdata": urls,
            "hovertemplate": f"%{{x}}: %{{y}} {name.lower()}<extra></extra>",
        }
        for name, colour, values in lines
    ]
    layout = _layout("Discovery trends (per run)", empty=False)
    top = max(max(v or 0 for v in values) for _, _, values in lines)
    layout.update(
        yaxis=count_axis(top),
        xaxis={"type": "category", "tickangle": -30, "automargin": True},
        showlegend=True,
        legend={"orientation": "h", "y": -0.45, "font": {"size": 11}},
        margin={"l": 40, "r": 10, "t": 40, "b": 90},
        height=320,
    )
    return {"data": data, "layout": layout}
