"""Events that rules notify about (issued, revoked, request created/approved/declined,
issuance failed, delegation, admin events, discovery): written in the transaction that did
the thing, fanned out into deliveries after it commits.

emit() adds a row only when an enabled rule of that type exists, so a deployment without
event rules writes nothing. After commit a message asks a worker to fan the pending events
out (the scheduler asks again when that message was lost): each batch of events is claimed
with a conditional UPDATE, its deliveries are inserted under the unique key and composed,
and the batch commits as one, so an event is fanned out once even when two workers race.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import (
    Admin,
    Channel,
    DeliveryStage,
    DeliveryStatus,
    NotificationDelivery,
    NotificationEvent,
    NotificationRule,
    NotificationType,
)
from app.models.types import utcnow
from app.services import bulk
from app.services.notifications import compose, recipients
from app.services.notifications.rules import live_rules
from app.services.notifications.sweep import insert_ignoring_duplicates
from app.services.platform.jobs import after_commit
from app.services.scope import SystemActor

E = NotificationEvent.__table__
BATCH = 200
_FANOUT = "cw_notification_fanout"
_LISTENED = "cw_notification_listened"
# The actor registers how a fan-out is requested: fn() sends one message.
_senders: list[Callable[[], None]] = []


def register_sender(fn: Callable[[], None]) -> None:
    _senders[:] = [fn]


@dataclass(frozen=True)
class Event:
    """What emit_many() takes: one thing that happened."""

    type: NotificationType
    label: str
    organization_id: int | None = None
    department_id: int | None = None
    cert_type: str = ""
    profile_id: int | None = None
    certificate_id: int | None = None
    request_id: int | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    # Addresses of the event's own people, by role ("requester", "external").
    people: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # The person a client certificate is for: their address joins people["person"] when
    # the event is written (one query for the whole batch).
    person_id: int | None = None
    path: str = ""  # the console page about it, relative to CW_BASE_URL


def _actor_name(actor: Admin | SystemActor | str | None) -> str:
    if actor is None:
        return ""
    if isinstance(actor, str):
        return actor
    return "system" if isinstance(actor, SystemActor) else actor.login


def listened_types(types: Sequence[NotificationType]) -> set[NotificationType]:
    """The types among these that an enabled rule notifies about.

    Read once per transaction (every type at once: an enrollment through the REST API emits
    three events, created, approved and issued) and read again after this transaction
    changes a rule (rules are changed only through the ORM, _forget_listened)."""
    listened = db.session.info.get(_LISTENED)
    if listened is None:
        listened = db.session.info[_LISTENED] = frozenset(
            db.session.execute(
                select(NotificationRule.type)
                .where(NotificationRule.enabled.is_(True), NotificationRule.deleted_at.is_(None))
                .distinct()
            ).scalars()
        )
    return {t for t in types if t in listened}


@sa_event.listens_for(Session, "after_flush")
def _forget_listened(session: Session, _context: Any) -> None:
    if _LISTENED in session.info and any(
        isinstance(obj, NotificationRule)
        for obj in (*session.new, *session.dirty, *session.deleted)
    ):
        del session.info[_LISTENED]


@sa_event.listens_for(Session, "after_transaction_end")
def _end_listened(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction (not a savepoint)
        session.info.pop(_LISTENED, None)


def emit(event: Event, *, actor: Admin | SystemActor | str | None = None) -> None:
    emit_many([event], actor=actor)


def emit_many(events: Sequence[Event], *, actor: Admin | SystemActor | str | None = None) -> None:
    """Record events in the current transaction (one bulk insert); fanned out after commit."""
    if not events:
        return
    wanted = listened_types([e.type for e in events])
    chosen = [e for e in events if e.type in wanted]
    if not chosen:
        return
    now = utcnow()
    name = _actor_name(actor)[:128]
    persons = recipients.person_emails(e.person_id for e in chosen)
    bulk.insert_rows(
        E,
        [
            {
                "type": e.type,
                "at": now,
                "organization_id": e.organization_id,
                "department_id": e.department_id,
                "cert_type": e.cert_type or "",
                "profile_id": e.profile_id,
                "certificate_id": e.certificate_id,
                "request_id": e.request_id,
                "label": e.label[:255],
                "actor": name,
                "payload": {
                    "facts": {str(k): str(v) for k, v in e.facts.items()},
                    "people": _people(e, persons),
                    "path": e.path,
                },
                "fanned_out_at": None,
            }
            for e in chosen
        ],
    )
    if _senders and not db.session.info.get(_FANOUT):
        db.session.info[_FANOUT] = True  # one fan-out message per transaction
        after_commit(_send_fanout)


def _people(event: Event, persons: Mapping[int, str]) -> dict[str, list[str]]:
    people = {k: sorted({a.strip() for a in v if a and a.strip()}) for k, v in event.people.items()}
    if event.person_id is not None and persons.get(event.person_id):
        people["person"] = [persons[event.person_id]]
    return people


def _send_fanout() -> None:
    db.session.info.pop(_FANOUT, None)
    if _senders:
        _senders[0]()


# --- fan-out ------------------------------------------------------------------------------


def _matches(rule: NotificationRule, event: NotificationEvent) -> bool:
    if rule.profile_ids and event.profile_id not in rule.profile_ids:
        return False
    if rule.applies_to_all:
        return True
    for place in rule.places:
        if place.organization_id != event.organization_id:
            continue
        if place.department_id is None or place.department_id == event.department_id:
            return True
    return False


def _claim(as_of: datetime, limit: int) -> list[NotificationEvent]:
    pending = select(E.c.id).where(E.c.fanned_out_at.is_(None)).order_by(E.c.id).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        pending = pending.with_for_update(skip_locked=True)
    ids = list(
        db.session.execute(
            update(E)
            .where(E.c.id.in_(pending.scalar_subquery()), E.c.fanned_out_at.is_(None))
            .values(fanned_out_at=as_of)
            .returning(E.c.id)
        ).scalars()
    )
    if not ids:
        return []
    return list(
        db.session.execute(
            select(NotificationEvent)
            .where(NotificationEvent.id.in_(ids))
            .order_by(NotificationEvent.id)
        ).scalars()
    )


def fan_out(*, now: datetime | None = None, batch: int = BATCH) -> int:
    """Turn pending events into deliveries and compose those sent one by one; commits each
    batch. How many events were fanned out."""
    total = 0
    while True:
        as_of = now or utcnow()
        claimed = _claim(as_of, batch)
        if not claimed:
            return total
        rules: dict[NotificationType, list[NotificationRule]] = {}
        for rule in db.session.execute(
            live_rules().where(
                NotificationRule.enabled.is_(True),
                NotificationRule.type.in_({e.type for e in claimed}),
            )
        ).scalars():
            rules.setdefault(rule.type, []).append(rule)
        people = recipients.EventRecipients()
        rows: list[dict[str, Any]] = []
        for event in claimed:
            for rule in rules.get(event.type, []):
                if _matches(rule, event):
                    rows += _rows(rule, event, people, as_of)
        if rows:
            db.session.execute(
                insert_ignoring_duplicates(NotificationDelivery.__table__).on_conflict_do_nothing(),
                rows,
            )
        db.session.commit()
        total += len(claimed)
        compose.compose_pending(as_of=as_of)


def _rows(
    rule: NotificationRule,
    event: NotificationEvent,
    people: recipients.EventRecipients,
    now: datetime,
) -> list[dict[str, Any]]:
    base = {
        "rule_id": rule.id,
        "subject_key": event.id,
        "certificate_id": event.certificate_id,
        "event_id": event.id,
        "threshold": 0,
        "occurrence": 0,
        "stage": int(DeliveryStage.ALERT),
        "status": DeliveryStatus.PENDING,
        "error": "",
        "organization_id": event.organization_id,
        "department_id": event.department_id,
        "created_at": now,
        "outbox_message_id": None,
        "webhook_message_id": None,
        "composed_at": None,
    }
    found: list[dict[str, Any]] = []
    if rule.send_email:
        addresses = people.for_roles(
            rule.roles,
            org_id=event.organization_id,
            dept_id=event.department_id,
            cert_type=event.cert_type,
            people=dict((event.payload or {}).get("people", {})),
        )
        addresses.update(rule.subscribers)
        found += [
            {**base, "channel": Channel.EMAIL, "recipient": a[:320]} for a in sorted(addresses)
        ]
    found += [
        {**base, "channel": Channel.WEBHOOK, "recipient": f"webhook:{hook}"}
        for hook in rule.webhook_ids
    ]
    return found


def dispatch_pending(now: datetime | None = None, restarted: bool = False) -> int:
    """Scheduler pass: ask for a fan-out when events wait longer than a message takes (the
    one sent after commit was lost), or at once after a restart."""
    if not _senders:
        return 0
    now = now or utcnow()
    older = now if restarted else now - timedelta(seconds=30)
    waiting = db.session.execute(
        select(exists().where(E.c.fanned_out_at.is_(None), E.c.at <= older))
    ).scalar()
    if waiting:
        after_commit(_senders[0])
        return 1
    return 0


# --- building events from the objects they are about ------------------------------------


def request_event(kind: NotificationType, req: Any, **facts: Any) -> Event:
    """An event about a certificate request (created, approved, declined, failed)."""
    cert_type = req.cert_type.value if hasattr(req.cert_type, "value") else str(req.cert_type)
    return Event(
        type=kind,
        label=f"Request #{req.id} for {req.common_name}",
        organization_id=req.organization_id,
        department_id=req.department_id,
        cert_type=cert_type,
        profile_id=req.profile_id,
        certificate_id=getattr(req, "certificate_id", None),
        request_id=req.id,
        facts={"Common name": req.common_name, "Names": ", ".join(req.sans), **facts},
        people={
            "requester": [req.requester_email],
            "external": list(req.external_requesters or []),
        },
        person_id=getattr(req, "person_id", None),
        path=f"/admin/{cert_type}_requests/details/?id={req.id}",
    )


def certificate_event(kind: NotificationType, cert: Any, req: Any = None, **facts: Any) -> Event:
    """An event about a certificate (issued, revoked, discovered)."""
    cert_type = cert.cert_type.value if cert.cert_type is not None else ""
    return Event(
        type=kind,
        label=cert.common_name or cert.fingerprint[:16],
        organization_id=cert.organization_id,
        department_id=cert.department_id,
        cert_type=cert_type,
        profile_id=cert.profile_id,
        certificate_id=cert.id,
        request_id=cert.request_id,
        facts={
            "Serial": cert.serial_hex,
            "Expires": cert.not_after.strftime("%Y-%m-%d %H:%M UTC"),
            "Issuer": cert.issuer_cn or cert.issuer_dn,
            **facts,
        },
        people={
            "requester": [req.requester_email] if req is not None else [],
            "external": list(req.external_requesters or []) if req is not None else [],
        },
        person_id=getattr(req, "person_id", None) if req is not None else None,
        path=f"/admin/{cert_type or 'ssl'}_certs/details/?id={cert.id}",
    )
