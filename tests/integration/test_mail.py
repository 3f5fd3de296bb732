"""Mail: kept in the outbox without SMTP; delivered over real SMTP (aiosmtpd) with it, after a
restart too, and retried with backoff when the server refuses."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from app.extensions import db
from app.models import MailStatus, OutboxMessage
from app.models.types import utcnow
from app.services.platform import dispatch, mail, scheduling
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
        assert mail.deliver(msg.id, 0) == "skipped"
        assert mail.deliver(msg.id) == "skipped"
    assert len(inbox.messages) == 1


def test_smtp_failure_is_recorded_and_retried_later(app):
    from app.runtime.broker import broker

    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=free_port())  # nothing listens there
    msg = mail.send_mail(to=["c@example.com"], subject="x", body="y")
    db.session.commit()
    broker.flush_all()  # no worker here: deliver by hand
    before = utcnow()
    assert mail.deliver(msg.id, 0) == "retry"
    db.session.refresh(msg)
    assert msg.status == MailStatus.QUEUED and msg.attempts == 1
    assert "attempt 1 failed: ConnectionRefusedError" in msg.error
    # Due again after CW_MAIL_RETRY_SECONDS (60 by default), not at once.
    assert before + timedelta(seconds=59) <= msg.next_attempt_at <= utcnow() + timedelta(seconds=61)
    assert mail.dispatch_due() == 0  # not due yet: nothing names attempt 2
    assert mail.deliver(msg.id, 0) == "skipped"  # attempt 1's message, again: a no-op


class Flaky(Inbox):
    """An SMTP server that refuses the first `refusals` messages with a temporary error."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def handle_DATA(self, server, session, envelope):
        if self.refusals > 0:
            self.refusals -= 1
            return "451 4.3.0 Mailbox busy, try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def flaky_server():
    inbox = Flaky(refusals=1)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def test_a_refused_message_is_retried_after_the_backoff_and_delivered(
    app, stub_worker, flaky_server
):
    controller, inbox = flaky_server
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, CW_MAIL_RETRY_SECONDS=1)
    msg = mail.send_mail(to=["d@example.com"], subject="Collect it", body="Here.")
    drain(stub_worker)
    db.session.refresh(msg)
    assert msg.status == MailStatus.QUEUED and msg.attempts == 1 and inbox.messages == []
    assert "451" in msg.error and "try again later" in msg.error
    assert scheduling.tick()["mail"] == 0  # in its backoff
    time.sleep(1.1)
    assert scheduling.tick()["mail"] == 1  # the scheduler sends it again once due
    drain(stub_worker)
    db.session.refresh(msg)
    assert msg.status == MailStatus.SENT and msg.attempts == 2 and msg.error == ""
    assert len(inbox.messages) == 1 and b"Subject: Collect it" in inbox.messages[0][2]


def test_mail_queued_before_a_restart_is_delivered_after_it(app, stub_worker, smtp_server):
    from app.runtime.broker import broker

    controller, inbox = smtp_server
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port)
    msg = mail.send_mail(to=["e@example.com"], subject="Before the restart", body="x")
    db.session.commit()
    broker.flush_all()  # the process stopped: the embedded worker's queue is gone
    # What the embedded worker does when the server starts again (app/runtime/embedded.py).
    assert scheduling.resend_pending() == 1
    drain(stub_worker)
    db.session.refresh(msg)
    assert msg.status == MailStatus.SENT and len(inbox.messages) == 1


def test_a_lost_delivery_message_is_sent_again_by_the_scheduler(app, stub_worker, smtp_server):
    """A command run from another terminal queues mail in its own process; the server's
    scheduler delivers it once the message that named it is overdue."""
    from app.runtime.broker import broker

    controller, inbox = smtp_server
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port)
    msg = mail.send_mail(to=["f@example.com"], subject="From the CLI", body="x")
    db.session.commit()
    broker.flush_all()
    assert scheduling.tick()["mail"] == 0  # the message may still be on its way
    assert (
        scheduling.tick(utcnow() + dispatch.redispatch_after() + timedelta(seconds=1))["mail"] == 1
    )
    drain(stub_worker)
    db.session.refresh(msg)
    assert msg.status == MailStatus.SENT and len(inbox.messages) == 1


def test_two_messages_for_one_attempt_send_once(app, smtp_server):
    from app.runtime.broker import broker

    controller, inbox = smtp_server
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port)
    msg = mail.send_mail(to=["g@example.com"], subject="Once", body="x")
    db.session.commit()
    broker.flush_all()
    assert [mail.deliver(msg.id, 0), mail.deliver(msg.id, 0)] == ["sent", "skipped"]
    assert len(inbox.messages) == 1


def test_out_of_attempts_the_message_fails_with_the_last_error(app):
    from app.runtime.broker import broker

    app.config.update(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=free_port(),
        CW_MAIL_MAX_ATTEMPTS=2,
        CW_MAIL_RETRY_SECONDS=1,
    )
    msg = mail.send_mail(to=["h@example.com"], subject="x", body="y")
    db.session.commit()
    broker.flush_all()
    assert mail.deliver(msg.id, 0) == "retry"
    time.sleep(1.1)
    assert mail.dispatch_due() == 1
    db.session.commit()
    broker.flush_all()
    assert mail.deliver(msg.id, 1) == "failed"
    db.session.refresh(msg)
    assert msg.status == MailStatus.FAILED and msg.next_attempt_at is None
    assert msg.error.startswith("gave up after 2 attempts; last: ConnectionRefusedError")
    assert mail.dispatch_due(utcnow() + timedelta(days=1)) == 0


def test_the_backoff_doubles_up_to_an_hour(app):
    app.config["CW_MAIL_RETRY_SECONDS"] = 60
    waits = [mail.backoff(n).total_seconds() for n in range(1, 9)]
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_a_worker_whose_clock_runs_behind_delivers_at_once(app, smtp_server):
    """In scale-out the web process that queued the message and the worker that sends it
    read different clocks; the attempt number, not the time, decides."""
    from app.runtime.broker import broker

    controller, inbox = smtp_server
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port)
    msg = mail.send_mail(to=["i@example.com"], subject="Skewed", body="x")
    msg.next_attempt_at = utcnow() + timedelta(seconds=5)  # queued by a host 5 s ahead
    db.session.commit()
    broker.flush_all()
    assert mail.deliver(msg.id, 0) == "sent" and len(inbox.messages) == 1
