"""External account binding keys (RFC 8555 §7.3.4): an admin creates one for an
organization or a department; the HMAC key is shown once and kept sealed; revoking it
stops every account registered with it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from app.acme import jose
from app.extensions import db
from app.models import (
    AcmeAccount,
    AcmeExternalKey,
    Admin,
    CertificateProfile,
    CertType,
    Department,
    Organization,
)
from app.models.types import utcnow
from app.pki import keystore
from app.services import audit
from app.services.ca import signing
from app.services.errors import Conflict, DomainError, Forbidden, NotFound
from app.services.scope import scope_of

# 256-bit HMAC keys (HS256 wants at least the hash's size, RFC 7518 §3.2).
HMAC_KEY_BYTES = 32


@dataclass(frozen=True)
class CreatedKey:
    """A new EAB credential; ``hmac_key`` (base64url) exists only here, never again."""

    key: AcmeExternalKey
    hmac_key: str


def _check_place(
    actor: Admin, org_id: int, dept_id: int | None
) -> tuple[Organization, Department | None]:
    """The place of a new key, if the admin may create keys there; a refusal for an
    existing organization/department is recorded as access.denied."""
    org = db.session.get(Organization, org_id)
    scope = scope_of(actor)
    if org is None:
        raise NotFound("No such organization.", field="organization")
    if not (scope.is_master or org.id in scope.visible_org_ids):
        raise audit.denied(
            actor=actor,
            what="organization",
            object_type="Organization",
            object_id=org.id,
            field="organization",
        )
    dept = None
    if dept_id is not None:
        dept = db.session.get(Department, dept_id)
        if dept is None:
            raise NotFound("No such department.", field="department")
        if not scope.covers(dept.organization_id, dept.id):
            raise audit.denied(
                actor=actor,
                what="department",
                object_type="Department",
                object_id=dept.id,
                field="department",
            )
        if dept.organization_id != org.id:
            raise DomainError(
                "That department does not belong to the chosen organization.", field="department"
            )
    if not scope.may(CertType.SSL, org.id, dept.id if dept else None):
        audit.record_denied(
            actor=actor,
            object_type="Department" if dept else "Organization",
            object_id=dept.id if dept else org.id,
            attempted="an ACME key without the SSL privilege there",
        )
        raise Forbidden(
            f"You may not create ACME keys for {org.name}{' / ' + dept.name if dept else ''}: "
            "that takes the SSL privilege there.",
            field="organization",
        )
    return org, dept


def create_key(
    *, actor: Admin, organization_id: int, department_id: int | None, label: str
) -> CreatedKey:
    """A new EAB key id and HMAC key for ACME clients of an organization/department.

    Raises:
        NotFound, Forbidden: a place outside the admin's scope or SSL privilege.
        DomainError: a label over 128 characters, a department of another organization.
    """
    label = label.strip()
    if len(label) > 128:
        raise DomainError("The label may be at most 128 characters.", field="label")
    org, dept = _check_place(actor, organization_id, department_id)
    secret = _shell_safe(HMAC_KEY_BYTES)
    key = AcmeExternalKey(
        key_id=jose.b64encode(_shell_safe(18)),
        sealed_hmac_key=keystore.seal(secret, signing.keks()),
        label=label,
        organization_id=org.id,
        department_id=dept.id if dept else None,
        created_by_id=actor.id,
    )
    db.session.add(key)
    db.session.flush()
    audit.record(
        action="acme.key.create",
        actor=actor,
        object_type="AcmeExternalKey",
        object_id=key.id,
        label=key.label or key.key_id,
        after={
            "key_id": key.key_id,
            "label": key.label,
            "organization": org.name,
            "department": dept.name if dept else None,
        },
        organization_id=org.id,
        department_id=key.department_id,
    )
    return CreatedKey(key, jose.b64encode(secret))


def get_key(*, actor: Admin, key_id: int) -> AcmeExternalKey:
    key = db.session.get(AcmeExternalKey, key_id)
    if key is None or not scope_of(actor).covers(key.organization_id, key.department_id):
        raise audit.not_found(actor=actor, what="ACME key", model=AcmeExternalKey, object_id=key_id)
    return key


def revoke_key(*, actor: Admin, key_id: int) -> AcmeExternalKey:
    """Revoke an EAB key: no new account may use it and its accounts stop working
    (every request checks the key). Revoking twice is a Conflict.

    Raises:
        NotFound: outside the admin's scope. Forbidden: without the SSL privilege there.
    """
    key = get_key(actor=actor, key_id=key_id)
    if not scope_of(actor).may(CertType.SSL, key.organization_id, key.department_id):
        raise Forbidden("You may not revoke ACME keys of this organization/department.")
    now = utcnow()
    moved = db.session.execute(
        update(AcmeExternalKey)
        .where(AcmeExternalKey.id == key.id, AcmeExternalKey.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by_id=actor.id)
    )
    if moved.rowcount != 1:
        raise Conflict(f"The ACME key {key.key_id} is already revoked.")
    accounts = (
        db.session.execute(select(AcmeAccount.id).where(AcmeAccount.external_key_id == key.id))
        .scalars()
        .all()
    )
    audit.record(
        action="acme.key.revoke",
        actor=actor,
        object_type="AcmeExternalKey",
        object_id=key.id,
        label=key.label or key.key_id,
        before={"revoked_at": None},
        after={"revoked_at": now, "revoked_by_id": actor.id, "accounts_stopped": list(accounts)},
        organization_id=key.organization_id,
        department_id=key.department_id,
    )
    db.session.expire(key)
    return key


def _shell_safe(size: int) -> bytes:
    """Random bytes whose base64url form does not start with "-": clients' command lines
    (certbot --eab-hmac-key KEY, lego --eab.hmac KEY) take such a value for an option and
    refuse it. Drawing again costs the first character's choice of 64 one value."""
    while True:
        value = secrets.token_bytes(size)
        if not jose.b64encode(value).startswith("-"):
            return value


def hmac_key_of(key: AcmeExternalKey) -> bytes:
    return keystore.unseal(key.sealed_hmac_key, signing.keks())


def list_keys(
    *, actor: Admin, organization_id: int, department_id: int | None
) -> list[AcmeExternalKey]:
    """The keys of exactly one place (ascending id), when the admin sees that place.

    Raises:
        NotFound: a place outside the admin's scope (or none such).
    """
    scope = scope_of(actor)
    org = db.session.get(Organization, organization_id)
    if org is None or not (scope.is_master or org.id in scope.visible_org_ids):
        raise NotFound("No such organization.", field="organization")
    if department_id is not None:
        dept = db.session.get(Department, department_id)
        if dept is None or dept.organization_id != org.id or not scope.covers(org.id, dept.id):
            raise NotFound("No such department.", field="department")
    elif not scope.covers(org.id, None):
        raise NotFound("No such organization.", field="organization")
    return list(
        db.session.execute(
            select(AcmeExternalKey)
            .where(
                AcmeExternalKey.organization_id == organization_id,
                AcmeExternalKey.department_id.is_(None)
                if department_id is None
                else AcmeExternalKey.department_id == department_id,
            )
            .order_by(AcmeExternalKey.id)
        ).scalars()
    )


def accounts_of(key_ids: list[int]) -> dict[int, list[AcmeAccount]]:
    """The ACME accounts registered with each key (ascending id)."""
    found: dict[int, list[AcmeAccount]] = {i: [] for i in key_ids}
    if key_ids:
        for account in db.session.execute(
            select(AcmeAccount)
            .where(AcmeAccount.external_key_id.in_(key_ids))
            .order_by(AcmeAccount.id)
        ).scalars():
            found[account.external_key_id].append(account)
    return found


def may_manage(actor: Admin, key: AcmeExternalKey) -> bool:
    """Whether the admin may create, rename, revoke (and read the HMAC key of) this key."""
    return scope_of(actor).may(CertType.SSL, key.organization_id, key.department_id)


def rename_key(*, actor: Admin, key_id: int, label: str) -> AcmeExternalKey:
    """Change what a key is for (its label); the key id and HMAC key stay.

    Raises:
        NotFound: outside the admin's scope. Forbidden: without the SSL privilege there.
        DomainError: an empty label or one over 128 characters.
    """
    key = get_key(actor=actor, key_id=key_id)
    if not may_manage(actor, key):
        raise Forbidden("You may not change ACME keys of this organization/department.")
    label = label.strip()
    if not label or len(label) > 128:
        raise DomainError("The label needs 1 to 128 characters.", field="label")
    if label != key.label:
        before = {"label": key.label}
        key.label = label
        audit.record(
            action="acme.key.update",
            actor=actor,
            object_type="AcmeExternalKey",
            object_id=key.id,
            label=key.label,
            before=before,
            after={"label": key.label},
            organization_id=key.organization_id,
            department_id=key.department_id,
        )
    return key


def directory_profiles() -> list[CertificateProfile]:
    """The active profiles with an ACME directory (ascending id): the ACME servers."""
    return list(
        db.session.execute(
            select(CertificateProfile)
            .where(CertificateProfile.acme_slug.is_not(None), CertificateProfile.active.is_(True))
            .order_by(CertificateProfile.id)
        ).scalars()
    )


def hmac_key_b64(key: AcmeExternalKey) -> str:
    """The HMAC key as an ACME client takes it (base64url, no padding)."""
    return jose.b64encode(hmac_key_of(key))
