"""The SCM REST API's person (§5) and S/MIME (§4) services over real HTTP (gunicorn,
embedded worker) with plain `requests`: the contract's examples, its errors, audit, and an
RAO's account that sees nothing of another organization (id swaps on every {id} route)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import requests
from cryptography import x509
from sqlalchemy import select, text

from app.extensions import db
from app.models import AuditEvent, CertificateRequest, CertType, Person
from app.services.scope import SYSTEM
from tests.factories import make_csr
from tests.integration.scm_live import API_PASSWORD, Live, console_session
from tests.processes import wait_until

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


# --- S/MIME (§4) -------------------------------------------------------------------------


def smime_body(live: Live, mail: dict[str, Any], email: str, org: str = "acme", **extra: Any):
    csr, key = make_csr(email, key_type="EC-P256", alt_names=False)
    return {
        "orgId": live.ids[org],
        "csr": csr.decode(),
        "certType": mail["profile"],
        "term": 365,
        "email": email,
        "phone": None,
        "secondaryEmails": None,
        "firstName": "Amy",
        "middleName": None,
        "lastName": "Wong",
        "commonName": None,
        "eppn": None,
        "upn": None,
        **extra,
    }, key


def wait_state(live: Live, order: int, want: str, login: str = "api-mrao") -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        data = live.call("GET", f"/smime/v1/{order}", login).json()
        return data if data.get("status") == want else None

    return wait_until(probe, timeout=60, what=f"S/MIME order {order} to be {want}")


def test_smime_enroll_collect_byte_identical_verify_renew_revoke(live, mail, tmp_path):
    types = live.call("GET", "/smime/v1/types").json()
    assert [t["id"] for t in types] == [mail["profile"]] and types[0]["terms"] == [365]
    assert live.call("GET", "/smime/v1/customFields").json() == []
    body, _ = smime_body(live, mail, "amy@mail-acme.example")
    answer = live.call("POST", "/smime/v1/enroll", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) == {"orderNumber", "backendCertId"}
    order = data["orderNumber"]
    assert data["backendCertId"] == str(order)
    # the person did not exist: created (STANDARD) in orgId
    person = live.call("GET", "/person/v1/id/byEmail/amy%40mail-acme.example").json()["personId"]
    details = live.call("GET", f"/person/v1/{person}").json()
    assert details["validationType"] == "STANDARD" and details["lastName"] == "Wong"
    issued = wait_state(live, order, "issued")
    assert issued["backendCertId"] == str(order) and issued["requestedVia"] == "Web API"
    assert issued["subjectAlternativeNames"] == ["amy@mail-acme.example"]
    assert issued["certType"]["id"] == mail["profile"] and issued["personId"] == person
    # lists: by person, by e-mail (v2), state
    listed = live.call("GET", "/smime/v1", params={"personId": person, "size": 10})
    assert [i["id"] for i in listed.json()] == [order] and listed.headers["X-Total-Count"] == "1"
    assert listed.json()[0]["state"] == "issued"
    assert [
        i["backendCertId"]
        for i in live.call("GET", "/smime/v2/byPersonEmail/amy@mail-acme.example").json()
    ] == [str(order)]
    assert live.call("GET", "/smime/v2/byPersonEmail/nobody%40mail-acme.example").json() == []
    assert [
        i["id"]
        for i in live.call("GET", "/smime/v1?state=issued&email=amy%40mail-acme.example").json()
    ] == [order]
    assert live.call("GET", "/smime/v1?state=revoked&email=amy%40mail-acme.example").json() == []
    # the client-certificates report names the person
    reports = live.call("POST", "/report/v1/client-certificates", json={}).json()["reports"]
    mine = [r for r in reports if r["orderNumber"] == order]
    assert mine and mine[0]["person"] == {
        "name": "Amy Wong",
        "email": "amy@mail-acme.example",
        "guid": str(person),
    }
    # collect: every format byte for byte the console's download of the same certificate
    session = console_session(live)
    cert_id = db.session.execute(
        select(CertificateRequest.certificate_id).where(CertificateRequest.id == order)
    ).scalar_one()

    def console(fmt: str) -> bytes:
        got = session.get(
            f"{live.base}/admin/client_certs/download/",
            params={"id": cert_id, "format": fmt},
            timeout=30,
        )
        assert got.status_code == 200, got.text[:300]
        return got.content

    expected = {
        "x509": console("x509IOR") + console("x509CO"),
        "x509R": console("x509"),
        "x509CO": console("x509CO"),
        "x509IO": console("x509IOR"),
        "x509IOR": console("x509IO"),
        "base64": console("base64"),
        "bin": console("bin"),
        "pem": console("x509IOR") + console("x509CO"),
        "pemco": console("pemco"),
        "pemia": console("x509"),
    }
    for fmt, content in expected.items():
        got = live.call("GET", f"/smime/v1/collect/{order}", params={"format": fmt})
        assert got.status_code == 200 and got.content == content, fmt
        charset = "ISO-8859-1" if fmt == "bin" else "UTF-8"
        assert got.headers["Content-Type"] == f"application/octet-stream;charset={charset}"
    assert live.call("GET", f"/smime/v1/collect/{order}").content == expected["base64"]
    error(live.call("GET", f"/smime/v1/collect/{order}?format=pfx"), 400, -126)
    # openssl verifies the collected certificate for S/MIME
    chain = live.call("GET", f"/smime/v1/collect/{order}?format=x509R").text
    blocks = [
        b + "-----END CERTIFICATE-----\n"
        for b in chain.split("-----END CERTIFICATE-----\n")
        if b.strip()
    ]
    leaf, issuing, root = blocks
    (tmp_path / "root.pem").write_text(root)
    (tmp_path / "issuing.pem").write_text(issuing)
    (tmp_path / "leaf.pem").write_text(leaf)
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            "smimesign",
            "-CAfile",
            tmp_path / "root.pem",
            "-untrusted",
            tmp_path / "issuing.pem",
            tmp_path / "leaf.pem",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    assert "amy@mail-acme.example" in x509.load_pem_x509_certificate(
        leaf.encode()
    ).extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    )
    # renew (v2, by order and by serial): new orders from the original's CSR
    renewed = live.call("POST", f"/smime/v2/renew/order/{order}")
    assert renewed.status_code == 200, renewed.text
    new = renewed.json()["orderNumber"]
    assert renewed.json()["backendCertId"] == str(new) and new != order
    wait_state(live, new, "issued")
    serial = live.call("GET", f"/smime/v1/{new}").json()["serialNumber"]
    again = live.call("POST", f"/smime/v2/renew/serial/{serial}")
    assert again.status_code == 200, again.text
    third = again.json()["orderNumber"]
    wait_state(live, third, "issued")
    # revoke by order: collect then answers -192
    assert (
        live.call(
            "POST",
            f"/smime/v1/revoke/order/{third}",
            json={"reason": "lost laptop", "reasonCode": 1},
        ).status_code
        == 204
    )
    assert wait_state(live, third, "revoked")["revoked"]
    assert (
        error(live.call("GET", f"/smime/v1/collect/{third}"), 400, -192)
        == "The Certificate has been revoked!"
    )
    error(live.call("POST", f"/smime/v1/revoke/order/{third}", json={"reason": "again"}), 400, -159)
    # revoke by e-mail: every valid certificate of the person (a second key's here), then
    # none is left (-1108)
    second, _ = smime_body(live, mail, "amy@mail-acme.example", comments="second key")
    fourth = live.call("POST", "/smime/v1/enroll", json=second).json()["orderNumber"]
    wait_state(live, fourth, "issued")
    assert (
        live.call(
            "POST", "/smime/v1/revoke", json={"email": "amy@mail-acme.example", "reason": "left"}
        ).status_code
        == 204
    )
    states = {i["id"]: i["state"] for i in live.call("GET", f"/smime/v1?personId={person}").json()}
    assert states == {order: "expired", new: "expired", third: "revoked", fourth: "revoked"}
    assert (
        error(
            live.call(
                "POST",
                "/smime/v1/revoke",
                json={"email": "amy@mail-acme.example", "reason": "left"},
            ),
            400,
            -1108,
        )
        == "No valid client certificates found for amy@mail-acme.example."
    )
    db.session.expire_all()
    actions = {
        e.action
        for e in db.session.execute(
            select(AuditEvent).where(AuditEvent.actor == "api-mrao")
        ).scalars()
    }
    assert {
        "person.create",
        "request.create",
        "certificate.renew",
        "certificate.revoke",
    } <= actions, actions


def test_smime_replace_keeps_the_order_and_revokes_the_old_certificate(live, mail):
    body, _ = smime_body(live, mail, "bender@mail-acme.example")
    order = live.call("POST", "/smime/v1/enroll", json=body).json()["orderNumber"]
    old_serial = wait_state(live, order, "issued")["serialNumber"]
    error(
        live.call(
            "POST", f"/smime/v2/replace/order/{order}", json={"csr": body["csr"], "revoke": False}
        ),
        400,
        -1601,
    )
    csr, _ = make_csr("bender@mail-acme.example", key_type="EC-P256", alt_names=False)
    replaced = live.call(
        "POST",
        f"/smime/v2/replace/order/{order}",
        json={"csr": csr.decode(), "reason": None, "revoke": True},
    )
    assert replaced.status_code == 204 and replaced.text == "", replaced.text

    def probe() -> dict[str, Any] | None:
        data = live.call("GET", f"/smime/v1/{order}").json()
        return data if data["status"] == "issued" and data["serialNumber"] != old_serial else None

    wait_until(probe, timeout=60, what="the replacement")
    # the person holds a valid certificate: an edit (which would revoke it) and a delete
    # are refused, naming why, and change nothing
    person = live.call("GET", "/person/v1/id/byEmail/bender%40mail-acme.example").json()["personId"]
    assert "revokes 1 certificate" in error(
        live.call("PUT", f"/person/v1/{person}", json={"firstName": "Bender"}), 400, -1601
    )
    assert "valid certificate" in error(live.call("DELETE", f"/person/v1/{person}"), 400, -1601)
    assert live.call("GET", f"/person/v1/{person}").json()["firstName"] == "Amy"
    db.session.expire_all()
    from app.models import Certificate, CertStatus

    old = db.session.execute(
        select(Certificate).where(
            Certificate.serial_hex == old_serial.replace(":", "").lower().lstrip("0")
        )
    ).scalar_one()
    assert old.status == CertStatus.REVOKED and old.revocation_reason == "superseded"


def test_smime_errors_and_collect_before_issuance(live, mail):
    from app.models import CertificateProfile

    body, _ = smime_body(live, mail, "kif@mail-acme.example")
    for name in ("orgId", "csr", "certType", "term", "email", "firstName", "lastName"):
        assert error(
            live.call("POST", "/smime/v1/enroll", json={**body, name: None}), 400, -7
        ).startswith(f"'{name}'")
    error(
        live.call("POST", "/smime/v1/enroll", json={**body, "certType": live.ids["auto"]}),
        400,
        -172,
    )
    error(live.call("POST", "/smime/v1/enroll", json={**body, "certType": 9999}), 400, -172)
    error(live.call("POST", "/smime/v1/enroll", json={**body, "term": 30}), 400, -36)
    error(live.call("POST", "/smime/v1/enroll", json={**body, "csr": "not a csr"}), 400, -10)
    assert error(
        live.call("POST", "/smime/v1/enroll", json={**body, "email": "kif@elsewhere.example"}),
        400,
        -1010,
    ).startswith("Domain 'elsewhere.example' is not allowed.")
    error(live.call("POST", "/smime/v1/enroll", json={**body, "orgId": 4242}), 400, -1023)
    assert live.call("GET", "/person/v1/id/byEmail/kif%40mail-acme.example").status_code == 404
    # a profile that needs approval: collect answers -183 until someone approves
    profile = db.session.get(CertificateProfile, mail["profile"])
    profile.requires_approval = True
    db.session.commit()
    try:
        order = live.call("POST", "/smime/v1/enroll", json=body).json()["orderNumber"]
    finally:
        profile.requires_approval = False
        db.session.commit()
    assert live.call("GET", f"/smime/v1/{order}").json()["status"] == "requested"
    assert (
        error(live.call("GET", f"/smime/v1/collect/{order}"), 400, -183)
        == "Certificate is not collectable."
    )
    error(live.call("POST", f"/smime/v2/renew/order/{order}"), 400, -130)
    error(live.call("POST", f"/smime/v1/revoke/order/{order}", json={"reason": "x"}), 400, -102)
    assert (
        error(live.call("GET", "/smime/v1/collect/987654"), 404, -1104)
        == "Invalid order number 987654"
    )
    error(live.call("GET", "/smime/v1/collect/abc"), 404, -1104)
    error(live.call("GET", "/smime/v1/987654"), 404, -1104)
    error(live.call("POST", "/smime/v1/revoke/order/987654", json={"reason": "x"}), 404, -1104)
    error(
        live.call(
            "POST", "/smime/v1/revoke", json={"email": "nobody@mail-acme.example", "reason": "x"}
        ),
        400,
        -1108,
    )
    error(live.call("POST", "/smime/v1/revoke", json={"email": "kif@mail-acme.example"}), 400, -7)


def test_smime_rao_id_swaps(live, mail):
    body, _ = smime_body(live, mail, "hermes2@mail-beta.example", "beta")
    order = live.call("POST", "/smime/v1/enroll", "api-beta", json=body).json()["orderNumber"]
    serial = wait_state(live, order, "issued", "api-beta")["serialNumber"]
    acme = "api-acme"
    error(live.call("GET", f"/smime/v1/{order}", acme), 404, -1104)
    error(live.call("GET", f"/smime/v1/collect/{order}", acme), 404, -1104)
    error(live.call("POST", f"/smime/v2/renew/order/{order}", acme), 404, -1104)
    error(live.call("POST", f"/smime/v2/renew/serial/{serial}", acme), 404, -1104)
    error(
        live.call("POST", f"/smime/v2/replace/order/{order}", acme, json={"csr": body["csr"]}),
        404,
        -1104,
    )
    error(
        live.call("POST", f"/smime/v1/revoke/order/{order}", acme, json={"reason": "swap"}),
        404,
        -1104,
    )
    error(
        live.call(
            "POST",
            "/smime/v1/revoke",
            acme,
            json={"email": "hermes2@mail-beta.example", "reason": "swap"},
        ),
        400,
        -1108,
    )
    assert (
        live.call("GET", "/smime/v2/byPersonEmail/hermes2%40mail-beta.example", acme).json() == []
    )
    assert order not in [i["id"] for i in live.call("GET", "/smime/v1", acme).json()]
    assert (
        live.call("GET", "/smime/v1", acme, params={"email": "hermes2@mail-beta.example"}).json()
        == []
    )
    # enrolling into Beta, or for Beta's person from Acme, is refused
    other, _ = smime_body(live, mail, "hermes3@mail-beta.example", "beta")
    error(live.call("POST", "/smime/v1/enroll", acme, json=other), 400, -1023)
    mine, _ = smime_body(live, mail, "hermes2@mail-beta.example", "acme")
    assert live.call("POST", "/smime/v1/enroll", acme, json=mine).status_code == 400
    # untouched for its owner
    assert live.call("GET", f"/smime/v1/{order}", "api-beta").json()["status"] == "issued"


# --- client-certificate authentication (§0.2 variant) -------------------------------------


def test_private_api_authenticates_with_the_api_admins_own_client_certificate(live, mail):
    """/private/api: login + customerUri, and the certificate a TLS proxy on this host
    verified and forwarded (X-SSL-Client-Cert, URL-escaped PEM as nginx sends it)."""
    from urllib.parse import quote

    from app.models import Admin

    bot = db.session.execute(select(Admin).where(Admin.login == "api-mrao")).scalar_one()
    admins_email = bot.email  # api-mrao@example.com: a mailbox of a delegated domain below
    from app.services.structure import domains

    human = db.session.get(Admin, live.ids["human"])
    domains.create_domain(
        actor=human, name="example.com", organization_id=live.ids["acme"], types=[CertType.CLIENT]
    )
    db.session.commit()
    body, _ = smime_body(live, mail, admins_email, firstName="API", lastName="Robot")
    order = live.call("POST", "/smime/v1/enroll", json=body).json()["orderNumber"]
    wait_state(live, order, "issued")
    pem = live.call("GET", f"/smime/v1/collect/{order}?format=x509CO").text
    url = f"{live.base}/private/api/organization/v1"
    headers = {
        "login": "api-mrao",
        "customerUri": "certwright",
        "X-SSL-Client-Cert": quote(pem),
    }
    answer = requests.get(url, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert live.ids["acme"] in [o["id"] for o in answer.json()]
    # writes work there too, and Location stays under /private/api
    made = requests.post(
        f"{live.base}/private/api/person/v1",
        headers=headers,
        json=person_body(live, "via-cert@mail-acme.example"),
        timeout=30,
    )
    assert made.status_code == 201, made.text
    assert made.headers["Location"].startswith(f"{live.base}/private/api/person/v1/")

    # refusals: all "Unknown user" (the throttle forgotten between them)
    def unthrottled() -> None:
        db.session.execute(text("DELETE FROM signin_throttles"))
        db.session.commit()

    for changed in (
        {"X-SSL-Client-Cert": ""},
        {"X-SSL-Client-Cert": "garbage"},
        {"login": "api-acme"},  # someone else's certificate
        {"customerUri": "other"},
        {"password": API_PASSWORD, "X-SSL-Client-Cert": ""},  # no password fallback here
    ):
        unthrottled()
        error(requests.get(url, headers={**headers, **changed}, timeout=30), 401, -16)
    # a certificate another administrator requested for this mailbox does not count
    other, _ = smime_body(live, mail, "someone@example.com")
    theirs = live.call("POST", "/smime/v1/enroll", "api-acme", json=other).json()["orderNumber"]
    wait_state(live, theirs, "issued", "api-acme")
    foreign = live.call("GET", f"/smime/v1/collect/{theirs}?format=x509CO", "api-acme").text
    unthrottled()
    error(
        requests.get(
            url,
            headers={**headers, "login": "api-acme", "X-SSL-Client-Cert": quote(foreign)},
            timeout=30,
        ),
        401,
        -16,
    )
    # revoking the certificate ends its use
    live.call("POST", f"/smime/v1/revoke/order/{order}", json={"reason": "rotated"})
    unthrottled()
    error(requests.get(url, headers=headers, timeout=30), 401, -16)
    db.session.expire_all()
    reasons = [
        e.message
        for e in db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "signin.failure")
        ).scalars()
    ]
    assert any("client certificate is revoked" in r for r in reasons), reasons
