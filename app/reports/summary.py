"""Report charts, pure: counts of chosen columns tallied while rows stream (one tally per
chunk, merged in any order), and the Plotly figures drawn from them.

A chart counts one column: its values (``bar``/``donut``, the largest groups and "other"),
or the month of a date column (``month``, in order). Numbers are counts, so every axis
shows whole numbers (charts.count_axis).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.reports.charts import Bar, bar_figure, count_axis, donut_figure, top_bars

Tally = dict[str, dict[str, int]]  # column key -> label -> count
TOP = 12  # groups shown before "other"


@dataclass(frozen=True)
class ChartSpec:
    """One chart of a report: the column it counts, its title and how it is drawn."""

    column: str
    title: str
    kind: str = "bar"  # bar | donut | month


def _label(value: Any, kind: str) -> str:
    if kind == "month":
        if isinstance(value, dt.datetime | dt.date):
            return f"{value.year:04d}-{value.month:02d}"  # strftime is several times slower
        return "none"
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class Tallier:
    """Counts the chart columns of rows as they pass (``feed`` one row at a time)."""

    def __init__(self, specs: Sequence[ChartSpec], columns: Sequence[str]) -> None:
        self._where = [(s.column, s.kind, columns.index(s.column)) for s in specs]
        self.tally: Tally = {s.column: {} for s in specs}

    def feed(self, row: Sequence[Any]) -> None:
        for key, kind, index in self._where:
            counts = self.tally[key]
            label = _label(row[index], kind)
            counts[label] = counts.get(label, 0) + 1


def merge(tallies: Iterable[Mapping[str, Mapping[str, int]]]) -> Tally:
    """The sum of several tallies (the chunks of one report)."""
    total: Tally = {}
    for tally in tallies:
        for key, counts in tally.items():
            into = total.setdefault(key, {})
            for label, n in counts.items():
                into[label] = into.get(label, 0) + int(n)
    return total


def _month_figure(title: str, counts: Mapping[str, int]) -> dict[str, Any]:
    months = sorted(k for k in counts if k != "none")
    figure = bar_figure(title, [Bar(m, counts[m]) for m in months])
    if months:
        figure["layout"]["xaxis"] = {"type": "category"}
        figure["layout"]["yaxis"] = count_axis(max(counts[m] for m in months))
    return figure


def figures(
    specs: Sequence[ChartSpec], tally: Mapping[str, Mapping[str, int]]
) -> list[dict[str, Any]]:
    """One Plotly figure per chart, in the order of ``specs``."""
    out = []
    for spec in specs:
        counts = tally.get(spec.column, {})
        if spec.kind == "month":
            out.append(_month_figure(spec.title, counts))
            continue
        bars = top_bars(counts, {}, limit=TOP)
        if spec.kind == "donut":
            out.append(donut_figure(spec.title, bars))
        else:
            out.append(bar_figure(spec.title, bars))
    return out
