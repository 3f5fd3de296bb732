"""The SCM REST API's report (§7) and ACME account (§8) services over real HTTP (gunicorn); an
ACME account is an EAB key of our ACME server, and a real ACME client registers with it."""

from __future__ import annotations

import re

import requests
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent
from tests.factories import make_csr

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def error(response, status: int, code: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    data = response.json()
    assert set(data) == {"code", "description"} and data["code"] == code, data
    return data["description"]


def issue(live, cn: str, login: str = "api-mrao", org: str = "acme") -> int:
    csr, _ = make_csr(cn, key_type="EC-P256")
    body = {"orgId": live.ids[org], "csr": csr.decode(), "certType": live.ids["auto"], "term": 90}
    ssl_id = live.call("POST", "/ssl/v1/enroll", login, json=body).json()["sslId"]
    live.wait_status(ssl_id, "Issued", login=login)
    return ssl_id


def report(live, name: str, body=None, login: str = "api-mrao"):
    return live.call("POST", f"/report/v1/{name}", login, json=body if body is not None else {})


def test_ssl_certificates_report_filters_and_scope(live):
    issued = issue(live, "report.acme.example")
    revoked = issue(live, "gone.acme.example")
    live.call("POST", f"/ssl/v1/revoke/{revoked}", json={"reason": "retired", "reasonCode": 5})
    beta = issue(live, "report.beta.example", login="api-beta", org="beta")
    # the contract's example body
    answer = report(
        live, "ssl-certificates", {"organizationIds": [live.ids["acme"]], "certificateStatus": 2}
    )
    assert answer.status_code == 200 and answer.json()["statusCode"] == 0
    records = answer.json()["reports"]
    assert [r["id"] for r in records] == [issued]
    record = records[0]
    assert record["commonName"] == "report.acme.example" and record["status"] == "Issued"
    assert record["orgId"] == live.ids["acme"] and record["organizationName"] == "Acme"
    assert record["type"] == "Auto TLS" and record["typeId"] == live.ids["auto"]
    assert record["subjAltNames"] == "report.acme.example" and record["requestedVia"] == "Web API"
    assert ISO.match(record["requested"]) and ISO.match(record["expires"])
    assert record["serialNumber"].count(":") >= 7
    # empty filter: everything visible; an RAO only its own
    everything = {r["id"] for r in report(live, "ssl-certificates").json()["reports"]}
    assert {issued, revoked, beta} <= everything
    mine = {r["id"] for r in report(live, "ssl-certificates", login="api-acme").json()["reports"]}
    assert issued in mine and beta not in mine
    # A filter naming an organization the RAO cannot see is refused like a missing one, and
    # the look is recorded; it used to answer an empty report.
    for unseen in (live.ids["beta"], 987654):
        refused = report(live, "ssl-certificates", {"organizationIds": [unseen]}, login="api-acme")
        assert f"No such organization: {unseen}." in error(refused, 400, -1601), refused.text
    db.session.expire_all()
    denied = db.session.execute(
        select(AuditEvent.object_type, AuditEvent.object_id).where(
            AuditEvent.action == "access.denied", AuditEvent.actor == "api-acme"
        )
    ).all()
    assert ("Organization", str(live.ids["beta"])) in denied
    assert ("Organization", "987654") not in denied
    revoked_only = report(
        live,
        "ssl-certificates",
        {
            "certificateStatus": 3,
            "certificateDateAttribute": 2,
            "from": "2020-01-01",
            "to": "2100-01-01T00:00:00Z",
        },
    )
    assert [r["id"] for r in revoked_only.json()["reports"]] == [revoked]
    error(report(live, "ssl-certificates", {"certificateStatus": 7}), 400, -1601)
    error(report(live, "ssl-certificates", {"from": "2025-02-01", "to": "2025-01-01"}), 400, -1601)
    error(report(live, "ssl-certificates", {"from": "yesterday"}), 400, -1601)


def test_activity_report_is_the_audit_log_for_an_mrao(live):
    issue(live, "activity.acme.example")
    records = report(live, "activity", {"from": "2020-01-01"}).json()["reports"]
    enrolled = [
        r
        for r in records
        if r["action"]["actionName"] == "request.create" and r["admin"]["login"] == "api-mrao"
    ]
    assert enrolled and enrolled[-1]["accessMethod"] == "Web API"
    assert enrolled[-1]["address"] == "127.0.0.1" and ISO.match(enrolled[-1]["date"])
    assert (
        isinstance(enrolled[-1]["action"]["id"], int)
        and "activity.acme.example" in enrolled[-1]["description"]
    )
    error(report(live, "activity", login="api-acme"), 403, -3)


def test_domains_client_device_reports_and_unknown_ones(live):
    domains = report(live, "domains").json()["reports"]
    acme = next(d for d in domains if d["name"] == "acme.example")
    assert (
        acme["status"] == "Active"
        and acme["dcvStatus"] == "VALIDATED"
        and ISO.match(acme["requested"])
    )
    assert "beta.example" not in [
        d["name"] for d in report(live, "domains", login="api-acme").json()["reports"]
    ]
    assert report(live, "client-certificates").json() == {"statusCode": 0, "reports": []}
    assert report(live, "device-certificates", {"certificateStatus": 9}).json() == {
        "statusCode": 0,
        "reports": [],
    }
    error(report(live, "discovery/log"), 404, -1)
    error(report(live, "nonsense"), 404, -1)


def register_over_acme(live, directory: str, mac_id: str, mac_key: str) -> requests.Response:
    """A real ACME newAccount (RFC 8555 §7.3, with external account binding) over HTTP."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from app.acme import jose
    from tests.acme_client import external_binding, sign

    urls = requests.get(directory, timeout=30).json()
    nonce = requests.head(urls["newNonce"], timeout=30).headers["Replay-Nonce"]
    key = ec.generate_private_key(ec.SECP256R1())
    binding = external_binding(
        key, kid=mac_id, hmac_key=jose.b64decode(mac_key, what="hmac"), url=urls["newAccount"]
    )
    payload = {
        "termsOfServiceAgreed": True,
        "contact": ["mailto:ops@acme.example"],
        "externalAccountBinding": binding,
    }
    return requests.post(
        urls["newAccount"],
        json=sign(key, payload, url=urls["newAccount"], nonce=nonce),
        headers={"Content-Type": "application/jose+json"},
        timeout=30,
    )


def test_acme_accounts_are_the_eab_keys_of_our_acme_server(live):
    from app.models import AcmeExternalKey, CertType
    from app.services.ca import profiles
    from app.services.scope import SYSTEM

    error(live.call("GET", "/acme/v1/account"), 400, -7)
    listed = live.call("GET", "/acme/v1/account", params={"organizationId": live.ids["acme"]})
    assert listed.json() == [] and listed.headers["X-Total-Count"] == "0"
    # no ACME directory yet: no server, and creating an account names none of ours
    assert live.call("GET", "/acme/v1/server").json() == []
    body = {
        "name": "api_account2",
        "acmeServer": "https://acme.sectigo.com/v2/OV",
        "organizationId": live.ids["acme"],
        "evDetails": {},
    }
    assert "acmeServer" in error(live.call("POST", "/acme/v1/account", json=body), 400, -1601)
    profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="ACME TLS",
            cert_type=CertType.SSL,
            ca_id=live.ids["issuing"],
            terms=(90,),
            key_types=("RSA-2048", "EC-P256"),
            requires_approval=False,
            acme_slug="tls",
        ),
    )
    db.session.commit()
    servers = live.call("GET", "/acme/v1/server").json()
    directory = f"{live.base}/acme/tls/directory"
    assert [(s["name"], s["url"]) for s in servers] == [("ACME TLS", directory)]
    assert live.call("GET", "/acme/v1/server", params={"url": "nothing"}).json() == []
    # create: 201 + Location; the account is pending with its MAC key until a client registers
    made = live.call("POST", "/acme/v1/account", json={**body, "acmeServer": directory})
    assert made.status_code == 201 and made.text == "", made.text
    account_id = int(made.headers["Location"].rsplit("/", 1)[1])
    assert made.headers["Location"] == f"{live.base}/api/acme/v1/account/{account_id}"
    details = live.call("GET", f"/acme/v1/account/{account_id}").json()
    assert details["name"] == "api_account2" and details["status"] == "pending"
    assert details["organizationId"] == live.ids["acme"] and details["acmeServer"] == directory
    assert details["macId"] == details["accountId"] and details["macKey"]
    assert {"name": "acme.example"} in details["domains"]
    key = db.session.get(AcmeExternalKey, account_id)
    assert key.key_id == details["macId"] and key.label == "api_account2"
    # the list: filters are case-insensitive substrings; paging; X-Total-Count
    listed = live.call(
        "GET",
        "/acme/v1/account",
        params={"organizationId": live.ids["acme"], "name": "ACCOUNT2", "size": 200},
    )
    assert [a["id"] for a in listed.json()] == [account_id]
    assert listed.headers["X-Total-Count"] == "1"
    for flt in ({"name": "other"}, {"status": "valid"}, {"acmeServer": "sectigo"}):
        assert (
            live.call(
                "GET", "/acme/v1/account", params={"organizationId": live.ids["acme"], **flt}
            ).json()
            == []
        ), flt
    # a real ACME client registers with macId + macKey: the account is valid, the key hidden
    registered = register_over_acme(live, directory, details["macId"], details["macKey"])
    assert registered.status_code == 201, registered.text
    details = live.call("GET", f"/acme/v1/account/{account_id}").json()
    assert details["status"] == "valid" and details["macKey"] == ""
    assert details["contacts"] == "ops@acme.example"
    # rename; domains are the organization's delegations, so none is added or removed
    assert (
        live.call("PUT", f"/acme/v1/account/{account_id}", json={"name": "renamed"}).status_code
        == 200
    )
    assert live.call("GET", f"/acme/v1/account/{account_id}").json()["name"] == "renamed"
    names = {"domains": [{"name": "acme.example"}, {"name": "x.example"}]}
    added = live.call("POST", f"/acme/v1/account/{account_id}/domains", json=names)
    assert added.json() == {"notAddedDomains": ["acme.example", "x.example"]}
    removed = live.call("DELETE", f"/acme/v1/account/{account_id}/domains", json=names)
    assert removed.json() == {"notRemovedDomains": ["acme.example", "x.example"]}
    # an RAO of another organization sees and touches nothing of it
    other = "api-beta"
    error(
        live.call("GET", "/acme/v1/account", other, params={"organizationId": live.ids["acme"]}),
        404,
        -1023,
    )
    error(live.call("GET", f"/acme/v1/account/{account_id}", other), 404, -1)
    error(live.call("PUT", f"/acme/v1/account/{account_id}", other, json={"name": "x"}), 404, -1)
    error(live.call("DELETE", f"/acme/v1/account/{account_id}", other), 404, -1)
    error(live.call("POST", f"/acme/v1/account/{account_id}/domains", other, json=names), 404, -1)
    error(live.call("DELETE", f"/acme/v1/account/{account_id}/domains", other, json=names), 404, -1)
    error(
        live.call("POST", "/acme/v1/account", other, json={**body, "acmeServer": directory}),
        404,
        -1023,
    )
    # delete: the key is revoked (deactivated), its ACME account stops working
    assert live.call("DELETE", f"/acme/v1/account/{account_id}").status_code == 204
    details = live.call("GET", f"/acme/v1/account/{account_id}").json()
    assert details["status"] == "deactivated" and details["macKey"] == ""
    error(live.call("DELETE", f"/acme/v1/account/{account_id}"), 400, -1601)
    db.session.expire_all()
    assert db.session.get(AcmeExternalKey, account_id).revoked_at is not None
    actions = [
        a
        for (a,) in db.session.execute(
            select(AuditEvent.action)
            .where(
                AuditEvent.object_type == "AcmeExternalKey",
                AuditEvent.object_id == str(account_id),
                AuditEvent.actor == "api-mrao",
            )
            .order_by(AuditEvent.seq)
        )
    ]
    assert actions == ["acme.key.create", "acme.key.update", "acme.key.revoke"]
    error(live.call("GET", "/acme/v1/account/4321"), 404, -1)
