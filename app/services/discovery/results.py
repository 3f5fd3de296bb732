"""Storing what a scan shard found, batch by batch: certificates by fingerprint (one row
however many endpoints present one), endpoints by task/IP/port/host name, health flags
per endpoint, and placement by the task's rules.

Everything is an upsert, so a shard that is delivered twice or retried stores nothing
twice; the counts of certificates a batch inserted are exact even when two shards find
one certificate at the same moment (the insert that took counts it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import (
    HEALTH_FLAGS,
    Certificate,
    CertificateAuthority,
    CertOrigin,
    CertStatus,
    CertType,
    DiscoveryTask,
    Endpoint,
)
from app.models.notifications import NotificationType
from app.models.types import utcnow
from app.pki.hygiene import spki_of
from app.pki.info import describe_certificate
from app.scan import health, rules
from app.scan.observation import observe
from app.scan.probe import ErrorKind, ProbeResult
from app.services.imports import findings
from app.services.notifications import events

KEPT_ERRORS = {
    ErrorKind.NOT_TLS,
    ErrorKind.HANDSHAKE_FAILURE,
    ErrorKind.HANDSHAKE_TIMEOUT,
    ErrorKind.RESET,
    ErrorKind.STARTTLS_FAILURE,
}


@dataclass
class BatchContext:
    """What storing a shard's batches needs: its task, run and shard, the task's rules, our
    CAs (to recognise chains we issued) and the counts of certificates it inserted."""

    task: DiscoveryTask
    run_id: int
    shard_id: int
    rules: list[rules.Rule]
    anchors: list[x509.Certificate]
    counts: dict[str, int]


def anchors() -> list[x509.Certificate]:
    return [
        x509.load_der_x509_certificate(der)
        for der in db.session.execute(select(CertificateAuthority.cert_der)).scalars()
    ]


def _insert(model: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model.__table__)


def insert_new_certificates(rows: list[dict[str, Any]]) -> set[str]:
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
    "protocol",
    *HEALTH_FLAGS,
)


def store_results(context: BatchContext, results: Sequence[ProbeResult]) -> None:
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
        row = certificate_row(result, fingerprint, context, now)
        if row is not None:
            new_rows.append(row)
    inserted = insert_new_certificates(new_rows)
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
                "protocol": result.protocol,
                **flag_values,
            }
        )
    _upsert_endpoints(endpoint_rows)
    # A key now seen on several hosts is a hygiene finding (docs/imports.md).
    findings.record_key_on_hosts(sorted(set(ids.values())))
    _new_certificate_events(
        context, [r for r in new_rows if r["fingerprint"] in inserted], ids, leaves
    )


def _new_certificate_events(
    context: BatchContext,
    rows: list[dict[str, Any]],
    ids: dict[str, int],
    leaves: dict[str, ProbeResult],
) -> None:
    """ "New unknown certificate discovered": one event per certificate seen for the first time."""
    found = []
    for row in rows:
        result = leaves[row["fingerprint"]]
        where = f"{result.host_name or result.ip}:{result.port}"
        found.append(
            events.Event(
                type=NotificationType.UNKNOWN_CERTIFICATE,
                label=f"{row['common_name'] or row['fingerprint'][:16]} on {where}",
                organization_id=row["organization_id"],
                department_id=row["department_id"],
                cert_type=row["cert_type"].value if row.get("cert_type") else "",
                certificate_id=ids.get(row["fingerprint"]),
                facts={
                    "Endpoint": f"{result.ip}:{result.port}"
                    + (f" ({result.host_name})" if result.host_name else ""),
                    "Issuer": row["issuer_cn"] or row["issuer_dn"],
                    "Expires": row["not_after"].strftime("%Y-%m-%d %H:%M UTC"),
                    "Discovery task": context.task.name,
                },
                path=f"/admin/ssl_certs/details/?id={ids.get(row['fingerprint'])}",
            )
        )
    events.emit_many(found, actor="discovery")


def _place_unassigned(
    context: BatchContext, existing: dict[str, int], leaves: dict[str, ProbeResult], now: Any
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


def certificate_row(
    result: ProbeResult, fingerprint: str, context: BatchContext, now: Any
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
        "key_type": info.key_type[:32],
        "signature_algorithm": info.signature_algorithm[:64],
        "is_self_signed": info.is_self_signed,
        "is_ca": info.is_ca,
        "spki_sha256": spki_of(cert),
        "chain_der": [der.hex() for der in result.chain[1:]],
        "first_seen_at": now,
        "last_seen_at": now,
        "created_at": now,
    }
