"""Organizations and departments through the console: validation, no orphans, audit."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Department, Organization
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_dept, make_org

ORG_FORM = {
    "name": "Globex",
    "address1": "1 Main St",
    "address2": "",
    "address3": "",
    "city": "Springfield",
    "state": "OR",
    "postal_code": "97403",
    "country": "US",
}


def signed_in(client, login_name="mrao"):
    make_admin(login_name)
    login(client, login_name, PASSWORD)
    return client


def post_org(client, **changes):
    data = {**ORG_FORM, **changes, "csrf_token": csrf_token(client, "/admin/organization/new/")}
    return client.post("/admin/organization/new/", data=data, follow_redirects=True)


def org_count() -> int:
    return db.session.execute(select(func.count()).select_from(Organization)).scalar_one()


def test_create_organization(client):
    signed_in(client)
    page = post_org(client).get_data(as_text=True)
    assert "Organization &#39;Globex&#39; created." in page
    org = db.session.execute(select(Organization).where(Organization.name == "Globex")).scalar_one()
    assert (org.city, org.country, org.postal_code) == ("Springfield", "US", "97403")
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "organization.create")
    ).scalar_one()
    assert event.actor == "mrao" and event.after["name"] == "Globex" and event.ip == "127.0.0.1"
    assert "Globex" in client.get("/admin/organization/").get_data(as_text=True)


def test_bad_country_and_empty_name_are_refused_at_the_field(client):
    signed_in(client)
    page = post_org(client, country="XX").get_data(as_text=True)
    assert "&#39;XX&#39; is not an ISO 3166 two-letter country code" in page
    page = post_org(client, name="   ").get_data(as_text=True)
    assert "This field is required." in page or "The organization name is required." in page
    assert org_count() == 0


def test_duplicate_name_is_refused_case_insensitively(client):
    make_org("Globex")
    signed_in(client)
    page = post_org(client, name="globex").get_data(as_text=True)
    assert "An organization named &#39;globex&#39; already exists." in page
    assert org_count() == 1


def test_delete_refused_while_departments_exist(client):
    org = make_org("Globex")
    make_dept(org, "IT")
    signed_in(client)
    token = csrf_token(client, "/admin/organization/")
    page = client.post(
        "/admin/organization/delete/",
        data={"id": org.id, "csrf_token": token},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "cannot be deleted while it still has 1 departments" in page
    assert org_count() == 1


def test_department_create_duplicate_and_delete(client):
    org = make_org("Globex")
    signed_in(client)
    token = csrf_token(client, "/admin/department/new/")
    page = client.post(
        "/admin/department/new/",
        data={"organization_id": org.id, "name": "Sales", "csrf_token": token},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Department &#39;Globex / Sales&#39; created." in page
    token = csrf_token(client, "/admin/department/new/")
    page = client.post(
        "/admin/department/new/",
        data={"organization_id": org.id, "name": "SALES", "csrf_token": token},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "already has a department named" in page
    dept = db.session.execute(select(Department)).scalar_one()
    token = csrf_token(client, "/admin/department/")
    client.post("/admin/department/delete/", data={"id": dept.id, "csrf_token": token})
    assert db.session.execute(select(func.count()).select_from(Department)).scalar_one() == 0
    assert [
        e
        for e in db.session.execute(select(AuditEvent.action)).scalars()
        if e.startswith("department.")
    ] == ["department.create", "department.delete"]


def test_edit_organization_records_before_and_after(client):
    org = make_org("Globex", city="Old Town")
    signed_in(client)
    url = f"/admin/organization/edit/?id={org.id}"
    data = {**ORG_FORM, "city": "New Town", "csrf_token": csrf_token(client, url)}
    client.post(url, data=data)
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "organization.update")
    ).scalar_one()
    assert event.before["city"] == "Old Town" and event.after["city"] == "New Town"


def test_form_without_csrf_is_rejected(client):
    signed_in(client)
    resp = client.post("/admin/organization/new/", data=ORG_FORM)
    assert resp.status_code == 400
    assert org_count() == 0
