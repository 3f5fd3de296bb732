"""The validity-cap planner's data: the TLS certificates the admin may see, valid now, as
app.reports.planner input; which of them no automation renews."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, select

from app.extensions import db
from app.models import (
    AcmeOrder,
    Admin,
    AdminKind,
    Certificate,
    CertificateRequest,
    CertStatus,
    CertType,
    Organization,
)
from app.models.types import utcnow
from app.reports.planner import Plan, PlannedCertificate, plan
from app.services.certificates import inventory
from app.services.errors import DomainError
from app.services.scope import Actor, scope_of

MAX_MONTHS = 60
MANUAL_SHOWN = 500


@dataclass(frozen=True)
class ManualCertificate:
    id: int
    common_name: str
    organization: str
    not_after: dt.datetime


def automated() -> ColumnElement[bool]:
    """SQL: a renewal path exists without a person: auto-renew, ACME, or the REST API."""
    acme = select(AcmeOrder.request_id).where(AcmeOrder.request_id.is_not(None))
    api = (
        select(CertificateRequest.id)
        .join(Admin, Admin.id == CertificateRequest.requester_id)
        .where(Admin.kind == AdminKind.API)
    )
    return or_(
        Certificate.auto_renew.is_(True),
        Certificate.request_id.in_(acme),
        Certificate.request_id.in_(api),
    )


@dataclass(frozen=True)
class ValidityPlan:
    plan: Plan
    certificates: int
    manual: list[ManualCertificate]  # soonest to expire first, at most MANUAL_SHOWN
    manual_total: int


def validity_plan(
    *, actor: Actor, months: int = 36, now: dt.datetime | None = None
) -> ValidityPlan:
    """Project the renewals of the TLS certificates in the actor's scope (Issued or
    External, valid now) under today's lifetimes and under the caps.

    Automated (automated()): auto-renew on, or issued for an ACME order, or enrolled by an
    API administrator (a script that renews it the same way).

    Raises:
        DomainError: a horizon outside 1..MAX_MONTHS months.
    """
    if not 1 <= months <= MAX_MONTHS:
        raise DomainError(f"Choose a horizon of 1 to {MAX_MONTHS} months.", field="months")
    now = now or utcnow()
    query = (
        select(
            Certificate.id,
            Certificate.common_name,
            Organization.name,
            Certificate.not_before,
            Certificate.not_after,
            automated().label("automated"),
        )
        .join(Organization, Organization.id == Certificate.organization_id)
        .where(
            Certificate.cert_type == CertType.SSL,
            Certificate.status.in_([CertStatus.ISSUED, CertStatus.EXTERNAL]),
            Certificate.not_after >= now,
            Certificate.is_ca.is_(False),
        )
        .order_by(Certificate.not_after, Certificate.id)
    )
    clause = inventory.visible_clause(scope_of(actor), CertType.SSL)
    if clause is not None:
        query = query.where(clause)
    rows = db.session.execute(query).all()
    planned = [
        PlannedCertificate(org, before, after, bool(auto))
        for _, _, org, before, after, auto in rows
    ]
    manual_rows = [r for r in rows if not r.automated]
    return ValidityPlan(
        plan=plan(planned, start=now.date().replace(day=1), months=months),
        certificates=len(rows),
        manual=[
            ManualCertificate(r.id, r.common_name, r.name, r.not_after)
            for r in manual_rows[:MANUAL_SHOWN]
        ],
        manual_total=len(manual_rows),
    )
