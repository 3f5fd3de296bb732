"""Outgoing mail: every message is an outbox row; SMTP delivery marks it sent.

A queued row is durable work: it is delivered after a restart and retried with backoff
(app/services/platform/mail.py)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, str_enum, utcnow


class MailStatus(enum.StrEnum):
    OUTBOX = "outbox"  # no SMTP configured: kept for the console
    QUEUED = "queued"  # waiting for the SMTP actor (first delivery or a retry)
    SENT = "sent"
    FAILED = "failed"  # out of attempts; the last error is kept


class OutboxMessage(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to: Mapped[str] = mapped_column(Text)  # comma separated
    subject: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text)  # the plain-text part
    html: Mapped[str] = mapped_column(Text, default="")  # an HTML alternative, when given
    category: Mapped[str] = mapped_column(String(64), default="")
    # Who may read it in the console: the organization/department it concerns (None: MRAOs).
    organization_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    status: Mapped[MailStatus] = mapped_column(
        str_enum(MailStatus, 16), default=MailStatus.OUTBOX, index=True
    )
    # Delivery attempts started; also the generation a delivery message names, so that of
    # several messages for one attempt (a re-dispatch) exactly one sends.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    # Queued only: not before this time (the backoff after a failure, or the lease of an
    # attempt under way); the scheduler dispatches rows that are due.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    # When a delivery message was last sent for it (a message lost with a restarted process
    # or broker is sent again once due and this is old enough).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # One file sent with the message (a scheduled report), when it has one.
    attachment_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    attachment_type: Mapped[str] = mapped_column(String(128), default="", server_default="")
    attachment: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
