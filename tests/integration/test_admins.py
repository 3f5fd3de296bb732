"""Administrators: roles, scopes, privileges; nobody grants more than they hold."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Admin, AuditEvent, CertType, Role
from app.services.accounts import admins
from app.services.errors import DomainError, Forbidden
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_dept, make_org


def grant(org, dept=None, *types):
    return admins.Grant(org.id, dept.id if dept else None, frozenset(types or CertType))


def create(actor, login_name, role, *grants, password="another-long-password"):
    return admins.create_admin(
        actor=actor,
        login=login_name,
        email=f"{login_name}@example.com",
        role=role,
        password=password,
        grants=list(grants),
    )


def test_rao_creates_drao_for_its_department_with_subset_privileges(app):
    org = make_org()
    dept = make_dept(org)
    rao = make_admin("rao", Role.RAO, org=org, privileges=[CertType.SSL, CertType.CLIENT])
    drao = create(rao, "drao", Role.DRAO, grant(org, dept, CertType.SSL))
    db.session.commit()
    assert drao.scopes[0].department_id == dept.id and drao.scopes[0].privileges() == {CertType.SSL}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("more_privileges", "You cannot grant privileges you do not hold: Device."),
        ("other_org", "No such organization."),
        ("promote_to_mrao", "A RAO cannot create or promote an administrator to MRAO."),
        ("rao_with_dept", "An RAO is scoped to whole organizations"),
        ("drao_without_dept", "A DRAO must be scoped to a department"),
        ("foreign_dept", "No such department."),  # never named outside the scope
        ("no_scope", "A RAO needs at least one scope"),
    ],
)
def test_grants_beyond_own_are_refused(app, case, message):
    org, other = make_org("Acme"), make_org("Other")
    dept, other_dept = make_dept(org), make_dept(other, "Ops")
    rao = make_admin("rao", Role.RAO, org=org, privileges=[CertType.SSL])
    attempts = {
        "more_privileges": lambda: create(
            rao, "new1", Role.DRAO, grant(org, dept, CertType.DEVICE)
        ),
        "other_org": lambda: create(rao, "new2", Role.RAO, grant(other, None, CertType.SSL)),
        "promote_to_mrao": lambda: create(rao, "new3", Role.MRAO),
        "rao_with_dept": lambda: create(rao, "new4", Role.RAO, grant(org, dept, CertType.SSL)),
        "drao_without_dept": lambda: create(rao, "new5", Role.DRAO, grant(org, None, CertType.SSL)),
        "foreign_dept": lambda: create(
            rao, "new6", Role.DRAO, admins.Grant(org.id, other_dept.id, frozenset([CertType.SSL]))
        ),
        "no_scope": lambda: create(rao, "new7", Role.RAO),
    }
    with pytest.raises(DomainError) as err:
        attempts[case]()
    db.session.rollback()
    assert message in err.value.message
    assert db.session.execute(select(func.count()).select_from(Admin)).scalar_one() == 1


def test_weak_password_and_duplicate_login(app):
    mrao = make_admin("mrao")
    with pytest.raises(DomainError, match="at least 12 characters"):
        create(mrao, "newbie", Role.MRAO, password="short")
    db.session.rollback()
    with pytest.raises(DomainError, match="already exists"):
        create(mrao, "MRAO", Role.MRAO)
    db.session.rollback()


def test_last_mrao_cannot_be_deleted_or_demoted(app):
    mrao = make_admin("mrao")
    with pytest.raises(Forbidden, match="cannot change your own role"):
        admins.update_admin(
            actor=mrao,
            admin_id=mrao.id,
            email="m@example.com",
            full_name="",
            role=Role.RAO,
            active=True,
            grants=[],
        )
    db.session.rollback()
    # A second, disabled MRAO (the service does not trust the caller to be active).
    second = make_admin("second")
    second.active = False
    db.session.commit()
    with pytest.raises(DomainError, match="'mrao' is the last active MRAO"):
        admins.delete_admin(actor=second, admin_id=mrao.id)
    db.session.rollback()
    with pytest.raises(DomainError, match="'mrao' is the last active MRAO"):
        admins.update_admin(
            actor=second,
            admin_id=mrao.id,
            email="m@example.com",
            full_name="",
            role=Role.MRAO,
            active=False,
            grants=[],
        )
    db.session.rollback()
    assert db.session.get(Admin, mrao.id).active


def test_admin_cannot_delete_itself(app):
    mrao = make_admin("mrao")
    make_admin("second")
    with pytest.raises(Forbidden, match="own account"):
        admins.delete_admin(actor=mrao, admin_id=mrao.id)


def test_create_rao_via_console(client):
    make_admin("mrao")
    org = make_org()
    login(client, "mrao", PASSWORD)
    token = csrf_token(client, "/admin/admins/new/")
    page = client.post(
        "/admin/admins/new/",
        data={
            "login": "acme-rao",
            "email": "rao@acme.example",
            "full_name": "Rao",
            "role": "RAO",
            "scopes": [f"o:{org.id}"],
            "scopes-priv": [f"o:{org.id}:ssl", f"o:{org.id}:client"],
            "password": "the-rao-password-1",
            "csrf_token": token,
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Administrator &#39;acme-rao&#39; created." in page
    rao = db.session.execute(select(Admin).where(Admin.login == "acme-rao")).scalar_one()
    assert rao.role == Role.RAO and rao.scopes[0].organization_id == org.id
    assert rao.scopes[0].privileges() == {CertType.SSL, CertType.CLIENT}
    event = db.session.execute(
        select(AuditEvent).where(
            AuditEvent.action == "admin.create", AuditEvent.object_label == "acme-rao"
        )
    ).scalar_one()
    assert event.after["role"] == "RAO" and event.after["scopes"][0]["privileges"] == [
        "client",
        "ssl",
    ]
    assert "password" not in str(event.after)


def test_console_shows_field_errors_for_bad_admin(client):
    make_admin("mrao")
    org = make_org()
    login(client, "mrao", PASSWORD)
    token = csrf_token(client, "/admin/admins/new/")
    page = client.post(
        "/admin/admins/new/",
        data={
            "login": "x",
            "email": "not-an-email",
            "role": "RAO",
            "scopes": [f"o:{org.id}"],
            "scopes-priv": [f"o:{org.id}:ssl"],
            "password": "weak",
            "csrf_token": token,
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "The login must be 3-64 characters" in page
    assert db.session.execute(select(func.count()).select_from(Admin)).scalar_one() == 1
