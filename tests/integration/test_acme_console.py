"""Console: Settings > ACME accounts creates EAB keys (HMAC key shown once, scoped to the
admin's organizations), revokes them, and the profile form sets the ACME directory."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.models import AcmeExternalKey, AuditEvent, CertificateProfile, Role
from app.pki import keystore
from app.services.acme import external_keys
from app.services.ca import signing
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_org, make_pki


def create(client, target, label="web"):
    token = csrf_token(client, "/admin/acme_keys/new/")
    return client.post(
        "/admin/acme_keys/new/", data={"label": label, "target": target, "csrf_token": token}
    )


def test_an_mrao_creates_a_key_and_sees_the_hmac_key_once(client, app):
    make_admin()
    org = make_org("Acme", city="Berlin")
    make_pki(requires_approval=False, acme_slug="tls")
    login(client, "mrao", PASSWORD)
    page = create(client, f"o:{org.id}").get_data(as_text=True)
    key = db.session.execute(select(AcmeExternalKey)).scalar_one()
    hmac_key = re.search(r'id="eab-hmac">([A-Za-z0-9_-]+)<', page).group(1)
    assert key.key_id in page and key.organization_id == org.id and key.label == "web"
    # The key shown is the sealed one, and it is not stored readable.
    with app.app_context():
        stored = keystore.unseal(key.sealed_hmac_key, signing.keks())
    assert external_keys.jose.b64encode(stored) == hmac_key
    assert hmac_key.encode() not in key.sealed_hmac_key
    assert "--eab-kid " + key.key_id in page and "http://localhost/acme/tls/directory" in page
    listing = client.get("/admin/acme_keys/").get_data(as_text=True)
    assert key.key_id in listing and hmac_key not in listing
    details = client.get(f"/admin/acme_keys/details/?id={key.id}").get_data(as_text=True)
    assert hmac_key not in details
    token = csrf_token(client, "/admin/acme_keys/")
    client.post(
        "/admin/acme_keys/action/",
        data={"action": "revoke", "rowid": [str(key.id)], "csrf_token": token},
    )
    db.session.expire_all()
    assert db.session.get(AcmeExternalKey, key.id).revoked_at is not None
    actions = set(db.session.execute(select(AuditEvent.action)).scalars())
    assert {"acme.key.create", "acme.key.revoke"} <= actions


def test_an_rao_creates_keys_for_their_organization_only(client):
    mrao = make_admin()
    mine, theirs = make_org("Mine", city="Berlin"), make_org("Theirs", city="Paris")
    make_admin("rao", Role.RAO, org=mine)
    other_key = external_keys.create_key(
        actor=mrao, organization_id=theirs.id, department_id=None, label="theirs"
    )
    db.session.commit()
    login(client, "rao", PASSWORD)
    refused = create(client, f"o:{theirs.id}").get_data(as_text=True)
    assert "No such organization" in refused
    denied = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "access.denied")
    ).scalar_one()
    assert (denied.object_type, denied.object_id) == ("Organization", str(theirs.id))
    assert create(client, f"o:{mine.id}").status_code == 200
    keys = db.session.execute(select(AcmeExternalKey.organization_id)).scalars().all()
    assert sorted(keys) == sorted([theirs.id, mine.id])
    listing = client.get("/admin/acme_keys/").get_data(as_text=True)
    assert other_key.key.key_id not in listing
    assert client.get(f"/admin/acme_keys/details/?id={other_key.key.id}").status_code in (302, 404)


def test_the_profile_form_sets_the_acme_directory(client):
    make_admin()
    _, issuing, profile = make_pki()
    login(client, "mrao", PASSWORD)
    url = f"/admin/profiles/edit/?id={profile.id}"
    page = client.get(url).get_data(as_text=True)
    assert "ACME directory name" in page
    token = csrf_token(client, url)
    form = {
        "name": profile.name,
        "description": "",
        "cert_type": "ssl",
        "ca_id": str(issuing.id),
        "terms": "90",
        "key_types": ["EC-P256"],
        "requires_approval": "y",
        "lint_mode": "every",
        "lint_sample_n": "100",
        "active": "y",
        "csrf_token": token,
    }
    bad = client.post(url, data={**form, "acme_slug": "Not OK!"}).get_data(as_text=True)
    assert "An ACME directory name is 1 to 63 lower-case letters" in bad
    client.post(url, data={**form, "acme_slug": "tls-servers"})
    db.session.expire_all()
    assert db.session.get(CertificateProfile, profile.id).acme_slug == "tls-servers"
    assert client.get("/acme/tls-servers/directory").status_code == 200


def test_an_rao_without_the_ssl_privilege_is_refused_and_it_is_audited(client):
    from app.models import CertType

    make_admin()
    mine = make_org("Mine", city="Berlin")
    make_admin("rao", Role.RAO, org=mine, privileges=(CertType.CLIENT,))
    login(client, "rao", PASSWORD)
    refused = create(client, f"o:{mine.id}").get_data(as_text=True)
    assert "that takes the SSL privilege there" in refused
    assert db.session.execute(select(AcmeExternalKey)).first() is None
    denied = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "access.denied")
    ).scalar_one()
    assert (denied.object_type, denied.object_id) == ("Organization", str(mine.id))
    assert "without the SSL privilege" in denied.message
