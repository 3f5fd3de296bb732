"""The dashboard's summary tables (certificate_counts, certificate_expiry_counts,
certificate_month_counts): folding the rows the triggers append, rebuilding them from the
certificates, checking them.

Triggers on ``certificates`` (migrations 0028_dashboard_counts, 0031_report_performance) keep
the tables current in
the writer's own transaction: each INSERT, UPDATE and DELETE appends +n / -n rows, so the
sum of a group's rows is its count at any moment, whatever wrote the certificates (a
service, a bulk import, the expiry sweep, SQL by hand). Folding and rebuilding change how
many rows there are, never the sums.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import Date, delete, func, insert, select, text

from app.extensions import db
from app.models import (
    Certificate,
    CertificateCount,
    CertificateExpiryCount,
    CertificateMonthCount,
    CertStatus,
    Job,
)
from app.models.types import utcnow
from app.services.platform import jobs

JOB_KIND = "dashboard_counts"
LIVE = (CertStatus.ISSUED.value, CertStatus.EXTERNAL.value)
GROUP = (
    "organization_id",
    "department_id",
    "cert_type",
    "status",
    "origin",
    "issuer_cn",
    "key_type",
    "signature_algorithm",
)
EXPIRY_GROUP = ("organization_id", "department_id", "cert_type", "status", "expiry_day")
MONTH_GROUP = ("organization_id", "department_id", "cert_type", "origin", "month")
PAST = date(1970, 1, 1)  # the expiry day of every folded day before today
LOCK_KEY = 0x13DA5B0A  # pg_advisory_xact_lock: one fold or rebuild at a time


def _is_postgres() -> bool:
    return bool(db.engine.dialect.name == "postgresql")


def _lock() -> None:
    if _is_postgres():
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})


def _fold_table(
    model: Any, group: tuple[str, ...], *, before: date | None = None
) -> tuple[int, int]:
    """Replace a table's rows by one row per group with its sum (groups summing to zero
    go); rows appended meanwhile by other transactions are left for the next fold. With
    ``before`` (the expiry table), every expiry day before it becomes PAST: the dashboard
    only sums those days together ("Issued past its expiry"), so a year of past days
    costs one row per group. Returns (rows before, rows after)."""
    table = model.__table__
    columns = ", ".join(group)
    if before is not None and _is_postgres():
        outputs = ", ".join(group[:-1]) + (
            ", CASE WHEN expiry_day < CAST(:before AS date) THEN CAST(:past AS date) "
            "ELSE expiry_day END"
        )
        sql = (
            f"WITH gone AS (DELETE FROM {table.name} RETURNING {columns}, n), "  # noqa: S608
            f"folded AS (INSERT INTO {table.name} ({columns}, n) "
            f"SELECT {outputs}, sum(n) FROM gone GROUP BY {outputs} HAVING sum(n) <> 0 "
            "RETURNING 1) SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded)"
        )
        row = db.session.execute(text(sql), {"before": before, "past": PAST}).one()
        return int(row[0]), int(row[1])
    if _is_postgres():
        # DELETE ... RETURNING deletes exactly the rows it sums: a row committed by a
        # writer after this statement started is neither deleted nor counted.
        name = table.name  # table and column names are constants of this module
        sql = (
            f"WITH gone AS (DELETE FROM {name} RETURNING {columns}, n), "  # noqa: S608
            f"folded AS (INSERT INTO {name} ({columns}, n) "
            f"SELECT {columns}, sum(n) FROM gone GROUP BY {columns} HAVING sum(n) <> 0 "
            "RETURNING 1) SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded)"
        )
        row = db.session.execute(text(sql)).one()
        return int(row[0]), int(row[1])
    # SQLite: one writer at a time, so a read, a delete and an insert in one transaction
    # see the same rows.
    sums: dict[tuple[Any, ...], int] = defaultdict(int)
    rows = db.session.execute(select(*[table.c[c] for c in group], table.c.n)).all()
    for row in rows:
        key = tuple(row[:-1])
        if before is not None and key[-1] < before:
            key = (*key[:-1], PAST)
        sums[key] += int(row[-1])
    db.session.execute(delete(table))
    kept = [dict(zip(group, key, strict=True), n=n) for key, n in sums.items() if n]
    if kept:
        db.session.execute(insert(table), kept)
    return len(rows), len(kept)


def fold(*, today: date | None = None) -> dict[str, int]:
    """Fold the tables (the dashboard_counts job; safe to run twice or concurrently)."""
    _lock()
    before, after = _fold_table(CertificateCount, GROUP)
    expiry_before, expiry_after = _fold_table(
        CertificateExpiryCount, EXPIRY_GROUP, before=today or utcnow().date()
    )
    month_before, month_after = _fold_table(CertificateMonthCount, MONTH_GROUP)
    return {
        "rows_before": before,
        "rows_after": after,
        "expiry_rows_before": expiry_before,
        "expiry_rows_after": expiry_after,
        "month_rows_before": month_before,
        "month_rows_after": month_after,
    }


def _expiry_day() -> Any:
    if _is_postgres():
        return func.date(func.timezone("UTC", Certificate.not_after))
    return func.date(Certificate.not_after)


def _month() -> Any:
    """The UTC month (its first day) a certificate was added, as the triggers compute it."""
    if _is_postgres():
        return func.cast(
            func.date_trunc("month", func.timezone("UTC", Certificate.created_at)), Date
        )
    return func.date(Certificate.created_at, "start of month")


def rebuild() -> dict[str, int]:
    """Recompute the tables from the certificates (a repair; safe to run twice). On
    PostgreSQL the certificates are locked against writes until the transaction ends, so
    no trigger row can be lost or counted twice in between."""
    _lock()
    if _is_postgres():
        db.session.execute(text("LOCK TABLE certificates IN SHARE MODE"))
    db.session.execute(delete(CertificateCount))
    db.session.execute(delete(CertificateExpiryCount))
    db.session.execute(delete(CertificateMonthCount))
    columns = [getattr(Certificate, c) for c in GROUP]
    db.session.execute(
        insert(CertificateCount).from_select(
            [*GROUP, "n"], select(*columns, func.count()).group_by(*columns)
        )
    )
    day = _expiry_day()
    expiry_columns = [getattr(Certificate, c) for c in EXPIRY_GROUP[:-1]]
    db.session.execute(
        insert(CertificateExpiryCount).from_select(
            [*EXPIRY_GROUP, "n"],
            select(*expiry_columns, day, func.count())
            .where(Certificate.status.in_(LIVE))
            .group_by(*expiry_columns, day),
        )
    )
    month = _month()
    month_columns = [getattr(Certificate, c) for c in MONTH_GROUP[:-1]]
    db.session.execute(
        insert(CertificateMonthCount).from_select(
            [*MONTH_GROUP, "n"],
            select(*month_columns, month, func.count())
            .where(Certificate.created_at.is_not(None))
            .group_by(*month_columns, month),
        )
    )
    return {
        "groups": int(db.session.execute(select(func.count(CertificateCount.id))).scalar_one()),
        "expiry_groups": int(
            db.session.execute(select(func.count(CertificateExpiryCount.id))).scalar_one()
        ),
        "month_groups": int(
            db.session.execute(select(func.count(CertificateMonthCount.id))).scalar_one()
        ),
    }


def _day_key(value: Any, today: date) -> str:
    day = value if isinstance(value, date) else date.fromisoformat(str(value))
    return "past" if day < today else day.isoformat()


def differences(*, today: date | None = None) -> list[str]:
    """Where the tables' sums differ from the certificates (empty: they agree); expiry
    days before today are compared as one (folding merges them)."""
    today = today or utcnow().date()
    found = []
    columns = [getattr(Certificate, c) for c in GROUP]
    direct = {
        tuple(r[:-1]): int(r[-1])
        for r in db.session.execute(select(*columns, func.count()).group_by(*columns))
    }
    summary_columns = [getattr(CertificateCount, c) for c in GROUP]
    summed = {
        tuple(r[:-1]): int(r[-1])
        for r in db.session.execute(
            select(*summary_columns, func.sum(CertificateCount.n)).group_by(*summary_columns)
        )
    }
    for key in sorted(set(direct) | set(summed), key=repr):
        if direct.get(key, 0) != summed.get(key, 0):
            found.append(
                f"{dict(zip(GROUP, key, strict=True))}: {summed.get(key, 0)} counted, {direct.get(key, 0)} stored"
            )
    day = _expiry_day()
    expiry_columns = [getattr(Certificate, c) for c in EXPIRY_GROUP[:-1]]
    direct_days: dict[tuple[Any, ...], int] = defaultdict(int)
    for r in db.session.execute(
        select(*expiry_columns, day, func.count())
        .where(Certificate.status.in_(LIVE))
        .group_by(*expiry_columns, day)
    ):
        direct_days[(*r[:-2], _day_key(r[-2], today))] += int(r[-1])
    summary_columns = [getattr(CertificateExpiryCount, c) for c in EXPIRY_GROUP]
    summed_days: dict[tuple[Any, ...], int] = defaultdict(int)
    for r in db.session.execute(
        select(*summary_columns, func.sum(CertificateExpiryCount.n)).group_by(*summary_columns)
    ):
        summed_days[(*r[:-2], _day_key(r[-2], today))] += int(r[-1])
    for key in sorted(set(direct_days) | set(summed_days), key=repr):
        if direct_days.get(key, 0) != summed_days.get(key, 0):
            found.append(
                f"expiry {dict(zip(EXPIRY_GROUP, key, strict=True))}: "
                f"{summed_days.get(key, 0)} counted, {direct_days.get(key, 0)} stored"
            )
    month = _month()
    month_columns = [getattr(Certificate, c) for c in MONTH_GROUP[:-1]]
    direct_months = {
        (*r[:-2], _iso(r[-2])): int(r[-1])
        for r in db.session.execute(
            select(*month_columns, month, func.count())
            .where(Certificate.created_at.is_not(None))
            .group_by(*month_columns, month)
        )
    }
    summary_columns = [getattr(CertificateMonthCount, c) for c in MONTH_GROUP]
    summed_months = {
        (*r[:-2], _iso(r[-2])): int(r[-1])
        for r in db.session.execute(
            select(*summary_columns, func.sum(CertificateMonthCount.n)).group_by(*summary_columns)
        )
    }
    for key in sorted(set(direct_months) | set(summed_months), key=repr):
        if direct_months.get(key, 0) != summed_months.get(key, 0):
            found.append(
                f"month {dict(zip(MONTH_GROUP, key, strict=True))}: "
                f"{summed_months.get(key, 0)} counted, {direct_months.get(key, 0)} stored"
            )
    return found


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def run_fold_job(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    folded = fold()
    return {
        "message": (
            f"dashboard counts folded: {folded['rows_before']} -> {folded['rows_after']} rows, "
            f"expiry {folded['expiry_rows_before']} -> {folded['expiry_rows_after']}, "
            f"month {folded['month_rows_before']} -> {folded['month_rows_after']}"
        ),
        **folded,
    }
