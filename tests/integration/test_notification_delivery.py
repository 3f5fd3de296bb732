"""Notification delivery beyond one mail per notice: signed webhooks to a real HTTP server on
127.0.0.1 (the receiver checks the HMAC itself), daily digests, the mailed acknowledge /
snooze links, and escalation of unacknowledged alerts, under a controlled clock."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import (
    AuditEvent,
    DeliveryStage,
    DeliveryStatus,
    NotificationDelivery,
    WebhookAttempt,
    WebhookMessage,
    WebhookMessageStatus,
)
from app.models.types import utcnow
from app.services.notifications import webhooks
from app.services.platform import scheduling
from tests import notify
from tests.conftest import csrf_token, drain
from tests.integration.test_notification_sweep import World, deliveries, run_sweep


@pytest.fixture
def smtp(app):
    for controller, inbox in notify.smtp_server():
        app.config.update(
            SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="certwright@example.com"
        )
        yield inbox


@pytest.fixture
def world(app, stub_worker):
    return World(stub_worker)


class Receiver:
    """A real HTTP server on 127.0.0.1 that verifies each POST's signature as a webhook
    consumer would (its own HMAC code), and answers with the next status of `answers`."""

    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.answers: list[int] = []
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers.get("X-Certwright-Timestamp", "")
                given = self.headers.get("X-Certwright-Signature", "")
                mac = hmac.new(
                    receiver.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
                )
                fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
                receiver.received.append(
                    {
                        "body": json.loads(body),
                        "verified": fresh and hmac.compare_digest(given, "v1=" + mac.hexdigest()),
                        "content_type": self.headers.get("Content-Type"),
                    }
                )
                status = receiver.answers.pop(0) if receiver.answers else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/certwright"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


def test_a_webhook_gets_signed_json_retried_after_a_5xx_with_a_delivery_log(world, receiver, app):
    app.config.update(CW_WEBHOOK_RETRY_SECONDS=1)
    hook, secret = webhooks.create_webhook(actor=world.mrao, name="Ops channel", url=receiver.url)
    db.session.commit()
    receiver.secret = secret
    cert = world.certificate()
    world.rule(roles=[], subscribers=[], send_email=False, webhook_ids=[hook.id])
    receiver.answers = [500]
    as_of = cert.not_after - timedelta(days=29)
    run_sweep(world, as_of)
    run_sweep(world, as_of + timedelta(minutes=5))  # nothing new
    assert len(receiver.received) == 1
    message = db.session.execute(select(WebhookMessage)).scalar_one()
    assert message.status == WebhookMessageStatus.QUEUED and "HTTP 500" in message.error
    time.sleep(1.1)
    assert scheduling.tick()["webhooks"] == 1
    drain(world.worker)
    db.session.refresh(message)
    assert message.status == WebhookMessageStatus.SENT and message.attempts == 2
    assert [r["verified"] for r in receiver.received] == [True, True]
    payload = receiver.received[-1]["body"]
    assert receiver.received[-1]["content_type"] == "application/json"
    assert "www.acme.example" in payload["text"]
    structured = payload["certwright"]
    assert structured["type"] == "ssl_expiration" and structured["stage"] == "alert"
    assert [c["common_name"] for c in structured["certificates"]] == ["www.acme.example"]
    log = webhooks.attempt_log(hook.id)
    assert [(a.attempt, a.status_code, a.ok) for a in log] == [(2, 204, True), (1, 500, False)]
    assert db.session.execute(select(WebhookAttempt)).scalars().all()
    # A receiver with another secret (a forged or stale one) fails verification.
    body = message.body.encode()
    stamp = int(time.time())
    assert not hmac.compare_digest(
        "v1=" + hmac.new(b"whsec_wrong", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest(),
        "v1=" + hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest(),
    )


def test_a_webhook_that_keeps_failing_is_a_dead_letter_and_resent_by_an_admin(world, receiver, app):
    app.config.update(CW_WEBHOOK_RETRY_SECONDS=1, CW_WEBHOOK_MAX_ATTEMPTS=2)
    hook, secret = webhooks.create_webhook(actor=world.mrao, name="Flaky", url=receiver.url)
    db.session.commit()
    receiver.secret = secret
    cert = world.certificate()
    world.rule(roles=[], subscribers=[], send_email=False, webhook_ids=[hook.id])
    receiver.answers = [503, 302]  # a redirect is a failure, never followed
    run_sweep(world, cert.not_after - timedelta(days=6))
    time.sleep(1.1)
    scheduling.tick()
    drain(world.worker)
    message = db.session.execute(select(WebhookMessage)).scalar_one()
    assert message.status == WebhookMessageStatus.FAILED
    assert "gave up after 2 attempts" in message.error and "HTTP 302" in message.error
    webhooks.resend(actor=world.mrao, message_id=message.id)
    db.session.commit()
    drain(world.worker)
    db.session.refresh(message)
    assert message.status == WebhookMessageStatus.SENT
    assert [r["verified"] for r in receiver.received] == [True, True, True]
    resend = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "webhook_message.resend")
    ).scalar_one()
    assert resend.before["status"] == "failed"


def test_a_digest_is_one_mail_per_day_grouped_by_days_left(world, smtp, app):
    app.config.update(CW_NOTIFY_DIGEST_HOUR=6)
    cert = world.certificate()
    base = cert.not_after
    # Four more certificates (copies of the real one) expiring 3, 5, 12 and 30 days after
    # the first.
    notify.copies(
        cert,
        [base + timedelta(days=d) for d in (3, 5, 12, 30)],
        organization_id=world.org.id,
    )
    db.session.commit()
    world.rule(roles=[], subscribers=["ops@acme.example"], digest=True, days=(60, 30, 7))
    day = (base - timedelta(days=10)).replace(hour=7, minute=0, second=0, microsecond=0)
    run_sweep(world, day)  # 07:00: the digest of everything due
    run_sweep(world, day + timedelta(hours=1))  # the same day again: nothing
    assert len(smtp.received) == 1
    message = smtp.received[0][2]
    subject = str(message["Subject"])
    assert "4 expiring within 30 days, 1 expiring within 60 days" in subject, subject
    body = notify.parts(message)["text/plain"]
    assert body.startswith("5 certificates need attention.")
    assert body.index("== Expiring within 30 days (4) ==") < body.index(
        "== Expiring within 60 days (1) =="
    )
    for name in ("www.acme.example", "host0.example", "host3.example"):
        assert name in body and name in notify.parts(message)["text/html"]
    assert len(deliveries()) == 5 and all(d.outbox_message_id for d in deliveries())
    assert len({d.outbox_message_id for d in deliveries()}) == 1
    # A certificate that comes due later that day waits for the next day's digest.
    notify.copies(cert, [day + timedelta(days=5)], organization_id=world.org.id, prefix="late")
    db.session.commit()
    run_sweep(world, day + timedelta(hours=2))
    run_sweep(world, day + timedelta(hours=22))  # 05:00 the next day: not yet
    assert len(smtp.received) == 1
    assert [d.status for d in deliveries()][-1] == DeliveryStatus.PENDING
    run_sweep(world, day + timedelta(hours=23, minutes=30))  # 06:30: the next digest
    assert len(smtp.received) == 2
    second = smtp.received[1][2]
    assert "1 expiring within 7 days" in str(second["Subject"])
    assert "late0.example" in notify.parts(second)["text/plain"]
    assert "www.acme.example" not in notify.parts(second)["text/plain"]


def test_the_mailed_links_acknowledge_snooze_and_switch_to_the_digest(world, smtp, client):
    cert = world.certificate()
    # The link acts now (the real clock): thresholds around today's 90 days left.
    rule = world.rule(roles=[], subscribers=["ops@acme.example"], days=(90, 80, 60, 30))
    now = utcnow()
    run_sweep(world, now)
    assert [d.threshold for d in deliveries()] == [90]
    body = notify.parts(smtp.received[0][2])["text/plain"]
    ack = re.search(r"http://certwright\.test(/notifications/ack/\d+/\S+)", body).group(1)
    pref = re.search(r"http://certwright\.test(/notifications/preference/\d+/\S+)", body).group(1)
    # Following the link (as a mail scanner does) changes nothing.
    page = client.get(ack)
    assert page.status_code == 200 and "not acknowledged" in page.text
    assert client.get(ack[:-3] + "xyz").status_code == 404
    token = csrf_token(client, ack)
    client.post(ack, data={"csrf_token": token, "snooze": "30"})
    assert "snoozed by ops@acme.example" in client.get(ack).text
    smtp.clear()
    run_sweep(world, now + timedelta(days=15))  # the 80-day notice, inside the snooze
    assert smtp.received == []
    run_sweep(world, now + timedelta(days=31))  # after it: the 60-day one
    assert len(smtp.received) == 1 and "expires in 5" in str(smtp.received[0][2]["Subject"])
    client.post(ack, data={"csrf_token": csrf_token(client, ack), "snooze": ""})
    assert "acknowledged by ops@acme.example" in client.get(ack).text
    smtp.clear()
    run_sweep(world, now + timedelta(days=61))
    assert smtp.received == []  # acknowledged: no 30-day reminder
    assert [d.threshold for d in deliveries()] == [90, 60]
    assert cert.id
    client.post(pref, data={"csrf_token": csrf_token(client, pref), "digest": "1"})
    assert "one digest a day" in client.get(pref).text
    actions = db.session.execute(
        select(AuditEvent.action, AuditEvent.actor).where(
            AuditEvent.action.in_(["notification.acknowledge", "notification.preference"])
        )
    ).all()
    assert [a for a, _ in actions] == [
        "notification.acknowledge",
        "notification.acknowledge",
        "notification.preference",
    ]
    assert all("ops@acme.example (mailed link)" in label for _, label in actions)
    assert rule.id


def test_an_unacknowledged_last_threshold_alert_escalates_once(world, smtp):
    cert = world.certificate()
    other = world.certificate("api.acme.example")
    world.rule(
        roles=[],
        subscribers=["ops@acme.example"],
        days=(7, 1),
        escalate_after_hours=12,
        escalate_subscribers=["ciso@acme.example"],
    )
    alert = cert.not_after - timedelta(hours=23)
    run_sweep(world, alert)
    assert sorted(str(m["Subject"]) for m in smtp.to("ops@acme.example")) != []
    # The alert about the other certificate is acknowledged in the console.
    from app.services.notifications import acknowledgements

    other_alert = db.session.execute(
        select(NotificationDelivery.id).where(NotificationDelivery.certificate_id == other.id)
    ).scalar_one()
    acknowledgements.acknowledge_deliveries(actor=world.mrao, delivery_ids=[other_alert])
    db.session.commit()
    run_sweep(world, alert + timedelta(hours=11))  # not yet
    assert smtp.to("ciso@acme.example") == []
    run_sweep(world, alert + timedelta(hours=13))
    run_sweep(world, alert + timedelta(hours=14))
    escalated = smtp.to("ciso@acme.example")
    assert len(escalated) == 1
    assert "www.acme.example" in str(escalated[0]["Subject"])
    stages = [
        (d.certificate_id, d.stage, d.recipient)
        for d in deliveries()
        if d.stage == DeliveryStage.ESCALATION
    ]
    assert stages == [(cert.id, DeliveryStage.ESCALATION, "ciso@acme.example")]
    assert datetime.now(UTC)
