"""The SCM REST API over real HTTP (gunicorn, embedded worker) with plain `requests`:
authentication, organizations, domains and delegations, and the SSL lifecycle (enroll,
collect in every format, renew, replace, revoke), each through the contract's examples;
collected certificates are judged by `openssl verify` and a real TLS handshake."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, CertificateRequest, Job
from app.pki import keys
from tests.factories import make_csr
from tests.integration.scm_live import API_PASSWORD, Live, approve_in_console, console_session

JSON = "application/json;charset=UTF-8"


def error(response, status: int, code: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == JSON
    data = response.json()
    assert set(data) == {"code", "description"} and data["code"] == code, data
    return data["description"]


def enroll(
    live: Live,
    cn: str,
    *,
    login: str = "api-mrao",
    profile: str = "auto",
    org: str = "acme",
    key_type: str = "RSA-2048",
    **extra,
):
    csr, key = make_csr(cn, key_type=key_type)
    body = {
        "orgId": live.ids[org],
        "csr": csr.decode(),
        "certType": live.ids[profile],
        "numberServers": 1,
        "serverType": -1,
        "term": 90,
        "comments": "Enrolled by a script",
        "externalRequester": None,
        "dcvMode": "CNAME",
        **extra,
    }
    return live.call("POST", "/ssl/v1/enroll", login, json=body), key


# --- authentication (§0.2) ---------------------------------------------------------------


def test_every_call_needs_an_api_administrators_headers(live):
    for headers in (
        {},
        live.headers("api-mrao", "wrong-password-123"),
        live.headers("api-mrao", uri="InCommon"),
        live.headers("nobody"),
        live.headers("mrao", "a-long-test-password-1"),  # a person's account: not for the API
    ):
        answer = __import__("requests").get(
            f"{live.base}/api/organization/v1", headers=headers, timeout=30
        )
        assert error(answer, 401, -16) == "Unknown user"
    assert live.call("GET", "/organization/v1").status_code == 200
    # outside its source networks an account answers like an unknown one
    assert error(live.call("GET", "/organization/v1", "api-far"), 401, -16) == "Unknown user"
    reasons = db.session.execute(
        select(AuditEvent.message).where(AuditEvent.action == "signin.failure")
    ).scalars()
    text = "\n".join(reasons)
    assert (
        "REST API: not an API administrator" in text
        and "outside the account's source networks" in text
    )


def test_failures_throttle_that_address_for_the_api_but_never_a_persons_sign_in(live):
    import requests

    for _ in range(3):  # CW_LOGIN_MAX_FAILURES=3 in the live server
        error(
            live.call(
                "GET", "/organization/v1", headers=live.headers("api-beta", "nope-nope-nope")
            ),
            401,
            -16,
        )
    answer = live.call(
        "GET", "/organization/v1", headers=live.headers("api-beta", "nope-nope-nope")
    )
    error(answer, 429, -16)
    assert int(answer.headers["Retry-After"]) > 0
    # even the right password waits now, from this address, for this login...
    error(live.call("GET", "/organization/v1", "api-beta"), 429, -16)
    # ...while other API accounts and the console's people are untouched
    assert live.call("GET", "/organization/v1", "api-acme").status_code == 200
    session = console_session(live)
    assert session.get(f"{live.base}/admin/", timeout=30).status_code == 200
    assert requests.get(f"{live.base}/api/organization/v1", timeout=30).status_code == 401
    db.session.execute(__import__("sqlalchemy").text("DELETE FROM signin_throttles"))
    db.session.commit()


def test_an_api_administrator_cannot_sign_in_to_the_console(live):
    import re

    import requests

    session = requests.Session()
    token = re.search(
        r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"',
        session.get(f"{live.base}/login", timeout=30).text,
    ).group(1)
    answer = session.post(
        f"{live.base}/login",
        data={"csrf_token": token, "login": "api-acme", "password": API_PASSWORD},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 401 and "API account" in answer.text


def test_trailing_slash_empty_bodies_and_unknown_paths(live):
    assert live.call("GET", "/organization/v1/").status_code == 200
    assert live.call("GET", "/ssl/v1/types/").status_code == 200
    error(live.call("GET", "/nothing/v1"), 404, -1)
    error(
        live.call(
            "POST", "/domain/v1", data="{not json", headers={"Content-Type": "application/json"}
        ),
        400,
        -1601,
    )


# --- organizations (§1) ------------------------------------------------------------------


def test_organizations_list_and_details_in_scope(live):
    everything = live.call("GET", "/organization/v1").json()
    acme = next(o for o in everything if o["id"] == live.ids["acme"])
    assert acme["name"] == "Acme" and acme["certTypes"] == ["SSL", "SMIME", "CodeSign"]
    assert acme["departments"] == [
        {
            "id": 1_000_000 + live.ids["it"],
            "name": "IT",
            "parentName": "Acme",
            "certTypes": ["SSL", "SMIME", "CodeSign"],
        }
    ]
    mine = live.call("GET", "/organization/v1", "api-acme").json()
    assert [o["name"] for o in mine] == ["Acme"]
    details = live.call("GET", f"/organization/v1/{live.ids['acme']}").json()
    assert (
        details["city"] == "Berlin"
        and details["stateOrProvince"] == "Berlin"
        and details["country"] == "DE"
    )
    assert details["sslCertsApiEnabled"] is True
    assert (
        error(live.call("GET", "/organization/v1/99999"), 404, -1023)
        == "Organization '99999' not found."
    )


# --- domains and delegations (§2) --------------------------------------------------------


def test_domain_create_list_count_details_and_errors(live):
    created = live.call(
        "POST",
        "/domain/v1",
        json={
            "name": "sub2.example.com",
            "delegations": [{"orgId": live.ids["acme"], "certTypes": ["SSL", "SMIME"]}],
            "description": "Example sub domain",
            "unknownField": 1,
        },
    )
    assert created.status_code == 201 and created.text == ""
    location = created.headers["Location"]
    domain_id = int(location.rsplit("/", 1)[1])
    assert location == f"{live.base}/api/domain/v1/{domain_id}"
    listed = live.call("GET", "/domain/v1", params={"name": "sub2.example.com"})
    assert listed.json() == [{"id": domain_id, "name": "sub2.example.com"}]
    assert listed.headers["X-Total-Count"] == "1"
    assert live.call("GET", "/domain/v1/count").json()["count"] == len(
        live.call("GET", "/domain/v1").json()
    )
    details = live.call("GET", location.split("/api", 1)[1]).json()
    assert details == {
        "id": domain_id,
        "name": "sub2.example.com",
        "description": "Example sub domain",
        "delegationStatus": "ACTIVE",
        "state": "ACTIVE",
        "validationStatus": "VALIDATED",
        "validationMethod": "MANUAL",
        "dcvValidation": details["dcvValidation"],
        "delegations": [
            {
                "orgId": live.ids["acme"],
                "certTypes": ["SSL", "SMIME"],
                "domainCertificateRequestPrivileges": ["DOMAIN", "SUBDOMAIN"],
                "status": "ACTIVE",
            }
        ],
    }
    body = {
        "name": "sub2.example.com",
        "delegations": [{"orgId": live.ids["acme"], "certTypes": ["SSL"]}],
    }
    assert error(live.call("POST", "/domain/v1", json=body), 400, -700).startswith(
        "Such domain already exists"
    )
    error(live.call("POST", "/domain/v1", json={**body, "name": "bad..name.example"}), 400, -732)
    error(
        live.call("POST", "/domain/v1", json={"name": "nodelegation.example", "delegations": []}),
        400,
        -709,
    )
    error(
        live.call(
            "POST",
            "/domain/v1",
            json={"name": "x.example.org", "delegations": [{"orgId": 4242, "certTypes": ["SSL"]}]},
        ),
        400,
        -1023,
    )
    assert (
        error(live.call("GET", "/domain/v1/987654"), 404, -727)
        == "The domain '987654' does not exist."
    )
    # pagination: position/size in ascending id, a short page ends
    everything = live.call("GET", "/domain/v1").json()
    pages, position = [], 0
    while True:
        chunk = live.call("GET", "/domain/v1", params={"size": 2, "position": position}).json()
        pages += chunk
        if len(chunk) < 2:
            break
        position += 2
    assert pages == everything and [d["id"] for d in everything] == sorted(
        d["id"] for d in everything
    )
    error(live.call("GET", "/domain/v1", params={"size": 201}), 400, -1601)


def test_delegations_merge_remove_and_the_approval_rules(live):
    created = live.call(
        "POST",
        "/domain/v1",
        "api-acme",
        json={
            "name": "rao.example.net",
            "delegations": [{"orgId": live.ids["acme"], "certTypes": ["SSL"]}],
        },
    )
    assert created.status_code == 201
    domain_id = int(created.headers["Location"].rsplit("/", 1)[1])
    details = live.call("GET", f"/domain/v1/{domain_id}", "api-acme").json()
    # an RAO's delegation waits for an MRAO, exactly as in the console
    assert (
        details["delegationStatus"] == "REQUESTED"
        and details["delegations"][0]["status"] == "REQUESTED"
    )
    error(
        live.call(
            "POST",
            f"/domain/v1/{domain_id}/delegation/approve",
            "api-acme",
            json={"orgId": live.ids["acme"]},
        ),
        403,
        -3,
    )
    assert (
        live.call(
            "POST", f"/domain/v1/{domain_id}/delegation/approve", json={"orgId": live.ids["acme"]}
        ).status_code
        == 200
    )
    error(
        live.call(
            "POST", f"/domain/v1/{domain_id}/delegation/reject", json={"orgId": live.ids["acme"]}
        ),
        400,
        -705,
    )
    assert (
        live.call("GET", f"/domain/v1/{domain_id}").json()["delegations"][0]["status"] == "ACTIVE"
    )
    # add types (merge), a department delegation, then remove types
    assert (
        live.call(
            "POST",
            f"/domain/v1/{domain_id}/delegation",
            json={"orgId": live.ids["acme"], "certTypes": ["SMIME"]},
        ).status_code
        == 200
    )
    dept = 1_000_000 + live.ids["it"]
    assert (
        live.call(
            "POST",
            f"/domain/v1/{domain_id}/delegation",
            json={
                "orgId": dept,
                "certTypes": ["SSL"],
                "domainCertificateRequestPrivileges": ["DOMAIN"],
            },
        ).status_code
        == 200
    )
    delegations = live.call("GET", f"/domain/v1/{domain_id}").json()["delegations"]
    assert delegations == [
        {
            "orgId": live.ids["acme"],
            "certTypes": ["SSL", "SMIME"],
            "domainCertificateRequestPrivileges": ["DOMAIN", "SUBDOMAIN"],
            "status": "ACTIVE",
        },
        {
            "orgId": dept,
            "certTypes": ["SSL"],
            "domainCertificateRequestPrivileges": ["DOMAIN"],
            "status": "ACTIVE",
        },
    ]
    assert (
        live.call(
            "DELETE",
            f"/domain/v1/{domain_id}/delegation",
            json={"orgId": live.ids["acme"], "certTypes": ["SSL"]},
        ).status_code
        == 200
    )
    assert (
        live.call(
            "DELETE",
            f"/domain/v1/{domain_id}/delegation",
            json={"orgId": dept, "certTypes": ["SSL"]},
        ).status_code
        == 200
    )
    assert live.call("GET", f"/domain/v1/{domain_id}").json()["delegations"] == [
        {
            "orgId": live.ids["acme"],
            "certTypes": ["SMIME"],
            "domainCertificateRequestPrivileges": ["DOMAIN", "SUBDOMAIN"],
            "status": "ACTIVE",
        }
    ]
    # suspend / activate / delete
    assert live.call("PUT", f"/domain/v1/{domain_id}/suspend").status_code == 200
    assert live.call("GET", f"/domain/v1/{domain_id}").json()["state"] == "SUSPENDED"
    assert (
        live.call(
            "GET", "/domain/v1", params={"state": "inactive", "name": "rao.example.net"}
        ).headers["X-Total-Count"]
        == "1"
    )
    assert live.call("PUT", f"/domain/v1/{domain_id}/activate").status_code == 200
    assert live.call("GET", f"/domain/v1/{domain_id}").json()["state"] == "ACTIVE"
    deleted = live.call("DELETE", f"/domain/v1/{domain_id}")
    assert deleted.status_code == 204 and deleted.text == ""
    error(live.call("GET", f"/domain/v1/{domain_id}"), 404, -727)


# --- SSL (§3) ----------------------------------------------------------------------------


def test_types_and_custom_fields(live):
    types = live.call("GET", "/ssl/v1/types").json()
    auto = next(t for t in types if t["id"] == live.ids["auto"])
    assert auto == {
        "id": live.ids["auto"],
        "name": "Auto TLS",
        "description": "",
        "terms": [90, 199],
        "keyTypes": {"RSA": ["2048", "3072"], "EC": ["P-256", "P-384"]},
        "useSecondaryOrgName": False,
    }
    assert live.call("GET", "/ssl/v1/customFields").json() == []
    error(live.call("GET", "/ssl/v1/types", params={"organizationId": 5555}), 404, -1023)


def pem_blocks(text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode())


def test_enroll_collect_every_format_byte_identical_verify_and_handshake(live, tmp_path):
    answer, key = enroll(
        live, "www.acme.example", subjAltNames="api.acme.example,www2.acme.example"
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert (
        set(data) == {"sslId", "renewId"}
        and isinstance(data["sslId"], int)
        and len(data["renewId"]) <= 20
    )
    ssl_id = data["sslId"]
    details = live.wait_status(ssl_id, "Issued")
    assert details["requestedVia"] == "Web API" and details["requester"] == "api-mrao"
    assert details["subjectAlternativeNames"] == [
        "www.acme.example",
        "api.acme.example",
        "www2.acme.example",
    ]
    assert details["keyType"] == "RSA - 2048" and details["renewed"] is False
    assert details["certType"]["id"] == live.ids["auto"] and details["term"] == 90
    # every SCM format, compared with what the console hands a person for the same certificate
    session = console_session(live)
    cert_id = db.session.execute(
        select(CertificateRequest.certificate_id).where(CertificateRequest.id == ssl_id)
    ).scalar_one()

    def console(fmt: str) -> bytes:
        got = session.get(
            f"{live.base}/admin/ssl_certs/download/",
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
    for fmt, body in expected.items():
        got = live.call("GET", f"/ssl/v1/collect/{ssl_id}/{fmt}")
        assert got.status_code == 200 and got.content == body, fmt
        charset = "ISO-8859-1" if fmt == "bin" else "UTF-8"
        assert got.headers["Content-Type"] == f"application/octet-stream;charset={charset}"
        assert got.headers["Content-Disposition"].startswith(
            'attachment; filename="www.acme.example.'
        )
    assert live.call("GET", f"/ssl/v1/collect/{ssl_id}").content == expected["base64"]
    assert (
        live.call("GET", f"/ssl/v1/collect/{ssl_id}", params={"format": "x509CO"}).content
        == expected["x509CO"]
    )
    # the orders of the contract: x509 root first, x509R leaf first
    chain = pem_blocks(live.call("GET", f"/ssl/v1/collect/{ssl_id}/x509").text)
    assert chain[0].subject == chain[0].issuer and chain[-1].subject.rfc4514_string().startswith(
        "CN=www.acme.example"
    )
    reverse = pem_blocks(live.call("GET", f"/ssl/v1/collect/{ssl_id}/x509R").text)
    assert reverse == list(reversed(chain))
    error(live.call("GET", f"/ssl/v1/collect/{ssl_id}/pfx"), 400, -126)
    # openssl verifies it; a real TLS handshake with it succeeds
    _, issuing, root = reverse
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    (tmp_path / "issuing.pem").write_bytes(issuing.public_bytes(Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(
        live.call("GET", f"/ssl/v1/collect/{ssl_id}/x509CO").content
    )
    out = subprocess.run(
        [
            "openssl",
            "verify",
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
    (tmp_path / "chain.pem").write_bytes(
        live.call("GET", f"/ssl/v1/collect/{ssl_id}/pemia").content
    )
    (tmp_path / "key.pem").write_bytes(keys.private_key_to_pem(key))
    handshake(
        tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "root.pem", "api.acme.example"
    )


def handshake(chain: Path, key: Path, root: Path, host: str) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(chain, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")

        thread = threading.Thread(target=serve)
        thread.start()
        client_ctx = ssl.create_default_context(cafile=root)
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.recv(5) == b"hello"
        thread.join(5)


def test_enroll_errors_have_the_contracts_codes(live):
    error(enroll(live, "www.acme.example", term=91)[0], 400, -36)
    error(enroll(live, "www.acme.example", certType=424242)[0], 400, -111)
    error(
        enroll(
            live,
            "www.acme.example",
            csr="-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n",
        )[0],
        400,
        -10,
    )
    assert error(enroll(live, "www.beta.example")[0], 400, -1010).startswith(
        "Domain 'www.beta.example' is not allowed."
    )
    error(enroll(live, "www.acme.example", orgId=77777)[0], 400, -1023)
    body = {"orgId": live.ids["acme"], "certType": live.ids["auto"], "term": 90}
    assert (
        error(live.call("POST", "/ssl/v1/enroll", json=body), 400, -7)
        == "'csr' is required but missing"
    )
    small = live.call("POST", "/ssl/v1/enroll", json={**body, "csr": small_key_csr()})
    error(small, 400, -141)
    # another organization's id answers like a missing one
    assert (
        error(enroll(live, "www.acme.example", login="api-beta")[0], 400, -1023)
        == f"Organization '{live.ids['acme']}' not found."
    )


def test_an_auto_approved_enroll_is_issued_by_the_call_itself(live):
    """No issuance job: when the enroll answers, its certificate is stored, the first
    collect hands it out, and the request's audit trail is complete (docs/architecture.md)."""

    def issuance_jobs() -> int:
        db.session.rollback()  # a fresh snapshot of what the server committed
        return db.session.execute(
            select(func.count()).select_from(Job).where(Job.kind == "issue_certificates")
        ).scalar_one()

    before = issuance_jobs()
    answer, _ = enroll(live, "at-once.acme.example")
    assert answer.status_code == 200, answer.text
    ssl_id = answer.json()["sslId"]
    got = live.call("GET", f"/ssl/v1/collect/{ssl_id}/x509CO")
    assert got.status_code == 200, got.text
    leaf = x509.load_pem_x509_certificate(got.content)
    assert leaf.subject.rfc4514_string().startswith("CN=at-once.acme.example")
    assert live.call("GET", f"/ssl/v1/{ssl_id}").json()["status"] == "Issued"
    assert issuance_jobs() == before
    actions = set(
        db.session.execute(
            select(AuditEvent.action).where(
                AuditEvent.object_type == "CertificateRequest",
                AuditEvent.object_id == str(ssl_id),
            )
        ).scalars()
    )
    assert actions == {"request.create", "request.approve"}
    issued = db.session.execute(
        select(AuditEvent.after).where(AuditEvent.action == "certificate.issue")
    ).scalars()
    assert any(
        c["request_id"] == ssl_id for after in issued for c in (after or {}).get("certificates", [])
    )


def small_key_csr() -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.acme.example")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(Encoding.PEM).decode()


def test_collect_before_issuance_then_approval_then_lists_and_count(live):
    answer, _ = enroll(live, "pending.acme.example", profile="manual")
    ssl_id = answer.json()["sslId"]
    assert live.call("GET", f"/ssl/v1/{ssl_id}").json()["status"] == "Requested"
    assert (
        error(live.call("GET", f"/ssl/v1/collect/{ssl_id}/x509"), 400, -183)
        == "Certificate is not collectable."
    )
    approve_in_console(live, ssl_id)
    live.wait_status(ssl_id, "Issued")
    listed = live.call("GET", "/ssl/v1", params={"size": 200, "position": 0})
    assert listed.headers["X-Total-Count"] == str(len(listed.json()))
    item = next(i for i in listed.json() if i["sslId"] == ssl_id)
    assert item["commonName"] == "pending.acme.example" and item["serialNumber"].count(":") >= 7
    counted = live.call("HEAD", "/ssl/v1", params={"commonName": "pending.acme.example"})
    assert (
        counted.status_code == 200
        and counted.headers["X-Total-Count"] == "1"
        and counted.text == ""
    )
    assert live.call("GET", "/ssl/v1", params={"serialNumber": item["serialNumber"]}).json() == [
        item
    ]
    assert live.call(
        "GET", "/ssl/v1", params={"status": "Issued", "commonName": "pending.acme.example"}
    ).json() == [item]
    assert (
        live.call(
            "GET", "/ssl/v1", params={"status": "Revoked", "commonName": "pending.acme.example"}
        ).json()
        == []
    )


def test_renew_replace_and_revoke(live):
    answer, _ = enroll(live, "cycle.acme.example", key_type="EC-P256")
    ssl_id = answer.json()["sslId"]
    first = live.wait_status(ssl_id, "Issued")
    # renew: a new sslId, the original marked renewed
    renewed = live.call("POST", f"/ssl/v1/renewById/{ssl_id}", data="")
    assert renewed.status_code == 200, renewed.text
    new_id = renewed.json()["sslId"]
    assert new_id != ssl_id
    live.wait_status(new_id, "Issued")
    assert live.call("GET", f"/ssl/v1/{ssl_id}").json()["renewed"] is True
    # replace the renewal with a new key and names: same sslId, back through issuance
    csr, key = make_csr("cycle.acme.example", key_type="EC-P256")
    replaced = live.call(
        "POST",
        f"/ssl/v1/replace/{new_id}",
        json={
            "csr": csr.decode(),
            "commonName": "cycle.acme.example",
            "subjectAlternativeNames": ["cycle1.acme.example", "cycle2.acme.example"],
            "reason": "",
        },
    )
    assert replaced.status_code == 204 and replaced.text == ""
    after = live.wait_status(new_id, "Issued")
    assert after["serialNumber"] != first["serialNumber"]
    assert set(after["subjectAlternativeNames"]) == {
        "cycle.acme.example",
        "cycle1.acme.example",
        "cycle2.acme.example",
    }
    leaf = x509.load_pem_x509_certificate(
        live.call("GET", f"/ssl/v1/collect/{new_id}/x509CO").content
    )
    assert leaf.public_key() == key.public_key()
    # revoke (contract example), then the errors around it
    revoked = live.call(
        "POST", f"/ssl/v1/revoke/{new_id}", json={"reason": "key compromised", "reasonCode": 1}
    )
    assert revoked.status_code == 204 and revoked.text == ""
    details = live.call("GET", f"/ssl/v1/{new_id}").json()
    assert details["status"] == "Revoked" and details["reasonCode"] == 1 and "revoked" in details
    error(live.call("GET", f"/ssl/v1/collect/{new_id}/x509"), 400, -110)
    error(live.call("POST", f"/ssl/v1/revoke/{new_id}", json={"reason": "again"}), 400, -159)
    error(live.call("POST", f"/ssl/v1/revoke/{ssl_id}", json={}), 400, -7)
    error(live.call("POST", f"/ssl/v1/revoke/{ssl_id}", json={"reason": "x" * 513}), 400, -1601)
    error(
        live.call("POST", f"/ssl/v1/revoke/{ssl_id}", json={"reason": "r", "reasonCode": 2}),
        400,
        -1601,
    )
    error(live.call("POST", f"/ssl/v1/renewById/{new_id}"), 400, -130)
    error(live.call("GET", "/ssl/v1/999999"), 404, -124)
    # revoke by serial number (colon hex, as the details show it)
    answer, _ = enroll(live, "serial.acme.example")
    by_serial = live.wait_status(answer.json()["sslId"], "Issued")
    assert (
        live.call(
            "POST",
            f"/ssl/v1/revoke/serial/{by_serial['serialNumber']}",
            json={"reason": "retired", "reasonCode": 5},
        ).status_code
        == 204
    )
    assert live.call("GET", f"/ssl/v1/{by_serial['sslId']}").json()["reasonCode"] == 5
    actions = set(
        db.session.execute(
            select(AuditEvent.action).where(AuditEvent.actor == "api-mrao")
        ).scalars()
    )
    assert {"request.create", "certificate.renew", "certificate.revoke"} <= actions


def test_enroll_is_idempotent_per_key_and_per_body(live):
    csr, _ = make_csr("idem.acme.example", key_type="RSA-2048")
    body = {
        "orgId": live.ids["acme"],
        "csr": csr.decode(),
        "certType": live.ids["auto"],
        "term": 90,
    }

    def count() -> int:
        db.session.expire_all()
        return db.session.execute(
            select(func.count())
            .select_from(CertificateRequest)
            .where(CertificateRequest.common_name == "idem.acme.example")
        ).scalar_one()

    key = {"Idempotency-Key": "order-42"}
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda _: live.call("POST", "/ssl/v1/enroll", headers=key, json=body), range(4)
            )
        )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["sslId"] for a in answers}) == 1 and count() == 1
    # the same key with another body is refused; the same body without a key is a retry
    other = {**body, "comments": "different"}
    error(live.call("POST", "/ssl/v1/enroll", headers=key, json=other), 400, -1601)
    first = live.call("POST", "/ssl/v1/enroll", json=other).json()["sslId"]
    again = live.call(
        "POST",
        "/ssl/v1/enroll",
        data=json.dumps(other, indent=2),
        headers={"Content-Type": "application/json"},
    ).json()["sslId"]
    assert first == again and count() == 2


# --- an RAO's API account sees nothing outside its scope ---------------------------------


def test_rao_id_swaps_on_every_id_route(live):
    answer, _ = enroll(live, "www.beta.example", login="api-beta", org="beta")
    beta_ssl = answer.json()["sslId"]
    live.wait_status(beta_ssl, "Issued", login="api-beta")
    beta_domain = live.call(
        "GET", "/domain/v1", "api-beta", params={"name": "beta.example"}
    ).json()[0]["id"]
    serial = live.call("GET", f"/ssl/v1/{beta_ssl}", "api-beta").json()["serialNumber"]
    acme = "api-acme"
    assert (
        error(live.call("GET", f"/ssl/v1/{beta_ssl}", acme), 404, -124)
        == f"Wrong SSL certificate id {beta_ssl}."
    )
    error(live.call("GET", f"/ssl/v1/collect/{beta_ssl}/x509", acme), 404, -124)
    error(live.call("GET", f"/ssl/v1/collect/{beta_ssl}", acme), 404, -124)
    error(live.call("POST", f"/ssl/v1/renewById/{beta_ssl}", acme), 404, -124)
    csr, _ = make_csr("www.beta.example")
    error(
        live.call("POST", f"/ssl/v1/replace/{beta_ssl}", acme, json={"csr": csr.decode()}),
        404,
        -124,
    )
    error(live.call("POST", f"/ssl/v1/revoke/{beta_ssl}", acme, json={"reason": "swap"}), 404, -124)
    error(
        live.call("POST", f"/ssl/v1/revoke/serial/{serial}", acme, json={"reason": "swap"}),
        404,
        -124,
    )
    error(live.call("GET", f"/organization/v1/{live.ids['beta']}", acme), 404, -1023)
    error(live.call("GET", f"/domain/v1/{beta_domain}", acme), 404, -727)
    error(live.call("DELETE", f"/domain/v1/{beta_domain}", acme), 404, -727)
    error(live.call("PUT", f"/domain/v1/{beta_domain}/suspend", acme), 404, -727)
    error(live.call("PUT", f"/domain/v1/{beta_domain}/activate", acme), 404, -727)
    error(
        live.call(
            "POST",
            f"/domain/v1/{beta_domain}/delegation",
            acme,
            json={"orgId": live.ids["acme"], "certTypes": ["SSL"]},
        ),
        404,
        -727,
    )
    error(
        live.call(
            "DELETE",
            f"/domain/v1/{beta_domain}/delegation",
            acme,
            json={"orgId": live.ids["beta"], "certTypes": ["SSL"]},
        ),
        404,
        -727,
    )
    error(
        live.call(
            "POST",
            f"/domain/v1/{beta_domain}/delegation/approve",
            acme,
            json={"orgId": live.ids["beta"]},
        ),
        404,
        -727,
    )
    error(
        live.call(
            "POST",
            f"/domain/v1/{beta_domain}/delegation/reject",
            acme,
            json={"orgId": live.ids["beta"]},
        ),
        404,
        -727,
    )
    # lists and counts leave them out; enrolling there is refused
    assert beta_ssl not in [i["sslId"] for i in live.call("GET", "/ssl/v1", acme).json()]
    assert "beta.example" not in [d["name"] for d in live.call("GET", "/domain/v1", acme).json()]
    error(enroll(live, "www.beta.example", login=acme, org="beta")[0], 400, -1023)
    # still there for its owner, untouched
    assert live.call("GET", f"/ssl/v1/{beta_ssl}", "api-beta").json()["status"] == "Issued"
    assert live.call("GET", f"/domain/v1/{beta_domain}", "api-beta").json()["state"] == "ACTIVE"


def test_domain_with_live_certificates_cannot_be_deleted(live):
    created = live.call(
        "POST",
        "/domain/v1",
        json={
            "name": "inuse.example",
            "delegations": [{"orgId": live.ids["acme"], "certTypes": ["SSL"]}],
        },
    )
    domain_id = int(created.headers["Location"].rsplit("/", 1)[1])
    answer, _ = enroll(live, "www.inuse.example")
    ssl_id = answer.json()["sslId"]
    live.wait_status(ssl_id, "Issued")
    error(live.call("DELETE", f"/domain/v1/{domain_id}"), 400, -740)
    live.call("POST", f"/ssl/v1/revoke/{ssl_id}", json={"reason": "done"})
    assert live.call("DELETE", f"/domain/v1/{domain_id}").status_code == 204


@pytest.mark.parametrize("path", ["/ssl/v1", "/domain/v1"])
def test_lists_without_size_return_everything(live, path):
    everything = live.call("GET", path).json()
    assert len(everything) == int(
        live.call("GET", path, params={"size": 200}).headers["X-Total-Count"]
    )
