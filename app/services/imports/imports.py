"""Importing certificates people already have: ZIP archives, PEM bundles, PKCS#7 bundles
and single files, into an organization (or department), as a background job.

start_import() checks who may import where and what was uploaded, and stores the uploads
and a pending job in one transaction. run_import() (the job) reads them with app.pki's
archive reader (streamed, never extracted, under CW_IMPORT_* limits) and writes batches of
certificates, each batch one transaction: one row per certificate in the whole inventory
(by SHA-256 fingerprint: a certificate already issued, discovered or imported gains this
import as a source and is not copied), findings per certificate, and one result row per
certificate or file, which the CSV download lists. A retried job resumes after the last
batch it committed, so running it twice stores nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from flask import current_app
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Certificate,
    CertificateFinding,
    CertificateImport,
    Department,
    ImportedCertificate,
    ImportResult,
    ImportUpload,
    Organization,
)
from app.pki import archive
from app.services import audit
from app.services.errors import DomainError, Forbidden, NotFound
from app.services.platform import jobs
from app.services.scope import Actor, Scope, scope_of

JOB_KIND: Final = "certificate_import"
# The per-file result's columns (CSV header and order).
RESULT_COLUMNS: Final = (
    "file",
    "member",
    "outcome",
    "reason",
    "fingerprint",
    "subject",
    "certificate_id",
)
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its name (a label only) and its bytes."""

    name: str
    data: bytes


def limits() -> archive.Limits:
    """The archive limits in force (CW_IMPORT_*), shown on the import screen too."""
    config = current_app.config
    return archive.Limits(
        max_members=int(config["CW_IMPORT_MAX_MEMBERS"]),
        max_total_bytes=int(config["CW_IMPORT_MAX_TOTAL_BYTES"]),
        max_member_bytes=int(config["CW_IMPORT_MAX_FILE_BYTES"]),
        max_ratio=int(config["CW_IMPORT_MAX_RATIO"]),
    )


def max_upload_bytes() -> int:
    return int(current_app.config["CW_IMPORT_MAX_UPLOAD_BYTES"])


def _place(actor: Actor, organization_id: int, department_id: int | None) -> None:
    scope = scope_of(actor)
    org = db.session.get(Organization, organization_id)
    if org is None:
        raise NotFound("No such organization.")
    if organization_id not in scope.visible_org_ids and not scope.is_master:
        raise audit.denied(
            actor=actor, what="organization", object_type="Organization", object_id=org.id
        )
    if department_id is not None:
        dept = db.session.get(Department, department_id)
        if dept is None or dept.organization_id != organization_id:
            raise DomainError(
                "That department is not in the organization chosen.", field="department"
            )
    if not scope.covers(organization_id, department_id):
        audit.record_denied(
            actor=actor,
            object_type="Department" if department_id is not None else "Organization",
            object_id=department_id if department_id is not None else organization_id,
            attempted="an import into a place the administrator does not administer",
        )
        raise Forbidden(
            "You may import only into the organizations and departments you administer."
        )


def start_import(
    *,
    actor: Actor,
    organization_id: int,
    department_id: int | None,
    uploads: Sequence[Upload],
    send: bool = True,
) -> CertificateImport:
    """Store the uploads and a pending import job (sent after commit unless ``send`` is
    False: the caller then runs it itself with jobs.execute(job_id, run_import_job)).

    Raises:
        NotFound: no such organization (or one outside the actor's scope).
        Forbidden: the actor does not administer that organization or department.
        DomainError: nothing uploaded, an empty file, too many bytes, or a ZIP that breaks
            a limit its directory already shows (too many members).
    """
    _place(actor, organization_id, department_id)
    if not uploads:
        raise DomainError("Choose at least one file to import.", field="files")
    total = sum(len(u.data) for u in uploads)
    if total > max_upload_bytes():
        raise DomainError(
            f"The files hold {total} bytes, more than the {max_upload_bytes()} one import may "
            "upload (CW_IMPORT_MAX_UPLOAD_BYTES); split them.",
            field="files",
        )
    bounds = limits()
    for upload in uploads:
        shown = archive.label(upload.name) or "(unnamed)"
        if not upload.data:
            raise DomainError(f"{shown} is empty.", field="files")
        if archive.is_zip(upload.data[:4]):
            count = archive.declared_member_count(io.BytesIO(upload.data))
            if count is not None and count > bounds.max_members:
                raise DomainError(
                    f"{shown}: the archive has {count} members, more than the limit of "
                    f"{bounds.max_members} (CW_IMPORT_MAX_MEMBERS); split it.",
                    field="files",
                )
    names = [archive.label(u.name) or f"file-{i + 1}" for i, u in enumerate(uploads)]
    record = CertificateImport(
        organization_id=organization_id,
        department_id=department_id,
        created_by_id=actor.id,
        files=names,
        total_bytes=total,
        counts={},
        message="",
    )
    db.session.add(record)
    db.session.flush()
    for seq, (name, upload) in enumerate(zip(names, uploads, strict=True)):
        db.session.add(
            ImportUpload(
                import_id=record.id,
                seq=seq,
                name=name,
                size=len(upload.data),
                sha256=hashlib.sha256(upload.data).hexdigest(),
                data=upload.data,
            )
        )
    job = jobs.create_job(
        kind=JOB_KIND,
        payload={"import_id": record.id},
        actor=actor,
        organization_id=organization_id,
        max_attempts=3,
        send=send,
    )
    record.job_id = job.id
    audit.record(
        action="certificate.import",
        actor=actor,
        object_type="CertificateImport",
        object_id=record.id,
        label=", ".join(names)[:200],
        after={"files": names, "bytes": total, "job": job.id},
        message=f"{len(names)} file{'s' if len(names) != 1 else ''} ({total} bytes) to import",
        organization_id=organization_id,
        department_id=department_id,
    )
    db.session.flush()
    return record


# --- reading an import and its results --------------------------------------------------------


def get_import(*, actor: Actor, import_id: int) -> CertificateImport:
    """The import, if the actor may see where it went.

    Raises:
        NotFound: no such import, or one outside the actor's scope.
    """
    record = db.session.get(CertificateImport, import_id)
    if record is None or not scope_of(actor).covers(record.organization_id, record.department_id):
        raise audit.not_found(
            actor=actor, what="import", model=CertificateImport, object_id=import_id
        )
    return record


def list_imports(*, actor: Actor, limit: int = 50) -> list[CertificateImport]:
    query = select(CertificateImport).order_by(CertificateImport.id.desc()).limit(limit)
    clause = scope_of(actor).row_filter(
        CertificateImport.organization_id, CertificateImport.department_id
    )
    if clause is not None:
        query = query.where(clause)
    return list(db.session.execute(query).scalars())


def escape_cell(value: Any) -> str:
    """OWASP CSV injection: a cell a spreadsheet would evaluate gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def results_csv(*, actor: Actor, import_id: int) -> Iterator[str]:
    """The per-file result as CSV lines (streamed, 1,000 rows a query), every text cell
    formula-escaped (file and member names come from the uploader's archive).

    Raises:
        NotFound: no such import, or one outside the actor's scope.
    """
    get_import(actor=actor, import_id=import_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return value

    writer.writerow(RESULT_COLUMNS)
    yield flush()
    last = -1
    while True:
        rows = (
            db.session.execute(
                select(ImportResult)
                .where(ImportResult.import_id == import_id, ImportResult.seq > last)
                .order_by(ImportResult.seq)
                .limit(1000)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for row in rows:
            writer.writerow([escape_cell(getattr(row, c)) for c in RESULT_COLUMNS])
        last = rows[-1].seq
        yield flush()


def shown_results(*, import_id: int, limit: int) -> list[ImportResult]:
    """The first results of an import the caller already may see (get_import)."""
    return list(
        db.session.execute(
            select(ImportResult)
            .where(ImportResult.import_id == import_id)
            .order_by(ImportResult.seq)
            .limit(limit)
        ).scalars()
    )


def findings_of_import(*, import_id: int, scope: Scope) -> list[tuple[str, int]]:
    """How many certificates of this import carry each finding, among those the scope
    covers (a certificate known elsewhere is not counted for an admin who cannot see it)."""
    query = (
        select(CertificateFinding.code, func.count(CertificateFinding.id))
        .join(Certificate, Certificate.id == CertificateFinding.certificate_id)
        .join(ImportedCertificate, ImportedCertificate.certificate_id == Certificate.id)
        .where(ImportedCertificate.import_id == import_id)
        .group_by(CertificateFinding.code)
        .order_by(CertificateFinding.code)
    )
    clause = scope.row_filter(Certificate.organization_id, Certificate.department_id)
    if clause is not None:
        query = query.where(clause)
    return [(code, int(count)) for code, count in db.session.execute(query)]
