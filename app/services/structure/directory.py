"""The account's structure as one administrator may see it: organizations with their
visible departments, for the REST API's organization service (reads only)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.extensions import db
from app.models import CertType, Department, Organization
from app.services import audit
from app.services.errors import NotFound
from app.services.scope import Actor, department_clause, organization_clause, scope_of


@dataclass(frozen=True)
class Place:
    """An organization, or one of its departments, and the types the viewer may issue there."""

    organization: Organization
    department: Department | None
    types: frozenset[CertType]


@dataclass(frozen=True)
class OrgEntry:
    place: Place
    departments: list[Place]


def visible_structure(*, actor: Actor) -> list[OrgEntry]:
    """Every organization the actor may see (ascending id), each with its visible departments."""
    scope = scope_of(actor)
    query = select(Organization).order_by(Organization.id)
    clause = organization_clause(scope)
    if clause is not None:
        query = query.where(clause)
    orgs = list(db.session.execute(query).scalars())
    dquery = select(Department).order_by(Department.id)
    dclause = department_clause(scope)
    if dclause is not None:
        dquery = dquery.where(dclause)
    depts: dict[int, list[Department]] = {}
    for dept in db.session.execute(dquery).scalars():
        depts.setdefault(dept.organization_id, []).append(dept)
    return [
        OrgEntry(
            Place(org, None, scope.privileges(org.id, None)),
            [Place(org, d, scope.privileges(org.id, d.id)) for d in depts.get(org.id, [])],
        )
        for org in orgs
    ]


def get_place(*, actor: Actor, organization_id: int | None, department_id: int | None) -> OrgEntry:
    """One visible organization (with its departments) or one visible department.

    Raises:
        NotFound: missing, or outside the actor's scope.
    """
    scope = scope_of(actor)
    if department_id is not None:
        dept = db.session.get(Department, department_id)
        if dept is None:
            raise NotFound("No such department.")
        if not scope.covers(dept.organization_id, dept.id):
            raise audit.denied(
                actor=actor, what="department", object_type="Department", object_id=dept.id
            )
        place = Place(dept.organization, dept, scope.privileges(dept.organization_id, dept.id))
        return OrgEntry(place, [])
    for entry in visible_structure(actor=actor):
        if entry.place.organization.id == organization_id:
            return entry
    if organization_id is None:
        raise NotFound("No such organization.")
    raise audit.not_found(
        actor=actor, what="organization", model=Organization, object_id=organization_id
    )
