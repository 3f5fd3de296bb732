"""Administrators: create, edit, delete, change password; nobody grants more than they hold."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import and_, exists, func, not_, or_, select
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import Admin, AdminKind, AdminScope, CertType, Department, Organization, Role
from app.models.notifications import NotificationType
from app.models.types import utcnow
from app.services import audit
from app.services.accounts.api_access import normalize_networks
from app.services.accounts.passwords import check_policy, hash_password, verify_password
from app.services.accounts.sessions import revoke_other_sessions
from app.services.errors import DomainError, Forbidden, NotFound, ValidationFailed
from app.services.notifications import events
from app.services.scope import SYSTEM, Actor, Scope, require_actor, scope_of

LOGIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$")
_T = TypeVar("_T")

AUDIT_FIELDS = (
    "login",
    "email",
    "full_name",
    "role",
    "active",
    "scopes",
)


class DuplicateLogin(DomainError):
    """Another administrator has that login (compared without case)."""


def _checked_networks(kind: AdminKind, api_networks: Sequence[str]) -> list[str] | None:
    networks = normalize_networks(api_networks)
    if networks and kind != AdminKind.API:
        raise DomainError("Source networks apply to API administrators only.", field="api_networks")
    return networks


@dataclass(frozen=True)
class Grant:
    """A scope to give an administrator: an organization, or one of its departments."""

    organization_id: int
    department_id: int | None
    privileges: frozenset[CertType]


def _scopes_json(admin: Admin) -> list[dict[str, object]]:
    return [
        {
            "organization_id": s.organization_id,
            "department_id": s.department_id,
            "privileges": sorted(p.value for p in s.privileges()),
        }
        for s in admin.scopes
    ]


def _snapshot(admin: Admin) -> dict[str, object]:
    data = audit.snapshot(admin, AUDIT_FIELDS[:-1])
    data["change_at_next_sign_in"] = bool(admin.must_change_password)
    data["scopes"] = _scopes_json(admin)
    if admin.kind == AdminKind.API:
        data["kind"] = admin.kind.value
        data["api_networks"] = list(admin.api_networks or [])
    return data


def normalize_email(value: str, *, field: str = "email") -> str:
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise DomainError(f"'{value}' is not a valid email address: {exc}", field=field) from exc


def visible_admins_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Admins the viewer may see: themselves, and others placed wholly inside their scope."""
    if scope.is_master:
        return None
    covered = []
    if scope.orgs:
        covered.append(AdminScope.organization_id.in_(sorted(scope.orgs)))
    if scope.depts:
        # NOT (NULL IN (...)) is NULL, not true: without the IS NOT NULL an organization-wide
        # scope (department NULL) would never count as outside a DRAO's departments.
        covered.append(
            AdminScope.department_id.is_not(None)
            & AdminScope.department_id.in_(sorted(scope.depts))
        )
    is_covered = or_(*covered) if covered else AdminScope.id.is_(None)
    outside = exists().where(AdminScope.admin_id == Admin.id, not_(is_covered))
    has_any = exists().where(AdminScope.admin_id == Admin.id)
    return or_(Admin.id == scope.admin_id, and_(Admin.role != Role.MRAO, has_any, not_(outside)))


def get_visible_admin(*, actor: Admin, admin_id: int) -> Admin:
    query = select(Admin).where(Admin.id == admin_id)
    clause = visible_admins_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    admin = db.session.execute(query).scalar_one_or_none()
    if admin is None:
        raise audit.not_found(actor=actor, what="administrator", model=Admin, object_id=admin_id)
    return admin


def _check_grants(
    *, actor: Admin, role: Role, grants: Sequence[Grant], existing: Admin | None
) -> list[tuple[Grant, Organization, Department | None]]:
    scope = scope_of(actor)
    if role.rank > actor.role.rank:
        raise Forbidden(
            f"A {actor.role.value} cannot create or promote an administrator to {role.value}.",
            field="role",
        )
    if role == Role.MRAO:
        if grants:
            raise DomainError(
                "An MRAO works account-wide; remove the organization/department scopes.",
                field="scopes",
            )
        return []
    if not grants:
        what = "an organization" if role == Role.RAO else "a department"
        raise DomainError(
            f"A {role.value} needs at least one scope: choose {what}.", field="scopes"
        )
    old: dict[tuple[int, int | None], frozenset[CertType]] = {}
    if existing is not None:
        old = {
            (s.organization_id, s.department_id): frozenset(s.privileges()) for s in existing.scopes
        }
    checked = []
    seen: set[tuple[int, int | None]] = set()
    for g in grants:
        org = db.session.get(Organization, g.organization_id)
        if org is None:
            raise NotFound("No such organization.", field="scopes")
        if not (scope.is_master or org.id in scope.visible_org_ids):
            raise audit.denied(
                actor=actor,
                what="organization",
                object_type="Organization",
                object_id=org.id,
                field="scopes",
            )
        dept = None
        if role == Role.RAO and g.department_id is not None:
            raise DomainError(
                "An RAO is scoped to whole organizations; choose DRAO for a department.",
                field="scopes",
            )
        if role == Role.DRAO:
            if g.department_id is None:
                raise DomainError(
                    f"A DRAO must be scoped to a department of {org.name}.", field="scopes"
                )
            dept = db.session.get(Department, g.department_id)
            if dept is None:
                raise NotFound("No such department.", field="scopes")
            if not scope.covers(dept.organization_id, dept.id):  # never named to this admin
                raise audit.denied(
                    actor=actor,
                    what="department",
                    object_type="Department",
                    object_id=dept.id,
                    field="scopes",
                )
            if dept.organization_id != org.id:
                raise DomainError(
                    f"Department '{dept.name}' does not belong to organization '{org.name}'.",
                    field="scopes",
                )
        key = (org.id, g.department_id)
        if key in seen:
            raise DomainError(
                f"The scope {org.name}{' / ' + dept.name if dept else ''} is listed twice.",
                field="scopes",
            )
        seen.add(key)
        if not scope.covers(org.id, g.department_id):
            place = f"{org.name} / {dept.name}" if dept else org.name
            raise Forbidden(
                f"You cannot grant a scope on {place}: it is outside your own.", field="scopes"
            )
        held = scope.privileges(org.id, g.department_id) | old.get(key, frozenset())
        extra = g.privileges - held
        if extra:
            names = ", ".join(sorted(t.label for t in extra))
            raise Forbidden(
                f"You cannot grant privileges you do not hold: {names}.", field="scopes"
            )
        checked.append((g, org, dept))
    return checked


def _apply_grants(
    admin: Admin, checked: list[tuple[Grant, Organization, Department | None]]
) -> None:
    admin.scopes.clear()
    db.session.flush()
    for g, org, dept in checked:
        admin.scopes.append(
            AdminScope(
                organization_id=org.id,
                department_id=dept.id if dept else None,
                **{t.value: t in g.privileges for t in CertType},
            )
        )


def _validate_login(login: str) -> str:
    login = login.strip()
    if not LOGIN_RE.match(login):
        raise DomainError(
            "The login must be 3-64 characters: letters, digits, '.', '_', '@' or '-', starting with a letter or digit.",
            field="login",
        )
    taken = db.session.execute(
        select(Admin.id).where(func.lower(Admin.login) == login.lower())
    ).first()
    if taken:
        raise DuplicateLogin(
            f"An administrator with the login '{login}' already exists.", field="login"
        )
    return login


def create_admin(
    *,
    actor: Actor,
    login: str,
    email: str,
    role: Role,
    password: str,
    full_name: str = "",
    grants: Sequence[Grant] = (),
    must_change_password: bool = False,
    kind: AdminKind = AdminKind.STANDARD,
    api_networks: Sequence[str] = (),
) -> Admin:
    """Create an administrator. SYSTEM (bootstrap, the command line) has full authority.
    An API administrator (kind API) authenticates on REST API calls only, optionally
    from ``api_networks`` alone (docs/api.md).

    Every problem of the form is reported at once (login, email, password, scopes).

    Raises:
        ValidationFailed: several problems, per field.
        DomainError: invalid or duplicate login, bad email, weak password, bad scopes.
        Forbidden: granting beyond the actor's own role, scope or privileges.
    """
    require_actor(actor)
    errors: dict[str, list[str]] = {}
    refusals: list[DomainError] = []

    def collect(field: str, check: Callable[[], _T]) -> _T | None:
        try:
            return check()
        except DomainError as exc:
            refusals.append(exc)
            errors.setdefault(exc.field or field, []).append(exc.message)
            return None

    login = collect("login", lambda: _validate_login(login)) or login
    email = collect("email", lambda: normalize_email(email)) or email
    collect("password", lambda: check_policy(password, login=login))
    networks = collect("api_networks", lambda: _checked_networks(kind, api_networks))
    checked = collect(
        "scopes",
        lambda: (
            _trusted_grants(role, grants)
            if actor is SYSTEM
            else _check_grants(actor=actor, role=role, grants=grants, existing=None)
        ),
    )
    if len(refusals) == 1:
        raise refusals[0]
    if refusals:
        raise ValidationFailed(errors)
    assert checked is not None
    admin = Admin(
        login=login,
        email=email,
        full_name=full_name.strip()[:128],
        role=role,
        password_hash=hash_password(password),
        created_by_id=actor.id,
        must_change_password=must_change_password and kind != AdminKind.API,
        kind=kind,
        api_networks=networks,
    )
    db.session.add(admin)
    db.session.flush()
    _apply_grants(admin, checked)
    db.session.flush()
    audit.record(
        action="admin.create",
        actor=actor,
        object_type="Admin",
        object_id=admin.id,
        label=login,
        after=_snapshot(admin),
    )
    events.emit(_admin_event(NotificationType.ADMIN_CREATED, admin, actor), actor=actor)
    return admin


def _admin_event(kind: NotificationType, admin: Admin, actor: Actor) -> events.Event:
    """An event placed where the administrator's first scope is (MRAO: account-wide)."""
    first = admin.scopes[0] if admin.scopes else None
    return events.Event(
        type=kind,
        label=f"{admin.login} ({admin.role.value})",
        organization_id=first.organization_id if first else None,
        department_id=first.department_id if first else None,
        facts={
            "Login": admin.login,
            "Role": admin.role.value,
            "E-mail": admin.email,
            "Scopes": "; ".join(str(s) for s in admin.scopes) or "account-wide",
            "By": actor.login,
        },
        path=f"/admin/admins/details/?id={admin.id}"
        if kind != NotificationType.ADMIN_DELETED
        else "",
    )


def _trusted_grants(
    role: Role, grants: Sequence[Grant]
) -> list[tuple[Grant, Organization, Department | None]]:
    """Grants from the command line: validated for shape, not for the (absent) actor's scope."""
    system = Admin(id=0, login="system", role=Role.MRAO, email="", password_hash="")
    return _check_grants(actor=system, role=role, grants=grants, existing=None)


def update_admin(
    *,
    actor: Admin,
    admin_id: int,
    email: str,
    full_name: str,
    role: Role,
    active: bool,
    grants: Sequence[Grant],
    new_password: str | None = None,
    must_change_password: bool = False,
    api_networks: Sequence[str] | None = None,
) -> Admin:
    """Edit another administrator (or oneself, except role, scopes and active flag).

    `must_change_password` applies with a `new_password` set for someone else: they choose
    their own at their next sign-in (never for an API administrator, who has none).
    ``api_networks`` None keeps an API administrator's source networks."""
    admin = get_visible_admin(actor=actor, admin_id=admin_id)
    before = _snapshot(admin)
    was_active = admin.active
    if api_networks is not None:
        networks = normalize_networks(api_networks)
        if networks and admin.kind != AdminKind.API:
            raise DomainError(
                "Source networks apply to API administrators only.", field="api_networks"
            )
        admin.api_networks = networks
    if admin.id == actor.id and (role != admin.role or not active or grants_differ(admin, grants)):
        raise Forbidden(
            "You cannot change your own role, scopes or active flag; ask another administrator."
        )
    if admin.role == Role.MRAO and (role != Role.MRAO or not active):
        _refuse_if_last_mrao(admin)
    if admin.id != actor.id:
        checked = _check_grants(actor=actor, role=role, grants=grants, existing=admin)
        admin.role = role
        admin.active = active
        _apply_grants(admin, checked)
    admin.email = normalize_email(email)
    admin.full_name = full_name.strip()[:128]
    if new_password:
        check_policy(new_password, login=admin.login)
        admin.password_hash = hash_password(new_password)
        admin.must_change_password = (
            must_change_password and admin.id != actor.id and admin.kind != AdminKind.API
        )
        revoke_other_sessions(admin=admin, keep_token=None)
    db.session.flush()
    db.session.refresh(admin)
    old, new = audit.changes(before, _snapshot(admin))
    if new_password:
        new["password"] = "changed"  # noqa: S105  (a marker that it changed, not a secret)
    audit.record(
        action="admin.update",
        actor=actor,
        object_type="Admin",
        object_id=admin.id,
        label=admin.login,
        before=old,
        after=new,
    )
    if was_active and not admin.active:
        events.emit(_admin_event(NotificationType.ADMIN_LOCKED, admin, actor), actor=actor)
    return admin


def grants_differ(admin: Admin, grants: Sequence[Grant]) -> bool:
    current = {
        (s.organization_id, s.department_id, frozenset(s.privileges())) for s in admin.scopes
    }
    wanted = {(g.organization_id, g.department_id, g.privileges) for g in grants}
    return current != wanted


def _refuse_if_last_mrao(admin: Admin) -> None:
    others = db.session.execute(
        select(func.count())
        .select_from(Admin)
        .where(Admin.role == Role.MRAO, Admin.active.is_(True), Admin.id != admin.id)
    ).scalar_one()
    if others == 0:
        raise DomainError(f"'{admin.login}' is the last active MRAO; create another MRAO first.")


def delete_admin(*, actor: Admin, admin_id: int) -> None:
    admin = get_visible_admin(actor=actor, admin_id=admin_id)
    if admin.id == actor.id:
        raise Forbidden("You cannot delete your own account.")
    if admin.role.rank > actor.role.rank:
        raise Forbidden(f"A {actor.role.value} cannot delete an {admin.role.value}.")
    if admin.role == Role.MRAO:
        _refuse_if_last_mrao(admin)
    before = _snapshot(admin)
    events.emit(_admin_event(NotificationType.ADMIN_DELETED, admin, actor), actor=actor)
    revoke_other_sessions(admin=admin, keep_token=None)
    audit.record(
        action="admin.delete",
        actor=actor,
        object_type="Admin",
        object_id=admin.id,
        label=admin.login,
        before=before,
    )
    db.session.delete(admin)
    db.session.flush()


def change_own_password(*, admin: Admin, current: str, new: str, keep_token: str | None) -> None:
    """My Profile: the current password is required; other sessions are signed out."""
    if not verify_password(admin.password_hash, current):
        audit.record(
            action="admin.password_change_failed",
            actor=admin,
            object_type="Admin",
            object_id=admin.id,
            label=admin.login,
            message="wrong current password",
        )
        raise DomainError("The current password is not correct.", field="current_password")
    check_policy(new, login=admin.login, field="new_password")
    if verify_password(admin.password_hash, new):
        raise DomainError(
            "The new password must differ from the current one.", field="new_password"
        )
    before = {"password_changed_at": audit.jsonable(admin.password_changed_at)}
    admin.password_hash = hash_password(new)
    admin.password_changed_at = utcnow()
    admin.must_change_password = False
    revoke_other_sessions(admin=admin, keep_token=keep_token)
    audit.record(
        action="admin.password_change",
        actor=admin,
        object_type="Admin",
        object_id=admin.id,
        label=admin.login,
        before=before,  # when, never what: no hash goes into the log
        after={"password_changed_at": audit.jsonable(admin.password_changed_at)},
    )


def dismiss_welcome(*, admin: Admin) -> None:
    """The admin hid the welcome panel (a preference, audited like every change)."""
    if not admin.welcome_dismissed:
        admin.welcome_dismissed = True
        audit.record(
            action="admin.preferences",
            actor=admin,
            object_type="Admin",
            object_id=admin.id,
            label=admin.login,
            before={"welcome_dismissed": False},
            after={"welcome_dismissed": True},
        )


def set_timezone(*, admin: Admin, timezone: str) -> None:
    """Times in the console are shown in this IANA zone (storage stays UTC)."""
    if timezone not in available_timezones():
        raise DomainError(
            f"'{timezone}' is not an IANA time zone (for example Europe/Berlin).", field="timezone"
        )
    if admin.timezone != timezone:
        audit.record(
            action="admin.preferences",
            actor=admin,
            object_type="Admin",
            object_id=admin.id,
            label=admin.login,
            before={"timezone": admin.timezone},
            after={"timezone": timezone},
        )
        admin.timezone = timezone
