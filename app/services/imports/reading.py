"""The import job: reading an import's uploads into the inventory.

run_import() cuts the uploads into parts (a ZIP of many members into ranges of members,
archive.plan_parts) and reads each part in batches of BATCH entries, each batch one
transaction holding its certificates (one row per certificate in the whole inventory, by
SHA-256 fingerprint: a certificate already issued, discovered or imported gains this
import as a source and is not copied), their sources, findings and one result row per
certificate or file. With workers to share them, the parts after the first are jobs of
their own (PART_KIND) that any worker reads while the import's own job reads the first and
waits for the rest; then it links issuers and sums up. Results are numbered by part
(part << PART_BITS, then reading order), which is deterministic, so a retried part resumes
after its last committed batch and running anything twice stores nothing twice.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (
    Certificate,
    CertificateImport,
    CertOrigin,
    CertStatus,
    CertType,
    ImportedCertificate,
    ImportResult,
    ImportUpload,
    Job,
    JobStatus,
)
from app.models.types import utcnow
from app.pki import archive, hygiene
from app.pki.bundles import ParsedCertificate, certificate_type
from app.pki.info import describe_certificate
from app.services import bulk
from app.services.errors import DomainError, NotFound
from app.services.imports import findings, issuers, sweep, uploads
from app.services.imports.imports import limits
from app.services.platform import jobs

# Entries per transaction. 2,000 rather than 500: PostgreSQL's work per certificate fell by
# a third (fewer statements and commits, and look-ups and inserts of sorted keys touching
# index pages in order), for some 10 MB of parsed certificates in a worker's hand.
BATCH: Final = 2000
_TYPES: Final = {
    "ssl": CertType.SSL,
    "client": CertType.CLIENT,
    "code_signing": CertType.CODE_SIGNING,
}


Progress = Callable[[int, str], None]


# Parts: at most PART_MEMBERS members and PART_BYTES declared inflated bytes each (so that a
# part's entries fit below 1 << PART_BITS: 128 MiB of certificates of 128 bytes or more).
PART_KIND: Final = "certificate_import_part"
# 2,000 rather than 5,000 since each worker process keeps a ZIP's parsed directory: with
# two workers the last part is read by one while the other waits, so the smaller the
# parts, the shorter that stretch (docs/benchmarks.md).
PART_MEMBERS: Final = 2_000
PART_BYTES: Final = 128 * 1024 * 1024
PART_BITS: Final = 20
MAX_PARTS: Final = (1 << (31 - PART_BITS)) - 1
# How often the import's own job looks whether the other parts are done.
WAIT_SECONDS: Final = 0.25


@dataclass(frozen=True)
class Part:
    """Members first..last-1 of one upload (index: its place in the whole import)."""

    index: int
    upload_id: int
    name: str
    first: int
    last: int


def plan(import_id: int) -> list[Part]:
    """The import's parts, in reading order.

    Raises:
        DomainError: more parts than result numbers allow (an import that large is split).
    """
    stored = db.session.execute(
        select(ImportUpload.id, ImportUpload.name)
        .where(ImportUpload.import_id == import_id)
        .order_by(ImportUpload.seq)
    ).all()
    parts: list[Part] = []
    bounds = limits()
    for upload_id, name in stored:
        ranges = uploads.plan(
            upload_id, name, bounds, max_members=PART_MEMBERS, max_bytes=PART_BYTES
        )
        for first, last in ranges:
            parts.append(Part(len(parts), upload_id, name, first, last))
    db.session.commit()
    if len(parts) > MAX_PARTS:
        raise DomainError("The import is too large to number its results; split it.")
    return parts


def run_import(
    *,
    import_id: int,
    progress: Progress | None = None,
    hold: Callable[[], None] | None = None,
    share: bool = False,
) -> dict[str, Any]:
    """Read the import's uploads and store what they hold, one transaction per batch of
    BATCH entries (committed here), then link issuers and sum up. Resumes after the last
    result already stored.

    ``share``: hand the parts after the first to other workers as jobs of their own (once:
    a retried import finds them) and wait for them; else read every part here.
    ``hold`` is called before each batch is written (the job's lease check: an attempt
    presumed dead and retried elsewhere writes nothing more).

    Raises:
        NotFound: no such import.
        DomainError: a part failed for good (its reason is in the message).
    """
    record = db.session.get(CertificateImport, import_id)
    if record is None:
        raise NotFound("No such import.")
    parts = plan(import_id)
    shared = _share(import_id, parts[1:]) if share and len(parts) > 1 else {}
    mine = [part for part in parts if part.index not in shared]
    for number, part in enumerate(mine):

        def step(fraction: float, number: int = number, name: str = part.name) -> None:
            if progress is not None:
                progress(int(90 * (number + fraction) / len(parts)), f"reading {name}")

        run_part(import_id=import_id, part=part, step=step, hold=hold)
    if shared:
        _wait_for(import_id, shared, len(parts), progress)
    return finish(import_id, progress)


def _share(import_id: int, parts: list[Part]) -> dict[int, int]:
    """The job ids of these parts, created now (messages after commit) unless an earlier
    attempt of the import created them."""
    existing = _part_jobs(import_id)
    if existing:
        return existing
    ids = jobs.create_jobs(
        kind=PART_KIND,
        payloads=[
            {
                "import_id": import_id,
                "part": p.index,
                "upload_id": p.upload_id,
                "name": p.name,
                "first": p.first,
                "last": p.last,
            }
            for p in parts
        ],
    )
    db.session.commit()
    return {p.index: job_id for p, job_id in zip(parts, ids, strict=True)}


def _part_jobs(import_id: int) -> dict[int, int]:
    """The part jobs of an import: part index -> job id (JSON payloads are read here,
    not queried: an import has at most a few dozen parts)."""
    found: dict[int, int] = {}
    for job_id, payload in db.session.execute(
        select(Job.id, Job.payload).where(Job.kind == PART_KIND).order_by(Job.id)
    ):
        if (payload or {}).get("import_id") == import_id:
            found.setdefault(int(payload["part"]), int(job_id))
    return found


def _wait_for(
    import_id: int, shared: dict[int, int], total: int, progress: Progress | None
) -> None:
    """Until every shared part's job is done: a part no worker has taken yet is read here
    (so an import never waits for a worker that is busy waiting too); a part that failed
    for good fails the import."""
    while True:
        waiting = (
            db.session.execute(
                select(Job.id)
                .where(Job.id.in_(list(shared.values())), Job.status == JobStatus.PENDING)
                .order_by(Job.id)
            )
            .scalars()
            .all()
        )
        db.session.commit()
        for job_id in waiting:
            jobs.execute(job_id, run_part_job)  # "skipped" when a worker took it meanwhile
        rows = db.session.execute(
            select(Job.id, Job.status, Job.message).where(Job.id.in_(list(shared.values())))
        ).all()
        db.session.commit()
        failed = [row for row in rows if row.status in (JobStatus.FAILED, JobStatus.CANCELLED)]
        if failed:
            raise DomainError(
                f"Part {failed[0].id} of the import did not finish: {failed[0].message}"
            )
        done = sum(1 for row in rows if row.status == JobStatus.DONE)
        if progress is not None:
            progress(int(90 * (total - len(shared) + done) / total), "reading the other parts")
        if done == len(shared):
            return
        time.sleep(WAIT_SECONDS)


def run_part(
    *,
    import_id: int,
    part: Part,
    step: Callable[[float], None] | None = None,
    hold: Callable[[], None] | None = None,
) -> int:
    """Read one part into the inventory, resuming after its last stored result; how many
    results it stored now."""
    record = db.session.get(CertificateImport, import_id)
    if record is None:
        raise NotFound("No such import.")
    place = (record.organization_id, record.department_id)
    base = part.index << PART_BITS
    done = db.session.execute(
        select(func.coalesce(func.max(ImportResult.seq), base - 1)).where(
            ImportResult.import_id == import_id,
            ImportResult.seq >= base,
            ImportResult.seq < base + (1 << PART_BITS),
        )
    ).scalar_one()
    db.session.commit()
    members = max(part.last - part.first, 1)
    stored = 0
    batch: list[_Entry] = []
    seq = base
    for entry in _entries(part, limits()):
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
            stored += len(batch)
            batch = []
            if step is not None:
                step(min(entry.index / members, 1.0))
    if batch:
        if hold is not None:
            hold()
        _store_batch(import_id, place, batch)
        db.session.commit()
        stored += len(batch)
    return stored


def finish(import_id: int, progress: Progress | None = None) -> dict[str, Any]:
    """Link issuers, count the results, empty the uploads, and start the hygiene sweep
    for the new certificates."""
    if progress is not None:
        progress(92, "linking issuers")
    issuers.link_issuers(import_id)
    db.session.commit()
    counts = result_counts(import_id)
    record = db.session.get(CertificateImport, import_id)
    assert record is not None
    record.counts = counts
    record.finished_at = utcnow()
    record.message = summary(counts)
    emptied = db.session.execute(
        update(ImportUpload)
        .where(ImportUpload.import_id == import_id)
        .values(data=b"")
        .returning(ImportUpload.id)
    )
    uploads.forget(list(emptied.scalars()))
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
    cancellation through the job row, and the lease held before each batch is written.
    With workers to hand them to, the parts after the first are read by other workers."""

    def progress(percent: int, message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(percent, message)

    return run_import(
        import_id=int(job.payload["import_id"]),
        progress=progress,
        hold=ctx.hold,
        share=not jobs.hands_off(),
    )


def run_part_job(job: Any, ctx: jobs.JobContext) -> dict[str, Any]:
    """One part of an import, on any worker; stops when the import's own job was
    cancelled."""
    import_id, index = int(job.payload["import_id"]), int(job.payload["part"])
    part = _part_of(job.payload)
    if part is None:  # a part job created before its payload carried the part's bounds
        parts = plan(import_id)
        if index >= len(parts):
            raise DomainError(f"The import has no part {index}.")
        part = parts[index]
    record = db.session.get(CertificateImport, import_id)
    owner = record.job_id if record is not None else None

    def step(fraction: float) -> None:
        status = db.session.execute(select(Job.status).where(Job.id == owner)).scalar()
        db.session.commit()
        if status == JobStatus.CANCELLED:
            raise jobs.JobCancelled()
        ctx.progress(int(100 * fraction))

    stored = run_part(import_id=import_id, part=part, step=step, hold=ctx.hold)
    return {"message": f"part {index + 1}: {stored} results"}


def _part_of(payload: dict[str, Any]) -> Part | None:
    """The part a part job's payload names (planned once, by the import's own job: each
    plan reads the whole ZIP directory)."""
    try:
        return Part(
            int(payload["part"]),
            int(payload["upload_id"]),
            str(payload["name"]),
            int(payload["first"]),
            int(payload["last"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


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


@dataclass
class _Entry:
    """One result row to be: a certificate, or a file that gave none."""

    seq: int
    file: str
    member: str
    outcome: str = ""
    reason: str = ""
    parsed: ParsedCertificate | None = None
    index: int = 0  # how many members of its part were read when it came


def _entries(part: Part, bounds: archive.Limits) -> Iterator[_Entry]:
    """The result rows of one part, in reading order (seq set by the caller)."""
    try:
        for read, result in enumerate(
            uploads.read(part.upload_id, part.name, bounds, (part.first, part.last)), start=1
        ):
            if result.skipped:
                yield _Entry(0, result.file, result.member, "skipped", result.skipped, index=read)
                continue
            content = result.content
            assert content is not None
            if not content.certificates:
                yield _Entry(0, result.file, result.member, "invalid", content.error, index=read)
                continue
            notes = "; ".join(content.notes)
            for parsed in content.certificates:
                yield _Entry(0, result.file, result.member, "", notes, parsed, index=read)
    except archive.ArchiveRefused as exc:
        if part.first == 0:  # said once, by the upload's first part
            yield _Entry(0, archive.label(part.name), "", "skipped", f"refused: {exc}")


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
    bulk.plan_for_now()
    now = utcnow()
    wanted = {e.parsed.fingerprint: e.parsed for e in batch if e.parsed is not None}
    known = _ids_by_fingerprint(list(wanted))
    linked_before = (
        set(
            db.session.execute(
                select(ImportedCertificate.certificate_id).where(
                    ImportedCertificate.import_id == import_id,
                    ImportedCertificate.certificate_id.in_(list(known.values())),
                )
            ).scalars()
        )
        if known
        else set()
    )
    new_rows = [certificate_row(p, place, now) for f, p in wanted.items() if f not in known]
    facts = {
        row["fingerprint"]: findings.Facts(row["issuer_dn"], row["serial_hex"], row["spki_sha256"])
        for row in new_rows
    }
    subjects = {row["fingerprint"]: row["subject_dn"] for row in new_rows}
    alike = findings.stored_alike(facts.values())
    inserted = _insert_certificates(new_rows)
    # Stored meanwhile by another import or a scan (it won the row): looked up, and
    # placed and visible only as that writer left it.
    raced = _ids_by_fingerprint([f for f in wanted if f not in known and f not in inserted])
    ids = {**known, **inserted, **raced}
    placed = _place_unassigned([ids[f] for f in known], place, now)
    # What this batch inserted lies where the import goes; the rest is looked at.
    visible = {ids[f] for f in inserted} | _visible_ids([ids[f] for f in (*known, *raced)], place)
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
            where = "in another file of this import" if again else "in the inventory"
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
    found += findings.batch_findings(
        {ids[f]: facts[f] for f in inserted}, place[0], alike.placed(placed, place[0])
    )
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
            "subject": _subject(e.parsed, subjects),
            "certificate_id": (
                ids[e.parsed.fingerprint]
                if e.parsed and ids[e.parsed.fingerprint] in visible
                else None
            ),
        }
        for e in batch
    ]
    findings.insert_ignoring(ImportResult.__table__, rows, ["import_id", "seq"])


def _subject(parsed: ParsedCertificate | None, known: Mapping[str, str]) -> str:
    """The subject to show in the results: from the inventory row made of it (``known``:
    fingerprint -> subject, "" when it cannot be decoded) or read now."""
    if parsed is None:
        return ""
    if known.get(parsed.fingerprint):
        return known[parsed.fingerprint]
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
                bulk.among(Certificate.fingerprint, fingerprints)
            )
        )
    }


def _insert_certificates(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the certificates not stored yet; fingerprint -> id of those this call
    inserted (another import or a scan storing one at the same moment wins it, and this
    one finds it known)."""
    return dict(
        bulk.insert_ignoring(
            Certificate.__table__, rows, ["fingerprint"], returning=("fingerprint", "id")
        )
    )


def _place_unassigned(
    cert_ids: list[int], place: tuple[int, int | None], now: datetime
) -> set[int]:
    """A discovered certificate nobody placed yet belongs where an admin imports it; the
    ids of those placed now."""
    if not cert_ids:
        return set()
    return set(
        db.session.execute(
            update(Certificate)
            .where(
                Certificate.id.in_(cert_ids),
                Certificate.organization_id.is_(None),
                Certificate.assigned_by_id.is_(None),
            )
            .values(organization_id=place[0], department_id=place[1], assigned_at=now)
            .returning(Certificate.id)
        ).scalars()
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


def import_job_failed(job: Any) -> None:
    """A job that failed for good: its import says so (kept for the results it stored)."""
    import_id = (job.payload or {}).get("import_id")
    record = db.session.get(CertificateImport, import_id) if import_id else None
    if record is not None:
        record.finished_at = utcnow()
        record.message = f"failed: {job.message}"[:2000]
