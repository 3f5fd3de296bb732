"""Domains and delegations: IDNA, wildcards, duplicates, the approval workflow."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, CertType, Delegation, DelegationStatus, Domain, Role
from app.services.errors import Conflict, DomainError, Forbidden
from app.services.structure import domains
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_dept, make_domain, make_org


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("*.example.com", "*.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("corp.internal", "corp.internal"),
    ],
)
def test_domain_names_are_normalised(raw, stored):
    assert domains.normalize_domain(raw) == stored


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "The domain name is required."),
        ("localhost", "needs at least two labels"),
        ("a.*.example.com", "a wildcard is allowed only as the whole left-most label"),
        ("-bad.example.com", "not a valid domain name"),
        ("exa mple.com", "not a valid domain name"),
        ("a" * 64 + ".com", "not a valid domain name"),
    ],
)
def test_bad_domain_names_get_specific_messages(raw, message):
    with pytest.raises(DomainError) as err:
        domains.normalize_domain(raw)
    assert message in err.value.message


def test_mrao_delegation_is_approved_at_once(app):
    mrao = make_admin()
    org = make_org()
    domain = make_domain("example.com", by=mrao, org=org, types=[CertType.SSL, CertType.CLIENT])
    d = domain.delegations[0]
    assert d.status == DelegationStatus.APPROVED and d.decided_by_id == mrao.id
    assert set(d.types()) == {CertType.SSL, CertType.CLIENT}


def test_rao_delegation_waits_for_an_mrao(app):
    mrao = make_admin()
    org = make_org()
    rao = make_admin("rao", Role.RAO, org=org, privileges=[CertType.SSL])
    domain = make_domain("rao.example", by=rao, org=org)
    d = domain.delegations[0]
    assert d.status == DelegationStatus.REQUESTED
    with pytest.raises(Forbidden):
        domains.decide_delegation(actor=rao, delegation_id=d.id, approve=True)
    domains.decide_delegation(
        actor=mrao, delegation_id=d.id, approve=True, message="ok by security"
    )
    db.session.commit()
    with pytest.raises(Conflict, match="already decided"):
        domains.decide_delegation(actor=mrao, delegation_id=d.id, approve=False)
    db.session.rollback()
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "delegation.approve")
    ).scalar_one()
    assert event.message == "ok by security" and event.actor == "mrao"


def test_rao_cannot_delegate_types_it_does_not_hold_or_to_other_orgs(app):
    make_admin()
    org, other = make_org("Acme"), make_org("Other")
    rao = make_admin("rao", Role.RAO, org=org, privileges=[CertType.SSL])
    with pytest.raises(Forbidden, match="privileges for: Client"):
        domains.create_domain(
            actor=rao, name="x.example", organization_id=org.id, types=[CertType.CLIENT]
        )
    db.session.rollback()
    with pytest.raises(DomainError, match="No such organization"):
        domains.create_domain(
            actor=rao, name="y.example", organization_id=other.id, types=[CertType.SSL]
        )
    db.session.rollback()
    assert db.session.execute(select(func.count()).select_from(Domain)).scalar_one() == 0


def test_duplicate_domain_via_console(client):
    mrao = make_admin()
    make_domain("example.com", by=mrao)
    login(client, "mrao", PASSWORD)
    token = csrf_token(client, "/admin/domain/new/")
    page = client.post(
        "/admin/domain/new/",
        data={
            "name": "EXAMPLE.com",
            "description": "",
            "active": "y",
            "target": "",
            "types": ["ssl"],
            "csrf_token": token,
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "The domain example.com already exists" in page


def test_create_and_delegate_via_console_then_approve_with_message(client):
    make_admin()
    org = make_org()
    dept = make_dept(org, "IT")
    login(client, "mrao", PASSWORD)
    token = csrf_token(client, "/admin/domain/new/")
    client.post(
        "/admin/domain/new/",
        data={
            "name": "*.intra.example",
            "description": "intranet",
            "active": "y",
            "target": f"d:{dept.id}",
            "types": ["ssl", "device"],
            "csrf_token": token,
        },
    )
    d = db.session.execute(select(Delegation)).scalar_one()
    assert (d.department_id, d.status, d.ssl, d.device, d.client) == (
        dept.id,
        DelegationStatus.APPROVED,
        True,
        True,
        False,
    )
    listing = client.get("/admin/domain/").get_data(as_text=True)
    assert "*.intra.example" in listing and "Approved" in listing


def test_decide_page_approves_with_message(client):
    make_admin()
    org = make_org()
    rao = make_admin("rao", Role.RAO, org=org, privileges=[CertType.SSL])
    d = make_domain("rao.example", by=rao, org=org).delegations[0]
    login(client, "mrao", PASSWORD)
    url = f"/admin/delegation/decide/?id={d.id}"
    page = client.post(
        url,
        data={"csrf_token": csrf_token(client, url), "message": "verified DNS", "approve": "1"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Delegation approved." in page
    db.session.refresh(d)
    assert d.status == DelegationStatus.APPROVED and d.decision_message == "verified DNS"


def test_bulk_approve_action(client):
    make_admin()
    org = make_org()
    rao = make_admin("rao", Role.RAO, org=org, privileges=[CertType.SSL])
    ids = [make_domain(f"d{i}.example", by=rao, org=org).delegations[0].id for i in range(3)]
    login(client, "mrao", PASSWORD)
    token = csrf_token(client, "/admin/delegation/")
    page = client.post(
        "/admin/delegation/action/",
        data={"action": "approve", "rowid": [str(i) for i in ids], "csrf_token": token},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "3 delegation(s) approved." in page
    statuses = set(db.session.execute(select(Delegation.status)).scalars())
    assert statuses == {DelegationStatus.APPROVED}
