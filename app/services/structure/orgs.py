"""Organizations and departments: create, edit, delete (never leaving orphans)."""

from __future__ import annotations

from dataclasses import dataclass

import iso3166
from sqlalchemy import func, select

from app.extensions import db
from app.models import Admin, AdminScope, Delegation, Department, Organization
from app.pki.errors import NamePolicyError
from app.pki.subject_text import check_subject_text
from app.services import audit
from app.services.errors import DomainError, Forbidden, NotFound, ValidationFailed
from app.services.scope import SYSTEM, Actor, require_actor, scope_of

ORG_FIELDS = ("name", "address1", "address2", "address3", "city", "state", "postal_code", "country")
LIMITS = {
    "name": 128,
    "address1": 128,
    "address2": 128,
    "address3": 128,
    "city": 128,
    "state": 128,
    "postal_code": 40,
}

# Other aggregates register what refers to an organization/department, so that a
# delete is refused while anything still points at it: (label, model, org column, dept column).
REFERENCES: list[tuple[str, type, str, str | None]] = [
    ("domain delegations", Delegation, "organization_id", "department_id"),
    ("administrator scopes", AdminScope, "organization_id", "department_id"),
]


def register_reference(label: str, model: type, org_column: str, dept_column: str | None) -> None:
    REFERENCES.append((label, model, org_column, dept_column))


@dataclass(frozen=True)
class OrgData:
    name: str
    country: str
    address1: str = ""
    address2: str = ""
    address3: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def name_warnings(name: str) -> tuple[str, ...]:
    """What the person who saved this organization or department name should know, e.g.
    that it mixes Latin and Cyrillic letters (a look-alike); the name was accepted."""
    try:
        return tuple(_sentence(w) for w in check_subject_text(name).warnings)
    except NamePolicyError:
        return ()


@dataclass(frozen=True)
class NameProblem:
    kind: str  # "organization" | "department"
    id: int
    name: str
    problem: str


def names_needing_attention() -> list[NameProblem]:
    """Organization and department names saved before the subject-text rules that hold a
    refused character (control, bidirectional control ...): no certificate can be issued
    for them until they are renamed (names.build_subject refuses them)."""
    found = []
    rows: list[tuple[str, int, str]] = [
        ("organization", i, n)
        for i, n in db.session.execute(
            select(Organization.id, Organization.name).order_by(Organization.id)
        )
    ]
    rows += [
        ("department", i, n)
        for i, n in db.session.execute(
            select(Department.id, Department.name).order_by(Department.id)
        )
    ]
    for kind, item_id, name in rows:
        try:
            check_subject_text(name, label=f"{kind} name")
        except NamePolicyError as exc:
            found.append(NameProblem(kind, item_id, name, str(exc)))
    return found


def country_name(code: str) -> str:
    entry = iso3166.countries_by_alpha2.get(code.upper())
    return entry.name if entry else code


def _clean(data: OrgData, *, org_id: int | None) -> dict[str, str]:
    values = {f: str(getattr(data, f) or "").strip() for f in ORG_FIELDS}
    errors: dict[str, list[str]] = {}
    if not values["name"]:
        errors["name"] = ["The organization name is required."]
    else:
        try:
            # It becomes the O of every certificate: no control or bidi characters, NFC.
            values["name"] = check_subject_text(values["name"], label="organization name").value
        except NamePolicyError as exc:
            errors["name"] = [_sentence(str(exc))]
    for field, limit in LIMITS.items():
        if len(values[field]) > limit:
            errors.setdefault(field, []).append(f"At most {limit} characters.")
    country = values["country"].upper()
    if country not in iso3166.countries_by_alpha2:
        errors["country"] = [
            f"'{values['country']}' is not an ISO 3166 two-letter country code (for example DE, US, GB)."
        ]
    values["country"] = country
    if values["name"] and "name" not in errors:
        clash = select(Organization.id).where(
            func.lower(Organization.name) == values["name"].lower()
        )
        if org_id is not None:
            clash = clash.where(Organization.id != org_id)
        if db.session.execute(clash).first():
            errors["name"] = [f"An organization named '{values['name']}' already exists."]
    if errors:
        raise ValidationFailed(errors)
    return values


def get_org(*, actor: Admin, org_id: int) -> Organization:
    org = db.session.get(Organization, org_id)
    if org is None or not (actor.is_master or org.id in scope_of(actor).visible_org_ids):
        raise audit.not_found(
            actor=actor, what="organization", model=Organization, object_id=org_id
        )
    return org


def create_org(*, actor: Actor, data: OrgData) -> Organization:
    """Only an MRAO (or the system: bootstrap, the command line) creates organizations."""
    if not require_actor(actor).is_master:
        raise Forbidden("Only an MRAO can create organizations.")
    org = Organization(**_clean(data, org_id=None))
    db.session.add(org)
    db.session.flush()
    audit.record(
        action="organization.create",
        actor=actor,
        object_type="Organization",
        object_id=org.id,
        label=org.name,
        after=audit.snapshot(org, ORG_FIELDS),
        organization_id=org.id,
    )
    return org


def update_org(*, actor: Admin, org_id: int, data: OrgData) -> Organization:
    org = get_org(actor=actor, org_id=org_id)
    if not scope_of(actor).manages_org(org.id):
        raise Forbidden("You may view this organization but not change it.")
    before = audit.snapshot(org, ORG_FIELDS)
    for key, value in _clean(data, org_id=org.id).items():
        setattr(org, key, value)
    db.session.flush()
    old, new = audit.changes(before, audit.snapshot(org, ORG_FIELDS))
    if new:
        audit.record(
            action="organization.update",
            actor=actor,
            object_type="Organization",
            object_id=org.id,
            label=org.name,
            before=old,
            after=new,
            organization_id=org.id,
        )
    return org


def set_location(*, actor: Admin, org_id: int, city: str, state: str) -> Organization:
    """The welcome's first step: the city and state/province that SSL subjects of the
    organization carry (L and ST; the CA/Browser Forum BRs 7.1.4.2.2 want at least one
    of them beside O). Every other field is kept.

    Raises:
        DomainError: neither a city nor a state was given.
    """
    if not city.strip() and not state.strip():
        raise DomainError(
            "Give the city (and the state or province): SSL certificates for this "
            "organization name where it is.",
            field="city",
        )
    org = get_org(actor=actor, org_id=org_id)
    fields = {f: getattr(org, f) or "" for f in ORG_FIELDS}
    fields.update(city=city, state=state)
    return update_org(actor=actor, org_id=org_id, data=OrgData(**fields))


def _refuse_if_referenced(what: str, org_id: int, dept_id: int | None) -> None:
    found = []
    if dept_id is None:
        n = db.session.execute(
            select(func.count()).select_from(Department).where(Department.organization_id == org_id)
        ).scalar_one()
        if n:
            found.append(f"{n} departments")
    for label, model, org_col, dept_col in REFERENCES:
        if dept_id is None:
            cond = getattr(model, org_col) == org_id
        elif dept_col is not None:
            cond = getattr(model, dept_col) == dept_id
        else:
            continue
        n = db.session.execute(select(func.count()).select_from(model).where(cond)).scalar_one()
        if n:
            found.append(f"{n} {label}")
    if found:
        raise DomainError(
            f"{what} cannot be deleted while it still has {', '.join(found)}. Move or delete them first."
        )


def delete_org(*, actor: Admin, org_id: int) -> None:
    org = get_org(actor=actor, org_id=org_id)
    if not actor.is_master:
        raise Forbidden("Only an MRAO can delete organizations.")
    _refuse_if_referenced(f"Organization '{org.name}'", org.id, None)
    audit.record(
        action="organization.delete",
        actor=actor,
        object_type="Organization",
        object_id=org.id,
        label=org.name,
        before=audit.snapshot(org, ORG_FIELDS),
        organization_id=org.id,
    )
    db.session.delete(org)
    db.session.flush()


def get_dept(*, actor: Admin, dept_id: int) -> Department:
    dept = db.session.get(Department, dept_id)
    if dept is None or not scope_of(actor).covers(dept.organization_id, dept.id):
        raise audit.not_found(actor=actor, what="department", model=Department, object_id=dept_id)
    return dept


def _clean_dept_name(name: str, org_id: int, dept_id: int | None) -> str:
    name = name.strip()
    if not name:
        raise DomainError("The department name is required.", field="name")
    try:
        # It becomes the OU of client, code signing and device certificates.
        name = check_subject_text(name, label="department name").value
    except NamePolicyError as exc:
        raise DomainError(_sentence(str(exc)), field="name") from exc
    if len(name) > 128:
        raise DomainError("At most 128 characters.", field="name")
    clash = select(Department.id).where(
        Department.organization_id == org_id, func.lower(Department.name) == name.lower()
    )
    if dept_id is not None:
        clash = clash.where(Department.id != dept_id)
    if db.session.execute(clash).first():
        raise DomainError(
            f"This organization already has a department named '{name}'.", field="name"
        )
    return name


def create_dept(*, actor: Actor, organization_id: int, name: str) -> Department:
    """An MRAO, or an RAO of the organization, adds a department."""
    if require_actor(actor) is SYSTEM:
        org = db.session.get(Organization, organization_id)
        if org is None:
            raise NotFound("No such organization.", field="organization")
    else:
        org = get_org(actor=actor, org_id=organization_id)
        if not scope_of(actor).manages_org(org.id):
            raise Forbidden(f"You cannot add departments to '{org.name}'.", field="organization")
    dept = Department(organization_id=org.id, name=_clean_dept_name(name, org.id, None))
    db.session.add(dept)
    db.session.flush()
    audit.record(
        action="department.create",
        actor=actor,
        object_type="Department",
        object_id=dept.id,
        label=f"{org.name} / {dept.name}",
        after={"name": dept.name, "organization_id": org.id},
        organization_id=org.id,
        department_id=dept.id,
    )
    return dept


def update_dept(*, actor: Admin, dept_id: int, name: str) -> Department:
    dept = get_dept(actor=actor, dept_id=dept_id)
    if not scope_of(actor).manages_org(dept.organization_id):
        raise Forbidden("You may view this department but not rename it.")
    before = dept.name
    dept.name = _clean_dept_name(name, dept.organization_id, dept.id)
    db.session.flush()
    if before != dept.name:
        audit.record(
            action="department.update",
            actor=actor,
            object_type="Department",
            object_id=dept.id,
            label=str(dept),
            before={"name": before},
            after={"name": dept.name},
            organization_id=dept.organization_id,
            department_id=dept.id,
        )
    return dept


def delete_dept(*, actor: Admin, dept_id: int) -> None:
    dept = get_dept(actor=actor, dept_id=dept_id)
    if not scope_of(actor).manages_org(dept.organization_id):
        raise Forbidden("You cannot delete this department.")
    _refuse_if_referenced(f"Department '{dept.name}'", dept.organization_id, dept.id)
    audit.record(
        action="department.delete",
        actor=actor,
        object_type="Department",
        object_id=dept.id,
        label=str(dept),
        before={"name": dept.name, "organization_id": dept.organization_id},
        organization_id=dept.organization_id,
        department_id=dept.id,
    )
    db.session.delete(dept)
    db.session.flush()
