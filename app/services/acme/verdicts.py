"""Challenge validation's verdicts, on the workers (RFC 8555 §7.5.1, §8): run the check
(app.services.acme.validation: the answer, then CAA) for a challenge that is processing,
then record the verdict on the challenge, its authorization and its order, audited; a
validation that crashed becomes a verdict too. The caller (app.actors.acme) commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from app.acme import challenges, jose
from app.acme.messages import Status
from app.acme.problems import AcmeProblem
from app.extensions import db
from app.models import AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeOrder
from app.models.types import utcnow
from app.services import audit
from app.services.acme import orders
from app.services.scope import SYSTEM


@dataclass(frozen=True)
class Validated:
    challenge_id: int
    status: str
    detail: str


def validate(*, challenge_id: int, check: Any) -> Validated | None:
    """Run ``check(kind=, name=, token=, key_authorization=, wildcard=, account_url=)``
    (validation.validate, which checks CAA too; ``account_url``: the account's URL as the
    client saw it when it responded, "" when not recorded) for a challenge that is processing and record its verdict on the
    challenge, its authorization (unless another of its challenges decided it already) and
    its order; None when there is nothing to do.

    Safe to run twice, at once too (a message delivered twice, or sent again by the
    scheduler): the check holds no transaction (it may take the whole time limit); then the
    order row is locked and the verdict lands by conditional updates (the challenge from
    processing, the authorization from pending), so one run records it and the other
    returns None. The caller commits.
    """
    # What the check needs, in one statement (the challenge, its authorization, the order's
    # account and its key).
    row = db.session.execute(
        select(
            AcmeChallenge.type,
            AcmeChallenge.token,
            AcmeChallenge.account_url,
            AcmeAuthorization.id,
            AcmeAuthorization.order_id,
            AcmeAuthorization.identifier,
            AcmeAuthorization.wildcard,
            AcmeAccount.jwk,
            AcmeAccount.organization_id,
            AcmeAccount.department_id,
        )
        .join(AcmeAuthorization, AcmeAuthorization.id == AcmeChallenge.authorization_id)
        .join(AcmeOrder, AcmeOrder.id == AcmeAuthorization.order_id)
        .join(AcmeAccount, AcmeAccount.id == AcmeOrder.account_id)
        .where(AcmeChallenge.id == challenge_id, AcmeChallenge.status == Status.PROCESSING.value)
    ).first()
    # Nothing written: no transaction held over the network. A commit, not a rollback:
    # psycopg forgets the connection's prepared statements on every rollback.
    db.session.commit()
    if row is None:
        return None
    kind, token, account_url, authz_id, order_id, identifier, wildcard, jwk, org_id, dept_id = row
    key_authorization = challenges.key_authorization(token, jose.parse_jwk(jwk).thumbprint())
    outcome = check(
        kind=kind,
        name=identifier,
        token=token,
        key_authorization=key_authorization,
        wildcard=wildcard,
        account_url=account_url or "",
    )
    return _record_verdict(
        challenge_id=challenge_id,
        authz_id=authz_id,
        order_id=order_id,
        kind=kind,
        identifier=identifier,
        outcome=outcome,
        organization_id=org_id,
        department_id=dept_id,
    )


def _record_verdict(
    *,
    challenge_id: int,
    authz_id: int,
    order_id: int,
    kind: str,
    identifier: str,
    outcome: Any,
    organization_id: int,
    department_id: int | None,
) -> Validated | None:
    # The order first (PostgreSQL; SQLite has one writer anyway): two authorizations of one
    # order validated at once then see each other's verdict when they refresh the order.
    db.session.execute(select(AcmeOrder.id).where(AcmeOrder.id == order_id).with_for_update()).all()
    now = utcnow()
    detail = outcome.detail[:2000]
    if outcome.ok:
        status, values = Status.VALID.value, {"validated_at": now, "error": None}
    else:
        status = Status.INVALID.value
        values = {
            "error": AcmeProblem(
                outcome.kind, outcome.detail, identifier={"type": "dns", "value": identifier}
            ).document()
        }
    moved = db.session.execute(
        update(AcmeChallenge)
        .where(AcmeChallenge.id == challenge_id, AcmeChallenge.status == Status.PROCESSING.value)
        .values(status=status, detail=detail, **values)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        return None  # another run recorded its verdict first
    db.session.execute(
        update(AcmeAuthorization)
        .where(AcmeAuthorization.id == authz_id, AcmeAuthorization.status == Status.PENDING.value)
        .values(status=status)
        .execution_options(synchronize_session=False)
    )
    db.session.expire_all()  # rows loaded before the conditional updates are stale now
    order = (
        db.session.execute(
            select(AcmeOrder)
            .where(AcmeOrder.id == order_id)
            .options(joinedload(AcmeOrder.authorizations))
        )
        .unique()
        .scalar_one()
    )
    orders.refresh_order(order)
    audit.record(
        action="acme.challenge.validate",
        actor=SYSTEM,
        object_type="AcmeChallenge",
        object_id=challenge_id,
        label=f"{kind} {identifier}",
        before={"status": Status.PROCESSING.value},
        after={"status": status, "order": order_id, "detail": detail},
        organization_id=organization_id,
        department_id=department_id,
    )
    return Validated(challenge_id, status, detail)


def validation_crashed(*, challenge_id: int, reason: str) -> Validated | None:
    """A validation that raised (a bug, the database, its time limit) leaves no challenge
    processing for ever: it becomes invalid (serverInternal), and its authorization and
    order with it, audited like any verdict. None when it is not processing any more. The
    caller commits."""
    chall = db.session.get(AcmeChallenge, challenge_id)
    if chall is None or chall.status != Status.PROCESSING:
        return None
    authz = chall.authorization
    account = authz.order.account
    return _record_verdict(
        challenge_id=challenge_id,
        authz_id=authz.id,
        order_id=authz.order_id,
        kind=chall.type,
        identifier=authz.identifier,
        outcome=_Crashed(f"validation failed inside the server: {reason}"),
        organization_id=account.organization_id,
        department_id=account.department_id,
    )


@dataclass(frozen=True)
class _Crashed:
    detail: str
    ok: bool = False
    kind: str = "serverInternal"
