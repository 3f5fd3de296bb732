"""Network Assets: which discovered endpoints an admin may see, bulk Assign To, the chain an
endpoint presented, who placed a certificate, a task's summary and its scan history.

Visibility (docs/authorization.md): an MRAO sees every endpoint; an RAO sees the endpoints
of the tasks their organizations own (unless the certificate there is placed in another
organization) and every endpoint whose certificate is placed in their scope; a DRAO sees
the endpoints whose certificate is placed in their departments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography import x509
from sqlalchemy import and_, case, desc, false, func, or_, select
from sqlalchemy.orm import joinedload
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    HEALTH_FLAGS,
    Admin,
    AssignmentRule,
    Certificate,
    CertificateAuthority,
    CertOrigin,
    CertType,
    Department,
    DiscoveryTask,
    Endpoint,
    Organization,
    ScanRun,
)
from app.models.types import utcnow
from app.pki.info import CertificateInfo, describe_certificate
from app.services import audit
from app.services.accounts import admins
from app.services.certificates import inventory
from app.services.discovery.tasks import visible_tasks_clause
from app.services.errors import DomainError
from app.services.scope import Scope, scope_of

MANAGED, ASSIGNED, NOT_ASSIGNED = "Managed", "Assigned", "Not assigned"
INVENTORY_STATES = (MANAGED, ASSIGNED, NOT_ASSIGNED)


def _certificates_where(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    return Endpoint.certificate_id.in_(select(Certificate.id).where(clause))


def visible_endpoints_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Endpoints the admin may see; None means all (MRAO)."""
    if scope.is_master:
        return None
    placed = scope.row_filter(Certificate.organization_id, Certificate.department_id)
    parts: list[ColumnElement[bool]] = [
        _certificates_where(placed if placed is not None else false())
    ]
    if scope.orgs:
        owned = Endpoint.task_id.in_(
            select(DiscoveryTask.id).where(DiscoveryTask.organization_id.in_(sorted(scope.orgs)))
        )
        unplaced = or_(
            Endpoint.certificate_id.is_(None),
            _certificates_where(Certificate.organization_id.is_(None)),
        )
        parts.append(and_(owned, unplaced))
    return or_(*parts)


def inventory_state_clause(state: str) -> ColumnElement[bool]:
    """Endpoints whose certificate is Managed (ours), Assigned (placed) or Not assigned."""
    if state == MANAGED:
        return _certificates_where(Certificate.origin == CertOrigin.ISSUED)
    if state == ASSIGNED:
        return _certificates_where(
            and_(Certificate.origin != CertOrigin.ISSUED, Certificate.organization_id.is_not(None))
        )
    if state == NOT_ASSIGNED:
        return _certificates_where(
            and_(Certificate.origin != CertOrigin.ISSUED, Certificate.organization_id.is_(None))
        )
    raise DomainError(f"Unknown inventory state '{state}'.")


def inventory_state(cert: Certificate | None) -> str:
    if cert is None:
        return ""
    if cert.origin == CertOrigin.ISSUED:
        return MANAGED
    return ASSIGNED if cert.organization_id is not None else NOT_ASSIGNED


def visible_task_ids(scope: Scope) -> set[int] | None:
    """Ids of the tasks the admin may see; None means all."""
    clause = visible_tasks_clause(scope)
    if clause is None:
        return None
    return set(db.session.execute(select(DiscoveryTask.id).where(clause)).scalars())


def get_endpoint(*, actor: Admin, endpoint_id: int) -> Endpoint:
    query = select(Endpoint).where(Endpoint.id == endpoint_id)
    clause = visible_endpoints_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    endpoint = db.session.execute(query).scalar_one_or_none()
    if endpoint is None:
        raise audit.not_found(actor=actor, what="endpoint", model=Endpoint, object_id=endpoint_id)
    return endpoint


def endpoints_of(*, actor: Admin, certificate_id: int) -> list[Endpoint]:
    """Where a certificate is deployed, as far as the admin may see."""
    query = select(Endpoint).where(Endpoint.certificate_id == certificate_id)
    clause = visible_endpoints_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    return list(db.session.execute(query.order_by(Endpoint.ip, Endpoint.port)).scalars())


@dataclass(frozen=True)
class AssignResult:
    assigned: int
    managed: int  # ours: placed by their request, never moved by Assign To


def assign_endpoints(
    *,
    actor: Admin,
    endpoint_ids: Sequence[int],
    organization_id: int,
    department_id: int | None,
) -> AssignResult:
    """Bulk Assign To: the certificates presented by the chosen (visible) endpoints.

    Raises:
        DomainError: nothing to assign, or a target outside the admin's scope.
    """
    org = db.session.get(Organization, organization_id)
    dept = db.session.get(Department, department_id) if department_id is not None else None
    if org is None or (
        department_id is not None and (dept is None or dept.organization_id != org.id)
    ):
        raise DomainError("Choose an organization or department to assign to.", field="target")
    query = select(Endpoint.certificate_id).where(
        Endpoint.id.in_(list(endpoint_ids)), Endpoint.certificate_id.is_not(None)
    )
    clause = visible_endpoints_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    cert_ids = sorted({int(i) for i in db.session.execute(query).scalars() if i is not None})
    if not cert_ids:
        raise DomainError("The chosen endpoints presented no certificate to assign.")
    managed = len(
        db.session.execute(
            select(Certificate.id).where(
                Certificate.id.in_(cert_ids), Certificate.origin == CertOrigin.ISSUED
            )
        ).all()
    )
    assigned = assign_certificates(
        actor=actor,
        certificate_ids=cert_ids,
        organization_id=organization_id,
        department_id=department_id,
    )
    return AssignResult(assigned=assigned, managed=managed)


def assigned_by(*, actor: Admin, certificate: Certificate) -> str:
    """'rule <name>' or '<admin login>' for a placed discovered/imported certificate; ''
    when nobody placed it. Names the admin may not see stay unnamed."""
    if certificate.organization_id is None or certificate.origin == CertOrigin.ISSUED:
        return ""
    scope = scope_of(actor)
    if certificate.assigned_rule_id is not None:
        rule = db.session.get(AssignmentRule, certificate.assigned_rule_id)
        if rule is None:
            return f"rule #{certificate.assigned_rule_id} (since deleted)"
        if scope.covers(rule.organization_id, rule.department_id):
            return f"rule {rule.name}"
        return "an assignment rule"
    if certificate.assigned_by_id is not None:
        query = select(Admin.login).where(Admin.id == certificate.assigned_by_id)
        clause = admins.visible_admins_clause(scope)
        if clause is not None:
            query = query.where(clause)
        login = db.session.execute(query).scalar_one_or_none()
        return login if login else "an administrator"
    return ""


@dataclass(frozen=True)
class ChainEntry:
    fingerprint: str
    info: CertificateInfo | None  # None: a certificate Certwright did not keep


def presented_chain(endpoint: Endpoint) -> list[ChainEntry]:
    """The certificates the endpoint presented, leaf first, as far as they are stored."""
    known: dict[str, bytes] = {}
    cert = endpoint.certificate
    if cert is not None:
        known[cert.fingerprint] = cert.der
        for der_hex in cert.chain_der or []:
            der = bytes.fromhex(der_hex)
            known[hashlib.sha256(der).hexdigest()] = der
    missing = [fp for fp in endpoint.chain or [] if fp not in known]
    if missing:
        for fingerprint, der in db.session.execute(
            select(Certificate.fingerprint, Certificate.der).where(
                Certificate.fingerprint.in_(missing)
            )
        ):
            known[fingerprint] = der
        for fingerprint, der in db.session.execute(
            select(CertificateAuthority.fingerprint, CertificateAuthority.cert_der).where(
                CertificateAuthority.fingerprint.in_(missing)
            )
        ):
            known[fingerprint] = der
    entries = []
    for fingerprint in endpoint.chain or []:
        der = known.get(fingerprint)
        info = describe_certificate(x509.load_der_x509_certificate(der)) if der else None
        entries.append(ChainEntry(fingerprint, info))
    return entries


def latest_runs(task_ids: Sequence[int]) -> dict[int, ScanRun]:
    """The most recent run of each task (one query)."""
    if not task_ids:
        return {}
    newest = (
        select(ScanRun.task_id, db.func.max(ScanRun.id).label("run_id"))
        .where(ScanRun.task_id.in_(list(task_ids)))
        .group_by(ScanRun.task_id)
        .subquery()
    )
    runs = db.session.execute(select(ScanRun).join(newest, ScanRun.id == newest.c.run_id)).scalars()
    return {run.task_id: run for run in runs}


def run_history(task_id: int, limit: int = 200) -> list[ScanRun]:
    """A task's runs, newest first."""
    return list(
        db.session.execute(
            select(ScanRun)
            .options(joinedload(ScanRun.started_by))
            .where(ScanRun.task_id == task_id)
            .order_by(desc(ScanRun.id))
            .limit(limit)
        ).scalars()
    )


def history_rows(task_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Finished runs of a task as plain rows for app.reports.figures.scan_points."""
    return [
        {
            "id": run.id,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "status": run.status.value,
            "counts": run.counts or {},
            "new_certificates": run.new_certificates,
            "tls_endpoints": run.tls_endpoints,
        }
        for run in run_history(task_id, limit)
        if run.finished_at is not None
    ]


# The health flags an endpoint row carries (app.scan.health.HealthFlag, as columns).
FLAG_COLUMNS = HEALTH_FLAGS


def run_flags(run_id: int) -> dict[str, int]:
    """Endpoints a run reached, by health flag, and "any": those with at least one flag
    (kept in the run's counts when it ends: the dashboard's discovery trend)."""
    flags = [getattr(Endpoint, name).is_(True) for name in FLAG_COLUMNS]
    row = db.session.execute(
        select(
            *[func.coalesce(func.sum(case((flag, 1), else_=0)), 0) for flag in flags],
            func.coalesce(func.sum(case((or_(*flags), 1), else_=0)), 0),
        ).where(Endpoint.last_run_id == run_id)
    ).one()
    counts = {name: int(value) for name, value in zip(FLAG_COLUMNS, row, strict=False)}
    counts["any"] = int(row[-1])
    return counts


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


def assign_certificates(
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


def _installed(certificate_ids: Sequence[int]) -> dict[int, int]:
    """Endpoints presenting each certificate now (a handshake that failed presents none)."""
    if not certificate_ids:
        return {}
    rows = db.session.execute(
        select(Endpoint.certificate_id, func.count())
        .where(Endpoint.certificate_id.in_(list(certificate_ids)), Endpoint.error == "")
        .group_by(Endpoint.certificate_id)
    )
    return {cert_id: int(seen) for cert_id, seen in rows}


inventory.register_install_probe(_installed)
