"""Event notifications (issued, revoked, requests, issuance failed, delegations, admins,
discovery) through the same delivery rows, delivered to a real SMTP server; a mail failure
never undoes what triggered it; and the "old certificate still served" alert from a real
scan of TLS servers on loopback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from cryptography import x509
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Certificate,
    CertStatus,
    CertType,
    DeliveryStatus,
    MailStatus,
    NotificationDelivery,
    NotificationEvent,
    RequestStatus,
    Role,
)
from app.services.accounts import admins
from app.services.certificates import approvals, renewal, revocation
from app.services.discovery import runs, tasks
from app.services.notifications import events, rules
from app.services.platform import mail, scheduling
from app.services.structure import domains
from tests import notify
from tests.conftest import drain
from tests.factories import (
    PASSWORD,
    make_admin,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)
from tests.tlsbed.certs import Issued, external_set
from tests.tlsbed.farm import ServerFarm, free_port, server_context


@pytest.fixture
def smtp(app):
    for controller, inbox in notify.smtp_server():
        app.config.update(
            SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="cw@example.com"
        )
        yield inbox


@pytest.fixture
def world(app, stub_worker):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    rao = make_admin("rao", Role.RAO, org=org, privileges=[CertType.SSL])
    make_domain("acme.example", by=mrao, org=org)
    *_, profile = make_pki(requires_approval=True)
    return SimpleNamespace(mrao=mrao, org=org, rao=rao, profile=profile, worker=stub_worker)


def rule(world, kind, **fields):
    data = {
        "name": kind,
        "type": kind,
        "places": [(world.org.id, None)],
        "roles": ["requester", "admins"],
    }
    data.update(fields)
    made = rules.save_rule(actor=world.mrao, data=rules.RuleData(**data))
    db.session.commit()
    return made


def subjects(inbox, address):
    return sorted(str(m["Subject"]) for m in inbox.to(address))


def test_request_created_approved_and_issued_notify_the_requester_once_each(world, smtp):
    for kind in ("request_created", "request_approved", "certificate_issued"):
        rule(world, kind)
    req, _ = request_certificate(
        by=world.rao,
        org=world.org,
        profile=world.profile,
        cn="www.acme.example",
        requester_email="dev@acme.example",
    )
    drain(world.worker)
    approvals.approve(actor=world.mrao, request_ids=[req.id], message="looks fine")
    db.session.commit()
    drain(world.worker)
    assert subjects(smtp, "dev@acme.example") == [
        "Certificate issued: www.acme.example",  # the collection mail (not a rule's)
        "Certificate issued: www.acme.example",
        f"Certificate request approved: Request #{req.id} for www.acme.example",
        f"Certificate request created: Request #{req.id} for www.acme.example",
    ]
    assert len(subjects(smtp, "rao@example.com")) == 3
    approved = next(m for m in smtp.to("rao@example.com") if "approved" in str(m["Subject"]))
    text = notify.parts(approved)["text/plain"]
    assert "Approved by: mrao" in text and "Message: looks fine" in text
    assert f"http://certwright.test/admin/ssl_requests/details/?id={req.id}" in text
    # Fanning out again (a second worker, a re-sent message) sends nothing more.
    assert events.fan_out() == 0
    db.session.execute(
        NotificationEvent.__table__.update().values(fanned_out_at=None)
    )  # even events fanned out twice: the delivery key holds
    db.session.commit()
    assert events.fan_out() == 3
    drain(world.worker)
    assert len(smtp.received) == 7


def test_declined_and_revoked(world, smtp):
    rule(world, "request_declined")
    rule(world, "certificate_revoked", roles=["mrao"])
    req, _ = request_certificate(
        by=world.rao, org=world.org, profile=world.profile, cn="a.acme.example"
    )
    approvals.decline(actor=world.mrao, request_id=req.id, message="wrong name")
    other, _ = request_certificate(
        by=world.mrao, org=world.org, profile=world.profile, cn="b.acme.example", approve=True
    )
    drain(world.worker)
    db.session.refresh(other)
    revocation.revoke(
        actor=world.mrao, certificate_ids=[other.certificate_id], reason="keyCompromise"
    )
    db.session.commit()
    drain(world.worker)
    declined = smtp.to("rao@example.com")
    assert [str(m["Subject"]) for m in declined if "declined" in str(m["Subject"])] == [
        f"Certificate request declined: Request #{req.id} for a.acme.example"
    ]
    revoked = [m for m in smtp.to("mrao@example.com") if "revoked" in str(m["Subject"])]
    assert len(revoked) == 1 and "Reason: keyCompromise" in notify.parts(revoked[0])["text/plain"]


def test_delegations_and_admin_events(world, smtp):
    for kind in (
        "delegation_requested",
        "delegation_approved",
        "admin_created",
        "admin_locked",
        "admin_deleted",
    ):
        rule(world, kind, roles=["mrao"], applies_to_all=True, places=[])
    domain = domains.create_domain(
        actor=world.rao,
        name="shop.acme.example",
        organization_id=world.org.id,
        types=[CertType.SSL],
    )
    db.session.commit()
    domains.decide_delegation(
        actor=world.mrao, delegation_id=domain.delegations[0].id, approve=True
    )
    db.session.commit()
    extra = make_admin("helper", Role.RAO, org=world.org, privileges=[CertType.SSL])
    admins.update_admin(
        actor=world.mrao,
        admin_id=extra.id,
        email=extra.email,
        full_name="",
        role=Role.RAO,
        active=False,
        grants=[admins.Grant(world.org.id, None, frozenset([CertType.SSL]))],
    )
    db.session.commit()
    admins.delete_admin(actor=world.mrao, admin_id=extra.id)
    db.session.commit()
    drain(world.worker)
    assert subjects(smtp, "mrao@example.com") == [
        "Administrator created: helper (RAO)",
        "Administrator deleted: helper (RAO)",
        "Administrator locked (deactivated): helper (RAO)",
        "Domain delegation approved: shop.acme.example for Acme",
        "Domain delegation requested: shop.acme.example for Acme",
    ]


def test_without_a_rule_no_event_is_written(world):
    request_certificate(by=world.rao, org=world.org, profile=world.profile, cn="c.acme.example")
    assert db.session.execute(select(func.count()).select_from(NotificationEvent)).scalar_one() == 0


def test_smtp_stopped_retries_then_dead_letter_and_the_issuance_stands(world, app):
    app.config.update(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=notify.free_port(),
        CW_MAIL_MAX_ATTEMPTS=2,
        CW_MAIL_RETRY_SECONDS=1,
    )
    rule(world, "certificate_issued", roles=[], subscribers=["ops@acme.example"])
    req, _ = request_certificate(
        by=world.mrao, org=world.org, profile=world.profile, cn="d.acme.example", approve=True
    )
    drain(world.worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.ISSUED and req.certificate.status == CertStatus.ISSUED
    delivery = db.session.execute(select(NotificationDelivery)).scalar_one()
    message = delivery.outbox_message
    assert message.status == MailStatus.QUEUED and message.attempts == 1
    assert "ConnectionRefusedError" in message.error
    import time

    time.sleep(1.1)
    assert scheduling.tick()["mail"] >= 1
    drain(world.worker)
    db.session.refresh(message)
    assert message.status == MailStatus.FAILED and message.attempts == 2
    assert "gave up after 2 attempts" in message.error
    # The dead letter: resent once the relay is back.
    for controller, inbox in notify.smtp_server():
        app.config.update(SMTP_PORT=controller.port)
        mail.resend(actor=world.mrao, message_id=message.id)
        db.session.commit()
        drain(world.worker)
        db.session.refresh(message)
        assert message.status == MailStatus.SENT
        assert [rcpts for _, rcpts, _ in inbox.received] == [["ops@acme.example"]]
    assert db.session.get(Certificate, req.certificate_id).status == CertStatus.ISSUED


def test_a_lost_fan_out_message_is_sent_again_by_the_scheduler(world, smtp):
    from datetime import timedelta

    from app.models.types import utcnow

    rule(world, "request_created", roles=[], subscribers=["ops@acme.example"])
    # The message asking for the fan-out is lost (a restarted broker, a command run from
    # another terminal): this time nobody sends it.
    senders = list(events._senders)
    events._senders.clear()
    try:
        request_certificate(
            by=world.mrao, org=world.org, profile=world.profile, cn="e.acme.example"
        )
        drain(world.worker)
    finally:
        events._senders[:] = senders
    assert smtp.received == []
    assert scheduling.tick()["notification_events"] == 0  # it may still be on its way
    assert scheduling.tick(utcnow() + timedelta(seconds=31))["notification_events"] == 1
    drain(world.worker)
    assert [rcpts for _, rcpts, _ in smtp.received] == [["ops@acme.example"]]
    assert db.session.execute(select(NotificationDelivery.status)).scalars().all() == [
        DeliveryStatus.COMPOSED
    ]


HOSTS = ["127.0.31.1", "127.0.31.2"]


def test_a_renewed_certificate_still_served_raises_an_alert_naming_the_endpoint(world, smtp, app):
    rule(world, "stale_certificate_served", roles=["mrao"], applies_to_all=True, places=[])
    rule(world, "discovery_summary", roles=["mrao"], applies_to_all=True, places=[])
    old_req, key = request_certificate(
        by=world.mrao, org=world.org, profile=world.profile, cn="managed.acme.example", approve=True
    )
    drain(world.worker)
    db.session.refresh(old_req)
    old = old_req.certificate
    served = Issued(x509.load_der_x509_certificate(old.der), key)
    ca = Issued(x509.load_der_x509_certificate(old.ca.cert_der), key)
    renewed = renewal.renew(actor=world.mrao, certificate_id=old.id)
    db.session.commit()
    approvals.approve(actor=world.mrao, request_ids=[renewed.id])
    db.session.commit()
    drain(world.worker)
    db.session.refresh(old)
    assert old.status == CertStatus.REPLACED
    external = external_set()
    port = free_port(HOSTS)
    with ServerFarm() as farm:
        farm.add_tls(HOSTS[0], port, server_context([served, ca]))  # the old one, still deployed
        farm.add_tls(HOSTS[1], port, server_context([external.expired, external.inter]))
        task = tasks.create_task(
            actor=world.mrao,
            data=tasks.TaskData(
                name="Loopback",
                ranges="\n".join(HOSTS),
                ports=str(port),
                connect_timeout=2,
                handshake_timeout=3,
            ),
        )
        db.session.commit()
        runs.start_run(actor=world.mrao, task_id=task.id)
        drain(world.worker)
    alerts = sorted(
        (str(m["Subject"]), notify.parts(m)["text/plain"])
        for m in smtp.to("mrao@example.com")
        if "still served" in str(m["Subject"])
    )
    assert len(alerts) == 2
    managed = next(body for subject, body in alerts if "managed.acme.example" in subject)
    assert f"Endpoint: {HOSTS[0]}:{port}" in managed
    assert "replaced by a newer certificate" in managed
    assert f"Replaced by: managed.acme.example serial {renewed.certificate.serial_hex}" in managed
    expired = next(body for subject, body in alerts if "old.ext.test" in subject)
    assert f"Endpoint: {HOSTS[1]}:{port}" in expired and "Why: expired on" in expired
    summary = [
        m for m in smtp.to("mrao@example.com") if "Discovery run summary" in str(m["Subject"])
    ]
    assert len(summary) == 1 and "TLS endpoints: 2" in notify.parts(summary[0])["text/plain"]
    assert PASSWORD


def test_a_finished_report_notifies_the_admin_who_asked_for_it_once(world, smtp):
    from app.services.reports import generation
    from app.services.reports.catalog import Filters

    rule(world, "report_ready", roles=["requester"])
    request_certificate(by=world.mrao, org=world.org, profile=world.profile, cn="a.acme.example")
    other = make_org("Other")
    make_admin("outsider", Role.RAO, org=other, privileges=[CertType.SSL])
    ours = generation.start_report(
        actor=world.rao,
        report_type="admins",
        fmt="csv",
        filters=Filters(organization_id=world.org.id),
        chunk_rows=1,  # several chunk jobs: the notice comes once, when the last is built
    )
    db.session.commit()
    assert ours.chunks_total > 1
    drain(world.worker)
    assert db.session.get(type(ours), ours.id).status == "done"
    [mail_subject] = subjects(smtp, "rao@example.com")
    # (A subject longer than a header line is folded before its first word: unfolded, it
    # starts with that fold's space.)
    assert mail_subject.strip().startswith("Report ready: ")
    assert f"#{ours.id} (CSV) is ready" in mail_subject
    # A report placed in another organization matches no rule of Acme's: no notice.
    outsider_report = generation.start_report(
        actor=db.session.execute(
            select(admins_model()).where(admins_model().login == "outsider")
        ).scalar_one(),
        report_type="admins",
        fmt="csv",
        filters=Filters(organization_id=other.id),
    )
    db.session.commit()
    drain(world.worker)
    assert db.session.get(type(outsider_report), outsider_report.id).status == "done"
    assert subjects(smtp, "outsider@example.com") == []
    assert len(subjects(smtp, "rao@example.com")) == 1


def admins_model():
    from app.models import Admin

    return Admin
