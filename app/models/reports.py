"""Generated reports: what was asked (type, format, filters, who), their chunks (rendered
rows of one id range each, stitched in order when downloaded) and when they expire."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class Report(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_type: Mapped[str] = mapped_column(String(48))
    format: Mapped[str] = mapped_column(String(8))  # csv | xml | html
    bom: Mapped[bool] = mapped_column(Boolean, default=False)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # pending -> running -> done | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # Asked for by the system (the CLI, a schedule): no admin's scope narrows it. A report
    # of an admin since deleted (created_by_id NULL) is never run as the system's.
    as_system: Mapped[bool] = mapped_column(Boolean, default=False)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    ranges: Mapped[list[list[int]]] = mapped_column(JSON, default=list)  # [low, high] by seq
    chunks_done: Mapped[list[int]] = mapped_column(JSON, default=list)  # chunk indexes
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Run by a scheduled report (mailed when done), and by which scheduler job: a job run
    # twice finds its report and starts no second one.
    report_schedule_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    schedule_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)

    def __str__(self) -> str:
        return f"Report #{self.id} ({self.report_type}, {self.format})"


class ReportSchedule(db.Model):  # type: ignore[name-defined,misc]
    """A report run on a recurrence (app.recurrence) with its owner's scope and mailed to
    recipients: attached up to a size limit, else as a signed, expiring link."""

    __tablename__ = "report_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    report_type: Mapped[str] = mapped_column(String(48))
    format: Mapped[str] = mapped_column(String(8))
    bom: Mapped[bool] = mapped_column(Boolean, default=False)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Dates relative to each run: "next" / "last" period_days days (empty: filters' own).
    period: Mapped[str] = mapped_column(String(8), default="")
    period_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # app.recurrence
    recipients: Mapped[str] = mapped_column(Text, default="")  # comma separated
    # The admin whose scope the report runs with (and who alone edits it, with the MRAOs).
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True, index=True
    )
    organization_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # The scheduler's row (app.models.jobs.Schedule) that fires it.
    schedule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_report_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __str__(self) -> str:
        return self.name


class ReportChunk(db.Model):  # type: ignore[name-defined,misc]
    """The rendered rows of one id range of a report (head and tail are rendered when it
    is downloaded)."""

    __tablename__ = "report_chunks"
    __table_args__ = (UniqueConstraint("report_id", "seq", name="uq_report_chunks_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    low: Mapped[int] = mapped_column(BigInteger)
    high: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # Counts of the report type's chart columns in these rows (app.reports.summary).
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class CertificateCount(db.Model):  # type: ignore[name-defined,misc]
    """The dashboard's summary of the certificates table: how many certificates share
    these columns. Kept by triggers on ``certificates`` (migration 0026): every insert,
    update and delete appends rows of +n / -n, so a group's count is the sum of its rows;
    the ``dashboard_counts`` job folds them into one row per group (no unique key, so
    writers never wait on each other)."""

    __tablename__ = "certificate_counts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cert_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16))
    issuer_cn: Mapped[str | None] = mapped_column(String(255), nullable=True)
    key_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    signature_algorithm: Mapped[str | None] = mapped_column(String(64), nullable=True)
    n: Mapped[int] = mapped_column(BigInteger)


class CertificateExpiryCount(db.Model):  # type: ignore[name-defined,misc]
    """Live (Issued or External) certificates by UTC expiry day, kept like
    CertificateCount: the expiry windows, the weekly timeline and "Issued past its
    expiry reads Expired" sum whole days of it."""

    __tablename__ = "certificate_expiry_counts"
    # Covering on PostgreSQL: the dashboard's day-range sums are index-only scans.
    __table_args__ = (
        Index(
            "ix_certificate_expiry_counts_expiry_day",
            "expiry_day",
            postgresql_include=["organization_id", "department_id", "cert_type", "status", "n"],
        ),
        # An RAO's or DRAO's days (migration 0031_report_performance).
        Index(
            "ix_certificate_expiry_counts_organization_id",
            "organization_id",
            "expiry_day",
            postgresql_include=["department_id", "cert_type", "status", "n"],
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cert_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    expiry_day: Mapped[date] = mapped_column(Date)
    n: Mapped[int] = mapped_column(BigInteger)


class CertificateMonthCount(db.Model):  # type: ignore[name-defined,misc]
    """Certificates by organization, department, type, origin and the UTC month they were
    added (created_at), kept like CertificateCount (migration 0031_report_performance): the dashboard's
    "requests vs issued" panel sums twelve months of it."""

    __tablename__ = "certificate_month_counts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cert_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    origin: Mapped[str] = mapped_column(String(16))
    month: Mapped[date] = mapped_column(Date, index=True)
    n: Mapped[int] = mapped_column(BigInteger)
