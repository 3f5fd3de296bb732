"""First start: the first MRAO, the first organization and the system schedules."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.models import Admin, Organization, Role
from app.services.accounts import admins
from app.services.platform import scheduling
from app.services.scope import SYSTEM
from app.services.structure import orgs


@dataclass(frozen=True)
class BootstrapResult:
    admin_created: bool
    login: str
    generated_password: str | None
    org_created: bool


def generate_password(length: int = 20) -> str:
    alphabet = string.ascii_letters + string.digits + "-_.!"
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.isdigit() for c in pw)
            and any(c.isupper() for c in pw)
            and any(c.islower() for c in pw)
        ):
            return pw


def bootstrap(
    *,
    login: str,
    password: str | None,
    email: str,
    org_name: str,
    country: str,
    city: str = "",
    state: str = "",
) -> BootstrapResult:
    """Idempotent: does nothing that already exists. The caller commits."""
    scheduling.ensure_system_schedules()
    have_admin = (
        db.session.execute(
            select(func.count()).select_from(Admin).where(Admin.role == Role.MRAO)
        ).scalar_one()
        > 0
    )
    generated = None
    if not have_admin:
        if not password:
            password = generated = generate_password()
        admins.create_admin(
            actor=SYSTEM,
            login=login,
            email=email,
            role=Role.MRAO,
            password=password,
            full_name="Master administrator",
        )
    have_org = db.session.execute(select(func.count()).select_from(Organization)).scalar_one() > 0
    if not have_org:
        # Without a city or state SSL requests for it fail; the welcome asks when unset.
        orgs.create_org(
            actor=SYSTEM,
            data=orgs.OrgData(name=org_name, country=country, city=city, state=state),
        )
    return BootstrapResult(not have_admin, login, generated, not have_org)
