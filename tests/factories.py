"""Test data built through the services, the way the application builds it."""

from __future__ import annotations

from collections.abc import Iterable

from app.extensions import db
from app.models import Admin, CertType, Delegation, Department, Domain, Organization, Role
from app.services import accounts, domains, orgs

PASSWORD = "a-long-test-password-1"


def make_org(name: str = "Acme", country: str = "DE", **fields: str) -> Organization:
    org = orgs.create_org(actor=None, data=orgs.OrgData(name=name, country=country, **fields))
    db.session.commit()
    return org


def make_dept(org: Organization, name: str = "IT") -> Department:
    dept = orgs.create_dept(actor=None, organization_id=org.id, name=name)
    db.session.commit()
    return dept


def make_admin(
    login: str = "mrao",
    role: Role = Role.MRAO,
    *,
    org: Organization | None = None,
    dept: Department | None = None,
    privileges: Iterable[CertType] = tuple(CertType),
    password: str = PASSWORD,
) -> Admin:
    grants = []
    if role != Role.MRAO:
        assert org is not None
        grants.append(accounts.Grant(org.id, dept.id if dept else None, frozenset(privileges)))
    admin = accounts.create_admin(
        actor=None,
        login=login,
        email=f"{login}@example.com",
        role=role,
        password=password,
        grants=grants,
    )
    db.session.commit()
    return admin


def make_domain(
    name: str,
    *,
    by: Admin,
    org: Organization | None = None,
    dept: Department | None = None,
    types: Iterable[CertType] = (CertType.SSL,),
) -> Domain:
    domain = domains.create_domain(
        actor=by,
        name=name,
        organization_id=org.id if org else None,
        department_id=dept.id if dept else None,
        types=types,
    )
    db.session.commit()
    return domain


def delegation_of(domain: Domain) -> Delegation:
    return domain.delegations[0]
