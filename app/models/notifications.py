"""Notifications: rules (Settings > Notifications), the events and certificates they notify
about, one delivery row per (rule, subject, threshold, occurrence, stage, channel,
recipient), webhooks and their messages, acknowledgements and recipients' preferences.

The unique key of a delivery is what makes a notice exactly once: two sweeps, a retried
message or a restarted worker all insert the same key, and the second insert does nothing
(app/services/notifications/sweep.py).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.certificates import Certificate
from app.models.mail import OutboxMessage
from app.models.org import CertType, Department, Organization
from app.models.types import UTCDateTime, str_enum, utcnow


class NotificationType(enum.StrEnum):
    SSL_EXPIRATION = "ssl_expiration"
    CLIENT_EXPIRATION = "client_expiration"
    DEVICE_EXPIRATION = "device_expiration"
    CODE_SIGNING_EXPIRATION = "code_signing_expiration"
    REQUEST_CREATED = "request_created"
    REQUEST_APPROVED = "request_approved"
    REQUEST_DECLINED = "request_declined"
    CERTIFICATE_ISSUED = "certificate_issued"
    CERTIFICATE_REVOKED = "certificate_revoked"
    ISSUANCE_FAILED = "issuance_failed"
    DISCOVERY_SUMMARY = "discovery_summary"
    UNKNOWN_CERTIFICATE = "unknown_certificate"
    STALE_CERTIFICATE_SERVED = "stale_certificate_served"
    DELEGATION_REQUESTED = "delegation_requested"
    DELEGATION_APPROVED = "delegation_approved"
    DELEGATION_REJECTED = "delegation_rejected"
    ADMIN_CREATED = "admin_created"
    ADMIN_LOCKED = "admin_locked"
    ADMIN_DELETED = "admin_deleted"
    REPORT_READY = "report_ready"
    KEY_FINDING = "key_finding"

    @property
    def label(self) -> str:
        return TYPE_LABELS[self]

    @property
    def expiry_type(self) -> CertType | None:
        """The certificate type whose expiry this type notifies about (None: an event)."""
        return EXPIRY_TYPES.get(self)

    @property
    def is_expiry(self) -> bool:
        return self in EXPIRY_TYPES


EXPIRY_TYPES: dict[NotificationType, CertType] = {
    NotificationType.SSL_EXPIRATION: CertType.SSL,
    NotificationType.CLIENT_EXPIRATION: CertType.CLIENT,
    NotificationType.DEVICE_EXPIRATION: CertType.DEVICE,
    NotificationType.CODE_SIGNING_EXPIRATION: CertType.CODE_SIGNING,
}

TYPE_LABELS: dict[NotificationType, str] = {
    NotificationType.SSL_EXPIRATION: "SSL certificate expiration",
    NotificationType.CLIENT_EXPIRATION: "Client certificate expiration",
    NotificationType.DEVICE_EXPIRATION: "Device certificate expiration",
    NotificationType.CODE_SIGNING_EXPIRATION: "Code Signing certificate expiration",
    NotificationType.REQUEST_CREATED: "Certificate request created",
    NotificationType.REQUEST_APPROVED: "Certificate request approved",
    NotificationType.REQUEST_DECLINED: "Certificate request declined",
    NotificationType.CERTIFICATE_ISSUED: "Certificate issued",
    NotificationType.CERTIFICATE_REVOKED: "Certificate revoked",
    NotificationType.ISSUANCE_FAILED: "Issuance failed",
    NotificationType.DISCOVERY_SUMMARY: "Discovery run summary",
    NotificationType.UNKNOWN_CERTIFICATE: "New unknown certificate discovered",
    NotificationType.STALE_CERTIFICATE_SERVED: "Expired, revoked or replaced certificate still served",
    NotificationType.DELEGATION_REQUESTED: "Domain delegation requested",
    NotificationType.DELEGATION_APPROVED: "Domain delegation approved",
    NotificationType.DELEGATION_REJECTED: "Domain delegation rejected",
    NotificationType.ADMIN_CREATED: "Administrator created",
    NotificationType.ADMIN_LOCKED: "Administrator locked (deactivated)",
    NotificationType.ADMIN_DELETED: "Administrator deleted",
    NotificationType.REPORT_READY: "Report ready",
    NotificationType.KEY_FINDING: "Weak, shared or compromised key found",
}


class Frequency(enum.StrEnum):
    THRESHOLD = "threshold"  # once per threshold (60, 30, 14, ... days)
    DAILY = "daily"  # every day while inside the window


class RecipientRole(enum.StrEnum):
    MRAO = "mrao"
    ADMINS = "admins"  # RAO/DRAO whose scope covers the certificate (with the type privilege)
    REQUESTER = "requester"
    EXTERNAL = "external"  # the request's external requesters
    PERSON = "person"  # the person a client certificate is for (its request's person)

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS: dict[RecipientRole, str] = {
    RecipientRole.MRAO: "MRAO administrators",
    RecipientRole.ADMINS: "RAO/DRAO of the certificate's organization or department",
    RecipientRole.REQUESTER: "Requester",
    RecipientRole.EXTERNAL: "External requesters",
    RecipientRole.PERSON: "The person (client certificates)",
}


class NotificationRule(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "notification_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))  # the description shown in lists
    type: Mapped[NotificationType] = mapped_column(str_enum(NotificationType, 40), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Scope: every organization (MRAO only), or the places listed in notification_rule_places.
    applies_to_all: Mapped[bool] = mapped_column(Boolean, default=False)
    profile_ids: Mapped[list[int]] = mapped_column(JSON, default=list)  # empty: any profile
    days: Mapped[list[int]] = mapped_column(JSON, default=list)  # thresholds, descending
    frequency: Mapped[Frequency] = mapped_column(
        str_enum(Frequency, 16), default=Frequency.THRESHOLD
    )
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)  # RecipientRole values
    subscribers: Mapped[list[str]] = mapped_column(JSON, default=list)  # validated e-mails
    send_email: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)  # the recipients' default
    escalate_after_hours: Mapped[int | None] = mapped_column(Integer, nullable=True)
    escalate_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    escalate_subscribers: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Deleted rules keep their history (Sent Notifications); they notify no more.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    places: Mapped[list[NotificationRulePlace]] = relationship(
        back_populates="rule", cascade="all, delete-orphan", order_by="NotificationRulePlace.id"
    )

    def __str__(self) -> str:
        return self.name


class NotificationRulePlace(db.Model):  # type: ignore[name-defined,misc]
    """One organization (department_id NULL: all of it) or department a rule covers."""

    __tablename__ = "notification_rule_places"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("notification_rules.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )

    rule: Mapped[NotificationRule] = relationship(back_populates="places")
    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()


class NotificationEvent(db.Model):  # type: ignore[name-defined,misc]
    """Something happened that rules may notify about, written in the transaction that did
    it; fanned out into deliveries after commit (and by the scheduler if that message was
    lost)."""

    __tablename__ = "notification_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[NotificationType] = mapped_column(str_enum(NotificationType, 40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    organization_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cert_type: Mapped[str] = mapped_column(String(16), default="")
    profile_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    certificate_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    label: Mapped[str] = mapped_column(String(255), default="")  # what it is about
    actor: Mapped[str] = mapped_column(String(128), default="")
    # Structured facts for templates and webhooks, and the addresses of the event's own
    # people (requester, external requesters, person), taken from data when it happened.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_notification_events_pending", "fanned_out_at", "id"),)


class DeliveryStage(enum.IntEnum):
    ALERT = 0
    ESCALATION = 1
    SAMPLE = 2  # "send a sample to me"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due; waiting to be composed into a mail or webhook message
    COMPOSED = "composed"  # in a mail (outbox row) or webhook message: that row says more
    REFUSED = "refused"  # never sent: an invalid recipient address (error says why)
    SUPPRESSED = "suppressed"  # acknowledged or snoozed before it was composed


class Channel(enum.StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class NotificationDelivery(db.Model):  # type: ignore[name-defined,misc]
    """One notice to one recipient over one channel. Sent Notifications lists these."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint(
            "rule_id",
            "subject_key",
            "threshold",
            "occurrence",
            "stage",
            "channel",
            "recipient",
            name="uq_notification_deliveries_key",
        ),
        Index("ix_notification_deliveries_pending", "status", "rule_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("notification_rules.id"))
    # The certificate id (expiry rules) or the event id (event rules): one key column, so
    # the unique constraint holds on every database (NULLs never collide).
    subject_key: Mapped[int] = mapped_column(Integer)
    # Lookups go through the unique key (rule_id, subject_key, ...): no index of their own,
    # as every index costs each of the sweep's inserts.
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"), nullable=True)
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("notification_events.id"), nullable=True
    )
    threshold: Mapped[int] = mapped_column(Integer, default=0)  # days before expiry; 0: expired
    occurrence: Mapped[int] = mapped_column(Integer, default=0)  # day (daily), else 0
    stage: Mapped[int] = mapped_column(SmallInteger, default=DeliveryStage.ALERT)
    channel: Mapped[Channel] = mapped_column(str_enum(Channel, 16))
    recipient: Mapped[str] = mapped_column(String(320))  # an e-mail, or "webhook:<id>"
    status: Mapped[DeliveryStatus] = mapped_column(
        str_enum(DeliveryStatus, 16), default=DeliveryStatus.PENDING
    )
    error: Mapped[str] = mapped_column(Text, default="")
    organization_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outbox_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_messages.id"), nullable=True
    )
    webhook_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_messages.id"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    composed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    rule: Mapped[NotificationRule] = relationship()
    certificate: Mapped[Certificate | None] = relationship()
    event: Mapped[NotificationEvent | None] = relationship()
    outbox_message: Mapped[OutboxMessage | None] = relationship()
    webhook_message: Mapped[WebhookMessage | None] = relationship()


class NotificationWebhook(db.Model):  # type: ignore[name-defined,misc]
    """Where webhook notices go: a JSON POST signed with HMAC-SHA256 under its secret."""

    __tablename__ = "notification_webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(String(2048))
    # The signing secret, sealed under the key-encryption keys like CA keys; shown once.
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Owner: NULL for the account (MRAO), else the organization of the RAO who made it.
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id"), nullable=True, index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization | None] = relationship()

    def __str__(self) -> str:
        return self.name


class WebhookMessageStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # out of attempts (the dead letter); resend queues it again


class WebhookMessage(db.Model):  # type: ignore[name-defined,misc]
    """One POST to a webhook (one notice, or a digest), durable like an outbox row."""

    __tablename__ = "webhook_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("notification_webhooks.id"), index=True)
    body: Mapped[str] = mapped_column(Text)  # the exact JSON posted (and signed)
    status: Mapped[WebhookMessageStatus] = mapped_column(
        str_enum(WebhookMessageStatus, 16), default=WebhookMessageStatus.QUEUED, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    webhook: Mapped[NotificationWebhook] = relationship()


class WebhookAttempt(db.Model):  # type: ignore[name-defined,misc]
    """The per-hook delivery log: every POST made, with its answer."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True
    )
    webhook_id: Mapped[int] = mapped_column(ForeignKey("notification_webhooks.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class AckState(enum.StrEnum):
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"


class NotificationAck(db.Model):  # type: ignore[name-defined,misc]
    """A recipient acknowledged (no more reminders) or snoozed (none until `until`) the
    expiry alerts of one rule for one certificate."""

    __tablename__ = "notification_acks"
    __table_args__ = (UniqueConstraint("rule_id", "certificate_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("notification_rules.id"))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"), index=True)
    state: Mapped[AckState] = mapped_column(str_enum(AckState, 16))
    until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    by: Mapped[str] = mapped_column(String(320), default="")  # a login or an e-mail
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationPreference(db.Model):  # type: ignore[name-defined,misc]
    """A recipient's own choice for one rule: one mail per notice, or a daily digest."""

    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("rule_id", "recipient"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("notification_rules.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(320))
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationSweep(db.Model):  # type: ignore[name-defined,misc]
    """One sweep of the inventory: every range job computes due deliveries as of `as_of`;
    the last range to finish starts the composition of mails and webhook messages."""

    __tablename__ = "notification_sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(32), default="schedule")
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done
    ranges_total: Mapped[int] = mapped_column(Integer, default=0)
    ranges_done: Mapped[list[int]] = mapped_column(JSON, default=list)  # range indexes
    ranges_failed: Mapped[list[int]] = mapped_column(JSON, default=list)
    created: Mapped[int] = mapped_column(Integer, default=0)  # deliveries inserted
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
