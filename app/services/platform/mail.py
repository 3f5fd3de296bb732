"""Mail: every message becomes an outbox row; with SMTP configured an actor delivers it."""

from __future__ import annotations

import functools
import smtplib
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from flask import current_app
from sqlalchemy import update

from app.extensions import db
from app.models import MailStatus, OutboxMessage
from app.models.types import utcnow
from app.services import bulk
from app.services.platform.jobs import after_commit

# The mail actor registers itself here: fn(message_id) sends the delivery message.
_deliver: list[Callable[[int], None]] = []


def register_deliverer(fn: Callable[[int], None]) -> None:
    _deliver[:] = [fn]


def smtp_configured() -> bool:
    return bool(current_app.config.get("SMTP_HOST"))


def send_mail(
    *,
    to: Iterable[str],
    subject: str,
    body: str,
    category: str = "",
    organization_id: int | None = None,
    department_id: int | None = None,
) -> OutboxMessage:
    """Queue a message in the current transaction; it is delivered after commit. The
    organization/department it concerns decides who may read it in the outbox."""
    recipients = sorted({a.strip() for a in to if a and a.strip()})
    msg = OutboxMessage(
        to=", ".join(recipients),
        subject=subject[:256],
        body=body,
        category=category,
        organization_id=organization_id,
        department_id=department_id,
        status=MailStatus.QUEUED if smtp_configured() else MailStatus.OUTBOX,
    )
    db.session.add(msg)
    db.session.flush()
    if msg.status == MailStatus.QUEUED and _deliver:
        message_id, fn = msg.id, _deliver[0]
        after_commit(lambda: fn(message_id))
    return msg


@dataclass(frozen=True)
class Mail:
    """One message for send_mails()."""

    to: Sequence[str]
    subject: str
    body: str
    category: str = ""
    organization_id: int | None = None
    department_id: int | None = None


def send_mails(mails: Sequence[Mail]) -> None:
    """Queue many messages in the current transaction with one bulk insert (as send_mail
    does one by one); each is delivered after commit."""
    if not mails:
        return
    queued = smtp_configured()
    status = MailStatus.QUEUED if queued else MailStatus.OUTBOX
    now = utcnow()
    rows = [
        {
            "to": ", ".join(sorted({a.strip() for a in m.to if a and a.strip()})),
            "subject": m.subject[:256],
            "body": m.body,
            "category": m.category,
            "organization_id": m.organization_id,
            "department_id": m.department_id,
            "status": status,
            "created_at": now,
        }
        for m in mails
    ]
    ids = bulk.insert_rows(OutboxMessage.__table__, rows, return_ids=queued and bool(_deliver))
    for message_id in ids:
        after_commit(functools.partial(_deliver[0], message_id))


def deliver(message_id: int) -> str:
    """Send one queued message over SMTP. Safe to call twice: only 'queued' is sent."""
    msg = db.session.get(OutboxMessage, message_id)
    if msg is None or msg.status != MailStatus.QUEUED:
        return "skipped"
    cfg = current_app.config
    email = EmailMessage()
    email["From"] = cfg["MAIL_FROM"]
    email["To"] = msg.to
    email["Subject"] = msg.subject
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(domain=cfg["MAIL_FROM"].rpartition("@")[2] or "certwright")
    email.set_content(msg.body)
    try:
        if cfg["SMTP_SSL"]:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=30, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=30)
        with client:
            if cfg["SMTP_STARTTLS"] and not cfg["SMTP_SSL"]:
                client.starttls(context=ssl.create_default_context())
            if cfg["SMTP_USER"]:
                client.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"])
            client.send_message(email)
    except (OSError, smtplib.SMTPException) as exc:
        msg.attempts += 1
        msg.error = f"{type(exc).__name__}: {exc}"[:2000]
        if msg.attempts >= 5:
            msg.status = MailStatus.FAILED
        db.session.commit()
        if msg.status == MailStatus.QUEUED:
            raise  # let the actor's retries try again later
        return "failed"
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == msg.id, OutboxMessage.status == MailStatus.QUEUED)
        .values(
            status=MailStatus.SENT, sent_at=utcnow(), attempts=OutboxMessage.attempts + 1, error=""
        )
    )
    db.session.commit()
    return "sent"
