"""Console: Settings > Notifications (form, scope, preview, sample), Settings > Notification
Webhooks, Reports > Sent Notifications (scope, CSV export, acknowledge)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import (
    AckState,
    Certificate,
    CertType,
    NotificationAck,
    NotificationDelivery,
    NotificationRule,
    NotificationType,
    OutboxMessage,
    Role,
)
from app.services.notifications import compose, rules, sweep
from tests.conftest import csrf_token, drain, login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)


@pytest.fixture
def world(app, stub_worker):
    mrao = make_admin("mrao")
    alpha, beta = make_org("Alpha Inc", city="Town"), make_org("Beta Corp", city="Town")
    make_domain("alpha.example", by=mrao, org=alpha)
    make_domain("beta.example", by=mrao, org=beta)
    make_admin("alpha-rao", Role.RAO, org=alpha, privileges=[CertType.SSL])
    *_, profile = make_pki(requires_approval=False)
    certs = {}
    for org, cn in ((alpha, "www.alpha.example"), (beta, "www.beta.example")):
        req, _ = request_certificate(by=mrao, org=org, profile=profile, cn=cn)
        drain(stub_worker)
        db.session.refresh(req)
        certs[cn] = req.certificate
    return {"alpha": alpha, "beta": beta, "certs": certs, "mrao": mrao, "worker": stub_worker}


def as_(client, who):
    login(client, who, PASSWORD)


def post_rule(client, url, **fields):
    data = {
        "csrf_token": csrf_token(client, url),
        "name": "Expiring SSL",
        "type": "ssl_expiration",
        "days": "60, 30, 7",
        "frequency": "threshold",
        "roles": ["admins"],
        "subscribers": "ops@alpha.example",
        "send_email": "y",
        "enabled": "y",
    }
    data.update(fields)
    return client.post(url, data=data, follow_redirects=True)


def test_an_rao_makes_a_rule_for_their_organization_and_sees_only_theirs(client, world):
    rules.save_rule(
        actor=world["mrao"],
        data=rules.RuleData(
            name="Account-wide", type="ssl_expiration", applies_to_all=True, roles=["mrao"]
        ),
    )
    db.session.commit()
    as_(client, "alpha-rao")
    page = post_rule(client, "/admin/notification_rules/new/", places=[f"o:{world['alpha'].id}"])
    assert "Saved the notification rule" in page.get_data(as_text=True)
    listing = client.get("/admin/notification_rules/").get_data(as_text=True)
    assert "Expiring SSL" in listing and "Account-wide" not in listing
    # Beta is not offered, and not accepted either.
    form = client.get("/admin/notification_rules/new/").get_data(as_text=True)
    assert "Beta Corp" not in form
    refused = post_rule(
        client, "/admin/notification_rules/new/", places=[f"o:{world['beta'].id}"]
    ).get_data(as_text=True)
    assert "Saved the notification rule" not in refused
    everyone = post_rule(client, "/admin/notification_rules/new/", applies_to_all="y").get_data(
        as_text=True
    )
    assert "Only an MRAO may make a rule for every organization." in everyone
    assert db.session.execute(
        select(NotificationRule.name).order_by(NotificationRule.id)
    ).scalars().all() == [
        "Account-wide",
        "Expiring SSL",
    ]


def test_an_event_rule_needs_no_days_and_an_expiry_rule_does(client, world):
    as_(client, "alpha-rao")
    place = [f"o:{world['alpha'].id}"]
    saved = post_rule(
        client, "/admin/notification_rules/new/", type="report_ready", days="", places=place
    ).get_data(as_text=True)
    assert "Saved the notification rule" in saved
    refused = post_rule(client, "/admin/notification_rules/new/", days="", places=place)
    text = refused.get_data(as_text=True)
    assert "Saved the notification rule" not in text
    assert "Give at least one number of days before expiry." in text
    assert db.session.execute(select(NotificationRule.type)).scalars().all() == [
        NotificationType.REPORT_READY
    ]


def test_preview_shows_the_certificates_before_saving(client, world, monkeypatch):
    as_(client, "mrao")
    # Preview at a time when both certificates are 20 days from expiry: thresholds 60, 30.
    alpha_cert = world["certs"]["www.alpha.example"]
    real = sweep.preview
    monkeypatch.setattr(
        sweep,
        "preview",
        lambda rule, **kw: real(rule, as_of=alpha_cert.not_after - timedelta(days=20)),
    )
    page = post_rule(
        client, "/admin/notification_rules/new/", applies_to_all="y", preview="1", days="60, 30"
    ).get_data(as_text=True)
    assert "today this rule notifies about 2 certificate(s)" in page
    assert "www.alpha.example" in page and "www.beta.example" in page
    assert db.session.execute(select(NotificationRule)).first() is None  # nothing saved


def test_send_a_sample_to_me(client, world):
    rule = rules.save_rule(
        actor=world["mrao"],
        data=rules.RuleData(name="SSL", type="ssl_expiration", applies_to_all=True, roles=["mrao"]),
    )
    db.session.commit()
    as_(client, "mrao")
    url = f"/admin/notification_rules/edit/?id={rule.id}"
    page = client.post(
        url, data={"csrf_token": csrf_token(client, url), "sample": "1"}, follow_redirects=True
    )
    assert "A sample is on its way to mrao@example.com" in page.get_data(as_text=True)
    sample = db.session.execute(
        select(OutboxMessage).where(OutboxMessage.category == "notification.ssl_expiration")
    ).scalar_one()
    assert sample.to == "mrao@example.com" and "www." in sample.subject


def test_sent_notifications_are_scoped_exported_and_acknowledged(client, world, app):
    rule = rules.save_rule(
        actor=world["mrao"],
        data=rules.RuleData(
            name="SSL", type="ssl_expiration", applies_to_all=True, roles=["mrao", "admins"]
        ),
    )
    db.session.commit()
    as_of = world["certs"]["www.alpha.example"].not_after - timedelta(days=6)
    sweep.start_sweep(as_of=as_of)
    drain(world["worker"])
    as_(client, "alpha-rao")
    listing = client.get("/admin/sent_notifications/").get_data(as_text=True)
    assert "www.alpha.example" in listing and "www.beta.example" not in listing
    csv = client.get("/admin/sent_notifications/export/csv/").get_data(as_text=True)
    assert "www.alpha.example" in csv and "www.beta.example" not in csv
    assert "alpha-rao@example.com" in csv and "outbox" in csv  # no SMTP: kept in the outbox
    ids = [
        str(d.id)
        for d in db.session.execute(select(NotificationDelivery)).scalars()
        if d.certificate_id == world["certs"]["www.alpha.example"].id
    ]
    assert f'value="{ids[0]}"' in listing
    client.post(
        "/admin/sent_notifications/action/",
        data={
            "csrf_token": csrf_token(client, "/admin/sent_notifications/"),
            "action": "acknowledge",
            "rowid": ids,
        },
        follow_redirects=True,
    )
    acks = db.session.execute(select(NotificationAck)).scalars().all()
    alpha_id = world["certs"]["www.alpha.example"].id
    assert [(a.rule_id, a.certificate_id, a.state, a.by) for a in acks] == [
        (rule.id, alpha_id, AckState.ACKNOWLEDGED, "alpha-rao")
    ]
    assert db.session.get(Certificate, alpha_id) is not None
    assert compose.pending_count() == 0


def test_webhooks_show_their_secret_once_and_their_log(client, world):
    as_(client, "mrao")
    url = "/admin/notification_webhooks/new/"
    page = client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "name": "Chat",
            "url": "https://chat.example/hook",
            "organization_id": "",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    secret = re.search(r"<code>(whsec_[A-Za-z0-9_-]+)</code>", page)
    assert secret, page
    assert "Nothing posted yet." in page
    again = client.get(page and "/admin/notification_webhooks/").get_data(as_text=True)
    assert secret.group(1) not in again
