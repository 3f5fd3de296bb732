"""Notification mail is placed like portal mail (organization and department of what it is
about): a DRAO's Mail Outbox and Sent Notifications show their department's notices, an
RAO's their organization's, and never another organization's."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import CertType, NotificationDelivery, OutboxMessage, Role
from app.services.notifications import compose, rules, sweep
from tests.conftest import drain, login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_dept,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)

CNS = ("it.alpha.example", "sales.alpha.example", "www.beta.example")


@pytest.fixture
def world(app, stub_worker):
    mrao = make_admin("mrao")
    alpha, beta = make_org("Alpha Inc", city="Town"), make_org("Beta Corp", city="Town")
    it, sales = make_dept(alpha, "IT"), make_dept(alpha, "Sales")
    make_domain("alpha.example", by=mrao, org=alpha)
    make_domain("beta.example", by=mrao, org=beta)
    make_admin("it-drao", Role.DRAO, org=alpha, dept=it, privileges=[CertType.SSL])
    make_admin("alpha-rao", Role.RAO, org=alpha, privileges=[CertType.SSL])
    make_admin("beta-rao", Role.RAO, org=beta, privileges=[CertType.SSL])
    *_, profile = make_pki(requires_approval=False)
    certs = {}
    for org, dept, cn in ((alpha, it, "it"), (alpha, sales, "sales"), (beta, None, "www")):
        name = f"{cn}.{'beta' if org is beta else 'alpha'}.example"
        req, _ = request_certificate(
            by=mrao,
            org=org,
            profile=profile,
            cn=name,
            department_id=dept.id if dept else None,
        )
        drain(stub_worker)
        db.session.refresh(req)
        certs[name] = req.certificate
    rules.save_rule(
        actor=mrao,
        data=rules.RuleData(
            name="SSL",
            type="ssl_expiration",
            applies_to_all=True,
            days=(30,),
            roles=["mrao", "admins"],
            subscribers=["ops@example.org"],
        ),
    )
    db.session.commit()
    sweep.start_sweep(as_of=certs["it.alpha.example"].not_after - timedelta(days=20))
    drain(stub_worker)
    return SimpleNamespace(alpha=alpha, beta=beta, it=it, sales=sales, certs=certs)


def test_notification_mail_carries_the_department_of_its_certificate(world):
    mails = {
        cn: db.session.execute(
            select(OutboxMessage).where(
                OutboxMessage.category == "notification.ssl_expiration",
                OutboxMessage.subject.contains(cn),
                OutboxMessage.to == "ops@example.org",
            )
        ).scalar_one()
        for cn in CNS
    }
    assert (mails["it.alpha.example"].organization_id, mails["it.alpha.example"].department_id) == (
        world.alpha.id,
        world.it.id,
    )
    assert mails["sales.alpha.example"].department_id == world.sales.id
    assert (mails["www.beta.example"].organization_id, mails["www.beta.example"].department_id) == (
        world.beta.id,
        None,
    )
    # The DRAO of IT is told about IT's certificate only; the RAO about both of Alpha's.
    told = {d.recipient: set() for d in db.session.execute(select(NotificationDelivery)).scalars()}
    for d in db.session.execute(select(NotificationDelivery)).scalars():
        told[d.recipient].add(d.certificate.common_name)
    assert told["it-drao@example.com"] == {"it.alpha.example"}
    assert told["alpha-rao@example.com"] == {"it.alpha.example", "sales.alpha.example"}
    assert told["beta-rao@example.com"] == {"www.beta.example"}


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        ("it-drao", {"it.alpha.example"}),
        ("alpha-rao", {"it.alpha.example", "sales.alpha.example"}),
        ("beta-rao", {"www.beta.example"}),
        ("mrao", set(CNS)),
    ],
)
def test_outbox_and_sent_notifications_show_only_the_admins_places(client, world, who, visible):
    login(client, who, PASSWORD)
    pages = {
        "outbox": client.get("/admin/outbox/?search=SSL").get_data(as_text=True),
        "sent": client.get("/admin/sent_notifications/").get_data(as_text=True),
        "csv": client.get("/admin/sent_notifications/export/csv/").get_data(as_text=True),
    }
    for name, page in pages.items():
        shown = {cn for cn in CNS if cn in page}
        assert shown == visible, (name, page[:2000])
    if who != "mrao":  # another place's notices are not reachable by id either
        hidden = [
            d.id
            for d in db.session.execute(select(NotificationDelivery)).scalars()
            if d.certificate.common_name not in visible
        ]
        for delivery_id in hidden[:3]:
            page = client.get(f"/admin/sent_notifications/details/?id={delivery_id}")
            assert page.status_code in (302, 404), page.status_code


def test_a_message_across_places_is_placed_where_all_of_it_belongs():
    def d(org, dept):
        return SimpleNamespace(organization_id=org, department_id=dept)

    assert compose.place_of([d(1, 5), d(1, 5)]) == (1, 5)
    assert compose.place_of([d(1, 5), d(1, 6)]) == (1, None)  # the RAO, not either DRAO
    assert compose.place_of([d(1, 5), d(1, None)]) == (1, None)
    assert compose.place_of([d(1, 5), d(2, 7)]) == (None, None)  # MRAOs only
