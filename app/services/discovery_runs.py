"""Scan runs: split a task into shards (one job each), persist results, finish the run.

A shard can be delivered twice or retried after its worker died: results are upserts
(endpoints by task/ip/port/host, certificates by fingerprint), a shard's progress counters
are reset when it is claimed again and summed into the run only when the run ends, and the
count of certificates a shard inserted is committed with them, so nothing is lost or
counted twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography import x509
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import (
    HEALTH_FLAGS,
    Admin,
    Certificate,
    CertificateAuthority,
    CertOrigin,
    CertStatus,
    CertType,
    DiscoveryTask,
    Endpoint,
    Job,
    JobStatus,
    RunStatus,
    ScanRun,
    ScanShard,
)
from app.models.types import utcnow
from app.pki.info import describe_certificate
from app.scan import health, rules, shards, sweep
from app.scan.observation import observe
from app.scan.probe import ErrorKind, ProbeResult
from app.services import audit, certificates, jobs
from app.services.discovery_rules import rule_objects
from app.services.discovery_tasks import deny_list, get_task, target_spec
from app.services.errors import Conflict, DomainError, NotFound
from app.services.scope import scope_of

SHARD_SIZE = shards.DEFAULT_SHARD_SIZE  # at most this many targets (address x port) a message
KEPT_ERRORS = {
    ErrorKind.NOT_TLS,
    ErrorKind.HANDSHAKE_FAILURE,
    ErrorKind.HANDSHAKE_TIMEOUT,
    ErrorKind.RESET,
}


def start_run(
    *,
    actor: Admin | None,
    task_id: int,
    trigger: str = "manual",
    shard_size: int | None = None,
) -> ScanRun:
    """Create the run and one job per shard; messages are sent after commit.

    Shards hold at most SHARD_SIZE targets; a smaller task is cut in four
    (app.scan.shards.pick_shard_size) so that several worker processes share it.

    Raises:
        Conflict: the task is already scanning.
        ValidationFailed: the task's targets are no longer valid (e.g. a new deny entry).
    """
    task = (
        get_task(actor=actor, task_id=task_id) if actor else db.session.get(DiscoveryTask, task_id)
    )
    if task is None:
        raise NotFound("No such discovery task.")
    if db.session.execute(
        select(ScanRun.id).where(ScanRun.task_id == task.id, ScanRun.status == RunStatus.RUNNING)
    ).first():
        raise Conflict(f"'{task.name}' is already scanning.")
    spec = target_spec(task)
    run = ScanRun(
        task_id=task.id,
        trigger=trigger,
        started_by_id=actor.id if actor else None,
        targets_total=spec.target_count,
    )
    db.session.add(run)
    db.session.flush()
    count = 0
    size = shard_size or shards.pick_shard_size(spec.target_count, SHARD_SIZE)
    for shard in shards.split_into_shards(spec, size):
        job = jobs.create_job(
            kind="scan_shard",
            payload={"run_id": run.id, "index": shard.index},
            organization_id=task.organization_id,
            max_attempts=3,
            actor=actor,
        )
        db.session.add(
            ScanShard(
                run_id=run.id,
                index=shard.index,
                job_id=job.id,
                spec=shard.to_dict(),
                targets_total=shard.target_count,
            )
        )
        count += 1
    run.shards_total = count
    audit.record(
        action="discovery.scan",
        actor=actor or "scheduler",
        object_type="DiscoveryTask",
        object_id=task.id,
        label=task.name,
        after={"run": run.id, "shards": count, "targets": spec.target_count, "trigger": trigger},
        organization_id=task.organization_id,
    )
    return run


def cancel_run(*, actor: Admin, run_id: int) -> ScanRun:
    run = db.session.get(ScanRun, run_id)
    if run is None:
        raise NotFound("No such scan.")
    get_task(actor=actor, task_id=run.task_id)
    moved = db.session.execute(
        update(ScanRun)
        .where(ScanRun.id == run.id, ScanRun.status == RunStatus.RUNNING)
        .values(
            status=RunStatus.CANCELLED, finished_at=utcnow(), message=f"cancelled by {actor.login}"
        )
    )
    if moved.rowcount != 1:
        raise Conflict(f"Scan #{run.id} has already ended ({run.status.value}).")
    db.session.execute(
        update(Job)
        .where(
            Job.id.in_(select(ScanShard.job_id).where(ScanShard.run_id == run.id)),
            Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]),
        )
        .values(status=JobStatus.CANCELLED, finished_at=utcnow(), message="scan cancelled")
    )
    db.session.execute(
        update(ScanShard)
        .where(ScanShard.run_id == run.id, ScanShard.status.in_(["pending", "running"]))
        .values(status="cancelled")
    )
    audit.record(
        action="discovery.cancel",
        actor=actor,
        object_type="ScanRun",
        object_id=run.id,
        label=run.task.name,
        organization_id=run.task.organization_id,
    )
    db.session.expire(run)
    _finalize(run.id)
    return run


def progress(run: ScanRun) -> int:
    """Percent of targets done, live (shards report after every batch)."""
    if run.status != RunStatus.RUNNING:
        return (
            100
            if run.status == RunStatus.SUCCESSFUL
            else min(100, int(100 * run.targets_done / max(1, run.targets_total)))
        )
    done = db.session.execute(
        select(func.coalesce(func.sum(ScanShard.targets_done), 0)).where(ScanShard.run_id == run.id)
    ).scalar_one()
    return min(99, int(100 * int(done) / max(1, run.targets_total)))


# --- executing one shard (called by the scan_shard actor through jobs.execute) ----------


@dataclass
class _Context:
    task: DiscoveryTask
    run_id: int
    shard_id: int
    rules: list[rules.Rule]
    anchors: list[x509.Certificate]
    counts: dict[str, int]


def run_shard_job(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    run = db.session.get(ScanRun, int(job.payload["run_id"]))
    shard_row = db.session.execute(
        select(ScanShard).where(
            ScanShard.run_id == job.payload["run_id"], ScanShard.index == job.payload["index"]
        )
    ).scalar_one_or_none()
    if run is None or shard_row is None or run.status != RunStatus.RUNNING:
        return {"message": "scan no longer running"}
    # A retry starts the shard over: its counters restart from zero (never counted twice),
    # except the certificates earlier attempts inserted: they stay, and so does their count.
    inserted = {key: int((shard_row.counts or {}).get(key, 0)) for key in ("new", "assigned")}
    shard_row.status, shard_row.targets_done, shard_row.tls_endpoints, shard_row.counts = (
        "running",
        0,
        0,
        dict(inserted),
    )
    shard_row.attempts += 1
    task = run.task
    context = _Context(task, run.id, shard_row.id, rule_objects(task), _anchors(), inserted)
    db.session.commit()
    options = sweep.SweepOptions(
        connect_timeout=task.connect_timeout,
        handshake_timeout=task.handshake_timeout,
        connect_concurrency=max(task.concurrency, 64),
        tls_concurrency=task.concurrency,
    )

    def on_batch(batch: sweep.SweepBatch) -> None:
        ctx.hold()  # a retry elsewhere owns the shard's rows now: store nothing
        store_results(context, batch.results)
        db.session.execute(
            update(ScanShard)
            .where(ScanShard.id == context.shard_id)
            .values(
                targets_done=batch.progress.targets_done,
                tls_endpoints=batch.progress.tls_endpoints,
                counts=dict(context.counts),  # committed with the certificates they count
            )
        )
        ctx.progress(
            int(100 * batch.progress.targets_done / max(1, batch.progress.targets_total))
        )  # commits

    def should_stop() -> bool:
        return ctx.is_cancelled()

    summary = sweep.run_shard(
        shards.Shard.from_dict(shard_row.spec),
        options,
        on_batch=on_batch,
        should_stop=should_stop,
        deny=deny_list(),
    )
    counts = {**summary.count_by_outcome, **context.counts}
    ctx.hold()
    _finish_shard(
        context.shard_id,
        "cancelled" if summary.stopped else "done",
        summary.progress.targets_done,
        summary.progress.tls_endpoints,
        counts,
    )
    return {
        "message": f"{summary.progress.targets_done} targets, {summary.progress.tls_endpoints} TLS endpoints",
        "counts": counts,
    }


def on_shard_failure(job: Job) -> None:
    """jobs calls this when a shard is out of attempts: record it and maybe end the run."""
    shard = db.session.execute(
        select(ScanShard).where(ScanShard.job_id == job.id)
    ).scalar_one_or_none()
    if shard is not None:
        shard.status, shard.error, shard.finished_at = "failed", job.message[:2000], utcnow()
        db.session.flush()
        _finalize(shard.run_id)


def _finish_shard(shard_id: int, status: str, done: int, tls: int, counts: dict[str, int]) -> None:
    db.session.execute(
        update(ScanShard)
        .where(ScanShard.id == shard_id)
        .values(
            status=status, targets_done=done, tls_endpoints=tls, counts=counts, finished_at=utcnow()
        )
    )
    run_id = db.session.execute(
        select(ScanShard.run_id).where(ScanShard.id == shard_id)
    ).scalar_one()
    _finalize(run_id)


def _finalize(run_id: int) -> None:
    """End the run once every shard is final (the run row is locked while deciding)."""
    run = db.session.execute(
        select(ScanRun).where(ScanRun.id == run_id).with_for_update()
    ).scalar_one()
    rows = db.session.execute(select(ScanShard).where(ScanShard.run_id == run_id)).scalars().all()
    if any(s.status in ("pending", "running") for s in rows) and run.status == RunStatus.RUNNING:
        return
    totals: dict[str, int] = {}
    for s in rows:
        for key, value in (s.counts or {}).items():
            totals[key] = totals.get(key, 0) + int(value)
    run.targets_done = sum(s.targets_done for s in rows)
    run.tls_endpoints = sum(s.tls_endpoints for s in rows)
    run.new_certificates = totals.pop("new", 0)
    run.assigned = totals.pop("assigned", 0)
    run.certificates = db.session.execute(
        select(func.count(func.distinct(Endpoint.certificate_id))).where(
            Endpoint.last_run_id == run_id, Endpoint.certificate_id.is_not(None)
        )
    ).scalar_one()
    run.counts = {"outcomes": totals, "summary": task_summary(run.task_id)}
    failed = [s for s in rows if s.status == "failed"]
    if run.status == RunStatus.RUNNING:
        run.status = RunStatus.FAILED if failed else RunStatus.SUCCESSFUL
        run.message = (
            f"{len(failed)} of {len(rows)} shards failed: {failed[0].error}"
            if failed
            else f"{run.tls_endpoints} TLS endpoints, {run.certificates} certificates ({run.new_certificates} new)"
        )
        run.finished_at = utcnow()


# --- storing what a batch found ---------------------------------------------------------


def _anchors() -> list[x509.Certificate]:
    return [
        x509.load_der_x509_certificate(der)
        for der in db.session.execute(select(CertificateAuthority.cert_der)).scalars()
    ]


def _insert(model: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model.__table__)


def _insert_new_certificates(rows: list[dict[str, Any]]) -> set[str]:
    """Insert certificates not stored yet; the fingerprints this call inserted.

    Two shards may find the same certificate at the same moment: the loser's rows are
    skipped by the unique fingerprint, and only the winner counts them as new.
    """
    if not rows:
        return set()
    statement = (
        _insert(Certificate)
        .on_conflict_do_nothing(index_elements=["fingerprint"])
        .returning(Certificate.__table__.c.fingerprint)
    )
    return set(db.session.connection().execute(statement, rows).scalars())


def _upsert_endpoints(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = _insert(Endpoint)
    statement = insert.on_conflict_do_update(
        index_elements=["task_id", "ip", "port", "host_name"],
        set_={c: getattr(insert.excluded, c) for c in ENDPOINT_UPDATES},
    )
    db.session.connection().execute(statement, rows)


ENDPOINT_UPDATES = (
    "certificate_id",
    "last_seen_at",
    "last_run_id",
    "tls_version",
    "cipher",
    "chain",
    "error",
    "error_detail",
    *HEALTH_FLAGS,
)


def store_results(context: _Context, results: Sequence[ProbeResult]) -> None:
    """Upsert certificates (by fingerprint) and endpoints (by task, ip, port, host name).

    Core statements on the session's connection (no ORM objects: a batch is hundreds of
    rows); certificates already stored only get their sighting times moved, in one UPDATE.
    """
    now = utcnow()
    kept = [r for r in results if r.error is None or r.error in KEPT_ERRORS or r.host_name]
    leaves = {hashlib.sha256(r.chain[0]).hexdigest(): r for r in kept if r.chain}
    existing = (
        dict(
            db.session.execute(
                select(Certificate.fingerprint, Certificate.id).where(
                    Certificate.fingerprint.in_(list(leaves))
                )
            ).all()
        )
        if leaves
        else {}
    )
    new_rows = []
    for fingerprint, result in leaves.items():
        if fingerprint in existing:
            continue
        row = _certificate_row(result, fingerprint, context, now)
        if row is not None:
            new_rows.append(row)
    inserted = _insert_new_certificates(new_rows)
    context.counts["new"] += len(inserted)
    context.counts["assigned"] += sum(
        1 for r in new_rows if r["fingerprint"] in inserted and r["organization_id"] is not None
    )
    context.counts["assigned"] += _place_unassigned(context, existing, leaves, now)
    ids = dict(existing)
    if existing:
        db.session.execute(
            update(Certificate)
            .where(Certificate.id.in_(list(existing.values())))
            .values(last_seen_at=now, first_seen_at=func.coalesce(Certificate.first_seen_at, now))
        )
    if len(ids) < len(leaves):  # inserted here or, a moment ago, by another shard
        ids.update(
            db.session.execute(
                select(Certificate.fingerprint, Certificate.id).where(
                    Certificate.fingerprint.in_([f for f in leaves if f not in ids])
                )
            ).all()
        )
    endpoint_rows = []
    # Four addresses behind one load balancer present one chain: assess it once.
    assessed: dict[tuple[Any, ...], dict[str, bool]] = {}
    no_flags = dict.fromkeys(HEALTH_FLAGS, False)
    for result in kept:
        fingerprint = None
        flag_values = no_flags
        if result.chain:
            fingerprint = hashlib.sha256(result.chain[0]).hexdigest()
            key = (result.chain, result.host_name, result.tls_version)
            flag_values = assessed.get(key)  # type: ignore[assignment]
            if flag_values is None:
                flags = {
                    f.value for f in health.assess_result(result, now=now, anchors=context.anchors)
                }
                flag_values = assessed[key] = {flag: flag in flags for flag in HEALTH_FLAGS}
        endpoint_rows.append(
            {
                "task_id": context.task.id,
                "ip": result.ip,
                "port": result.port,
                "host_name": result.host_name or "",
                "certificate_id": ids.get(fingerprint) if fingerprint else None,
                "first_seen_at": now,
                "last_seen_at": now,
                "last_run_id": context.run_id,
                "tls_version": result.tls_version or "",
                "cipher": (result.cipher or "")[:128],
                "chain": [hashlib.sha256(der).hexdigest() for der in result.chain],
                "error": result.error.value if result.error else "",
                "error_detail": (result.detail or "")[:512],
                **flag_values,
            }
        )
    _upsert_endpoints(endpoint_rows)


def _place_unassigned(
    context: _Context, existing: dict[str, int], leaves: dict[str, ProbeResult], now: Any
) -> int:
    """Let the task's rules place certificates found before and still unassigned (a rule
    added since, or found by a task without rules). Never one an administrator placed:
    Assign To records who, and the update is conditional on nobody having placed it."""
    if not context.rules or not existing:
        return 0
    unplaced = db.session.execute(
        select(Certificate.fingerprint, Certificate.id).where(
            Certificate.id.in_(list(existing.values())),
            Certificate.organization_id.is_(None),
            Certificate.assigned_by_id.is_(None),
            Certificate.origin == CertOrigin.DISCOVERED,
        )
    ).all()
    placed = 0
    for fingerprint, cert_id in unplaced:
        result = leaves[fingerprint]
        match = rules.first_match(
            context.rules,
            observe(result.chain[0], ip=result.ip, port=result.port, host_name=result.host_name),
        )
        if match is None:
            continue
        placed += db.session.execute(
            update(Certificate)
            .where(
                Certificate.id == cert_id,
                Certificate.organization_id.is_(None),
                Certificate.assigned_by_id.is_(None),
            )
            .values(
                organization_id=match.target.organization_id,
                department_id=match.target.department_id,
                assigned_rule_id=match.rule.rule_id,
                assigned_at=now,
            )
        ).rowcount
    return placed


def _certificate_row(
    result: ProbeResult, fingerprint: str, context: _Context, now: Any
) -> dict[str, Any] | None:
    try:
        cert = x509.load_der_x509_certificate(result.chain[0])
    except ValueError:
        return None
    info = describe_certificate(cert)
    match = rules.first_match(
        context.rules,
        observe(result.chain[0], ip=result.ip, port=result.port, host_name=result.host_name),
    )
    return {
        "fingerprint": fingerprint,
        "der": result.chain[0],
        "cert_type": CertType.SSL,
        "origin": CertOrigin.DISCOVERED,
        "status": CertStatus.EXTERNAL,
        "organization_id": match.target.organization_id if match else None,
        "department_id": match.target.department_id if match else None,
        "assigned_rule_id": match.rule.rule_id if match else None,
        "assigned_at": now if match else None,
        "serial_hex": info.serial_hex,
        "subject_dn": info.subject,
        "common_name": (info.subject_cn or "")[:255],
        "subject_o": (info.subject_o or "")[:255],
        "subject_ou": (info.subject_ou or "")[:255],
        "issuer_dn": info.issuer,
        "issuer_cn": (info.issuer_cn or "")[:255],
        "sans": list(info.sans),
        "not_before": info.not_before,
        "not_after": info.not_after,
        "key_algorithm": info.key_algorithm,
        "key_size": info.key_size,
        "signature_algorithm": info.signature_algorithm[:64],
        "is_self_signed": info.is_self_signed,
        "is_ca": info.is_ca,
        "chain_der": [der.hex() for der in result.chain[1:]],
        "first_seen_at": now,
        "last_seen_at": now,
        "created_at": now,
    }


# --- what the Network Assets page shows -------------------------------------------------


def task_summary(task_id: int) -> dict[str, int]:
    """Distinct certificates a task has found: total, managed, external, self-signed,
    expired, expiring within 30 days."""
    now = utcnow()
    # IN, not JOIN + DISTINCT over whole rows: PostgreSQL has no equality for json columns
    certs = (
        select(Certificate.origin, Certificate.is_self_signed, Certificate.not_after)
        .where(
            Certificate.id.in_(select(Endpoint.certificate_id).where(Endpoint.task_id == task_id))
        )
        .subquery()
    )
    row = db.session.execute(
        select(
            func.count(),
            func.coalesce(
                func.sum((certs.c.origin == CertOrigin.ISSUED.value).cast(db.Integer)), 0
            ),
            func.coalesce(func.sum(certs.c.is_self_signed.cast(db.Integer)), 0),
            func.coalesce(func.sum((certs.c.not_after < now).cast(db.Integer)), 0),
            func.coalesce(
                func.sum(
                    (
                        (certs.c.not_after >= now) & (certs.c.not_after < now + timedelta(days=30))
                    ).cast(db.Integer)
                ),
                0,
            ),
        ).select_from(certs)
    ).one()
    total, managed, self_signed, expired, expiring = (int(v or 0) for v in row)
    return {
        "total": total,
        "managed": managed,
        "external": total - managed,
        "self_signed": self_signed,
        "expired": expired,
        "expiring_30": expiring,
    }


def assign(
    *, actor: Admin, certificate_ids: Sequence[int], organization_id: int, department_id: int | None
) -> int:
    """Bulk Assign To: place discovered/imported certificates in an org/department."""
    scope = scope_of(actor)
    if not scope.covers(organization_id, department_id) or not scope.may(
        CertType.SSL, organization_id, department_id
    ):
        raise DomainError("Assign only to your own organizations and departments.", field="target")
    count = 0
    for cert in db.session.execute(
        select(Certificate).where(Certificate.id.in_(list(certificate_ids)))
    ).scalars():
        if cert.origin == CertOrigin.ISSUED:
            continue  # ours are placed by their request
        before = {"organization_id": cert.organization_id, "department_id": cert.department_id}
        cert.organization_id, cert.department_id = organization_id, department_id
        cert.assigned_by_id, cert.assigned_rule_id, cert.assigned_at = actor.id, None, utcnow()
        audit.record(
            action="certificate.assign",
            actor=actor,
            object_type="Certificate",
            object_id=cert.id,
            label=cert.common_name,
            before=before,
            after={"organization_id": organization_id, "department_id": department_id},
            organization_id=organization_id,
            department_id=department_id,
        )
        count += 1
    return count


def _installed(cert: Certificate) -> int:
    return int(
        db.session.execute(
            select(func.count())
            .select_from(Endpoint)
            .where(Endpoint.certificate_id == cert.id, Endpoint.error == "")
        ).scalar_one()
    )


certificates.register_install_probe(_installed)
