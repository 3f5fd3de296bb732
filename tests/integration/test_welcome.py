"""The first-run welcome leads to a first certificate (issue 9, C8): the bootstrap
organization gets its city/state from CW_ORG_CITY/CW_ORG_STATE or is asked for them on
first sign-in, and each step is ticked when the data it creates exists."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.models import Organization
from tests.conftest import csrf_token, drain, login
from tests.factories import PASSWORD, make_admin, make_domain, make_pki, request_certificate

STEPS = ("organization", "domain", "delegation", "ca", "profile", "request", "certificates")


def steps_done(html: str) -> dict[str, bool]:
    found = dict(re.findall(r'data-step="(\w+)" data-done="(yes|no)"', html))
    assert tuple(found) == STEPS
    return {k: v == "yes" for k, v in found.items()}


def bootstrap(app, **env):
    result = app.test_cli_runner().invoke(
        args=["bootstrap"], env={"CW_ADMIN_PASSWORD": PASSWORD, **env}
    )
    assert result.exit_code == 0, result.output
    return db.session.execute(select(Organization)).scalar_one()


def test_bootstrap_takes_the_city_and_state_from_the_environment(app):
    org = bootstrap(
        app, CW_ORG_NAME="Acme Corp", CW_ORG_CITY="Springfield", CW_ORG_STATE="Illinois"
    )
    assert (org.name, org.city, org.state) == ("Acme Corp", "Springfield", "Illinois")


def test_the_first_sign_in_asks_where_the_organization_is(app, client):
    org = bootstrap(app)
    assert org.city == "" and org.state == ""
    login(client, "admin", PASSWORD)
    html = client.get("/admin/").get_data(as_text=True)
    assert 'id="cw-location-form"' in html and "Where is <strong>My Organization</strong>?" in html
    assert steps_done(html) == dict.fromkeys(STEPS, False)
    token = csrf_token(client, "/admin/")
    refused = client.post(
        "/admin/first-location/",
        data={"csrf_token": token, "org_id": org.id, "city": "", "state": ""},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Give the city (and the state or province)" in refused
    done = client.post(
        "/admin/first-location/",
        data={"csrf_token": token, "org_id": org.id, "city": "Springfield", "state": "Illinois"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Organization &#39;My Organization&#39; is in Springfield." in done
    assert 'id="cw-location-form"' not in done and steps_done(done)["organization"] is True
    db.session.refresh(org)
    assert (org.city, org.state, org.country) == ("Springfield", "Illinois", "US")


def test_each_step_is_ticked_when_its_data_exists_and_links_to_the_next(app, client, stub_worker):
    org = bootstrap(app, CW_ORG_CITY="Springfield")
    login(client, "admin", PASSWORD)
    html = client.get("/admin/").get_data(as_text=True)
    assert steps_done(html)["organization"] is True
    assert 'href="/admin/domain/new/"' in html and 'href="/admin/cas/new/"' in html
    mrao = make_admin("mrao")
    make_domain("acme.example", by=mrao, org=org)
    _root, _issuing, profile = make_pki(requires_approval=False)
    assert steps_done(client.get("/admin/").get_data(as_text=True)) == {
        **dict.fromkeys(STEPS, True),
        "request": False,
        "certificates": False,
    }
    request_certificate(by=mrao, org=org, profile=profile, cn="www.acme.example")
    drain(stub_worker)
    html = client.get("/admin/").get_data(as_text=True)
    assert steps_done(html) == dict.fromkeys(STEPS, True)
    assert 'id="cw-welcome-done"' in html


def test_an_rao_sees_its_own_steps_and_no_links_it_cannot_follow(app, client):
    from app.models import Role
    from tests.factories import make_org

    acme = make_org("Acme Corp", city="Springfield")
    make_admin("rao", Role.RAO, org=acme)
    login(client, "rao", PASSWORD)
    html = client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/cas/new/"' not in html and "ask an MRAO" in html
    assert 'id="cw-location-form"' not in html  # its organization has a city
