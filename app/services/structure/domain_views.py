"""Domains addressed by organization rather than by delegation row (the REST API's way):
a domain with the delegations the viewer may see, filters, creation with several
delegations at once, and delegations found, merged, trimmed or decided by organization.
Every change goes through app/services/structure/domains.py (scope, approval, audit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, CertType, Delegation, DelegationStatus, Department, Domain
from app.services import audit
from app.services.errors import DomainError, NotFound
from app.services.scope import Actor, scope_of
from app.services.structure import domains


@dataclass(frozen=True)
class DomainView:
    domain: Domain
    delegations: list[Delegation]


@dataclass(frozen=True)
class DcvState:
    status: str  # NOT_VALIDATED | VALIDATED | EXPIRED
    method: str  # CNAME, ... or MANUAL (vouched for by the administrator who added it)
    validated: datetime
    expires: datetime | None


def dcv_state(domain: Domain, now: datetime) -> DcvState:
    """A domain is validated by the administrator who added it (method MANUAL, no expiry)
    until a DCV proof (app/services/structure/dcv.py) records a method and dates."""
    validated = domain.dcv_validated_at or domain.created_at
    expires = domain.dcv_expires_at
    status = "EXPIRED" if expires is not None and expires <= now else "VALIDATED"
    return DcvState(status, domain.dcv_method or "MANUAL", validated, expires)


@dataclass(frozen=True)
class DomainFilter:
    name: str | None = None
    active: bool | None = None
    delegation_status: DelegationStatus | None = None
    organization_id: int | None = None
    department_id: int | None = None


def _visible_delegations(actor: Actor, domain: Domain) -> list[Delegation]:
    scope = scope_of(actor)
    if scope.is_master:
        return sorted(domain.delegations, key=lambda d: d.id)
    visible = set(
        db.session.execute(
            select(Delegation.id).where(
                Delegation.domain_id == domain.id, domains.delegation_clause(scope)
            )
        ).scalars()
    )
    return sorted((d for d in domain.delegations if d.id in visible), key=lambda d: d.id)


def list_domains(*, actor: Actor, flt: DomainFilter = DomainFilter()) -> list[DomainView]:
    """Visible domains (ascending id) matching the filter, each with its visible delegations."""
    query = select(Domain).order_by(Domain.id)
    clause = domains.visible_domains_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    if flt.name is not None:
        query = query.where(Domain.name == flt.name.strip().lower().rstrip("."))
    if flt.active is not None:
        query = query.where(Domain.active.is_(flt.active))
    views = [
        DomainView(d, _visible_delegations(actor, d)) for d in db.session.execute(query).scalars()
    ]
    if flt.delegation_status is not None:
        views = [v for v in views if any(d.status == flt.delegation_status for d in v.delegations)]
    if flt.organization_id is not None or flt.department_id is not None:
        views = [
            v
            for v in views
            if any(
                (flt.department_id is not None and d.department_id == flt.department_id)
                or (
                    flt.department_id is None
                    and d.organization_id == flt.organization_id
                    and d.department_id is None
                )
                for d in v.delegations
            )
        ]
    return views


def get_domain_view(*, actor: Actor, domain_id: int) -> DomainView:
    """Raises NotFound: missing or invisible."""
    domain = domains.get_domain(actor=actor, domain_id=domain_id)  # type: ignore[arg-type]
    return DomainView(domain, _visible_delegations(actor, domain))


def organization_of_department(*, actor: Actor, department_id: int) -> int:
    """The organization of a department the actor may see. Raises NotFound."""
    dept = db.session.get(Department, department_id)
    scope = scope_of(actor)
    if dept is None:
        raise NotFound("No such department.", field="department")
    if not (scope.is_master or dept.organization_id in scope.visible_org_ids):
        raise audit.denied(
            actor=actor,
            what="department",
            object_type="Department",
            object_id=dept.id,
            field="department",
        )
    return dept.organization_id


@dataclass(frozen=True)
class DelegationSpec:
    organization_id: int
    department_id: int | None
    types: frozenset[CertType]
    request_privileges: Sequence[str] | None = None


def create_with_delegations(
    *,
    actor: Admin,
    name: str,
    description: str,
    active: bool,
    delegations: Sequence[DelegationSpec],
) -> Domain:
    """A new domain and its delegations, all or nothing (the caller commits once).

    Raises:
        DomainError: no delegation, or whatever domains.create_domain/delegate refuse.
    """
    if not delegations:
        raise DomainError(
            "Delegate the domain to at least one organization or department.",
            field="delegations",
        )
    first, *rest = delegations
    domain = domains.create_domain(
        actor=actor,
        name=name,
        description=description,
        active=active,
        organization_id=first.organization_id,
        department_id=first.department_id,
        types=first.types,
        request_privileges=first.request_privileges,
    )
    for spec in rest:
        merge_delegation(actor=actor, domain_id=domain.id, spec=spec)
    return domain


def _find(
    actor: Actor, domain_id: int, organization_id: int, department_id: int | None
) -> Delegation | None:
    view = get_domain_view(actor=actor, domain_id=domain_id)
    for d in view.delegations:
        if d.organization_id == organization_id and d.department_id == department_id:
            return d
    return None


def merge_delegation(*, actor: Admin, domain_id: int, spec: DelegationSpec) -> Delegation:
    """Delegate the domain there, or add the types to the delegation that exists."""
    existing = _find(actor, domain_id, spec.organization_id, spec.department_id)
    if existing is None:
        return domains.delegate(
            actor=actor,
            domain_id=domain_id,
            organization_id=spec.organization_id,
            department_id=spec.department_id,
            types=spec.types,
            request_privileges=spec.request_privileges,
        )
    return domains.update_delegation_types(
        actor=actor,
        delegation_id=existing.id,
        types=set(existing.types()) | set(spec.types),
        request_privileges=spec.request_privileges,
    )


def remove_delegation_types(
    *,
    actor: Admin,
    domain_id: int,
    organization_id: int,
    department_id: int | None,
    types: frozenset[CertType],
) -> None:
    """Take types off a delegation; one left with none is deleted.

    Raises:
        NotFound: no such domain, or no delegation of it there.
    """
    existing = _find(actor, domain_id, organization_id, department_id)
    if existing is None:
        raise DomainError("The domain is not delegated to that organization or department.")
    left = set(existing.types()) - set(types)
    if left:
        domains.update_delegation_types(actor=actor, delegation_id=existing.id, types=left)
    else:
        domains.delete_delegation(actor=actor, delegation_id=existing.id)


def decide(
    *,
    actor: Admin,
    domain_id: int,
    organization_id: int,
    department_id: int | None,
    approve: bool,
    message: str = "",
) -> Delegation:
    """Approve or reject the requested delegation there (MRAO)."""
    existing = _find(actor, domain_id, organization_id, department_id)
    if existing is None:
        raise DomainError("The domain is not delegated to that organization or department.")
    return domains.decide_delegation(
        actor=actor, delegation_id=existing.id, approve=approve, message=message
    )
