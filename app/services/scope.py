"""What an administrator may see and touch: one place that turns scopes into filters.

Rules (also in docs/authorization.md):
- MRAO: everything.
- RAO: the organizations of their scopes, every department in them, and the rows of both.
- DRAO: the departments of their scopes and their rows; the parent organization is
  visible by name (read-only), and organization-level domain delegations of that
  organization are visible because they cover its departments.
Privileges (SSL, Client, Code Signing, Device) are held per scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from sqlalchemy import false, or_, select
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import Admin, CertType, Department, Organization, Role
from app.services.errors import Forbidden, NotFound


class SystemActor:
    """The system acting on its own authority: scheduled sweeps, first-start bootstrap,
    and an operator's command on the server (who holds the database and keys anyway).

    Passed explicitly as ``SYSTEM``; ``None`` is never an actor, so a front door that forgets
    to pass its admin fails loudly instead of acting with an MRAO's powers.
    """

    id: Final = None
    login: Final = "system"
    role: Final = Role.MRAO
    is_master: Final = True

    def __repr__(self) -> str:
        return "SYSTEM"


SYSTEM: Final = SystemActor()
Actor: TypeAlias = Admin | SystemActor


def require_actor(actor: object) -> Actor:
    """The actor itself; a programming error (TypeError) for anything else, None included."""
    if isinstance(actor, Admin | SystemActor):
        return actor
    raise TypeError(f"actor must be an Admin or scope.SYSTEM, not {actor!r}")


@dataclass(frozen=True)
class Scope:
    admin_id: int
    is_master: bool
    # org_id -> privileges held on the whole organization (RAO scopes)
    orgs: dict[int, frozenset[CertType]] = field(default_factory=dict)
    # dept_id -> (org_id, privileges) (DRAO scopes)
    depts: dict[int, tuple[int, frozenset[CertType]]] = field(default_factory=dict)

    @property
    def org_ids(self) -> frozenset[int]:
        """Organizations held as a whole (RAO)."""
        return frozenset(self.orgs)

    @property
    def dept_ids(self) -> frozenset[int]:
        return frozenset(self.depts)

    @property
    def visible_org_ids(self) -> frozenset[int]:
        """Organizations whose existence the admin may see (own + parents of own depts)."""
        return frozenset(self.orgs) | frozenset(org for org, _ in self.depts.values())

    def manages_org(self, org_id: int | None) -> bool:
        """May edit the organization itself and everything in it."""
        return self.is_master or (org_id is not None and org_id in self.orgs)

    def covers(self, org_id: int | None, dept_id: int | None) -> bool:
        """Is a row placed at (org, dept) inside this scope?"""
        if self.is_master:
            return True
        if org_id is None:
            return False
        if org_id in self.orgs:
            return True
        return dept_id is not None and dept_id in self.depts and self.depts[dept_id][0] == org_id

    def privileges(self, org_id: int | None, dept_id: int | None) -> frozenset[CertType]:
        if self.is_master:
            return frozenset(CertType)
        held: set[CertType] = set()
        if org_id is not None and org_id in self.orgs:
            held |= self.orgs[org_id]
        if dept_id is not None and dept_id in self.depts and self.depts[dept_id][0] == org_id:
            held |= self.depts[dept_id][1]
        return frozenset(held)

    def may(self, cert_type: CertType, org_id: int | None, dept_id: int | None) -> bool:
        return cert_type in self.privileges(org_id, dept_id)

    def row_filter(self, org_col: Any, dept_col: Any | None = None) -> ColumnElement[bool] | None:
        """A WHERE clause for rows placed by (org_col, dept_col); None means no filter."""
        if self.is_master:
            return None
        clauses: list[ColumnElement[bool]] = []
        if self.orgs:
            clauses.append(org_col.in_(sorted(self.orgs)))
        if self.depts and dept_col is not None:
            clauses.append(dept_col.in_(sorted(self.depts)))
        return or_(*clauses) if clauses else false()

    def type_filter(
        self, org_col: Any, dept_col: Any, cert_type: CertType
    ) -> ColumnElement[bool] | None:
        """Rows in scope for which the admin holds the privilege for cert_type."""
        if self.is_master:
            return None
        clauses: list[ColumnElement[bool]] = []
        orgs = sorted(o for o, p in self.orgs.items() if cert_type in p)
        depts = sorted(d for d, (_, p) in self.depts.items() if cert_type in p)
        if orgs:
            clauses.append(org_col.in_(orgs))
        if depts:
            clauses.append(dept_col.in_(depts))
        return or_(*clauses) if clauses else false()


def scope_of(admin: Actor) -> Scope:
    """Build the admin's scope from their AdminScope rows (the system's: everything)."""
    if require_actor(admin) is SYSTEM:
        return Scope(admin_id=0, is_master=True)
    assert isinstance(admin, Admin)
    if admin.is_master:
        return Scope(admin_id=admin.id, is_master=True)
    orgs: dict[int, set[CertType]] = {}
    depts: dict[int, tuple[int, set[CertType]]] = {}
    for s in admin.scopes:
        if s.department_id is None:
            orgs.setdefault(s.organization_id, set()).update(s.privileges())
        else:
            depts.setdefault(s.department_id, (s.organization_id, set()))[1].update(s.privileges())
    return Scope(
        admin_id=admin.id,
        is_master=False,
        orgs={k: frozenset(v) for k, v in orgs.items()},
        depts={k: (o, frozenset(p)) for k, (o, p) in depts.items()},
    )


def visible_department_ids(scope: Scope) -> set[int] | None:
    """All departments the admin may see; None means all (MRAO)."""
    clause = department_clause(scope)
    if clause is None:
        return None
    return set(db.session.execute(select(Department.id).where(clause)).scalars())


def organization_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Organizations whose existence the admin may see."""
    from app.models import Organization

    if scope.is_master:
        return None
    ids = sorted(scope.visible_org_ids)
    return Organization.id.in_(ids) if ids else false()


def managed_organization_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Organizations the admin manages as a whole (MRAO: all; RAO: theirs; DRAO: none)."""
    from app.models import Organization

    if scope.is_master:
        return None
    return Organization.id.in_(sorted(scope.orgs)) if scope.orgs else false()


def department_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Departments the admin may see: all of their organizations' plus their own."""
    if scope.is_master:
        return None
    parts: list[ColumnElement[bool]] = []
    if scope.orgs:
        parts.append(Department.organization_id.in_(sorted(scope.orgs)))
    if scope.depts:
        parts.append(Department.id.in_(sorted(scope.depts)))
    return or_(*parts) if parts else false()


def manageable_org(
    actor: Actor, organization_id: int, *, what: str = "the mail templates"
) -> Organization:
    """The organization whose own settings (``what``) the actor may change: an MRAO, or
    the RAO holding it.

    Raises:
        NotFound: no such organization, or one the actor cannot see.
        Forbidden: visible (a DRAO's), but not theirs to change.
    """
    org = db.session.get(Organization, organization_id)
    scope = scope_of(require_actor(actor))
    if org is None or not (scope.is_master or org.id in scope.visible_org_ids):
        raise NotFound("No such organization.")
    if not scope.manages_org(org.id):
        raise Forbidden(f"You may not change {what} of {org.name}.")
    return org
