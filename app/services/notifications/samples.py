"""A rule's "send a sample to me": one real notice, composed at once, to the admin asking.

Expiry rules show the certificate the rule would notify about first today (else the
soonest-expiring certificate it covers); event rules show the latest event of their type
(else a sample event, recorded as one). The sample is a delivery like any other (stage
"sample"), so Sent Notifications lists it; it never reaches anyone else.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.models import (
    Admin,
    Certificate,
    Channel,
    DeliveryStage,
    DeliveryStatus,
    NotificationDelivery,
    NotificationEvent,
)
from app.models.types import utcnow
from app.notices import addresses, thresholds
from app.services import audit
from app.services.errors import Conflict, DomainError
from app.services.notifications import compose, sweep
from app.services.notifications.rules import get_rule


def send_sample(
    *, actor: Admin, rule_id: int, as_of: datetime | None = None
) -> NotificationDelivery:
    """Queue a sample of the rule's notice to the actor's own address.

    Raises:
        NotFound: no such rule in scope. Conflict: nothing to show, or no usable address.
    """
    rule = get_rule(actor=actor, rule_id=rule_id)
    as_of = as_of or utcnow()
    try:
        recipient = addresses.check_address(actor.email).lower()
    except addresses.AddressError as exc:
        raise Conflict(f"Your own address cannot receive mail: {exc}") from None
    delivery = NotificationDelivery(
        rule_id=rule.id,
        occurrence=int(as_of.timestamp()),
        stage=int(DeliveryStage.SAMPLE),
        channel=Channel.EMAIL,
        recipient=recipient,
        status=DeliveryStatus.PENDING,
        error="",
        created_at=as_of,
    )
    if rule.type.is_expiry:
        _, rows = sweep.preview(rule, as_of=as_of, limit=1)
        if rows:
            cert, threshold = rows[0].certificate, rows[0].threshold
        else:
            cert = db.session.execute(
                select(Certificate)
                .where(sweep.rule_filter(rule), Certificate.status.in_(sweep.ACTIVE))
                .order_by(Certificate.not_after)
                .limit(1)
            ).scalar_one_or_none()
            if cert is None:
                raise Conflict(
                    "The rule covers no certificate yet: there is nothing to show in a sample."
                )
            threshold = min(
                rule.days, key=lambda t: abs(t - thresholds.days_left(cert.not_after, as_of))
            )
        delivery.subject_key = delivery.certificate_id = cert.id
        delivery.threshold = threshold
        delivery.organization_id, delivery.department_id = cert.organization_id, cert.department_id
    else:
        event = db.session.execute(
            select(NotificationEvent)
            .where(NotificationEvent.type == rule.type)
            .order_by(NotificationEvent.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if event is None:
            event = NotificationEvent(
                type=rule.type,
                at=as_of,
                label=f"Sample of '{rule.type.label}'",
                actor=actor.login,
                payload={"facts": {"Note": "a sample: nothing happened"}, "people": {}, "path": ""},
                fanned_out_at=as_of,  # never fanned out to the rule's recipients
            )
            db.session.add(event)
            db.session.flush()
        delivery.subject_key = delivery.event_id = event.id
        delivery.organization_id, delivery.department_id = (
            event.organization_id,
            event.department_id,
        )
    db.session.add(delivery)
    db.session.flush()
    result = compose.compose_now([delivery.id], as_of=as_of)
    if result.mails != 1:
        raise DomainError(f"The sample could not be composed: {delivery.error or 'no message'}")
    audit.record(
        action="notification_rule.sample",
        actor=actor,
        object_type="NotificationRule",
        object_id=rule.id,
        label=rule.name,
        message=f"sample sent to {recipient}",
    )
    return delivery
