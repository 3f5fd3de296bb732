"""Imports of certificates people already have, and what Certwright found wrong with any
certificate in the inventory (findings): parse findings of odd certificates, weak keys.

An import is a row with its uploaded files (kept until the job has read them), one result
row per file or certificate (what the CSV download lists), and one link per certificate
it brought in or found already known (the "imported" source of that certificate).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from app.extensions import db
from app.models.org import Department, Organization
from app.models.types import UTCDateTime, utcnow

# What can happen to one file or certificate of an import.
OUTCOMES = ("imported", "known", "invalid", "skipped")


class CertificateImport(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "certificate_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    files: Mapped[list[str]] = mapped_column(JSON, default=list)
    total_bytes: Mapped[int] = mapped_column(Integer, default=0)
    # {"imported": n, "known": n, "invalid": n, "skipped": n}
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()

    def __str__(self) -> str:
        return f"Import #{self.id}"


class ImportUpload(db.Model):  # type: ignore[name-defined,misc]
    """One uploaded file, as uploaded (never extracted); emptied once the import is done."""

    __tablename__ = "import_uploads"
    __table_args__ = (UniqueConstraint("import_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("certificate_imports.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    # Of the bytes as uploaded ("" for uploads stored before migration 0030).
    sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))


class ImportResult(db.Model):  # type: ignore[name-defined,misc]
    """The fate of one certificate (or of a file that gave none) in an import, in order."""

    __tablename__ = "import_results"
    __table_args__ = (UniqueConstraint("import_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("certificate_imports.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    file: Mapped[str] = mapped_column(String(255))
    member: Mapped[str] = mapped_column(String(255), default="")
    outcome: Mapped[str] = mapped_column(String(16))  # one of OUTCOMES
    reason: Mapped[str] = mapped_column(Text, default="")
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="SET NULL"), nullable=True
    )


class ImportedCertificate(db.Model):  # type: ignore[name-defined,misc]
    """A certificate an import brought in or found known: its "imported" source."""

    __tablename__ = "imported_certificates"
    __table_args__ = (UniqueConstraint("certificate_id", "import_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"))
    import_id: Mapped[int] = mapped_column(
        ForeignKey("certificate_imports.id", ondelete="CASCADE"), index=True
    )
    file: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CertificateFinding(db.Model):  # type: ignore[name-defined,misc]
    """Something wrong with one certificate (app.pki.bundles.Finding), by code: "parse"
    findings come from reading it, "key" findings from its key and signature."""

    __tablename__ = "certificate_findings"
    __table_args__ = (UniqueConstraint("certificate_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(128), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
