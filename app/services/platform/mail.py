"""Mail: every message becomes an outbox row; with SMTP configured a queued row is durable
work that an actor delivers.

A queued row is delivered after commit (a message to the mail actor), and again by the
scheduler when that message was lost (a restarted embedded worker starts with an empty
queue; a command run from another terminal sends to a queue nobody reads) or when a failed
attempt's backoff has passed. Each delivery message names the attempt it is for (the row's
`attempts`); the first to claim the row for that attempt sends, any duplicate is a no-op.
Every failure (refused connection, 4xx or 5xx reply) is retried after CW_MAIL_RETRY_SECONDS,
doubled each time up to an hour, until CW_MAIL_MAX_ATTEMPTS attempts have failed; then the
row is `failed` with the last error. Delivery is at least once: a process that dies after
the relay accepted a message but before recording it sends it again after the lease.
"""

from __future__ import annotations

import functools
import smtplib
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from flask import current_app
from sqlalchemy import or_, update

from app.extensions import db
from app.models import Admin, MailStatus, OutboxMessage
from app.models.types import utcnow
from app.notices import addresses
from app.services import audit, bulk
from app.services.errors import Conflict, NotFound
from app.services.platform import dispatch
from app.services.platform.jobs import after_commit

# How long one attempt may take before the row is presumed abandoned (its process died) and
# dispatched again: well above smtplib's 30 s per step (connect, TLS, login, send).
SENDING_LEASE = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=1)

# The mail actor registers itself here: fn(message_id, attempt) sends the delivery message.
_deliver: list[Callable[[int, int], None]] = []


def register_deliverer(fn: Callable[[int, int], None]) -> None:
    _deliver[:] = [fn]


def smtp_configured() -> bool:
    return bool(current_app.config.get("SMTP_HOST"))


def checked_recipients(to: Iterable[str]) -> tuple[list[str], str]:
    """The distinct recipients, each checked (no CR/LF, a real address), and the reason the
    message is refused ("" when every one is fine)."""
    recipients = sorted({a.strip() for a in to if a and a.strip()})
    if not recipients:
        return [], "refused: no recipient"
    for address in recipients:
        try:
            addresses.check_address(address)
        except addresses.AddressError as exc:
            return [], f"refused: {exc}"
    return recipients, ""


def _row(mail: Mail, *, queued: bool, dispatch: bool, now: datetime) -> dict[str, object]:
    """The outbox row of a message; a refused one is failed at once, never attempted, so
    the transaction that wrote it (an issuance) still commits."""
    recipients, refusal = checked_recipients(mail.to)
    shown = ", ".join(recipients) if recipients else ", ".join(mail.to)
    return {
        "to": shown.replace("\r", " ").replace("\n", " ")[:2000],
        "subject": mail.subject[:256],
        "body": mail.body,
        "html": mail.html,
        "category": mail.category,
        "organization_id": mail.organization_id,
        "department_id": mail.department_id,
        "status": MailStatus.FAILED
        if refusal
        else (MailStatus.QUEUED if queued else MailStatus.OUTBOX),
        "attempts": 0,
        "error": refusal,
        "next_attempt_at": now if queued and not refusal else None,
        "dispatched_at": now if dispatch and not refusal else None,
        "created_at": now,
        "attachment_name": mail.attachment.filename if mail.attachment else "",
        "attachment_type": mail.attachment.mimetype if mail.attachment else "",
        "attachment": mail.attachment.data if mail.attachment else None,
    }


def send_mail(
    *,
    to: Iterable[str],
    subject: str,
    body: str,
    category: str = "",
    organization_id: int | None = None,
    department_id: int | None = None,
    html: str = "",
    attachment: Attachment | None = None,
) -> OutboxMessage:
    """Queue a message in the current transaction; it is delivered after commit. The
    organization/department it concerns decides who may read it in the outbox. A message
    whose recipient is not a valid address is kept as failed ("refused: ...")."""
    queued = smtp_configured()
    dispatch = queued and bool(_deliver)
    row = _row(
        Mail(
            to=list(to),
            subject=subject,
            body=body,
            category=category,
            organization_id=organization_id,
            department_id=department_id,
            html=html,
            attachment=attachment,
        ),
        queued=queued,
        dispatch=dispatch,
        now=utcnow(),
    )
    msg = OutboxMessage(**row)
    db.session.add(msg)
    db.session.flush()
    if dispatch and msg.status == MailStatus.QUEUED:
        after_commit(functools.partial(_deliver[0], msg.id, 0))
    return msg


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message (kept in its outbox row until it is sent)."""

    filename: str
    mimetype: str  # "text/csv", "application/xml", ...
    data: bytes


@dataclass(frozen=True)
class Mail:
    """One message for send_mails()."""

    to: Sequence[str]
    subject: str
    body: str
    category: str = ""
    organization_id: int | None = None
    department_id: int | None = None
    html: str = ""  # an HTML alternative to the plain-text body
    attachment: Attachment | None = None


def send_mails(mails: Sequence[Mail]) -> list[int]:
    """Queue many messages in the current transaction with one bulk insert (as send_mail
    does one by one); each is delivered after commit. Their outbox ids, in order."""
    if not mails:
        return []
    queued = smtp_configured()
    dispatch = queued and bool(_deliver)
    now = utcnow()
    rows = [_row(m, queued=queued, dispatch=dispatch, now=now) for m in mails]
    ids = bulk.insert_rows(OutboxMessage.__table__, rows, return_ids=True)
    if dispatch:
        for message_id, row in zip(ids, rows, strict=True):
            if row["status"] == MailStatus.QUEUED:
                after_commit(functools.partial(_deliver[0], message_id, 0))
    return ids


def dispatch_due(now: datetime | None = None, *, restarted: bool = False) -> int:
    """Send a delivery message for each queued row that is due and has no recent message
    (app.services.platform.dispatch); the caller commits."""
    if not smtp_configured() or not _deliver:
        return 0
    return dispatch.dispatch_due(
        OutboxMessage, MailStatus.QUEUED, _deliver[0], now=now or utcnow(), restarted=restarted
    )


def backoff(failed_attempts: int) -> timedelta:
    """The wait after the n-th failed attempt: CW_MAIL_RETRY_SECONDS doubled each time."""
    first = int(current_app.config["CW_MAIL_RETRY_SECONDS"])
    return min(MAX_BACKOFF, timedelta(seconds=first * 2 ** max(0, failed_attempts - 1)))


def _claim(message_id: int, attempt: int | None, now: datetime) -> bool:
    """Take the row for one attempt; False when sent, failed, or another message for the
    same attempt took it first. The attempt number is the guard, not the clock: a message
    for attempt n exists only once attempt n is due (sent at once, or by the scheduler after
    the backoff), so a worker whose clock runs behind the sender's still delivers at once."""
    conditions = [OutboxMessage.id == message_id, OutboxMessage.status == MailStatus.QUEUED]
    if attempt is not None:
        conditions.append(OutboxMessage.attempts == attempt)
    else:  # a message from before attempts were named: only when due
        conditions.append(
            or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now)
        )
    claimed = db.session.execute(
        update(OutboxMessage)
        .where(*conditions)
        .values(attempts=OutboxMessage.attempts + 1, next_attempt_at=now + SENDING_LEASE)
    )
    db.session.commit()
    return claimed.rowcount == 1


def _email(msg: OutboxMessage) -> EmailMessage:
    cfg = current_app.config
    email = EmailMessage()
    email["From"] = cfg["MAIL_FROM"]
    email["To"] = msg.to
    email["Subject"] = msg.subject
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(domain=cfg["MAIL_FROM"].rpartition("@")[2] or "certwright")
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    email.set_content(msg.body)
    if msg.html:
        email.add_alternative(msg.html, subtype="html")
    if msg.attachment is not None and msg.attachment_name:
        kind = (msg.attachment_type or "application/octet-stream").split(";")[0].strip()
        maintype, _, subtype = kind.partition("/")
        email.add_attachment(
            bytes(msg.attachment),
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=msg.attachment_name,
        )
    return email


def _send(email: EmailMessage) -> None:
    cfg = current_app.config
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


def deliver(message_id: int, attempt: int | None = None) -> str:
    """Make one delivery attempt of a queued message over SMTP: "sent", "retry" (failed,
    due again after the backoff), "failed" (out of attempts) or "skipped" (not queued, not
    due, or this attempt was already taken by another message)."""
    now = utcnow()
    if not _claim(message_id, attempt, now):
        return "skipped"
    msg = db.session.get(OutboxMessage, message_id)
    if msg is None:
        return "skipped"
    try:
        _, refusal = checked_recipients(msg.to.split(","))
        if refusal:
            raise ValueError(refusal)
        email = _email(msg)
    except ValueError as exc:  # a header that cannot be written: no retry can fix it
        db.session.rollback()
        return _refused(message_id, str(exc))
    try:
        _send(email)
    except Exception as exc:  # refused, timed out, 4xx/5xx, bad header: record it, retry later
        db.session.rollback()
        return _failed(message_id, f"{type(exc).__name__}: {exc}")
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == msg.id, OutboxMessage.status == MailStatus.QUEUED)
        .values(status=MailStatus.SENT, sent_at=utcnow(), error="", next_attempt_at=None)
    )
    db.session.commit()
    return "sent"


def _refused(message_id: int, error: str) -> str:
    msg = db.session.get(OutboxMessage, message_id)
    if msg is None or msg.status != MailStatus.QUEUED:
        return "skipped"
    msg.status = MailStatus.FAILED
    msg.next_attempt_at = None
    msg.error = (error if error.startswith("refused") else f"refused: {error}")[:2000]
    db.session.commit()
    return "failed"


def resend(
    *, actor: Admin, message_id: int, visible: Callable[[OutboxMessage], bool] | None = None
) -> OutboxMessage:
    """Queue a failed message again (the dead letter's resend), with a fresh set of attempts.

    Raises:
        NotFound: no such message (or not visible). Conflict: it is not failed, or its
            recipient is refused (no attempt can deliver it).
    """
    msg = db.session.get(OutboxMessage, message_id)
    if msg is None or (visible is not None and not visible(msg)):
        raise NotFound("No such message.")
    if msg.status != MailStatus.FAILED:
        raise Conflict(f"Message #{msg.id} is {msg.status.value}, not failed: nothing to resend.")
    if msg.error.startswith("refused"):
        raise Conflict(f"Message #{msg.id} cannot be resent: {msg.error}")
    if not smtp_configured():
        raise Conflict("No SMTP relay is configured (SMTP_HOST): the message cannot be sent.")
    before = {"status": msg.status.value, "attempts": msg.attempts, "error": msg.error}
    now = utcnow()
    msg.status = MailStatus.QUEUED
    msg.attempts = 0
    msg.error = f"resent by {actor.login} after: {msg.error}"[:2000]
    msg.next_attempt_at = now
    msg.dispatched_at = now if _deliver else None
    db.session.flush()
    if _deliver:
        after_commit(functools.partial(_deliver[0], msg.id, 0))
    audit.record(
        action="mail.resend",
        actor=actor,
        object_type="OutboxMessage",
        object_id=msg.id,
        label=msg.subject,
        before=before,
        after={"status": msg.status.value, "attempts": 0, "error": msg.error},
        organization_id=msg.organization_id,
    )
    return msg


def _failed(message_id: int, error: str) -> str:
    maximum = int(current_app.config["CW_MAIL_MAX_ATTEMPTS"])
    now = utcnow()
    msg = db.session.get(OutboxMessage, message_id)
    if msg is None or msg.status != MailStatus.QUEUED:
        return "skipped"
    if msg.attempts >= maximum:
        msg.status = MailStatus.FAILED
        msg.next_attempt_at = None
        msg.error = f"gave up after {msg.attempts} attempts; last: {error}"[:2000]
        outcome = "failed"
    else:
        msg.next_attempt_at = now + backoff(msg.attempts)
        msg.dispatched_at = None  # the scheduler sends the next message when it is due
        msg.error = f"attempt {msg.attempts} failed: {error}"[:2000]
        outcome = "retry"
    db.session.commit()
    return outcome
