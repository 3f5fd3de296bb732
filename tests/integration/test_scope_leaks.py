"""What an RAO or DRAO must not learn: other departments' mail (collection links) in the
outbox, sibling department names in error messages; and every attempt to reach an object
outside one's scope is an audit event."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from app.extensions import db
from app.models import (
    Admin,
    AuditEvent,
    Certificate,
    CertificateProfile,
    CertType,
    OutboxMessage,
    RequestMode,
    Role,
)
from app.services import audit
from app.services.accounts import admins
from app.services.certificates import enrollment, issuance
from app.services.errors import NotFound
from tests.conftest import ROOT
from tests.factories import PASSWORD, make_csr
from tests.integration.rbac_world import as_, build_world


@pytest.fixture
def world(app):
    world = build_world()
    mrao = db.session.execute(select(Admin).where(Admin.login == "mrao")).scalar_one()
    profile_id = db.session.execute(select(CertificateProfile.id)).scalar_one()
    request = enrollment.submit_request(
        actor=mrao,
        data=enrollment.RequestData(
            organization_id=world["alpha"],
            department_id=world["lab"],
            profile_id=profile_id,
            term_days=90,
            mode=RequestMode.CSR,
            csr=make_csr("www.lab.alpha.example")[0],
            eula_accepted=True,
        ),
    )
    db.session.commit()
    issuance.issue_requests([request.id])
    db.session.commit()
    world["lab_cert"] = request.certificate_id
    world["profile"] = profile_id
    return world


def denials(login: str) -> list[AuditEvent]:
    return list(
        db.session.execute(
            select(AuditEvent).where(
                AuditEvent.action == "access.denied", AuditEvent.actor == login
            )
        ).scalars()
    )


def outbox_subjects() -> dict[int, str]:
    return dict(db.session.execute(select(OutboxMessage.id, OutboxMessage.subject)).all())


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        ("mrao", {"www.ops.alpha.example", "www.lab.alpha.example", "www.beta.example"}),
        ("alpha-rao", {"www.ops.alpha.example", "www.lab.alpha.example"}),
        ("ops-drao", {"www.ops.alpha.example"}),
    ],
)
def test_the_outbox_shows_only_mail_of_the_admins_scope(client, world, who, visible):
    as_(client, who)
    listing = client.get("/admin/outbox/").get_data(as_text=True)
    everything = {"www.ops.alpha.example", "www.lab.alpha.example", "www.beta.example"}
    assert {name for name in everything if name in listing} == visible
    for mail_id, subject in outbox_subjects().items():
        page = client.get(f"/admin/outbox/details/?id={mail_id}", follow_redirects=True)
        shown = "/collect/" in page.get_data(as_text=True)
        assert shown == any(subject.endswith(name) for name in visible), (who, subject)


def test_collection_mail_never_mixes_organizations_or_departments(world):
    """The world's Alpha/Ops and Beta certificates were issued in one batch for the same
    requester: they are two messages, each placed where its certificate is."""
    rows = db.session.execute(
        select(OutboxMessage.subject, OutboxMessage.organization_id, OutboxMessage.department_id)
    ).all()
    assert sorted(rows) == sorted(
        [
            ("Certificate issued: www.beta.example", world["beta"], None),
            ("Certificate issued: www.lab.alpha.example", world["alpha"], world["lab"]),
            ("Certificate issued: www.ops.alpha.example", world["alpha"], world["ops"]),
        ]
    )


def drao():
    return db.session.execute(select(Admin).where(Admin.login == "ops-drao")).scalar_one()


def test_a_drao_never_learns_a_sibling_departments_name(world):
    data = enrollment.RequestData(
        organization_id=world["alpha"],
        department_id=world["lab"],
        profile_id=world["profile"],
        term_days=90,
        mode=RequestMode.CSR,
        csr=make_csr("x.lab.alpha.example")[0],
        eula_accepted=True,
    )
    with pytest.raises(NotFound) as refused:
        enrollment.submit_request(actor=drao(), data=data)
    assert refused.value.message == "No such department." and "Lab" not in refused.value.message
    db.session.rollback()
    grant = admins.Grant(world["alpha"], world["lab"], frozenset({CertType.SSL}))
    with pytest.raises(NotFound) as refused:
        admins.create_admin(
            actor=drao(),
            login="sneaky",
            email="sneaky@example.com",
            role=Role.DRAO,
            password=PASSWORD,
            grants=[grant],
        )
    assert refused.value.message == "No such department."
    db.session.rollback()
    audit.commit_denials()  # what a front door does after answering the refusal
    assert [(e.object_type, e.object_id) for e in denials("ops-drao")] == [
        ("Department", str(world["lab"])),
        ("Department", str(world["lab"])),
    ]


def test_an_rao_never_learns_another_organizations_department(world):
    rao = db.session.execute(select(Admin).where(Admin.login == "alpha-rao")).scalar_one()
    grant = admins.Grant(world["alpha"], world["secret"], frozenset({CertType.SSL}))
    with pytest.raises(NotFound) as refused:
        admins.create_admin(
            actor=rao,
            login="sneaky",
            email="sneaky@example.com",
            role=Role.DRAO,
            password=PASSWORD,
            grants=[grant],
        )
    assert "Secret" not in refused.value.message and "Beta" not in refused.value.message


@pytest.mark.parametrize("who", ["alpha-rao", "ops-drao"])
def test_cross_scope_attempts_through_the_console_are_audit_events(client, world, who):
    as_(client, who)
    for url in (
        f"/admin/ssl_certs/details/?id={world['beta_cert']}",
        f"/admin/ssl_certs/download/?id={world['beta_cert']}&format=x509",
        f"/admin/department/details/?id={world['secret']}",
    ):
        page = client.get(url, follow_redirects=True).get_data(as_text=True)
        assert "Beta" not in page and "Secret" not in page
    events = denials(who)
    assert [(e.object_type, e.object_id) for e in events] == [
        ("Certificate", str(world["beta_cert"])),
        ("Certificate", str(world["beta_cert"])),
        ("Department", str(world["secret"])),
    ]
    assert all(e.actor_id is not None and e.ip for e in events)
    assert audit.verify().ok


def test_missing_objects_and_mraos_leave_no_denials(app, client, world):
    as_(client, "alpha-rao")
    client.get("/admin/ssl_certs/details/?id=999999")  # missing: nothing to deny
    mrao = as_(app.test_client(), "mrao")
    mrao.get(f"/admin/ssl_certs/details/?id={world['beta_cert']}")
    assert not db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "access.denied")
    ).first()


def test_the_migration_places_existing_collection_mail(world):
    """0009_outbox_department gives mail written before it the organization/department of the requests it
    lists; mail listing requests of several organizations becomes MRAO-only."""
    directory = str(ROOT / "migrations")
    ops_request = db.session.get(Certificate, world["ops_cert"]).request_id
    db.session.commit()
    downgrade(directory=directory, revision="0008_console_first_password")
    db.session.execute(
        text(
            "UPDATE outbox_messages SET body = body || :more, organization_id = :alpha"
            " WHERE subject = 'Certificate issued: www.beta.example'"
        ),
        {"more": f"\nRequest: #{ops_request}\n", "alpha": world["alpha"]},
    )
    db.session.commit()
    upgrade(directory=directory)
    rows = db.session.execute(
        select(OutboxMessage.subject, OutboxMessage.organization_id, OutboxMessage.department_id)
    ).all()
    assert sorted(rows, key=lambda r: r[0]) == [
        ("Certificate issued: www.beta.example", None, None),
        ("Certificate issued: www.lab.alpha.example", world["alpha"], world["lab"]),
        ("Certificate issued: www.ops.alpha.example", world["alpha"], world["ops"]),
    ]
