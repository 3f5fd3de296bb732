"""Console: Reports > Sent Notifications, every delivery with its state, and resending."""

from __future__ import annotations

from typing import Any

from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import DateTimeBetweenFilter, FilterEqual, FilterLike
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from app.admin.base import (
    SecureModelView,
    actor,
    current_scope,
    per_request,
)
from app.admin.notifications.rules import TYPE_CHOICES
from app.extensions import db
from app.models import (
    Channel,
    DeliveryStage,
    DeliveryStatus,
    NotificationDelivery,
    NotificationRule,
    NotificationWebhook,
    OutboxMessage,
    WebhookMessage,
)
from app.services.errors import DomainError
from app.services.notifications import acknowledgements, rules, webhooks
from app.services.platform import mail
from app.services.scope import Scope


def delivery_status(model: NotificationDelivery) -> str:
    """What happened to the notice: the delivery's own state until composed, then its
    message's (mail: outbox/queued/sent/failed; webhook: queued/sent/failed)."""
    if model.status != DeliveryStatus.COMPOSED:
        return model.status.value
    if model.outbox_message is not None:
        return model.outbox_message.status.value
    if model.webhook_message is not None:
        return model.webhook_message.status.value
    return model.status.value


def delivery_attempts(model: NotificationDelivery) -> int:
    message = model.outbox_message or model.webhook_message
    return message.attempts if message is not None else 0


def delivery_error(model: NotificationDelivery) -> str:
    message = model.outbox_message or model.webhook_message
    return (message.error if message is not None and message.error else "") or model.error


def delivery_subject(model: NotificationDelivery) -> str:
    if model.event is not None:
        return model.event.label
    if model.certificate is not None:
        return model.certificate.common_name or model.certificate.fingerprint[:16]
    return ""


def _recipient(model: NotificationDelivery) -> str:
    if model.channel == Channel.WEBHOOK:
        hook = db.session.get(NotificationWebhook, int(model.recipient.split(":", 1)[1]))
        return f"webhook {hook.name}" if hook is not None else model.recipient
    return model.recipient


STATUS_CHOICES = [
    ("sent", "sent"),
    ("failed", "failed (dead letter)"),
    ("queued", "queued (being delivered)"),
    ("outbox", "kept in the outbox (no SMTP)"),
    ("pending", "pending (not composed yet)"),
    ("refused", "refused (invalid recipient)"),
    ("suppressed", "suppressed (acknowledged or snoozed)"),
]


class _StatusFilter(FilterEqual):
    """The status Sent Notifications shows: the delivery's own until composed, then its
    mail's or webhook message's."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        if value in (DeliveryStatus.PENDING, DeliveryStatus.REFUSED, DeliveryStatus.SUPPRESSED):
            return query.filter(NotificationDelivery.status == value)
        mails = select(OutboxMessage.id).where(OutboxMessage.status == value)
        posts = select(WebhookMessage.id).where(WebhookMessage.status == value)
        return query.filter(
            or_(
                NotificationDelivery.outbox_message_id.in_(mails),
                NotificationDelivery.webhook_message_id.in_(posts),
            )
        )


class _TypeFilter(FilterEqual):
    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        rules_of_type = select(NotificationRule.id).where(NotificationRule.type == value)
        return query.filter(NotificationDelivery.rule_id.in_(rules_of_type))


def _rule_choices() -> list[tuple[int, str]]:
    query = rules.live_rules().order_by(NotificationRule.name)
    clause = rules.visible_rules_clause(current_scope())
    if clause is not None:
        query = query.where(clause)
    return [(r.id, r.name) for r in db.session.execute(query).scalars()]


class SentNotificationView(SecureModelView):
    """Reports > Sent Notifications: every delivery, filter, export to CSV."""

    can_create = False
    can_edit = False
    can_delete = False
    can_export = True
    export_types = ["csv"]
    column_list = (
        "created_at",
        "rule.name",
        "rule.type",
        "subject",
        "threshold",
        "stage",
        "channel",
        "recipient",
        "delivery_status",
        "attempts",
        "error",
        "sent_at",
    )
    column_export_list = column_list
    column_details_list = column_list
    column_labels = {
        "created_at": "Due",
        "rule.name": "Rule",
        "rule.type": "Type",
        "subject": "About",
        "threshold": "Days before expiry",
        "stage": "Notice",
        "channel": "Sent by",
        "recipient": "Sent to",
        "delivery_status": "Status",
        "sent_at": "Sent",
    }
    column_sortable_list = ("created_at", "channel", "recipient", "threshold")
    column_default_sort = ("created_at", True)
    column_searchable_list = ("recipient",)

    def get_filters(self) -> Any:
        return [
            DateTimeBetweenFilter(NotificationDelivery.created_at, "Due"),
            FilterEqual(NotificationDelivery.rule_id, "Rule", options=per_request(_rule_choices)),
            _TypeFilter(NotificationDelivery.rule_id, "Type", options=TYPE_CHOICES),
            FilterEqual(
                NotificationDelivery.channel,
                "Channel",
                options=[(c.value, c.value) for c in Channel],
            ),
            FilterLike(NotificationDelivery.recipient, "Recipient"),
            _StatusFilter(NotificationDelivery.status, "Status", options=STATUS_CHOICES),
        ]

    column_formatters = {
        "rule.type": lambda v, c, m, n: m.rule.type.label,
        "subject": lambda v, c, m, n: delivery_subject(m),
        "threshold": lambda v, c, m, n: m.threshold if m.event_id is None else "",
        "stage": lambda v, c, m, n: DeliveryStage(m.stage).name.lower(),
        "recipient": lambda v, c, m, n: _recipient(m),
        "delivery_status": lambda v, c, m, n: delivery_status(m),
        "attempts": lambda v, c, m, n: delivery_attempts(m),
        "error": lambda v, c, m, n: delivery_error(m),
        "sent_at": lambda v, c, m, n: (
            (m.outbox_message or m.webhook_message).sent_at
            if (m.outbox_message or m.webhook_message) is not None
            else None
        ),
    }
    column_formatters_export = column_formatters

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NotificationDelivery, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        return acknowledgements.visible_deliveries_clause(scope)

    def get_query(self) -> Any:
        # Every row shows its rule, subject and message: load them with it (the CSV export
        # also reads them after the request's session is gone).
        return (
            super()
            .get_query()
            .options(
                joinedload(NotificationDelivery.rule),
                joinedload(NotificationDelivery.certificate),
                joinedload(NotificationDelivery.event),
                joinedload(NotificationDelivery.outbox_message),
                joinedload(NotificationDelivery.webhook_message),
            )
        )

    def _visible(self, ids: list[str]) -> list[NotificationDelivery]:
        return [d for d in (self.get_one(i) for i in ids) if d is not None]

    @action(
        "acknowledge",
        "Acknowledge",
        "Stop further reminders of these rules for these certificates?",
    )
    def action_acknowledge(self, ids: list[str]) -> None:
        chosen = [d.id for d in self._visible(ids)]
        self.run_service(
            None,
            lambda: acknowledgements.acknowledge_deliveries(actor=actor(), delivery_ids=chosen),
            success=lambda n: f"Acknowledged {n} certificate alert(s): no more reminders for them.",
        )

    @action("snooze", "Snooze 7 days", "No reminders for these certificates for 7 days?")
    def action_snooze(self, ids: list[str]) -> None:
        chosen = [d.id for d in self._visible(ids)]
        self.run_service(
            None,
            lambda: acknowledgements.acknowledge_deliveries(
                actor=actor(), delivery_ids=chosen, snooze_days=7
            ),
            success=lambda n: f"Snoozed {n} certificate alert(s) for 7 days.",
        )

    @action(
        "resend",
        "Resend failed",
        "Queue the failed mails and webhook messages of these deliveries again?",
    )
    def action_resend(self, ids: list[str]) -> None:
        chosen = self._visible(ids)

        def resend_all() -> int:
            count = 0
            for message_id in sorted(
                {
                    d.outbox_message_id
                    for d in chosen
                    if d.outbox_message_id and delivery_status(d) == "failed"
                }
            ):
                mail.resend(actor=actor(), message_id=message_id)
                count += 1
            for message_id in sorted(
                {
                    d.webhook_message_id
                    for d in chosen
                    if d.webhook_message_id and delivery_status(d) == "failed"
                }
            ):
                webhooks.resend(actor=actor(), message_id=message_id)
                count += 1
            if not count:
                raise DomainError("None of the selected deliveries has a failed message to resend.")
            return count

        self.run_service(None, resend_all, success=lambda n: f"{n} message(s) queued again.")
