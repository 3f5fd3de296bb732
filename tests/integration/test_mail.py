"""Mail: kept in the outbox without SMTP; delivered over real SMTP (aiosmtpd) with it."""

from __future__ import annotations

import socket

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from app.extensions import db
from app.models import MailStatus, OutboxMessage
from app.services.platform import mail
from tests.conftest import drain


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def test_without_smtp_mail_stays_in_the_outbox(app, stub_worker):
    mail.send_mail(to=["a@example.com"], subject="Hello", body="Body")
    drain(stub_worker)
    msg = db.session.execute(select(OutboxMessage)).scalar_one()
    assert msg.status == MailStatus.OUTBOX and msg.to == "a@example.com"


def test_with_smtp_mail_is_delivered(app, stub_worker, smtp_server):
    controller, inbox = smtp_server
    app.config.update(
        SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="certwright@example.com"
    )
    mail.send_mail(
        to=["b@example.com", "a@example.com"], subject="Your certificate", body="Download it here."
    )
    drain(stub_worker)
    msg = db.session.execute(select(OutboxMessage)).scalar_one()
    assert msg.status == MailStatus.SENT and msg.sent_at is not None
    assert len(inbox.messages) == 1
    sender, rcpts, content = inbox.messages[0]
    assert sender == "certwright@example.com" and sorted(rcpts) == [
        "a@example.com",
        "b@example.com",
    ]
    assert b"Subject: Your certificate" in content and b"Download it here." in content
    # Delivering the same message again sends nothing.
    with app.app_context():
        assert mail.deliver(msg.id) == "skipped"
    assert len(inbox.messages) == 1


def test_smtp_failure_is_recorded_and_retried(app):
    from app.runtime.broker import broker

    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=free_port())  # nothing listens there
    msg = mail.send_mail(to=["c@example.com"], subject="x", body="y")
    db.session.commit()
    broker.flush_all()  # no worker here: deliver by hand
    with pytest.raises(OSError):
        mail.deliver(msg.id)
    db.session.refresh(msg)
    assert (
        msg.status == MailStatus.QUEUED and msg.attempts == 1 and "Connection refused" in msg.error
    )
