"""The SCM REST API's report (§7) and ACME account (§8) services over real HTTP (gunicorn)."""

from __future__ import annotations

import re

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


def test_acme_accounts_answer_as_for_an_organization_with_none(live):
    listed = live.call(
        "GET",
        "/acme/v1/account",
        params={"organizationId": live.ids["acme"], "size": 200, "position": 0},
    )
    assert (
        listed.status_code == 200 and listed.json() == [] and listed.headers["X-Total-Count"] == "0"
    )
    error(live.call("GET", "/acme/v1/account"), 400, -7)
    error(
        live.call(
            "GET", "/acme/v1/account", "api-acme", params={"organizationId": live.ids["beta"]}
        ),
        404,
        -1023,
    )
    error(live.call("GET", "/acme/v1/account/4321"), 404, -1)
    error(live.call("PUT", "/acme/v1/account/4321", json={"name": "new"}), 404, -1)
    error(live.call("DELETE", "/acme/v1/account/4321"), 404, -1)
    error(
        live.call(
            "POST", "/acme/v1/account/4321/domains", json={"domains": [{"name": "example.com"}]}
        ),
        404,
        -1,
    )
    error(
        live.call(
            "DELETE", "/acme/v1/account/4321/domains", json={"domains": [{"name": "example.com"}]}
        ),
        404,
        -1,
    )
    created = live.call(
        "POST",
        "/acme/v1/account",
        json={
            "name": "api_account2",
            "acmeServer": "https://acme.sectigo.com/v2/OV",
            "organizationId": live.ids["acme"],
            "evDetails": {},
        },
    )
    assert "there is none yet" in error(created, 400, -1601)
    assert live.call("GET", "/acme/v1/server").json() == []
