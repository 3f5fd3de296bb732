"""The administrator form as a careful MRAO expects it (issue 10, item 2): least privilege by
default, a scope picker with privileges per scope, every error at once with the entered
values kept, and "must change password at first sign-in" enforced at sign-in."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, CertType, Role
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_dept, make_org

NEW_PASSWORD = "a-brand-new-password-7"


def post_admin(client, **fields):
    data = {"csrf_token": csrf_token(client, "/admin/admins/new/"), **fields}
    return client.post("/admin/admins/new/", data=data, follow_redirects=True)


def test_the_create_form_defaults_to_the_least_privilege(client):
    make_admin("mrao")
    acme = make_org("Acme Corp")
    make_dept(acme, "IT Operations")
    login(client, "mrao", PASSWORD)
    html = client.get("/admin/admins/new/").get_data(as_text=True)
    options = re.findall(r'<option (?:selected )?value="(\w+)"', html)
    assert options[:3] == ["DRAO", "RAO", "MRAO"]
    assert re.search(r'<option selected value="DRAO">', html)
    assert 'name="scopes-priv"' in html and not re.search(r'name="scopes[^"]*"[^>]*checked', html)
    assert re.search(
        r'id="must_change_password"[^>]*checked|checked[^>]*id="must_change_password"', html
    )
    assert 'data-cw-filter-rows="#scopes-table"' in html  # the search box
    rows = re.findall(r'<tr data-cw-search="([^"]+)" data-place="([od]:\d+)"', html)
    assert [label for label, _ in rows] == ["Acme Corp", "Acme Corp / IT Operations"]
    assert "<select multiple" not in html


def test_every_error_at_once_and_the_entered_values_survive(client):
    make_admin("mrao")
    make_org("Acme Corp")
    login(client, "mrao", PASSWORD)
    page = post_admin(
        client,
        login="",
        email="not-an-email",
        full_name="Jane Q. Admin",
        role="DRAO",
        password="weak",
    ).get_data(as_text=True)
    assert "The login must be 3-64 characters" in page
    assert "is not a valid email address" in page
    assert "The password must be at least 12 characters long." in page
    assert "A DRAO needs at least one scope: choose a department." in page
    assert 'value="Jane Q. Admin"' in page and 'value="not-an-email"' in page
    assert 'value="weak"' not in page  # passwords are never echoed
    assert db.session.execute(select(Admin).where(Admin.login == "")).first() is None


def test_privileges_are_chosen_per_scope(client):
    make_admin("mrao")
    acme = make_org("Acme Corp")
    it, lab = make_dept(acme, "IT"), make_dept(acme, "Lab")
    login(client, "mrao", PASSWORD)
    page = post_admin(
        client,
        login="it-drao",
        email="drao@acme.example",
        role="DRAO",
        password="the-drao-password-1",
        # Lab is chosen by ticking a privilege only: that is a choice too.
        **{"scopes": [f"d:{it.id}"], "scopes-priv": [f"d:{it.id}:ssl", f"d:{lab.id}:device"]},
    ).get_data(as_text=True)
    assert "Administrator &#39;it-drao&#39; created." in page
    drao = db.session.execute(select(Admin).where(Admin.login == "it-drao")).scalar_one()
    held = {s.department_id: s.privileges() for s in drao.scopes}
    assert held == {it.id: {CertType.SSL}, lab.id: {CertType.DEVICE}}
    assert drao.must_change_password is False  # the box was not posted: unticked
    edit = client.get(f"/admin/admins/edit/?id={drao.id}").get_data(as_text=True)
    assert re.search(rf'value="d:{it.id}:ssl"[^>]*checked', edit)
    assert not re.search(rf'value="d:{it.id}:device"[^>]*checked', edit)


def test_must_change_password_at_first_sign_in(client):
    make_admin("mrao")
    acme = make_org("Acme Corp")
    login(client, "mrao", PASSWORD)
    post_admin(
        client,
        login="acme-rao",
        email="rao@acme.example",
        role="RAO",
        password="chosen-by-the-mrao-1",
        must_change_password="y",
        **{"scopes": [f"o:{acme.id}"], "scopes-priv": [f"o:{acme.id}:ssl"]},
    )
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    resp = login(client, "acme-rao", "chosen-by-the-mrao-1")
    assert resp.headers["Location"].endswith("/admin/profile/")
    blocked = client.get("/admin/ssl_certs/")
    assert blocked.status_code == 302 and blocked.headers["Location"].endswith("/admin/profile/")
    assert client.get("/admin/ssl_requests/status/?ids=1").status_code == 302
    profile = client.get("/admin/profile/").get_data(as_text=True)
    assert 'id="cw-must-change"' in profile
    token = csrf_token(client, "/admin/profile/")
    client.post(
        "/admin/profile/",
        data={
            "csrf_token": token,
            "current_password": "chosen-by-the-mrao-1",
            "new_password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert client.get("/admin/ssl_certs/").status_code == 200
    rao = db.session.execute(select(Admin).where(Admin.login == "acme-rao")).scalar_one()
    db.session.refresh(rao)
    assert rao.must_change_password is False


def test_a_password_set_by_an_mrao_must_be_changed_unless_unticked(client):
    make_admin("mrao")
    acme = make_org("Acme Corp")
    rao = make_admin("rao", Role.RAO, org=acme)
    login(client, "mrao", PASSWORD)
    url = f"/admin/admins/edit/?id={rao.id}"
    form = client.get(url).get_data(as_text=True)
    assert re.search(
        r'id="must_change_password"[^>]*checked|checked[^>]*id="must_change_password"', form
    )
    base = {
        "email": "rao@example.com",
        "role": "RAO",
        "active": "y",
        "scopes": [f"o:{acme.id}"],
        "scopes-priv": [f"o:{acme.id}:{t.value}" for t in CertType],
    }
    client.post(
        url,
        data={
            **base,
            "csrf_token": csrf_token(client, url),
            "new_password": NEW_PASSWORD,
            "must_change_password": "y",
        },
    )
    db.session.refresh(rao)
    assert rao.must_change_password is True
    client.post(
        url,
        data={
            **base,
            "csrf_token": csrf_token(client, url),
            "new_password": "another-new-password-8",
        },
    )
    db.session.refresh(rao)
    assert rao.must_change_password is False
