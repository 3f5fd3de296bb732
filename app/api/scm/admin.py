"""SCM admin service (contract §6): administrators in the caller's scope.

SCM's credentials ``{role, orgId}`` are Certwright's scopes: ``RAO_SSL`` on organization 5 is
an RAO scope on organization 5 with the SSL privilege; ``DRAO_*`` name a department (its API
id, 1,000,000 + id). An administrator is MRAO, RAO or DRAO, not a mix (docs/api.md)."""

from __future__ import annotations

import re
from typing import Any

from flask import Response

from app.api.scm.base import (
    ApiError,
    Codes,
    actor,
    answer,
    body,
    call,
    commit,
    created,
    department_api_id,
    empty,
    get_str,
    get_str_list,
    invalid,
    page,
    paging,
    query_int,
    query_str,
    route,
    slice_page,
    split_org_id,
)
from app.models import Admin, AdminKind, CertType, Role
from app.services.accounts import admin_views, admins
from app.services.structure import domain_views

ROLE_TYPES = {
    "SSL": CertType.SSL,
    "SMIME": CertType.CLIENT,
    "CS": CertType.CODE_SIGNING,
    "DEVICE": CertType.DEVICE,
}
TYPE_ROLES = {t: n for n, t in ROLE_TYPES.items()}
CREDENTIAL = re.compile(r"(RAO|DRAO)_(SSL|SMIME|CS|DEVICE)")
# What every administrator may do inside their scope in Certwright, in SCM's words.
SCOPED_PRIVILEGES = [
    "allowCreate",
    "allowEdit",
    "allowDelete",
    "allowDCV",
    "allowSslChanging",
    "allowManageDomains",
]


def _credentials(admin: Admin) -> list[dict[str, Any]]:
    if admin.role == Role.MRAO:
        return [{"role": "MRAO"}]
    items = []
    for scope in admin.scopes:
        org_ref = (
            department_api_id(scope.department_id) if scope.department_id else scope.organization_id
        )
        for cert_type in CertType:
            if cert_type in scope.privileges():
                items.append(
                    {"role": f"{admin.role.value}_{TYPE_ROLES[cert_type]}", "orgId": org_ref}
                )
    return items


def _names(admin: Admin) -> tuple[str, str]:
    forename, _, surname = admin.full_name.partition(" ")
    return forename, surname


def summary(admin: Admin) -> dict[str, Any]:
    forename, surname = _names(admin)
    return {
        "id": admin.id,
        "type": admin.kind.value,
        "login": admin.login,
        "forename": forename,
        "surname": surname,
        "email": admin.email,
    }


def details(admin: Admin) -> dict[str, Any]:
    changed = admin.password_changed_at or admin.created_at
    data = {
        **summary(admin),
        "status": "Active" if admin.active else "Suspended",
        "activeStatus": "ACTIVE" if admin.active else "SUSPENDED",
        "created": admin.created_at.date().isoformat(),
        "modified": changed.date().isoformat(),
        "lastPasswordChange": changed.date().isoformat(),
        "credentials": _credentials(admin),
        "privileges": SCOPED_PRIVILEGES + (["wsApiUseOnly"] if admin.is_api else []),
        "passwordState": "ALIVE",
        "failedAttempts": 0,
    }
    return data


def _not_found(admin_id: int) -> tuple[int, str]:
    return (-1, f"Administrator '{admin_id}' not found.")


@route("/admin/v1", methods=["GET"])
def list_admins() -> Response:
    paging_ = paging()
    kind = query_str("type")
    role = query_str("role")
    state = query_str("activeState")
    org = query_int("orgId")
    organization_id, department_id = split_org_id(org) if org is not None else (None, None)
    if kind is not None and kind.upper() not in AdminKind.__members__:
        return page([], 0)  # IDP and SAS administrators do not exist here
    role_value = None
    if role is not None:
        match = CREDENTIAL.fullmatch(role.upper())
        if role.upper() == "MRAO":
            role_value = Role.MRAO
        elif match:
            role_value = Role(match.group(1))
        else:
            invalid("role", "Expected MRAO, RAO_SSL, DRAO_SMIME, ...")
    found = admin_views.list_admins(
        actor=actor(),
        flt=admin_views.AdminFilter(
            kind=AdminKind(kind.upper()) if kind else None,
            login=query_str("login"),
            email=query_str("email"),
            active=None if state is None else state.upper() == "ACTIVE",
            organization_id=organization_id,
            department_id=department_id,
            role=role_value,
        ),
    )
    return page([summary(a) for a in slice_page(found, paging_)], len(found))


@route("/admin/v1/idp", methods=["GET"])
def identity_providers() -> Response:
    return answer([])  # administrators sign in with Certwright passwords only


@route("/admin/v1/<int:admin_id>", methods=["GET"])
def admin_details(admin_id: int) -> Response:
    admin = call(
        lambda: admins.get_visible_admin(actor=actor(), admin_id=admin_id),
        Codes(not_found=_not_found(admin_id)),
    )
    return answer(details(admin))


def _grants(items: Any) -> tuple[Role, list[admins.Grant]]:
    """SCM credentials as one role and Certwright grants (privileges merged per place)."""
    if items is None or items == []:
        raise ApiError(400, -221, "Credentials are missing: give at least one {role, orgId}.")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiError(400, -221, "Credentials must be an array of {role, orgId} objects.")
    roles: set[Role] = set()
    places: dict[tuple[int, int | None], set[CertType]] = {}
    for item in items:
        name = str(item.get("role") or "").upper()
        if name == "MRAO":
            roles.add(Role.MRAO)
            continue
        match = CREDENTIAL.fullmatch(name)
        if match is None:
            raise ApiError(400, -223, f"Credential role '{item.get('role')}' is invalid.")
        role = Role(match.group(1))
        roles.add(role)
        ref = item.get("orgId")
        if not isinstance(ref, int) or isinstance(ref, bool):
            raise ApiError(
                400,
                -223,
                f"Credential {name} needs the orgId of its {'department' if role == Role.DRAO else 'organization'}.",
            )
        organization_id, department_id = split_org_id(ref)
        if (role == Role.DRAO) != (department_id is not None):
            what = "a department" if role == Role.DRAO else "an organization"
            raise ApiError(400, -223, f"Credential {name} binds to {what}; orgId {ref} is not one.")
        if department_id is not None:
            organization_id = call(
                lambda d=department_id: domain_views.organization_of_department(
                    actor=actor(), department_id=d
                ),
                Codes(not_found=(-223, f"Credential {name}: organization '{ref}' not found.")),
            )
        assert organization_id is not None
        places.setdefault((organization_id, department_id), set()).add(ROLE_TYPES[match.group(2)])
    if len(roles) > 1:
        raise ApiError(
            400,
            -223,
            "An administrator is MRAO, RAO or DRAO: credentials may not mix "
            + ", ".join(sorted(r.value for r in roles))
            + ".",
        )
    role = roles.pop()
    grants = [admins.Grant(o, d, frozenset(p)) for (o, d), p in places.items()]
    return role, grants


ADMIN_CODES = Codes(
    by_class={admins.DuplicateLogin: (-39, "Login already exists")},
    by_field={
        "email": (-237, "Client Admin's Email is invalid"),
        "scopes": (-223, "The credentials are invalid."),
        "role": (-221, "The credentials are invalid."),
    },
)


def _kind(data: dict[str, Any]) -> AdminKind:
    value = (get_str(data, "type") or "STANDARD").upper()
    privileges = get_str_list(data, "privileges") or []
    if value not in AdminKind.__members__:
        invalid("type", "Certwright has STANDARD and API administrators.")
    if "wsApiUseOnly" in privileges:
        return AdminKind.API
    return AdminKind(value)


@route("/admin/v1", methods=["POST"])
def create_admin() -> Response:
    data = body()
    login = get_str(data, "login", required=True)
    email = get_str(data, "email", required=True)
    password = get_str(data, "password")
    assert login is not None and email is not None
    if data.get("identityProviderId") is not None:
        invalid("identityProviderId", "Certwright has no identity providers.")
    if not password:
        invalid("password", "A password is required.")
    if len(password) > 64:
        invalid("password", "At most 64 characters.")
    forename = get_str(data, "forename", max_length=64) or ""
    surname = get_str(data, "surname", max_length=64) or ""
    role, grants = _grants(data.get("credentials"))
    kind = _kind(data)
    admin = call(
        lambda: admins.create_admin(
            actor=actor(),
            login=login,
            email=email,
            role=role,
            password=password,
            full_name=f"{forename} {surname}".strip(),
            grants=grants,
            kind=kind,
        ),
        ADMIN_CODES,
    )
    commit()
    return created("scm.admin_details", admin_id=admin.id)


@route("/admin/v1/<int:admin_id>", methods=["PUT"])
def update_admin(admin_id: int) -> Response:
    data = body()
    me = actor()
    current = call(
        lambda: admins.get_visible_admin(actor=me, admin_id=admin_id),
        Codes(not_found=_not_found(admin_id)),
    )
    forename, surname = _names(current)
    forename = get_str(data, "forename", max_length=64) or forename
    surname = get_str(data, "surname", max_length=64) or surname
    email = get_str(data, "email") or current.email
    password = get_str(data, "password")
    if password is not None and len(password) > 64:
        invalid("password", "At most 64 characters.")
    state = get_str(data, "activeStatus")
    active = current.active if state is None else state.upper() == "ACTIVE"
    if data.get("credentials") is not None:
        role, grants = _grants(data.get("credentials"))
    else:
        role = current.role
        grants = [
            admins.Grant(s.organization_id, s.department_id, frozenset(s.privileges()))
            for s in current.scopes
        ]
    call(
        lambda: admins.update_admin(
            actor=me,
            admin_id=admin_id,
            email=email,
            full_name=f"{forename} {surname}".strip(),
            role=role,
            active=active,
            grants=grants,
            new_password=password or None,
        ),
        Codes(
            not_found=_not_found(admin_id),
            by_class=ADMIN_CODES.by_class,
            by_field=ADMIN_CODES.by_field,
        ),
    )
    commit()
    return empty(200)


@route("/admin/v1/<int:admin_id>", methods=["DELETE"])
def delete_admin(admin_id: int) -> Response:
    call(
        lambda: admins.delete_admin(actor=actor(), admin_id=admin_id),
        Codes(not_found=_not_found(admin_id)),
    )
    commit()
    return empty(204)
