"""The Account Structure report's data: the organizations, departments, domains,
delegations and administrators the viewer may see, as app.reports.structure nodes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, AdminScope, Delegation, Department, Domain, Organization
from app.models.types import utcnow
from app.reports import structure as xml
from app.services import audit
from app.services.accounts.admins import visible_admins_clause
from app.services.scope import Actor, department_clause, organization_clause, scope_of
from app.services.structure.domains import delegation_clause, visible_domains_clause

_FLAGS = (
    ("ssl", "SSL"),
    ("client", "Client"),
    ("code_signing", "Code Signing"),
    ("device", "Device"),
)


def _types(row: Delegation | AdminScope) -> tuple[str, ...]:
    return tuple(label for attr, label in _FLAGS if getattr(row, attr))


def account_structure(*, actor: Actor) -> xml.AccountStructure:
    """Everything in the viewer's scope, ordered by id."""
    scope = scope_of(actor)
    orgs_query = select(Organization).order_by(Organization.id)
    clause = organization_clause(scope)
    if clause is not None:
        orgs_query = orgs_query.where(clause)
    depts_query = select(Department).order_by(Department.id)
    dept_clause = department_clause(scope)
    if dept_clause is not None:
        depts_query = depts_query.where(dept_clause)
    departments: dict[int, list[xml.DepartmentNode]] = defaultdict(list)
    for dept in db.session.execute(depts_query).scalars():
        departments[dept.organization_id].append(xml.DepartmentNode(dept.id, dept.name))
    organizations = [
        xml.OrganizationNode(
            id=org.id,
            name=org.name,
            address=(org.address1, org.address2, org.address3),
            city=org.city,
            state=org.state,
            postal_code=org.postal_code,
            country=org.country,
            departments=tuple(departments.get(org.id, ())),
        )
        for org in db.session.execute(orgs_query).scalars()
    ]
    delegations_query = select(Delegation).order_by(Delegation.id)
    if not scope.is_master:
        delegations_query = delegations_query.where(delegation_clause(scope))
    delegations: dict[int, list[xml.DelegationNode]] = defaultdict(list)
    for d in db.session.execute(delegations_query).scalars():
        delegations[d.domain_id].append(
            xml.DelegationNode(d.id, d.organization_id, d.department_id, _types(d), d.status.value)
        )
    domains_query = select(Domain).order_by(Domain.id)
    domain_clause = visible_domains_clause(scope)
    if domain_clause is not None:
        domains_query = domains_query.where(domain_clause)
    domains = [
        xml.DomainNode(d.id, d.name, d.description, d.active, tuple(delegations.get(d.id, ())))
        for d in db.session.execute(domains_query).scalars()
    ]
    admins_query = select(Admin).order_by(Admin.id)
    admin_clause = visible_admins_clause(scope)
    if admin_clause is not None:
        admins_query = admins_query.where(admin_clause)
    admins = [
        xml.AdminNode(
            id=a.id,
            login=a.login,
            name=a.full_name,
            email=a.email,
            role=a.role.value,
            active=a.active,
            grants=tuple(
                xml.GrantNode(g.organization_id, g.department_id, _types(g))
                for g in sorted(a.scopes, key=lambda g: g.id)
            ),
        )
        for a in db.session.execute(admins_query).scalars()
    ]
    return xml.AccountStructure(utcnow(), organizations, domains, admins)


def account_structure_xml(*, actor: Actor) -> Iterator[bytes]:
    """The viewer's Account Structure report as XML bytes (see app/reports/schemas), read
    now; audited (``report.download``) in the caller's transaction: commit, then stream."""
    built = account_structure(actor=actor)
    audit.record(
        action="report.download",
        actor=actor,
        object_type="AccountStructure",
        label=f"Account Structure ({len(built.organizations)} organizations)",
    )
    return xml.render(built)
