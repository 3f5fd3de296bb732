"""List filters the dashboard's drill-downs use on more than one list."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from sqlalchemy import false

from app.models.types import utcnow
from app.reports import charts
from app.services.reports import dashboard

MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class MonthFilter(BaseSQLAFilter):
    """Rows whose timestamp falls in a UTC calendar month ("2026-11")."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        match = MONTH.match(str(value))
        if not match or not 1 <= int(match.group(2)) <= 12:
            return query.filter(false())
        first = dt.date(int(match.group(1)), int(match.group(2)), 1)
        end = charts.next_month(first)
        return query.filter(
            self.column >= dt.datetime(first.year, first.month, 1, tzinfo=dt.UTC),
            self.column < dt.datetime(end.year, end.month, 1, tzinfo=dt.UTC),
        )

    def operation(self) -> str:
        return "in month"


def month_options() -> list[tuple[str, str]]:
    return [
        (d.strftime("%Y-%m"), d.strftime("%B %Y")) for d in charts.month_starts(utcnow().date())
    ]


class PendingAgeFilter(BaseSQLAFilter):
    """Rows created a number of days ago: a bucket of charts.PENDING_AGES ("1-7", "30-")."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        for (start, end), _ in zip(charts.PENDING_AGES, charts.PENDING_AGE_LABELS, strict=True):
            if charts.age_key(start, end) == str(value):
                return query.filter(
                    dashboard.pending_age_clause(self.column, start, end, now=utcnow())
                )
        return query.filter(false())

    def operation(self) -> str:
        return "for"


AGE_OPTIONS = [
    (charts.age_key(start, end), label)
    for (start, end), label in zip(charts.PENDING_AGES, charts.PENDING_AGE_LABELS, strict=True)
]
