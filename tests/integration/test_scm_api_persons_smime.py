"""The SCM REST API's person (§5) and S/MIME (§4) services over real HTTP (gunicorn,
embedded worker) with plain `requests`: the contract's examples, its errors, audit, and an
RAO's account that sees nothing of another organization (id swaps on every {id} route)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, CertType, Person
from app.services.scope import SYSTEM
from tests.integration.scm_live import Live

JSON = "application/json;charset=UTF-8"


def error(response, status: int, code: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == JSON
    data = response.json()
    assert set(data) == {"code", "description"} and data["code"] == code, data
    return data["description"]


def created_id(live: Live, response, service: str) -> int:
    assert response.status_code == 201 and response.text == "", response.text
    location = response.headers["Location"]
    new_id = int(location.rsplit("/", 1)[1])
    assert location == f"{live.base}/api/{service}/{new_id}"
    return new_id


@pytest.fixture(scope="module")
def mail(live: Live) -> dict[str, Any]:
    """Client-certificate domains for Acme and Beta, and an S/MIME CA and profile."""
    from app.models import Admin
    from app.pki.profiles import CaPurpose
    from app.services.ca import authorities, profiles
    from app.services.structure import domains

    human = db.session.get(Admin, live.ids["human"])
    for name, org in (("mail-acme.example", "acme"), ("mail-beta.example", "beta")):
        domains.create_domain(
            actor=human, name=name, organization_id=live.ids[org], types=[CertType.CLIENT]
        )
    issuing = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name="Test S/MIME Issuing",
            key_type="EC-P256",
            customer_name="Test",
            country="DE",
            parent_id=live.ids["root"],
            purpose=CaPurpose.SMIME.value,
        ),
    )
    profile = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="Auto S/MIME",
            cert_type=CertType.CLIENT,
            ca_id=issuing.id,
            terms=(365,),
            key_types=("RSA-2048", "EC-P256"),
            requires_approval=False,
        ),
    )
    db.session.commit()
    return {"profile": profile.id, "issuing": issuing.id}


def person_body(live: Live, email: str, org: str = "acme", **extra: Any) -> dict[str, Any]:
    return {
        "firstName": "Philip",
        "middleName": None,
        "lastName": "Fry",
        "email": email,
        "validationType": "STANDARD",
        "organizationId": live.ids[org],
        "phone": None,
        "commonName": None,
        "secondaryEmails": None,
        "eppn": None,
        "upn": None,
        **extra,
    }


def audit_actions(object_type: str, object_id: int) -> list[tuple[str, str]]:
    db.session.expire_all()
    rows = db.session.execute(
        select(AuditEvent)
        .where(AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
        .order_by(AuditEvent.seq)
    ).scalars()
    return [(e.action, e.actor) for e in rows]


# --- persons (§5) ------------------------------------------------------------------------


def test_person_create_find_details_update_delete(live, mail):
    answer = live.call(
        "POST", "/person/v1", json=person_body(live, "fry@mail-acme.example", unknown=1)
    )
    person_id = created_id(live, answer, "person/v1")
    details = live.call("GET", f"/person/v1/{person_id}").json()
    assert details["id"] == person_id and details["email"] == "fry@mail-acme.example"
    assert details["firstName"] == "Philip" and details["lastName"] == "Fry"
    assert details["middleName"] == "" and details["secondaryEmails"] == []
    assert details["organizationId"] == live.ids["acme"]
    assert details["validationType"] == "STANDARD" and details["commonName"] == "Philip Fry"
    assert details["created"].endswith("Z") and details["modified"].endswith("Z")
    # by e-mail: percent-encoded, any case
    found = live.call("GET", "/person/v1/id/byEmail/FRY%40mail-acme.example")
    assert found.status_code == 200 and found.json() == {"personId": person_id}
    assert (
        error(live.call("GET", "/person/v1/id/byEmail/nobody%40mail-acme.example"), 404, -105)
        == "Person with e-mail: nobody@mail-acme.example was not found"
    )
    # list: filters, pagination, X-Total-Count
    listed = live.call("GET", "/person/v1", params={"size": 200, "position": 0})
    assert listed.headers["X-Total-Count"] == str(len(listed.json()))
    assert person_id in [p["id"] for p in listed.json()]
    by_email = live.call("GET", "/person/v1", params={"email": "fry@mail-acme.example"})
    assert [p["id"] for p in by_email.json()] == [person_id]
    assert by_email.headers["X-Total-Count"] == "1"
    assert [p["id"] for p in live.call("GET", "/person/v1?name=hilip F").json()] == [person_id]
    assert live.call("GET", "/person/v1?name=nobody").json() == []
    # partial update: only the given fields change
    assert (
        live.call(
            "PUT",
            f"/person/v1/{person_id}",
            json={"phone": "+49 30 1234", "secondaryEmails": ["pf@mail-acme.example"]},
        ).status_code
        == 200
    )
    details = live.call("GET", f"/person/v1/{person_id}").json()
    assert details["phone"] == "+49 30 1234" and details["firstName"] == "Philip"
    assert details["secondaryEmails"] == ["pf@mail-acme.example"]
    found = live.call("GET", "/person/v1", params={"secondaryEmail": "pf@mail-acme.example"})
    assert [p["id"] for p in found.json()] == [person_id]
    assert live.call("DELETE", f"/person/v1/{person_id}").status_code == 200
    assert (
        error(live.call("GET", f"/person/v1/{person_id}"), 404, -105)
        == f"Person with ID: {person_id} was not found"
    )
    assert audit_actions("Person", person_id) == [
        ("person.create", "api-mrao"),
        ("person.update", "api-mrao"),
        ("person.delete", "api-mrao"),
    ]


def test_person_errors_have_the_contracts_codes(live, mail):
    body = person_body(live, "leela@mail-acme.example")
    for name in ("firstName", "lastName", "email", "validationType", "organizationId"):
        assert error(
            live.call("POST", "/person/v1", json={**body, name: None}), 400, -7
        ).startswith(f"'{name}' is required")
    assert "validationType" in error(
        live.call("POST", "/person/v1", json={**body, "validationType": "EXTREME"}), 400, -1601
    )
    assert "email" in error(
        live.call("POST", "/person/v1", json={**body, "email": "leela@elsewhere.example"}),
        400,
        -1601,
    )
    assert (
        error(live.call("POST", "/person/v1", json={**body, "organizationId": 4242}), 400, -1023)
        == "Organization '4242' not found."
    )
    created_id(live, live.call("POST", "/person/v1", json=body), "person/v1")
    assert "already belongs to a person" in error(
        live.call("POST", "/person/v1", json=body), 400, -1601
    )
    error(live.call("GET", "/person/v1/999999"), 404, -105)
    error(live.call("PUT", "/person/v1/999999", json={"phone": "1"}), 404, -105)
    error(live.call("DELETE", "/person/v1/999999"), 404, -105)
    error(live.call("GET", "/person/v1/99999999999"), 404, -105)


def test_person_rao_id_swaps(live, mail):
    beta = created_id(
        live,
        live.call(
            "POST",
            "/person/v1",
            "api-beta",
            json=person_body(live, "hermes@mail-beta.example", "beta"),
        ),
        "person/v1",
    )
    acme = "api-acme"
    assert (
        error(live.call("GET", f"/person/v1/{beta}", acme), 404, -105)
        == f"Person with ID: {beta} was not found"
    )
    error(live.call("PUT", f"/person/v1/{beta}", acme, json={"firstName": "X"}), 404, -105)
    error(live.call("DELETE", f"/person/v1/{beta}", acme), 404, -105)
    error(live.call("GET", "/person/v1/id/byEmail/hermes%40mail-beta.example", acme), 404, -105)
    assert beta not in [p["id"] for p in live.call("GET", "/person/v1", acme).json()]
    # creating one in Beta, or moving one there, is refused
    error(
        live.call(
            "POST", "/person/v1", acme, json=person_body(live, "zoidberg@mail-beta.example", "beta")
        ),
        400,
        -1023,
    )
    # untouched for its owner; the attempts are recorded as denied
    assert live.call("GET", f"/person/v1/{beta}", "api-beta").json()["firstName"] == "Philip"
    db.session.expire_all()
    assert db.session.get(Person, beta).first_name == "Philip"
    denied = db.session.execute(
        select(AuditEvent).where(
            AuditEvent.object_type == "Person",
            AuditEvent.object_id == str(beta),
            AuditEvent.actor == acme,
        )
    ).scalars()
    assert len(list(denied)) >= 3
