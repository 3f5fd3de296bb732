"""Dashboard numbers: certificates and requests the admin may see, by status, type, key
and expiry window (every query goes through the admin's scope)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    Admin,
    CaStatus,
    Certificate,
    CertificateAuthority,
    CertificateProfile,
    CertificateRequest,
    CertOrigin,
    CertStatus,
    CertType,
    Delegation,
    DelegationStatus,
    Domain,
    Organization,
    RequestStatus,
)
from app.models.types import utcnow
from app.reports.charts import EXPIRY_WINDOWS, TIMELINE_WEEKS, week_windows
from app.services.certificates import inventory
from app.services.scope import organization_clause, scope_of
from app.services.structure import domains


@dataclass
class Overview:
    by_status: dict[str, int] = field(default_factory=dict)
    by_type: dict[CertType, int] = field(default_factory=dict)
    by_key: dict[str, int] = field(default_factory=dict)
    by_issuer: dict[str, int] = field(default_factory=dict)  # issuer CN ("" unknown)
    by_signature: dict[str, int] = field(default_factory=dict)
    by_origin: dict[str, int] = field(default_factory=dict)  # Issued | Discovered | Imported
    # live certificates expiring in each of charts.EXPIRY_WINDOWS (0-7, 8-30, 31-60, 61-90 days)
    expiring: list[int] = field(default_factory=lambda: [0] * len(EXPIRY_WINDOWS))
    # live certificates expiring in each week of the next twelve months (charts.week_windows)
    expiring_weeks: list[int] = field(default_factory=lambda: [0] * TIMELINE_WEEKS)
    awaiting_approval: int = 0
    total: int = 0


def _visible(actor: Admin) -> ColumnElement[bool]:
    """Placed certificates of the types the admin holds (unassigned discoveries excepted)."""
    scope = scope_of(actor)
    placed = Certificate.organization_id.is_not(None)
    parts = []
    for cert_type in CertType:
        clause = inventory.visible_clause(scope, cert_type)
        typed = Certificate.cert_type == cert_type
        parts.append(typed if clause is None else typed & clause)
    return placed & or_(*parts)


def certificate_overview(*, actor: Admin) -> Overview:
    now = utcnow()
    visible = _visible(actor)
    result = Overview()
    expired_but_issued = (Certificate.status == CertStatus.ISSUED.value) & (
        Certificate.not_after < now
    )
    display = case((expired_but_issued, "Expired"), else_=Certificate.status)
    for status, count in db.session.execute(
        select(display, func.count()).where(visible).group_by(display)
    ):
        label = status.value if hasattr(status, "value") else str(status)
        result.by_status[label] = result.by_status.get(label, 0) + int(count)
    result.total = sum(result.by_status.values())
    for cert_type, count in db.session.execute(
        select(Certificate.cert_type, func.count()).where(visible).group_by(Certificate.cert_type)
    ):
        if cert_type is not None:
            result.by_type[CertType(cert_type)] = int(count)
    # Key types in the one vocabulary (app.pki.algorithms): issued, discovered and imported
    # EC-P256 keys are one slice.
    for label, count in db.session.execute(
        select(Certificate.key_type, func.count()).where(visible).group_by(Certificate.key_type)
    ):
        name = label or "unknown"
        result.by_key[name] = result.by_key.get(name, 0) + int(count)
    for column, target in (
        (Certificate.issuer_cn, result.by_issuer),
        (Certificate.signature_algorithm, result.by_signature),
        (Certificate.origin, result.by_origin),
    ):
        for value, count in db.session.execute(
            select(column, func.count()).where(visible).group_by(column)
        ):
            key = value.value if hasattr(value, "value") else str(value or "")
            target[key] = target.get(key, 0) + int(count)
    live = (
        visible
        & Certificate.status.in_([CertStatus.ISSUED.value, CertStatus.EXTERNAL.value])
        & (Certificate.not_after >= now)
    )
    for index, (start, end) in enumerate(EXPIRY_WINDOWS):
        window = (Certificate.not_after >= now + timedelta(days=start)) & (
            Certificate.not_after < now + timedelta(days=end)
        )
        result.expiring[index] = int(
            db.session.execute(
                select(func.count()).select_from(Certificate).where(live & window)
            ).scalar_one()
        )
    # The weekly timeline in one query: a CASE names each row's week (a range scan of a
    # year of not_after, whatever the database).
    weeks = week_windows()
    week = case(
        *[
            (Certificate.not_after < now + timedelta(days=end), i)
            for i, (_, end) in enumerate(weeks)
        ],
        else_=None,
    )
    horizon = now + timedelta(days=weeks[-1][1])
    for index, count in db.session.execute(
        select(week, func.count()).where(live & (Certificate.not_after < horizon)).group_by(week)
    ):
        if index is not None:
            result.expiring_weeks[int(index)] = int(count)
    scope = scope_of(actor)
    pending = (
        select(func.count())
        .select_from(CertificateRequest)
        .where(CertificateRequest.status == RequestStatus.REQUESTED)
    )
    if not scope.is_master:
        parts = [
            scope.type_filter(
                CertificateRequest.organization_id, CertificateRequest.department_id, t
            )
            & (CertificateRequest.cert_type == t)
            for t in CertType
        ]  # type: ignore[operator]
        pending = pending.where(or_(*parts))
    result.awaiting_approval = int(db.session.execute(pending).scalar_one())
    return result


@dataclass(frozen=True)
class FirstSteps:
    """How far the admin's part of the account is from a first certificate: each step of
    the welcome is done when the data it creates exists (what the admin may see)."""

    org_without_location: tuple[int, str] | None  # an organization missing city and state
    has_org: bool
    has_domain: bool
    has_delegation: bool
    has_root_ca: bool
    has_issuing_ca: bool
    has_profile: bool
    has_request: bool
    has_certificate: bool

    @property
    def done(self) -> bool:
        return self.has_certificate and self.org_without_location is None


def first_steps(*, actor: Admin) -> FirstSteps:
    """The welcome checklist: organization address, domain, delegation, private CA,
    profile, request, certificate (SSL, the first certificate most people want)."""
    scope = scope_of(actor)

    def exists(query: Select[Any]) -> bool:
        return db.session.execute(query.limit(1)).first() is not None

    orgs = select(Organization.id, Organization.name).order_by(Organization.id)
    clause = organization_clause(scope)
    if clause is not None:
        orgs = orgs.where(clause)
    bare = orgs.where(
        func.coalesce(Organization.city, "") == "", func.coalesce(Organization.state, "") == ""
    )
    missing = db.session.execute(bare.limit(1)).first()
    delegations = select(Delegation.id).where(
        Delegation.status == DelegationStatus.APPROVED, Delegation.ssl.is_(True)
    )
    visible = None if scope.is_master else domains.delegation_clause(scope)
    if visible is not None:
        delegations = delegations.where(visible)
    domain_query = select(Domain.id)
    domain_clause = domains.visible_domains_clause(scope)
    if domain_clause is not None:
        domain_query = domain_query.where(domain_clause)
    requests = select(CertificateRequest.id).where(CertificateRequest.cert_type == CertType.SSL)
    request_clause = scope.type_filter(
        CertificateRequest.organization_id, CertificateRequest.department_id, CertType.SSL
    )
    if request_clause is not None:
        requests = requests.where(request_clause)
    certificates = select(Certificate.id).where(
        Certificate.cert_type == CertType.SSL,
        Certificate.origin == CertOrigin.ISSUED,
        _visible(actor),
    )
    active_ca = CertificateAuthority.status == CaStatus.ACTIVE
    return FirstSteps(
        org_without_location=(missing[0], missing[1]) if missing else None,
        has_org=exists(orgs),
        has_domain=exists(domain_query),
        has_delegation=exists(delegations),
        has_root_ca=exists(
            select(CertificateAuthority.id).where(
                active_ca, CertificateAuthority.parent_id.is_(None)
            )
        ),
        has_issuing_ca=exists(
            select(CertificateAuthority.id).where(
                active_ca, CertificateAuthority.parent_id.is_not(None)
            )
        ),
        has_profile=exists(
            select(CertificateProfile.id).where(
                CertificateProfile.cert_type == CertType.SSL, CertificateProfile.active.is_(True)
            )
        ),
        has_request=exists(requests),
        has_certificate=exists(certificates),
    )


def delegation_states(*, actor: Admin) -> dict[str, int]:
    """Domain delegations the admin may see, by status (Requested, Approved, Rejected)."""
    scope = scope_of(actor)
    query = select(Delegation.status, func.count()).group_by(Delegation.status)
    clause = None if scope.is_master else domains.delegation_clause(scope)
    if clause is not None:
        query = query.where(clause)
    counts = {s.value: 0 for s in DelegationStatus}
    for status, count in db.session.execute(query):
        label = status.value if hasattr(status, "value") else str(status)
        counts[label] = int(count)
    return counts
