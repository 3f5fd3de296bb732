"""Acknowledge, snooze, and each recipient's choice of one mail per notice or a daily digest.

An acknowledgement stops every further reminder (and escalation) of one rule for one
certificate; a snooze stops them until a date. Either comes from the console (an admin who
sees the delivery) or from the signed link in a mail (the token is the authority, as for a
collection link; the audit log names the recipient the link was mailed to). Links answer a
GET with a page and act only on POST, so a mail scanner that follows links acknowledges
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    AckState,
    Admin,
    Channel,
    DeliveryStatus,
    NotificationAck,
    NotificationDelivery,
    NotificationPreference,
)
from app.models.types import utcnow
from app.notices import signing
from app.services import audit
from app.services.errors import DomainError, NotFound
from app.services.scope import Scope, scope_of

MAX_SNOOZE_DAYS = 90
ACK_FIELDS = ("state", "until", "by")


def visible_deliveries_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Deliveries an admin may see: those placed in their scope (MRAO: all)."""
    return scope.row_filter(
        NotificationDelivery.organization_id, NotificationDelivery.department_id
    )


def _key() -> bytes:
    return str(current_app.config["SECRET_KEY"]).encode()


def delivery_for_link(*, delivery_id: int, token: str, purpose: str) -> NotificationDelivery:
    """The delivery a mailed link names, if the token is ours.

    Raises:
        NotFound: unknown delivery or a token that does not match (indistinguishable).
    """
    delivery = db.session.get(NotificationDelivery, delivery_id)
    if delivery is None or not signing.check_link_token(_key(), purpose, delivery_id, token):
        raise NotFound("This link is not valid (it may have been cut short by a mail program).")
    return delivery


def _set(
    *,
    rule_id: int,
    certificate_id: int,
    snooze_days: int | None,
    by: str,
    actor: Admin | str,
    now: datetime,
) -> NotificationAck:
    if snooze_days is not None and not 1 <= snooze_days <= MAX_SNOOZE_DAYS:
        raise DomainError(f"Snooze for 1 to {MAX_SNOOZE_DAYS} days.", field="snooze_days")
    ack = db.session.execute(
        select(NotificationAck).where(
            NotificationAck.rule_id == rule_id, NotificationAck.certificate_id == certificate_id
        )
    ).scalar_one_or_none()
    before = audit.snapshot(ack, ACK_FIELDS) if ack is not None else None
    if ack is None:
        ack = NotificationAck(rule_id=rule_id, certificate_id=certificate_id)
        db.session.add(ack)
    if snooze_days is None:
        ack.state, ack.until = AckState.ACKNOWLEDGED, None
    else:
        ack.state, ack.until = AckState.SNOOZED, now + timedelta(days=snooze_days)
    ack.by, ack.at = by[:320], now
    db.session.flush()
    # What was computed but not yet sent is not sent.
    db.session.execute(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.rule_id == rule_id,
            NotificationDelivery.certificate_id == certificate_id,
            NotificationDelivery.status == DeliveryStatus.PENDING,
        )
        .values(
            status=DeliveryStatus.SUPPRESSED,
            composed_at=now,
            error=f"{ack.state.value} by {by}"[:2000],
        )
    )
    audit.record(
        action="notification.acknowledge",
        actor=actor,
        object_type="NotificationAck",
        object_id=ack.id,
        label=f"rule #{rule_id}, certificate #{certificate_id}",
        before=before,
        after=audit.snapshot(ack, ACK_FIELDS),
    )
    return ack


def acknowledge_deliveries(
    *,
    actor: Admin,
    delivery_ids: Sequence[int],
    snooze_days: int | None = None,
    now: datetime | None = None,
) -> int:
    """Acknowledge (or snooze) the expiry alerts behind deliveries the admin sees; how many
    (rule, certificate) pairs.

    Raises:
        DomainError: none of them is an expiry alert.
    """
    now = now or utcnow()
    query = select(NotificationDelivery).where(NotificationDelivery.id.in_(list(delivery_ids)))
    clause = visible_deliveries_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    pairs = sorted(
        {
            (d.rule_id, d.certificate_id)
            for d in db.session.execute(query).scalars()
            if d.certificate_id is not None and d.event_id is None
        }
    )
    if not pairs:
        raise DomainError("Only certificate expiry alerts can be acknowledged or snoozed.")
    for rule_id, certificate_id in pairs:
        _set(
            rule_id=rule_id,
            certificate_id=certificate_id,
            snooze_days=snooze_days,
            by=actor.login,
            actor=actor,
            now=now,
        )
    return len(pairs)


def acknowledge_by_link(
    *, delivery_id: int, token: str, snooze_days: int | None = None, now: datetime | None = None
) -> NotificationAck:
    """Acknowledge (or snooze) from a mailed link.

    Raises:
        NotFound: a bad link. DomainError: the notice is not about a certificate's expiry.
    """
    delivery = delivery_for_link(delivery_id=delivery_id, token=token, purpose="ack")
    if delivery.certificate_id is None or delivery.event_id is not None:
        raise DomainError("This notice is not an expiry alert: there is nothing to acknowledge.")
    who = delivery.recipient if delivery.channel == Channel.EMAIL else "a webhook's readers"
    return _set(
        rule_id=delivery.rule_id,
        certificate_id=delivery.certificate_id,
        snooze_days=snooze_days,
        by=who,
        actor=f"{who} (mailed link)",
        now=now or utcnow(),
    )


def preference_of(rule_id: int, recipient: str) -> bool | None:
    return db.session.execute(
        select(NotificationPreference.digest).where(
            NotificationPreference.rule_id == rule_id, NotificationPreference.recipient == recipient
        )
    ).scalar_one_or_none()


def set_preference_by_link(*, delivery_id: int, token: str, digest: bool) -> NotificationPreference:
    """The recipient of a mail chooses one mail per notice (False) or a daily digest (True)
    for the rule that sent it.

    Raises:
        NotFound: a bad link.
    """
    delivery = delivery_for_link(delivery_id=delivery_id, token=token, purpose="preference")
    if delivery.channel != Channel.EMAIL:
        raise NotFound("This link is not valid.")
    pref = db.session.execute(
        select(NotificationPreference).where(
            NotificationPreference.rule_id == delivery.rule_id,
            NotificationPreference.recipient == delivery.recipient,
        )
    ).scalar_one_or_none()
    before: dict[str, Any] | None = None
    if pref is None:
        pref = NotificationPreference(rule_id=delivery.rule_id, recipient=delivery.recipient)
        db.session.add(pref)
    else:
        before = {"digest": pref.digest}
    pref.digest, pref.updated_at = bool(digest), utcnow()
    db.session.flush()
    audit.record(
        action="notification.preference",
        actor=f"{delivery.recipient} (mailed link)",
        object_type="NotificationPreference",
        object_id=pref.id,
        label=f"rule #{delivery.rule_id}",
        before=before,
        after={"digest": pref.digest, "recipient": pref.recipient},
    )
    return pref


def ack_of(rule_id: int, certificate_id: int | None) -> NotificationAck | None:
    if certificate_id is None:
        return None
    return db.session.execute(
        select(NotificationAck).where(
            NotificationAck.rule_id == rule_id, NotificationAck.certificate_id == certificate_id
        )
    ).scalar_one_or_none()
