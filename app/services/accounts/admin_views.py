"""Administrators as a list the viewer may see, with the REST API's filters (reads only;
changes go through app/services/accounts/admins.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.models import Admin, AdminKind, AdminScope, Role
from app.services.accounts.admins import visible_admins_clause
from app.services.scope import Actor, scope_of


@dataclass(frozen=True)
class AdminFilter:
    kind: AdminKind | None = None
    login: str | None = None
    email: str | None = None
    active: bool | None = None
    organization_id: int | None = None
    department_id: int | None = None
    role: Role | None = None


def list_admins(*, actor: Actor, flt: AdminFilter = AdminFilter()) -> list[Admin]:
    """Visible administrators (the viewer always among them), ascending id."""
    query = select(Admin).order_by(Admin.id)
    clause = visible_admins_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    if flt.kind is not None:
        query = query.where(Admin.kind == flt.kind)
    if flt.login is not None:
        query = query.where(func.lower(Admin.login) == flt.login.strip().lower())
    if flt.email is not None:
        query = query.where(func.lower(Admin.email) == flt.email.strip().lower())
    if flt.active is not None:
        query = query.where(Admin.active.is_(flt.active))
    if flt.role is not None:
        query = query.where(Admin.role == flt.role)
    if flt.department_id is not None:
        query = query.where(
            Admin.id.in_(
                select(AdminScope.admin_id).where(AdminScope.department_id == flt.department_id)
            )
        )
    elif flt.organization_id is not None:
        query = query.where(
            Admin.id.in_(
                select(AdminScope.admin_id).where(AdminScope.organization_id == flt.organization_id)
            )
        )
    return list(db.session.execute(query).scalars())
