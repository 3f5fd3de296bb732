"""The person a client certificate is for (certificate_requests.person_id -> persons.email)
as a recipient: resolved in the sweep's SQL and in events, mailed to a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import NotificationDelivery, RecipientRole
from app.services.certificates import revocation
from app.services.notifications import rules, sweep
from app.services.persons import persons
from tests import notify
from tests.conftest import drain
from tests.integration.portal_world import add_person, collect, invite, make_world, register


@pytest.fixture
def smtp(app):
    for controller, inbox in notify.smtp_server():
        app.config.update(
            SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="cw@example.com"
        )
        yield inbox


def save(world, **fields):
    data = {"name": fields["type"], "places": [(world.org.id, None)]}
    data.update(fields)
    rule = rules.save_rule(actor=world.mrao, data=rules.RuleData(**data))
    db.session.commit()
    return rule


def test_the_person_of_a_client_certificate_is_told_of_its_expiry_and_events(
    app, client, stub_worker, smtp
):
    world = make_world()
    save(world, type="certificate_issued", roles=[RecipientRole.PERSON.value])
    save(world, type="certificate_revoked", roles=[RecipientRole.PERSON.value])
    expiry = save(
        world,
        type="client_expiration",
        days=(30, 7),
        roles=[RecipientRole.PERSON.value, RecipientRole.REQUESTER.value],
    )
    person = add_person(world, email="Jane.Doe@acme.example")
    other = add_person(world, email="bob@acme.example", first_name="Bob")
    progress = register(client, person.email, invite(world, person)).headers["Location"]
    collect(client, progress, stub_worker)
    (cert,) = persons.valid_certificates(person.id)
    drain(stub_worker)
    issued = [m for m in smtp.to("jane.doe@acme.example") if "Certificate issued" in m["Subject"]]
    assert len(issued) == 1, smtp.subjects()
    assert cert.common_name in str(issued[0]["Subject"])
    assert not smtp.to("bob@acme.example")

    smtp.clear()
    as_of = cert.not_after - timedelta(days=30, hours=-1)
    for _ in range(2):  # the same day again: nothing new
        sweep.start_sweep(as_of=as_of)
        drain(stub_worker)
    # One mail, to the person only: a portal request has no requester address of its own.
    assert [rcpts for _, rcpts, _ in smtp.received] == [["jane.doe@acme.example"]]
    (message,) = smtp.to("jane.doe@acme.example")
    assert "expires in 29 days" in str(message["Subject"])
    body = notify.parts(message)
    assert set(body) == {"text/plain", "text/html"}
    assert f"/admin/client_certs/details/?id={cert.id}" in body["text/plain"]
    (delivery,) = db.session.execute(
        select(NotificationDelivery).where(NotificationDelivery.rule_id == expiry.id)
    ).scalars()
    assert delivery.recipient == "jane.doe@acme.example"
    assert delivery.certificate_id == cert.id

    smtp.clear()
    revocation.revoke(actor=world.mrao, certificate_ids=[cert.id], reason="keyCompromise")
    db.session.commit()
    drain(stub_worker)
    assert [str(m["Subject"]) for m in smtp.to("jane.doe@acme.example")] == [
        f"Certificate revoked: {cert.common_name}"
    ]
    assert not smtp.to(other.email)
