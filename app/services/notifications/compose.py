"""Composing: pending deliveries become mail (outbox rows) and webhook messages.

A batch of pending deliveries is claimed with one conditional UPDATE ... RETURNING (SKIP
LOCKED on PostgreSQL), its messages are written and linked in the same transaction, and the
transaction commits: a composer killed half-way leaves the batch pending for the next one,
and no delivery is ever composed twice. Deliveries whose recipient keeps "one mail per
notice" are composed at once; those whose recipient chose the daily digest wait for the
digest time (CW_NOTIFY_DIGEST_HOUR, UTC) and become one message per rule and recipient,
certificates grouped by how soon they expire. Escalations never wait for the digest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import case, exists, func, not_, select, update
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import (
    AckState,
    Certificate,
    CertStatus,
    CertType,
    Channel,
    DeliveryStage,
    DeliveryStatus,
    NotificationAck,
    NotificationDelivery,
    NotificationEvent,
    NotificationPreference,
    NotificationRule,
    WebhookMessage,
    WebhookMessageStatus,
)
from app.notices import addresses, digest, signing, text, thresholds
from app.services.notifications.templates import Lookup
from app.services.platform import mail
from app.services.platform.jobs import after_commit

D = NotificationDelivery.__table__
BATCH = 500

# The webhook actor registers how a queued webhook message is sent: fn(message_id, attempt).
_webhook_senders: list[Callable[[int, int], None]] = []


def register_webhook_sender(fn: Callable[[int, int], None]) -> None:
    _webhook_senders[:] = [fn]


@dataclass
class Composed:
    mails: int = 0
    webhook_messages: int = 0
    deliveries: int = 0
    refused: int = 0
    suppressed: int = 0


# --- claiming ------------------------------------------------------------------------------


def _digest_mode() -> Any:
    """Per delivery: does its recipient get the daily digest (their preference, else the
    rule's default; webhooks follow the rule)?"""
    preference = (
        select(NotificationPreference.digest)
        .where(
            NotificationPreference.rule_id == D.c.rule_id,
            NotificationPreference.recipient == D.c.recipient,
        )
        .scalar_subquery()
    )
    return case(
        (D.c.channel == Channel.WEBHOOK.value, NotificationRule.digest),
        else_=func.coalesce(preference, NotificationRule.digest),
    )


def _claim(conditions: Sequence[Any], as_of: datetime, limit: int | None) -> list[int]:
    candidates = (
        select(D.c.id)
        .join(NotificationRule, NotificationRule.id == D.c.rule_id)
        .where(D.c.status == DeliveryStatus.PENDING.value, *conditions)
        .order_by(D.c.id)
    )
    if limit is not None:
        candidates = candidates.limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(of=D, skip_locked=True)
    claimed = db.session.execute(
        update(D)
        .where(D.c.id.in_(candidates.scalar_subquery()), D.c.status == DeliveryStatus.PENDING.value)
        .values(status=DeliveryStatus.COMPOSED.value, composed_at=as_of)
        .returning(D.c.id)
    )
    return sorted(int(i) for i in claimed.scalars())


def suppress_stale(as_of: datetime) -> int:
    """Pending expiry deliveries nobody needs any more: the certificate was acknowledged or
    snoozed, or revoked or replaced, since the sweep found it."""
    acks = NotificationAck.__table__
    certs = Certificate.__table__
    acknowledged = exists().where(
        acks.c.rule_id == D.c.rule_id,
        acks.c.certificate_id == D.c.certificate_id,
        (acks.c.state == AckState.ACKNOWLEDGED) | (acks.c.until > as_of),
    )
    gone = exists().where(
        certs.c.id == D.c.certificate_id,
        certs.c.status.in_([CertStatus.REVOKED, CertStatus.REPLACED]),
    )
    result = db.session.execute(
        update(D)
        .where(
            D.c.status == DeliveryStatus.PENDING.value,
            D.c.certificate_id.is_not(None),
            D.c.event_id.is_(None),  # expiry alerts only: an event about a revoked one stands
            D.c.stage != int(DeliveryStage.SAMPLE),
            acknowledged | gone,
        )
        .values(
            status=DeliveryStatus.SUPPRESSED.value,
            composed_at=as_of,
            error="acknowledged, snoozed, revoked or replaced before it was sent",
        )
    )
    return int(result.rowcount or 0)


# --- the entry point -------------------------------------------------------------------------


def compose_pending(*, as_of: datetime, batch: int = BATCH) -> Composed:
    """Compose every pending delivery that is due (all "one by one" ones; digests at the
    digest time; escalations at once). Commits after each batch."""
    result = Composed()
    result.suppressed = suppress_stale(as_of)
    db.session.commit()
    while True:
        ids = _claim([_digest_mode().is_(False)], as_of, batch)
        if not ids:
            break
        _compose(ids, as_of, digest_mode=False, result=result)
        db.session.commit()
    since = thresholds.digest_time(as_of, int(current_app.config["CW_NOTIFY_DIGEST_HOUR"]))
    later = D.alias("sent")
    already = exists().where(
        later.c.rule_id == D.c.rule_id,
        later.c.channel == D.c.channel,
        later.c.recipient == D.c.recipient,
        later.c.stage == D.c.stage,
        later.c.status == DeliveryStatus.COMPOSED.value,
        later.c.composed_at >= since,
    )
    groups = db.session.execute(
        select(D.c.rule_id, D.c.channel, D.c.recipient, D.c.stage)
        .join(NotificationRule, NotificationRule.id == D.c.rule_id)
        .where(
            D.c.status == DeliveryStatus.PENDING.value,
            _digest_mode().is_(True),
            (D.c.stage == int(DeliveryStage.ESCALATION)) | not_(already),
        )
        .distinct()
    ).all()
    for rule_id, channel, recipient, stage in groups:
        ids = _claim(
            [
                D.c.rule_id == rule_id,
                D.c.channel == channel,
                D.c.recipient == recipient,
                D.c.stage == stage,
                _digest_mode().is_(True),
            ],
            as_of,
            None,
        )
        if ids:
            _compose(ids, as_of, digest_mode=True, result=result)
            db.session.commit()
    return result


# --- building messages -----------------------------------------------------------------------


def _link(purpose: str, delivery_id: int) -> str:
    base = str(current_app.config["CW_BASE_URL"])
    token = signing.link_token(str(current_app.config["SECRET_KEY"]).encode(), purpose, delivery_id)
    return f"{base}/notifications/{purpose}/{delivery_id}/{token}"


def _when(days: int) -> str:
    if days < 0:
        return "expired " + ("1 day ago" if days == -1 else f"{-days} days ago")
    if days == 0:
        return "expires within a day"
    return "expires in " + ("1 day" if days == 1 else f"{days} days")


def certificate_item(
    cert: Certificate, threshold: int, as_of: datetime, *, delivery_id: int | None
) -> dict[str, Any]:
    base = str(current_app.config["CW_BASE_URL"])
    left = thresholds.days_left(cert.not_after, as_of)
    kind = CertType(cert.cert_type) if cert.cert_type else CertType.SSL
    return {
        "id": cert.id,
        "common_name": text.one_line(cert.common_name or cert.fingerprint[:16], 255),
        "serial": cert.serial_hex,
        "issuer": text.one_line(cert.issuer_cn or cert.issuer_dn, 255),
        "organization": cert.organization.name if cert.organization else "(not assigned)",
        "department": cert.department.name if cert.department else "",
        "type": kind.value,
        "type_label": kind.label,
        "not_after": cert.not_after.strftime("%Y-%m-%d %H:%M UTC"),
        "days_left": left,
        "when": _when(left),
        "threshold": threshold,
        "url": f"{base}/admin/{kind.value}_certs/details/?id={cert.id}",
        "ack_url": _link("ack", delivery_id) if delivery_id is not None else "",
    }


def event_item(event: NotificationEvent) -> dict[str, Any]:
    base = str(current_app.config["CW_BASE_URL"])
    facts = event.payload.get("facts", {}) if event.payload else {}
    path = event.payload.get("path", "") if event.payload else ""
    return {
        "id": event.id,
        "type": event.type.value,
        "type_label": event.type.label,
        "label": text.one_line(event.label, 255),
        "at": event.at.strftime("%Y-%m-%d %H:%M UTC"),
        "actor": event.actor,
        "facts": {str(k): str(v) for k, v in facts.items()},
        "lines": [f"{k}: {text.one_line(str(v), 500)}" for k, v in facts.items()],
        "url": f"{base}{path}" if path else "",
    }


def _stage_name(stage: int) -> str:
    return {0: "alert", 1: "escalation", 2: "sample"}.get(stage, "alert")


def _compose(ids: list[int], as_of: datetime, *, digest_mode: bool, result: Composed) -> None:
    rows = list(
        db.session.execute(
            select(NotificationDelivery)
            .where(NotificationDelivery.id.in_(ids))
            .options(selectinload(NotificationDelivery.rule))
            .order_by(NotificationDelivery.id)
        ).scalars()
    )
    certs = {
        c.id: c
        for c in db.session.execute(
            select(Certificate)
            .where(Certificate.id.in_({r.certificate_id for r in rows if r.certificate_id}))
            .options(selectinload(Certificate.organization), selectinload(Certificate.department))
        ).scalars()
    }
    events = {
        e.id: e
        for e in db.session.execute(
            select(NotificationEvent).where(
                NotificationEvent.id.in_({r.event_id for r in rows if r.event_id})
            )
        ).scalars()
    }
    messages: list[tuple[list[NotificationDelivery], Built]] = []
    lookup = Lookup()
    groups: list[list[NotificationDelivery]] = [rows] if digest_mode else [[r] for r in rows]
    for group in groups:
        first = group[0]
        if first.channel == Channel.EMAIL:
            try:
                addresses.check_address(first.recipient)
            except addresses.AddressError as exc:
                for d in group:
                    d.status, d.error = DeliveryStatus.REFUSED, f"refused: {exc}"[:2000]
                result.refused += len(group)
                continue
        messages.append(
            (group, build(group, certs, events, as_of, digest_mode=digest_mode, lookup=lookup))
        )
    _store(messages, result)


@dataclass(frozen=True)
class Built:
    rendered: text.Rendered
    structured: dict[str, Any]
    organization_id: int | None
    department_id: int | None


def place_of(group: Sequence[NotificationDelivery]) -> tuple[int | None, int | None]:
    """Where a message is placed (who may read it in the Mail Outbox), like portal mail:
    the organization and department of its deliveries when they all share one; the
    organization alone when departments differ; neither (MRAOs only) across organizations."""
    places = {(d.organization_id, d.department_id) for d in group}
    if len(places) == 1:
        return places.pop()
    orgs = {org for org, _ in places}
    return (orgs.pop() if len(orgs) == 1 else None), None


def build(
    group: Sequence[NotificationDelivery],
    certs: dict[int, Certificate],
    events: dict[int, NotificationEvent],
    as_of: datetime,
    *,
    digest_mode: bool,
    lookup: Lookup | None = None,
) -> Built:
    """Render one message for deliveries of one rule to one recipient, with the template of
    the message's organization for the rule's type when it has one (built in otherwise, or
    when its own fails)."""
    first = group[0]
    rule = first.rule
    expiry = rule.type.is_expiry
    org_id, dept_id = place_of(group)
    context: dict[str, Any] = {
        "rule": {
            "id": rule.id,
            "name": text.one_line(rule.name),
            "type": rule.type.value,
            "type_label": rule.type.label,
        },
        "base_url": str(current_app.config["CW_BASE_URL"]),
        "escalation": first.stage == DeliveryStage.ESCALATION,
        "escalation_hours": rule.escalate_after_hours or 0,
        "digest": digest_mode,
        "preference_url": _link("preference", first.id)
        if first.channel == Channel.EMAIL and first.stage != DeliveryStage.SAMPLE
        else "",
    }
    if expiry:
        items = [
            certificate_item(certs[d.certificate_id], d.threshold, as_of, delivery_id=d.id)
            for d in group
            if d.certificate_id in certs
        ]
        grouped = digest.by_threshold(items)
        family = "expiry_digest" if digest_mode else "expiry"
        context.update(
            c=items[0] if items else {},
            groups=grouped,
            count=len(items),
            summary=digest.summary(grouped),
        )
        structured_items: dict[str, Any] = {"certificates": [_public(i) for i in items]}
    else:
        items = [event_item(events[d.event_id]) for d in group if d.event_id in events]
        grouped = digest.by_type(items)
        family = "event_digest" if digest_mode else "event"
        context.update(e=items[0] if items else {}, groups=grouped, count=len(items))
        structured_items = {"events": items}
    custom = (lookup or Lookup()).custom(org_id, rule.type, digest_mode)
    try:
        if custom is None:
            raise text.NoticeTemplateError("no template of its own")
        rendered = text.render(custom, context, strict=True)
    except text.NoticeTemplateError:
        rendered = text.render(text.BUILT_IN[family], context)  # built in, or a broken one
    structured = {
        "type": rule.type.value,
        "type_label": rule.type.label,
        "rule": {"id": rule.id, "name": rule.name},
        "stage": _stage_name(first.stage),
        "digest": digest_mode,
        "as_of": as_of.isoformat(),
        **structured_items,
    }
    return Built(rendered, structured, org_id, dept_id)


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("when",)}


def _store(messages: list[tuple[list[NotificationDelivery], Built]], result: Composed) -> None:
    mails = [(group, built) for group, built in messages if group[0].channel == Channel.EMAIL]
    hooks = [(group, built) for group, built in messages if group[0].channel == Channel.WEBHOOK]
    ids = mail.send_mails(
        [
            mail.Mail(
                to=[group[0].recipient],
                subject=built.rendered.subject,
                body=built.rendered.text,
                html=built.rendered.html,
                category=f"notification.{group[0].rule.type.value}",
                organization_id=built.organization_id,
                department_id=built.department_id,
            )
            for group, built in mails
        ]
    )
    for (group, _), message_id in zip(mails, ids, strict=True):
        for d in group:
            d.outbox_message_id = message_id
        result.deliveries += len(group)
    result.mails += len(ids)
    for group, built in hooks:
        webhook_id = int(group[0].recipient.split(":", 1)[1])
        body = json.dumps(
            {"text": text.slack_text(built.rendered), "certwright": built.structured},
            separators=(",", ":"),
            sort_keys=True,
        )
        message = WebhookMessage(
            webhook_id=webhook_id,
            body=body,
            status=WebhookMessageStatus.QUEUED,
            attempts=0,
            error="",
            next_attempt_at=group[0].composed_at,
        )
        db.session.add(message)
        db.session.flush()
        for d in group:
            d.webhook_message_id = message.id
        result.deliveries += len(group)
        result.webhook_messages += 1
        if _webhook_senders:
            message.dispatched_at = message.next_attempt_at
            after_commit(lambda mid=message.id: _webhook_senders[0](mid, 0))
    db.session.flush()


def pending_count() -> int:
    return int(
        db.session.execute(
            select(func.count()).select_from(D).where(D.c.status == DeliveryStatus.PENDING.value)
        ).scalar_one()
    )


def compose_now(ids: Sequence[int], *, as_of: datetime) -> Composed:
    """Compose these pending deliveries at once, one message each (a sample); the caller
    commits."""
    result = Composed()
    claimed = _claim([D.c.id.in_(list(ids))], as_of, None)
    if claimed:
        _compose(claimed, as_of, digest_mode=False, result=result)
    return result
