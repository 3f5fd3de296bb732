"""Choices for console select boxes: certificate types, countries (ISO 3166), and the
organizations, departments and places ('o:ID' / 'd:ID') the admin may see, scoped."""

from __future__ import annotations

import iso3166
from sqlalchemy import select

from app.admin.base import (
    current_scope,
    select_choices,
)
from app.extensions import db
from app.ids import parse_id
from app.models import CertType, Department, Organization
from app.services.scope import (
    department_clause,
    managed_organization_clause,
    organization_clause,
)

TYPE_CHOICES = select_choices((t.value, t.label) for t in CertType)

COUNTRIES = [
    ("", "— choose —"),
    *sorted(((c.alpha2, f"{c.name} ({c.alpha2})") for c in iso3166.countries), key=lambda x: x[1]),
]


def org_choices(*, managed_only: bool = False) -> list[tuple[int, str]]:
    """Organizations for a select box: only those the admin may see (or manage)."""
    scope = current_scope()
    clause = managed_organization_clause(scope) if managed_only else organization_clause(scope)
    query = select(Organization).order_by(Organization.name)
    if clause is not None:
        query = query.where(clause)
    return [(o.id, o.name) for o in db.session.execute(query).scalars()]


def dept_choices() -> list[tuple[int, str]]:
    """Departments for a select box, labelled 'Org / Dept', scoped."""
    clause = department_clause(current_scope())
    query = select(Department).join(Organization).order_by(Organization.name, Department.name)
    if clause is not None:
        query = query.where(clause)
    return [
        (d.id, f"{d.organization.name} / {d.name}") for d in db.session.execute(query).scalars()
    ]


def target_choices(*, managed_only: bool = False) -> list[tuple[str, str]]:
    """Places (whole organization 'o:ID' or department 'd:ID') for a select box, scoped."""
    scope = current_scope()
    choices: list[tuple[str, str]] = []
    for org_id, name in org_choices():
        if (scope.manages_org(org_id) or not managed_only) and scope.covers(org_id, None):
            choices.append((f"o:{org_id}", f"{name} (whole organization)"))
    for dept_id, label in dept_choices():
        choices.append((f"d:{dept_id}", label))
    return sorted(choices, key=lambda c: c[1].lower())


def parse_target(value: str) -> tuple[int, int | None]:
    """'o:3' -> (3, None); 'd:5' -> (org of 5, 5). Unknown -> (0, None) (service refuses)."""
    kind, _, raw = (value or "").partition(":")
    number = parse_id(raw)
    if number is None:
        return 0, None
    if kind == "o":
        return number, None
    dept = db.session.get(Department, number)
    return (dept.organization_id, dept.id) if dept else (0, None)
