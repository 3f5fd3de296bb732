"""Rows -> Plotly figures (plain JSON-able dicts that Plotly.newPlot takes). Pure.

The console serializes a figure with ``tojson`` and draws it with the locally served
plotly.min.js; nothing here imports plotly, so the builders stay cheap and typed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.reports.charts import count_axis

# (key in ScanPoint, legend label, colour): the per-task summary a scan leaves behind.
SUMMARY_SERIES: tuple[tuple[str, str, str], ...] = (
    ("total", "Total", "#343a40"),
    ("managed", "Managed", "#28a745"),
    ("external", "External", "#007bff"),
    ("self_signed", "Self-signed", "#6f42c1"),
    ("expired", "Expired", "#dc3545"),
    ("expiring_30", "Expiring in 30 days", "#fd7e14"),
)
_SUMMARY_KEYS = tuple(key for key, _, _ in SUMMARY_SERIES)


@dataclass(frozen=True)
class ScanPoint:
    """One finished scan of a task: when it ended and the task's counts right after it."""

    at: dt.datetime  # aware
    total: int
    managed: int
    external: int
    self_signed: int
    expired: int
    expiring_30: int
    new: int = 0
    tls_endpoints: int = 0
    status: str = ""
    run: int | None = None  # the scan's number, shown next to its time

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("ScanPoint.at must be timezone-aware")


def scan_points(runs: Iterable[Mapping[str, Any]]) -> list[ScanPoint]:
    """ScanPoints from run rows ({id, finished_at | started_at, counts: {summary: {...}},
    new_certificates, tls_endpoints, status}), oldest first. Runs without a summary
    snapshot (still running, or from before summaries existed) are left out."""
    points = []
    for run in runs:
        summary = (run.get("counts") or {}).get("summary")
        at = run.get("finished_at") or run.get("started_at")
        if not isinstance(summary, Mapping) or not isinstance(at, dt.datetime):
            continue
        values = {key: _count(summary.get(key)) for key in _SUMMARY_KEYS}
        points.append(
            ScanPoint(
                at=at,
                new=_count(run.get("new_certificates")),
                tls_endpoints=_count(run.get("tls_endpoints")),
                status=str(run.get("status") or ""),
                run=int(run["id"]) if isinstance(run.get("id"), int) else None,
                **values,
            )
        )
    return sorted(points, key=lambda p: p.at)


def _count(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _label(point: ScanPoint, zone: dt.tzinfo) -> str:
    when = point.at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return f"{when} #{point.run}" if point.run is not None else when


def scan_history_figure(
    points: Sequence[ScanPoint], *, title: str, zone: dt.tzinfo = dt.UTC, zone_name: str = "UTC"
) -> dict[str, Any]:
    """Counts per scan over time: one line per summary count, new certificates as bars.

    One x position per scan, oldest first, labelled with the wall-clock time in ``zone``
    (named ``zone_name`` on the axis) and the scan's number: evenly spaced scans read
    better than a time axis, which makes one scan a full-width bar and two scans a minute
    apart a cramped pair.
    """
    ordered = sorted(points, key=lambda p: p.at)
    x = [_label(p, zone) for p in ordered]
    data: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": "New certificates",
            "x": x,
            "y": [p.new for p in ordered],
            "marker": {"color": "#adb5bd"},
            "opacity": 0.6,
            "hovertemplate": "%{y} new<extra></extra>",
        }
    ]
    for key, label, colour in SUMMARY_SERIES:
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label,
                "x": x,
                "y": [getattr(p, key) for p in ordered],
                "line": {"color": colour, "width": 3 if key == "total" else 2},
                "marker": {"size": 7},
                "hovertemplate": f"%{{y}} {label.lower()}<extra></extra>",
            }
        )
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        "xaxis": {"title": {"text": f"Scan finished ({zone_name})"}, "type": "category"},
        "yaxis": {
            "title": {"text": "Certificates"},
            **count_axis(
                max(
                    (max(p.new, *(getattr(p, k) for k, _, _ in SUMMARY_SERIES)) for p in ordered),
                    default=0,
                )
            ),
        },
        "legend": {"orientation": "h", "y": -0.25},
        "hovermode": "x unified",
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "height": 380,
        "barmode": "overlay",
        "bargap": 0.6,
    }
    if not ordered:
        layout["annotations"] = [
            {
                "text": "No finished scans yet",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "font": {"size": 14, "color": "#6c757d"},
            }
        ]
        layout["xaxis"]["visible"] = False
        layout["yaxis"]["visible"] = False
    return {"data": data, "layout": layout}
