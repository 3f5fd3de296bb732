"""ACME accounts (RFC 8555 §7.3): registration with external account binding, lookup by
key id, update and deactivation. Every refusal is an AcmeProblem."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import joinedload

from app.acme import jose, messages
from app.acme.problems import AcmeProblem
from app.extensions import db
from app.models import (
    AcmeAccount,
    AcmeExternalKey,
    AcmeOrder,
    Certificate,
    CertificateRequest,
)
from app.models.types import utcnow
from app.services import audit
from app.services.acme import external_keys
from app.services.scope import SYSTEM

ACCOUNT_FIELDS = ("status", "contact", "organization_id", "department_id", "external_key_id")
# "Last used" is written when older than this: one UPDATE a minute per busy account, not
# one per request.
LAST_USED_STEP = timedelta(minutes=1)


@dataclass(frozen=True)
class Registered:
    account: AcmeAccount
    created: bool


def _check_usable(account: AcmeAccount) -> None:
    _check_status(account.status, key_revoked=account.external_key.is_revoked)


def _check_status(status: str, *, key_revoked: bool) -> None:
    if status != messages.Status.VALID:
        raise AcmeProblem("unauthorized", f"the account is {status}")
    if key_revoked:
        raise AcmeProblem(
            "unauthorized",
            "the external account binding key of this account was revoked by an administrator",
        )


def register(
    *, jwk: jose.Jwk, request: messages.NewAccount, url: str, user_agent: str
) -> Registered:
    """newAccount: the existing account of this key, or a new one bound by EAB.

    Raises:
        AcmeProblem: accountDoesNotExist (onlyReturnExisting), externalAccountRequired,
            unauthorized (unknown, revoked or wrongly MACed EAB key; deactivated account).
    """
    thumbprint = jwk.thumbprint()
    existing = db.session.execute(
        select(AcmeAccount).where(AcmeAccount.thumbprint == thumbprint)
    ).scalar_one_or_none()
    if existing is not None:
        _check_usable(existing)
        mark_used(existing)
        return Registered(existing, False)
    if request.only_return_existing:
        raise AcmeProblem("accountDoesNotExist", "no account exists for this key")
    if request.external_binding is None:
        raise AcmeProblem(
            "externalAccountRequired",
            "this server requires external account binding: ask your Certwright administrator "
            "for an EAB key id and HMAC key (Settings > ACME accounts)",
        )
    kid = jose.verify_external_binding(request.external_binding, account_jwk=jwk, url=url)
    key = db.session.execute(
        select(AcmeExternalKey).where(AcmeExternalKey.key_id == kid)
    ).scalar_one_or_none()
    if key is None or not jose.check_binding_mac(
        request.external_binding, external_keys.hmac_key_of(key)
    ):
        raise AcmeProblem(
            "unauthorized", "the external account binding key id or its MAC is not right"
        )
    if key.is_revoked:
        raise AcmeProblem("unauthorized", "the external account binding key was revoked")
    account = AcmeAccount(
        thumbprint=thumbprint,
        jwk=jwk.as_dict(),
        contact=list(request.contact),
        status=messages.Status.VALID.value,
        external_key_id=key.id,
        organization_id=key.organization_id,
        department_id=key.department_id,
        user_agent=user_agent[:255],
        last_used_at=utcnow(),
    )
    db.session.add(account)
    db.session.flush()
    with audit.source(label=f"ACME account #{account.id}"):
        audit.record(
            action="acme.account.create",
            actor=SYSTEM,
            object_type="AcmeAccount",
            object_id=account.id,
            label=", ".join(account.contact) or f"ACME account #{account.id}",
            after={
                **audit.snapshot(account, ACCOUNT_FIELDS),
                "key_id": key.key_id,
                "user_agent": account.user_agent,
            },
            organization_id=account.organization_id,
            department_id=account.department_id,
        )
    return Registered(account, True)


def authenticate(account_id: int) -> AcmeAccount:
    """The account a kid names, if it may act.

    Raises:
        AcmeProblem: accountDoesNotExist, or unauthorized (deactivated, EAB key revoked).
    """
    # With its EAB key in the same query: every request checks the key is not revoked.
    account = db.session.get(
        AcmeAccount, account_id, options=[joinedload(AcmeAccount.external_key)]
    )
    if account is None:
        raise AcmeProblem("accountDoesNotExist", f"no account #{account_id}")
    _check_usable(account)
    mark_used(account)
    return account


@dataclass(frozen=True)
class Signer:
    """An account that may act, as far as checking its request needs: the key that must
    have signed it."""

    id: int
    jwk: dict[str, str]


@functools.cache
def _signer_query() -> Any:
    """Built once: on every poll, building the statement cost about as much as running it."""
    return (
        select(
            AcmeAccount.jwk,
            AcmeAccount.status,
            AcmeAccount.last_used_at,
            AcmeExternalKey.revoked_at,
        )
        .join(AcmeExternalKey, AcmeExternalKey.id == AcmeAccount.external_key_id)
        .where(AcmeAccount.id == bindparam("account_id"))
    )


def authenticate_key(account_id: int) -> Signer:
    """authenticate without loading the account and its EAB key as objects: one statement of
    the columns the checks need (status, whether the EAB key is revoked, the key, when last
    used), for requests that use nothing else of the account (polls, downloads, challenge
    responses). The same refusals as authenticate; "last used" is written the same way
    (at most once per LAST_USED_STEP, committed with the request).

    Raises:
        AcmeProblem: accountDoesNotExist, or unauthorized (deactivated, EAB key revoked).
    """
    row = db.session.execute(_signer_query(), {"account_id": account_id}).first()
    if row is None:
        raise AcmeProblem("accountDoesNotExist", f"no account #{account_id}")
    _check_status(row.status, key_revoked=row.revoked_at is not None)
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_STEP:
        db.session.execute(
            update(AcmeAccount)
            .where(AcmeAccount.id == account_id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return Signer(account_id, row.jwk)


def mark_used(account: AcmeAccount) -> None:
    """Note that the account signed a request now (at most once per LAST_USED_STEP)."""
    now = utcnow()
    if account.last_used_at is None or now - account.last_used_at >= LAST_USED_STEP:
        account.last_used_at = now


def update_account(*, account: AcmeAccount, change: messages.AccountUpdate) -> AcmeAccount:
    """§7.3.2 contact update, §7.3.6 deactivation (final)."""
    before = audit.snapshot(account, ACCOUNT_FIELDS)
    if change.contact is not None:
        account.contact = list(change.contact)
    if change.deactivate:
        account.status = messages.Status.DEACTIVATED.value
    after = audit.snapshot(account, ACCOUNT_FIELDS)
    if after != before:
        old, new = audit.changes(before, after)
        audit.record(
            action="acme.account.update",
            actor=SYSTEM,
            object_type="AcmeAccount",
            object_id=account.id,
            label=", ".join(account.contact) or f"ACME account #{account.id}",
            before=old,
            after=new,
            organization_id=account.organization_id,
            department_id=account.department_id,
        )
    return account


def change_key(*, account: AcmeAccount, new_key: jose.Jwk) -> AcmeAccount:
    """§7.3.5 key rollover: the account's key becomes ``new_key`` (checked by
    jose.verify_key_change), unless another account has it.

    Raises:
        AcmeProblem: malformed (409) naming the account that has the key.
    """
    thumbprint = new_key.thumbprint()
    other = db.session.execute(
        select(AcmeAccount.id).where(AcmeAccount.thumbprint == thumbprint)
    ).scalar_one_or_none()
    if other is not None:
        raise AcmeProblem(
            "malformed", f"the new key belongs to another account (#{other})", status=409
        )
    before = account.thumbprint
    account.jwk = new_key.as_dict()
    account.thumbprint = thumbprint
    audit.record(
        action="acme.account.key_change",
        actor=SYSTEM,
        object_type="AcmeAccount",
        object_id=account.id,
        label=", ".join(account.contact) or f"ACME account #{account.id}",
        before={"thumbprint": before},
        after={"thumbprint": thumbprint},
        organization_id=account.organization_id,
        department_id=account.department_id,
    )
    return account


@dataclass(frozen=True)
class OrderLine:
    """One order of an account as the console lists it, with its certificate if issued."""

    order: AcmeOrder
    certificate: Certificate | None


def order_lines(*, account_id: int, limit: int = 100) -> list[OrderLine]:
    """The account's latest orders (newest first), each with the certificate it led to."""
    rows = db.session.execute(
        select(AcmeOrder, Certificate)
        .outerjoin(CertificateRequest, CertificateRequest.id == AcmeOrder.request_id)
        .outerjoin(Certificate, Certificate.id == CertificateRequest.certificate_id)
        .where(AcmeOrder.account_id == account_id)
        .order_by(AcmeOrder.id.desc())
        .limit(limit)
    ).all()
    return [OrderLine(order, cert) for order, cert in rows]


def order_counts(account_ids: list[int]) -> dict[int, int]:
    """Orders per account (one query for a page of the console's list)."""
    if not account_ids:
        return {}
    rows = db.session.execute(
        select(AcmeOrder.account_id, func.count(AcmeOrder.id))
        .where(AcmeOrder.account_id.in_(account_ids))
        .group_by(AcmeOrder.account_id)
    ).all()
    return {account_id: count for account_id, count in rows}
