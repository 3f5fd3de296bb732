"""Who a command acts as (--as LOGIN, else the first active MRAO) and where it places
what it makes (--org NAME [--dept NAME]): shared by the command groups."""

from __future__ import annotations

from sqlalchemy import select

from app.cli.core import fail
from app.extensions import db
from app.models import (
    Admin,
    Department,
    Organization,
    Role,
)


def operator(login: str | None) -> Admin:
    """The administrator a command acts as (--as LOGIN); default: the first active MRAO."""
    query = select(Admin).where(Admin.active.is_(True))
    query = (
        query.where(Admin.login == login)
        if login
        else query.where(Admin.role == Role.MRAO).order_by(Admin.id)
    )
    admin = db.session.execute(query).scalars().first()
    if admin is None:
        fail(
            f"no active administrator {login!r}"
            if login
            else "no active MRAO; run `flask --app wsgi bootstrap` first"
        )
    assert admin is not None
    return admin


def place(org_name: str, dept_name: str | None) -> tuple[int, int | None]:
    org = db.session.execute(
        select(Organization).where(Organization.name == org_name)
    ).scalar_one_or_none()
    if org is None:
        fail(f"no organization named '{org_name}'")
    assert org is not None
    if not dept_name:
        return org.id, None
    dept = db.session.execute(
        select(Department).where(Department.organization_id == org.id, Department.name == dept_name)
    ).scalar_one_or_none()
    if dept is None:
        fail(f"organization '{org_name}' has no department '{dept_name}'")
    assert dept is not None
    return org.id, dept.id
