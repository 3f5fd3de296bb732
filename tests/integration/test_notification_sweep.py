"""Expiry notifications: rules, the set-based sweep, exactly-once deliveries through the
outbox to a real SMTP server (aiosmtpd), under a controlled clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import (
    CertType,
    DeliveryStatus,
    MailStatus,
    NotificationDelivery,
    OutboxMessage,
    RecipientRole,
    Role,
)
from app.services.errors import ValidationFailed
from app.services.notifications import compose, rules, samples, sweep
from app.services.scope import SYSTEM
from tests import notify
from tests.conftest import drain
from tests.factories import make_admin, make_domain, make_org, make_pki, request_certificate


@pytest.fixture
def smtp(app):
    for controller, inbox in notify.smtp_server():
        app.config.update(
            SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="certwright@example.com"
        )
        yield inbox


class World:
    def __init__(self, worker):
        self.worker = worker
        self.mrao = make_admin("mrao")
        self.org = make_org("Acme", city="Berlin")
        self.other = make_org("Other")
        self.rao = make_admin("rao", Role.RAO, org=self.org, privileges=[CertType.SSL])
        make_domain("acme.example", by=self.mrao, org=self.org)
        _, _, self.profile = make_pki(requires_approval=False)

    def certificate(self, cn="www.acme.example", **fields):
        """Issued with the SMTP relay off: its collection mail stays in the outbox."""
        from flask import current_app

        relay = current_app.config["SMTP_HOST"]
        current_app.config["SMTP_HOST"] = ""
        req, _ = request_certificate(
            by=self.mrao,
            org=self.org,
            profile=self.profile,
            cn=cn,
            requester_email="requester@acme.example",
            **fields,
        )
        drain(self.worker)
        current_app.config["SMTP_HOST"] = relay
        db.session.refresh(req)
        assert req.certificate is not None, req.failure_reason
        return req.certificate

    def rule(self, actor=None, **fields):
        data = {
            "name": "SSL expiry",
            "type": "ssl_expiration",
            "places": [(self.org.id, None)],
            "days": (60, 30, 7, 1, 0),
            "roles": [RecipientRole.ADMINS.value, RecipientRole.REQUESTER.value],
            "subscribers": ["Ops@Acme.example"],
        }
        data.update(fields)
        rule = rules.save_rule(actor=actor or self.mrao, data=rules.RuleData(**data))
        db.session.commit()
        return rule


@pytest.fixture
def world(app, stub_worker):
    return World(stub_worker)


def run_sweep(world, as_of):
    sweep.start_sweep(as_of=as_of)
    drain(world.worker)


def notification_mails():
    return db.session.execute(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.category.like("notification.%"))
    ).scalar_one()


def deliveries():
    return list(
        db.session.execute(select(NotificationDelivery).order_by(NotificationDelivery.id)).scalars()
    )


# An hour past each threshold: whole days left, rounded down.
WHEN = {
    60: "expires in 59 days",
    30: "expires in 29 days",
    7: "expires in 6 days",
    1: "expires within a day",
    0: "expired",
}


def test_one_mail_per_recipient_per_threshold_through_60_30_7_1_days_and_expiry(world, smtp):
    cert = world.certificate()
    world.rule()
    expected = sorted(["rao@example.com", "requester@acme.example", "ops@acme.example"])
    seen = []
    for threshold in (60, 30, 7, 1, 0):
        as_of = (
            cert.not_after - timedelta(days=threshold, hours=-1)
            if threshold
            else cert.not_after + timedelta(hours=1)
        )
        smtp.clear()
        run_sweep(world, as_of)
        run_sweep(world, as_of + timedelta(minutes=30))  # the same day again: nothing new
        assert sorted(r for _, rcpts, _ in smtp.received for r in rcpts) == expected, threshold
        for _, _, message in smtp.received:
            assert "www.acme.example" in str(message["Subject"])
            assert message["From"] == "certwright@example.com"
            assert message["Auto-Submitted"] == "auto-generated"
            body = notify.parts(message)
            assert set(body) == {"text/plain", "text/html"}
            assert f"/admin/ssl_certs/details/?id={cert.id}" in body["text/plain"]
            assert "http://certwright.test/notifications/ack/" in body["text/plain"]
            assert WHEN[threshold] in str(message["Subject"])
        seen.append(threshold)
    rows = deliveries()
    assert len(rows) == 5 * 3
    assert {(d.threshold, d.recipient) for d in rows} == {(t, r) for t in seen for r in expected}
    assert all(d.status == DeliveryStatus.COMPOSED and d.outbox_message_id for d in rows)
    sent = db.session.execute(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status == MailStatus.SENT)
    ).scalar_one()
    assert sent == 15


def test_a_certificate_first_seen_inside_the_window_gets_only_the_current_threshold(world, smtp):
    cert = world.certificate()
    world.rule(roles=[], subscribers=["ops@acme.example"])
    run_sweep(world, cert.not_after - timedelta(days=5))
    assert [d.threshold for d in deliveries()] == [7]
    assert len(smtp.received) == 1


def test_two_sweeps_at_once_and_a_repeated_range_send_each_mail_once(world, smtp):
    cert = world.certificate()
    world.rule(roles=[], subscribers=["ops@acme.example", "sec@acme.example"])
    as_of = cert.not_after - timedelta(days=29)
    # Two schedulers fire a sweep each: both compute the same rows, as two workers run them.
    sweep.start_sweep(as_of=as_of)
    sweep.start_sweep(as_of=as_of)
    drain(world.worker)
    assert len(deliveries()) == 2
    # A range job delivered again (a retried message) inserts nothing.
    assert sweep.run_range(sweep_id=1, index=0, low=1, high=cert.id).created == 0
    db.session.commit()
    assert compose.compose_pending(as_of=as_of).mails == 0
    drain(world.worker)
    assert sorted(r for _, rcpts, _ in smtp.received for r in rcpts) == [
        "ops@acme.example",
        "sec@acme.example",
    ]
    assert len(deliveries()) == 2


def test_a_composer_killed_before_commit_leaves_the_batch_for_the_next_one(world, smtp):
    cert = world.certificate()
    world.rule(roles=[], subscribers=["ops@acme.example"])
    as_of = cert.not_after - timedelta(days=59)
    for rule in sweep.expiry_rules():
        sweep.insert_due(rule, as_of)
    db.session.commit()
    # A composer claims the delivery and writes the mail, then dies before committing.
    claimed = compose._claim([], as_of, None)
    assert len(claimed) == 1
    compose._compose(claimed, as_of, digest_mode=False, result=compose.Composed())
    db.session.rollback()
    assert notification_mails() == 0
    assert compose.compose_pending(as_of=as_of).mails == 1
    assert compose.compose_pending(as_of=as_of).mails == 0
    drain(world.worker)
    assert len(smtp.received) == 1


def test_a_recipient_with_a_line_break_is_refused_and_nothing_is_stuck(world, smtp):
    cert = world.certificate()
    world.rule(roles=[RecipientRole.REQUESTER.value], subscribers=["ops@acme.example"])
    # Data written before validation existed (or by hand): a header injection attempt.
    db.session.execute(
        text("UPDATE certificate_requests SET requester_email = :e"),
        {"e": "victim@acme.example\r\nBcc: all@evil.example"},
    )
    db.session.commit()
    run_sweep(world, cert.not_after - timedelta(days=6))
    rows = {d.recipient: d for d in deliveries()}
    bad = rows["victim@acme.example\r\nbcc: all@evil.example"]
    assert bad.status == DeliveryStatus.REFUSED and "line break" in bad.error
    assert bad.outbox_message_id is None
    assert rows["ops@acme.example"].status == DeliveryStatus.COMPOSED
    assert [rcpts for _, rcpts, _ in smtp.received] == [["ops@acme.example"]]
    assert compose.pending_count() == 0
    assert not any("evil" in str(m) for _, _, m in smtp.received)


def test_acknowledged_certificates_are_not_notified_again(world, smtp):
    from app.models import AckState, NotificationAck

    cert = world.certificate()
    rule = world.rule(roles=[], subscribers=["ops@acme.example"])
    run_sweep(world, cert.not_after - timedelta(days=29))
    db.session.add(
        NotificationAck(
            rule_id=rule.id,
            certificate_id=cert.id,
            state=AckState.ACKNOWLEDGED,
            by="ops@acme.example",
        )
    )
    db.session.commit()
    run_sweep(world, cert.not_after - timedelta(days=6))
    assert [d.threshold for d in deliveries()] == [30]


def test_daily_frequency_mails_every_day_inside_the_window(world, smtp):
    cert = world.certificate()
    world.rule(roles=[], subscribers=["ops@acme.example"], frequency="daily", days=(7,))
    # 01:00 UTC six days before expiry: each day's two sweeps (01:00, 03:00) fall on one
    # calendar day whatever the time of day the test runs at (not_after - 6.5 days put
    # them on both sides of midnight when run between 10:00 and 12:00 UTC).
    start = datetime.combine((cert.not_after - timedelta(days=6)).date(), time(1), UTC)
    for day in range(3):
        run_sweep(world, start + timedelta(days=day))
        run_sweep(world, start + timedelta(days=day, hours=2))
    assert len(smtp.received) == 3
    assert len({d.occurrence for d in deliveries()}) == 3


def test_rule_scope_and_validation(world):
    with pytest.raises(ValidationFailed) as refused:
        rules.save_rule(
            actor=world.rao,
            data=rules.RuleData(
                name="all", type="ssl_expiration", applies_to_all=True, subscribers=["a@b.example"]
            ),
        )
    assert "Only an MRAO" in refused.value.errors["scope"][0]
    with pytest.raises(ValidationFailed) as refused:
        rules.save_rule(
            actor=world.rao,
            data=rules.RuleData(
                name="x",
                type="ssl_expiration",
                places=[(world.other.id, None)],
                subscribers=["a@b.example"],
            ),
        )
    # Another organization reads like a missing one: never named (docs/authorization.md).
    assert refused.value.errors["scope"] == [f"Organization #{world.other.id} does not exist."]
    with pytest.raises(ValidationFailed) as refused:
        rules.save_rule(
            actor=world.rao,
            data=rules.RuleData(
                name="x",
                type="client_expiration",
                places=[(world.org.id, None)],
                subscribers=["a@b.example"],
            ),
        )
    assert "no Client privilege" in refused.value.errors["scope"][0]
    with pytest.raises(ValidationFailed) as refused:
        rules.save_rule(
            actor=world.mrao,
            data=rules.RuleData(
                name="x",
                type="ssl_expiration",
                applies_to_all=True,
                subscribers=["a@b.example\r\nBcc: x@y.example"],
                days=(10, -1),
            ),
        )
    assert "line break" in refused.value.errors["subscribers"][0]
    assert "-1 days" in refused.value.errors["days"][0]
    mine = world.rule(actor=world.rao)
    theirs = world.rule(applies_to_all=True, places=[])
    visible = (
        db.session.execute(
            rules.live_rules().where(rules.visible_rules_clause(rules.scope_of(world.rao)))
        )
        .scalars()
        .all()
    )
    assert [r.id for r in visible] == [mine.id]
    assert rules.get_rule(actor=world.mrao, rule_id=theirs.id) is theirs


def test_preview_lists_what_the_rule_would_notify_today(world):
    cert = world.certificate()
    later = world.certificate("api.acme.example")
    rule = world.rule()
    as_of = cert.not_after - timedelta(days=20)
    total, rows = sweep.preview(rule, as_of=as_of)
    assert total == 2
    assert {(r.certificate.id, r.threshold, r.already_notified) for r in rows} == {
        (cert.id, 30, False),
        (later.id, 30, False),
    }
    run_sweep(world, as_of)
    assert all(r.already_notified for r in sweep.preview(rule, as_of=as_of)[1])
    assert sweep.preview(rule, as_of=cert.not_after - timedelta(days=80))[0] == 0


def test_a_sample_goes_to_the_admin_asking_and_only_to_them(world, smtp):
    world.certificate()
    rule = world.rule()
    samples.send_sample(actor=world.rao, rule_id=rule.id)
    db.session.commit()
    drain(world.worker)
    assert [rcpts for _, rcpts, _ in smtp.received] == [["rao@example.com"]]
    assert "www.acme.example" in smtp.subjects()[0]


def test_the_system_sweep_is_scheduled(app):
    from app.services.platform import jobs, scheduling

    assert "notification_sweep" in jobs.SYSTEM_SCHEDULES
    scheduling.ensure_system_schedules()
    db.session.commit()
    assert "notification_sweep" in {
        s.job_kind for s in db.session.execute(select(scheduling.Schedule)).scalars()
    }
    assert SYSTEM
