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
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from flask import current_app
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (
    Certificate,
    CertificateFinding,
    CertificateImport,
    CertOrigin,
    CertStatus,
    CertType,
    Department,
    ImportedCertificate,
    ImportResult,
    ImportUpload,
    Organization,
)
from app.models.types import utcnow
from app.pki import archive, hygiene
from app.pki.bundles import ParsedCertificate, certificate_type
from app.pki.info import describe_certificate
from app.services import audit
from app.services.errors import DomainError, Forbidden, NotFound
from app.services.imports import findings, sweep
from app.services.platform import jobs
from app.services.scope import Actor, Scope, scope_of

JOB_KIND: Final = "certificate_import"
BATCH: Final = 500
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
_TYPES: Final = {
    "ssl": CertType.SSL,
    "client": CertType.CLIENT,
    "code_signing": CertType.CODE_SIGNING,
}
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
    if org is None or (organization_id not in scope.visible_org_ids and not scope.is_master):
        raise NotFound("No such organization.")
    if department_id is not None:
        dept = db.session.get(Department, department_id)
        if dept is None or dept.organization_id != organization_id:
            raise DomainError(
                "That department is not in the organization chosen.", field="department"
            )
    if not scope.covers(organization_id, department_id):
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
                import_id=record.id, seq=seq, name=name, size=len(upload.data), data=upload.data
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


# --- the job -------------------------------------------------------------------------------


@dataclass
class _Entry:
    """One result row to be: a certificate, or a file that gave none."""

    seq: int
    file: str
    member: str
    outcome: str = ""
    reason: str = ""
    parsed: ParsedCertificate | None = None


Progress = Callable[[int, str], None]


def run_import(
    *,
    import_id: int,
    progress: Progress | None = None,
    hold: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Read the import's uploads and store what they hold, one transaction per batch of
    BATCH entries (committed here). Resumes after the last result already stored.

    ``hold`` is called before each batch is written (the job's lease check: an attempt
    presumed dead and retried elsewhere writes nothing more).

    Raises:
        NotFound: no such import.
    """
    record = db.session.get(CertificateImport, import_id)
    if record is None:
        raise NotFound("No such import.")
    place = (record.organization_id, record.department_id)
    done = db.session.execute(
        select(func.coalesce(func.max(ImportResult.seq), -1)).where(
            ImportResult.import_id == import_id
        )
    ).scalar_one()
    uploads = db.session.execute(
        select(ImportUpload.id, ImportUpload.name)
        .where(ImportUpload.import_id == import_id)
        .order_by(ImportUpload.seq)
    ).all()
    db.session.commit()
    bounds = limits()
    batch: list[_Entry] = []
    seq = 0
    for index, (upload_id, name) in enumerate(uploads):
        data = db.session.execute(
            select(ImportUpload.data).where(ImportUpload.id == upload_id)
        ).scalar_one()
        db.session.commit()
        members = _member_count(data)
        for seen, entry in enumerate(_entries(name, bytes(data), bounds), start=1):
            entry.seq = seq
            seq += 1
            if entry.seq <= done:
                continue
            batch.append(entry)
            if len(batch) >= BATCH:
                if hold is not None:
                    hold()
                _store_batch(import_id, place, batch)
                db.session.commit()
                batch = []
                if progress is not None:
                    part = min(seen / members, 1.0)
                    progress(int(90 * (index + part) / len(uploads)), f"reading {name}")
        del data
    if batch:
        if hold is not None:
            hold()
        _store_batch(import_id, place, batch)
        db.session.commit()
    if progress is not None:
        progress(92, "linking issuers")
    _link_issuers(import_id)
    db.session.commit()
    counts = result_counts(import_id)
    record = db.session.get(CertificateImport, import_id)
    assert record is not None
    record.counts = counts
    record.finished_at = utcnow()
    record.message = summary(counts)
    db.session.execute(
        update(ImportUpload).where(ImportUpload.import_id == import_id).values(data=b"")
    )
    if counts.get("imported"):
        # The new certificates' pkilint findings (their key findings are stored already).
        jobs.create_job(kind=sweep.SWEEP_KIND)
    db.session.commit()
    return {
        "message": record.message,
        "counts": counts,
        "result_type": "CertificateImport",
        "result_id": import_id,
    }


def run_import_job(job: Any, ctx: jobs.JobContext) -> dict[str, Any]:
    """The job handler (dramatiq actor, or a command run in the foreground): progress and
    cancellation through the job row, and the lease held before each batch is written."""

    def progress(percent: int, message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(percent, message)

    return run_import(import_id=int(job.payload["import_id"]), progress=progress, hold=ctx.hold)


def summary(counts: dict[str, int]) -> str:
    return (
        f"{counts.get('imported', 0)} imported, {counts.get('known', 0)} already known, "
        f"{counts.get('invalid', 0)} invalid, {counts.get('skipped', 0)} skipped"
    )


def result_counts(import_id: int) -> dict[str, int]:
    counts = {"imported": 0, "known": 0, "invalid": 0, "skipped": 0}
    for outcome, count in db.session.execute(
        select(ImportResult.outcome, func.count(ImportResult.id))
        .where(ImportResult.import_id == import_id)
        .group_by(ImportResult.outcome)
    ):
        counts[outcome] = int(count)
    return counts


def _member_count(data: bytes) -> int:
    if not archive.is_zip(data[:4]):
        return 1
    return max(archive.declared_member_count(io.BytesIO(data)) or 1, 1)


def _entries(name: str, data: bytes, bounds: archive.Limits) -> Iterator[_Entry]:
    """The result rows of one upload, in reading order (seq set by the caller)."""
    try:
        for result in archive.read_upload(name, io.BytesIO(data), bounds):
            if result.skipped:
                yield _Entry(0, result.file, result.member, "skipped", result.skipped)
                continue
            content = result.content
            assert content is not None
            if not content.certificates:
                yield _Entry(0, result.file, result.member, "invalid", content.error)
                continue
            notes = "; ".join(content.notes)
            for parsed in content.certificates:
                yield _Entry(0, result.file, result.member, "", notes, parsed)
    except archive.ArchiveRefused as exc:
        yield _Entry(0, archive.label(name), "", "skipped", f"refused: {exc}")


def _text(value: str | None, limit: int | None = None) -> str:
    # PostgreSQL text cannot hold NUL; odd certificates put anything in their names.
    cleaned = (value or "").replace("\x00", "\ufffd")
    return cleaned[:limit] if limit else cleaned


def certificate_row(
    parsed: ParsedCertificate, place: tuple[int, int | None], now: datetime
) -> dict[str, Any]:
    """The inventory row of an imported certificate: External, or Expired once past its
    notAfter (a certificate we issued is already in the inventory with its own status)."""
    cert = parsed.certificate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = describe_certificate(cert)
    kind = certificate_type(cert)
    return {
        "fingerprint": parsed.fingerprint,
        "der": parsed.der,
        "cert_type": _TYPES.get(kind),
        "origin": CertOrigin.IMPORTED,
        "status": CertStatus.EXPIRED if info.not_after < now else CertStatus.EXTERNAL,
        "organization_id": place[0],
        "department_id": place[1],
        "assigned_at": now,
        "serial_hex": info.serial_hex[:64],
        "subject_dn": _text(info.subject),
        "common_name": _text(info.subject_cn, 255),
        "subject_o": _text(info.subject_o, 255),
        "subject_ou": _text(info.subject_ou, 255),
        "issuer_dn": _text(info.issuer),
        "issuer_cn": _text(info.issuer_cn, 255),
        "sans": [_text(s) for s in info.sans],
        "not_before": info.not_before,
        "not_after": info.not_after,
        "key_algorithm": info.key_algorithm[:32],
        "key_size": info.key_size,
        "key_type": info.key_type[:32],
        "signature_algorithm": info.signature_algorithm[:64],
        "is_self_signed": info.is_self_signed,
        "is_ca": info.is_ca or kind == "ca",
        "spki_sha256": hygiene.spki_of(cert),
        "created_at": now,
    }


def _store_batch(import_id: int, place: tuple[int, int | None], batch: list[_Entry]) -> None:
    """Write one batch: new certificates, sources, findings and result rows."""
    now = utcnow()
    wanted = {e.parsed.fingerprint: e.parsed for e in batch if e.parsed is not None}
    known = _ids_by_fingerprint(list(wanted))
    linked_before = set(
        db.session.execute(
            select(ImportedCertificate.certificate_id).where(
                ImportedCertificate.import_id == import_id,
                ImportedCertificate.certificate_id.in_(list(known.values())),
            )
        ).scalars()
    )
    new_rows = [certificate_row(p, place, now) for f, p in wanted.items() if f not in known]
    inserted = _insert_certificates(new_rows)
    ids = {**known, **_ids_by_fingerprint([f for f in wanted if f not in known])}
    _place_unassigned([ids[f] for f in known], place, now)
    visible = _visible_ids(list(ids.values()), place)
    links: dict[int, str] = {}
    first_in_batch: set[str] = set()
    for entry in batch:
        if entry.parsed is None:
            continue
        fingerprint = entry.parsed.fingerprint
        cert_id = ids[fingerprint]
        label = entry.file + (f"!{entry.member}" if entry.member else "")
        links.setdefault(cert_id, label[:255])
        if fingerprint in inserted and fingerprint not in first_in_batch:
            entry.outcome = "imported"
            first_in_batch.add(fingerprint)
        else:
            entry.outcome = "known"
            again = (
                fingerprint in first_in_batch or cert_id in linked_before or fingerprint in inserted
            )
            where = "in an earlier file of this import" if again else "in the inventory"
            note = f"already {where}"
            if cert_id not in visible and not again:
                note += " (outside this organization or department)"
            entry.reason = note + (f"; {entry.reason}" if entry.reason else "")
    findings.insert_ignoring(
        ImportedCertificate.__table__,
        [
            {"certificate_id": c, "import_id": import_id, "file": f, "created_at": now}
            for c, f in links.items()
        ],
        ["certificate_id", "import_id"],
    )
    found: list[findings.Found] = []
    for fingerprint in inserted:
        parsed = wanted[fingerprint]
        found += [findings.Found(ids[fingerprint], f, "parse") for f in parsed.findings]
        found += [
            findings.Found(ids[fingerprint], f, "key")
            for f in hygiene.key_findings(parsed.certificate)
        ]
    found += findings.inventory_findings([ids[f] for f in inserted])
    findings.store(found)
    rows = [
        {
            "import_id": import_id,
            "seq": e.seq,
            "file": _text(e.file, 255),
            "member": _text(e.member, 255),
            "outcome": e.outcome,
            "reason": _text(e.reason),
            "fingerprint": e.parsed.fingerprint if e.parsed else "",
            "subject": _subject(e.parsed),
            "certificate_id": (
                ids[e.parsed.fingerprint]
                if e.parsed and ids[e.parsed.fingerprint] in visible
                else None
            ),
        }
        for e in batch
    ]
    findings.insert_ignoring(ImportResult.__table__, rows, ["import_id", "seq"])


def _subject(parsed: ParsedCertificate | None) -> str:
    if parsed is None:
        return ""
    try:
        return _text(parsed.certificate.subject.rfc4514_string())
    except ValueError:
        return "(undecodable)"


def _ids_by_fingerprint(fingerprints: list[str]) -> dict[str, int]:
    if not fingerprints:
        return {}
    return {
        f: i
        for f, i in db.session.execute(
            select(Certificate.fingerprint, Certificate.id).where(
                Certificate.fingerprint.in_(fingerprints)
            )
        )
    }


def _insert_certificates(rows: list[dict[str, Any]]) -> set[str]:
    """Insert the certificates not stored yet; the fingerprints this call inserted (another
    import or a scan storing one at the same moment wins it, and this one finds it known)."""
    if not rows:
        return set()
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = db.session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
        Certificate.__table__
    )
    statement = insert.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(
        Certificate.__table__.c.fingerprint
    )
    return set(db.session.connection().execute(statement, rows).scalars())


def _place_unassigned(cert_ids: list[int], place: tuple[int, int | None], now: datetime) -> None:
    """A discovered certificate nobody placed yet belongs where an admin imports it."""
    if not cert_ids:
        return
    db.session.execute(
        update(Certificate)
        .where(
            Certificate.id.in_(cert_ids),
            Certificate.organization_id.is_(None),
            Certificate.assigned_by_id.is_(None),
        )
        .values(organization_id=place[0], department_id=place[1], assigned_at=now)
    )


def _visible_ids(cert_ids: list[int], place: tuple[int, int | None]) -> set[int]:
    """Which of these certificates lie where the import goes (so its admin sees them)."""
    if not cert_ids:
        return set()
    query = select(Certificate.id).where(
        Certificate.id.in_(cert_ids), Certificate.organization_id == place[0]
    )
    if place[1] is not None:
        query = query.where(Certificate.department_id == place[1])
    return set(db.session.execute(query).scalars())


def _link_issuers(import_id: int) -> None:
    """Link each certificate of this import to its issuer in the inventory: a certificate
    whose subject is its issuer name and whose key verifies its signature."""
    last = 0
    while True:
        children = db.session.execute(
            select(Certificate.id, Certificate.der, Certificate.issuer_dn)
            .join(ImportedCertificate, ImportedCertificate.certificate_id == Certificate.id)
            .where(
                ImportedCertificate.import_id == import_id,
                Certificate.id > last,
                Certificate.issuer_id.is_(None),
                Certificate.is_self_signed.is_(False),
                Certificate.issuer_dn != "",
            )
            .order_by(Certificate.id)
            .limit(BATCH)
        ).all()
        if not children:
            return
        last = children[-1].id
        names = {c.issuer_dn for c in children}
        candidates: dict[str, list[tuple[int, x509.Certificate]]] = {}
        for cert_id, der, subject in db.session.execute(
            select(Certificate.id, Certificate.der, Certificate.subject_dn).where(
                Certificate.subject_dn.in_(names)
            )
        ):
            try:
                loaded = x509.load_der_x509_certificate(der)
            except ValueError:
                continue
            candidates.setdefault(subject, []).append((cert_id, loaded))
        for child in children:
            issuer = _issuer_of(child.der, candidates.get(child.issuer_dn, []), child.id)
            if issuer is not None:
                db.session.execute(
                    update(Certificate).where(Certificate.id == child.id).values(issuer_id=issuer)
                )
        db.session.commit()


def _issuer_of(
    der: bytes, candidates: list[tuple[int, x509.Certificate]], own_id: int
) -> int | None:
    if not candidates:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return None
    for cert_id, candidate in candidates:
        if cert_id == own_id:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
            continue  # a wrong candidate, or an algorithm cryptography cannot verify
        return cert_id
    return None


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


def import_job_failed(job: Any) -> None:
    """A job that failed for good: its import says so (kept for the results it stored)."""
    import_id = (job.payload or {}).get("import_id")
    record = db.session.get(CertificateImport, import_id) if import_id else None
    if record is not None:
        record.finished_at = utcnow()
        record.message = f"failed: {job.message}"[:2000]


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
