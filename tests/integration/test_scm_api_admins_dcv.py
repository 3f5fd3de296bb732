"""The SCM REST API's admin (§6) and DCV (§9) services over real HTTP (gunicorn), with a real
DNS answerer on loopback for the CNAME check; an RAO's account sees only its own scope."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, AuditEvent, CertType, Role

STRONG = "Passw0rd!-long-enough"


def error(response, status: int, code: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    data = response.json()
    assert set(data) == {"code", "description"} and data["code"] == code, data
    return data["description"]


def created_id(response) -> int:
    assert response.status_code == 201 and response.text == "", response.text
    return int(response.headers["Location"].rsplit("/", 1)[1])


# --- admins (§6) -------------------------------------------------------------------------


def test_admin_create_details_update_delete(live):
    dept = 1_000_000 + live.ids["it"]
    body = {
        "login": "user1@example.com",
        "email": "user1@example.com",
        "forename": "Test1",
        "surname": "User1",
        "password": STRONG,
        "credentials": [{"role": "DRAO_SSL", "orgId": dept}, {"role": "DRAO_SMIME", "orgId": dept}],
        "telephone": "+49 30 1234",
        "unknown": True,
    }
    answer = live.call("POST", "/admin/v1", json=body)
    admin_id = created_id(answer)
    assert answer.headers["Location"] == f"{live.base}/api/admin/v1/{admin_id}"
    details = live.call("GET", f"/admin/v1/{admin_id}").json()
    assert details["type"] == "STANDARD" and details["status"] == "Active"
    assert details["forename"] == "Test1" and details["surname"] == "User1"
    assert details["credentials"] == [
        {"role": "DRAO_SSL", "orgId": dept},
        {"role": "DRAO_SMIME", "orgId": dept},
    ]
    assert details["activeStatus"] == "ACTIVE" and details["passwordState"] == "ALIVE"
    admin = db.session.get(Admin, admin_id)
    assert admin.role == Role.DRAO and admin.scopes[0].privileges() == {
        CertType.SSL,
        CertType.CLIENT,
    }
    # the contract's errors
    assert error(live.call("POST", "/admin/v1", json=body), 400, -39).startswith(
        "Login already exists"
    )
    error(
        live.call("POST", "/admin/v1", json={**body, "login": "user2", "email": "not-an-email"}),
        400,
        -237,
    )
    error(
        live.call("POST", "/admin/v1", json={**body, "login": "user3", "credentials": []}),
        400,
        -221,
    )
    error(
        live.call(
            "POST",
            "/admin/v1",
            json={**body, "login": "user4", "credentials": [{"role": "BOSS", "orgId": 1}]},
        ),
        400,
        -223,
    )
    error(
        live.call(
            "POST",
            "/admin/v1",
            json={**body, "login": "user5", "credentials": [{"role": "RAO_SSL", "orgId": dept}]},
        ),
        400,
        -223,
    )
    error(
        live.call(
            "POST",
            "/admin/v1",
            json={**body, "login": "user6", "credentials": [{"role": "RAO_SSL", "orgId": 9999}]},
        ),
        400,
        -223,
    )
    short = live.call("POST", "/admin/v1", json={**body, "login": "user7", "password": "Passw0rd!"})
    assert "at least 12 characters" in error(short, 400, -1601)
    # partial update: suspend and rename, credentials kept
    assert (
        live.call(
            "PUT", f"/admin/v1/{admin_id}", json={"surname": "Renamed", "activeStatus": "SUSPENDED"}
        ).status_code
        == 200
    )
    details = live.call("GET", f"/admin/v1/{admin_id}").json()
    assert details["surname"] == "Renamed" and details["activeStatus"] == "SUSPENDED"
    assert details["credentials"][0] == {"role": "DRAO_SSL", "orgId": dept}
    # list with filters; the caller is always in its own list
    listed = live.call("GET", "/admin/v1", params={"login": "user1@example.com"})
    assert listed.json() == [
        {
            "id": admin_id,
            "type": "STANDARD",
            "login": "user1@example.com",
            "forename": "Test1",
            "surname": "Renamed",
            "email": "user1@example.com",
        }
    ]
    assert listed.headers["X-Total-Count"] == "1"
    mine = live.call("GET", "/admin/v1", "api-acme").json()
    assert "api-acme" in [a["login"] for a in mine]
    assert "api-beta" not in [a["login"] for a in mine]
    assert [
        a["login"]
        for a in live.call("GET", "/admin/v1", params={"type": "API", "login": "api-far"}).json()
    ] == ["api-far"]
    assert live.call("GET", "/admin/v1/idp").json() == []
    deleted = live.call("DELETE", f"/admin/v1/{admin_id}")
    assert deleted.status_code == 204 and deleted.text == ""
    error(live.call("GET", f"/admin/v1/{admin_id}"), 404, -1)
    assert db.session.execute(
        select(AuditEvent).where(
            AuditEvent.action == "admin.delete", AuditEvent.actor == "api-mrao"
        )
    ).first()


def test_an_rao_grants_only_what_it_holds_and_sees_only_its_scope(live):
    beta_rao = db.session.execute(select(Admin.id).where(Admin.login == "api-beta")).scalar_one()
    error(live.call("GET", f"/admin/v1/{beta_rao}", "api-acme"), 404, -1)
    error(live.call("PUT", f"/admin/v1/{beta_rao}", "api-acme", json={"surname": "x"}), 404, -1)
    error(live.call("DELETE", f"/admin/v1/{beta_rao}", "api-acme"), 404, -1)
    body = {
        "login": "acme-helper",
        "email": "h@example.com",
        "forename": "H",
        "surname": "Elper",
        "password": STRONG,
    }
    error(
        live.call(
            "POST",
            "/admin/v1",
            "api-acme",
            json={**body, "credentials": [{"role": "RAO_SSL", "orgId": live.ids["beta"]}]},
        ),
        400,
        -223,
    )
    error(
        live.call(
            "POST", "/admin/v1", "api-acme", json={**body, "credentials": [{"role": "MRAO"}]}
        ),
        403,
        -3,
    )
    helper = created_id(
        live.call(
            "POST",
            "/admin/v1",
            "api-acme",
            json={**body, "credentials": [{"role": "RAO_SSL", "orgId": live.ids["acme"]}]},
        )
    )
    assert live.call("GET", f"/admin/v1/{helper}", "api-acme").json()["credentials"] == [
        {"role": "RAO_SSL", "orgId": live.ids["acme"]}
    ]
    assert live.call("DELETE", f"/admin/v1/{helper}", "api-acme").status_code == 204


def test_api_type_from_the_body(live):
    body = {
        "login": "ci-bot",
        "email": "ci@example.com",
        "forename": "C",
        "surname": "I",
        "password": STRONG,
        "credentials": [{"role": "MRAO"}],
        "type": "API",
    }
    bot = created_id(live.call("POST", "/admin/v1", json=body))
    details = live.call("GET", f"/admin/v1/{bot}").json()
    assert details["type"] == "API" and "wsApiUseOnly" in details["privileges"]
    assert (
        live.call(
            "GET", "/organization/v1", headers={"login": "ci-bot", "password": STRONG}
        ).status_code
        == 200
    )
    error(
        live.call("POST", "/admin/v1", json={**body, "login": "idp-user", "type": "IDP"}),
        400,
        -1601,
    )


# --- DCV (§9) ----------------------------------------------------------------------------


def test_cname_validation_start_publish_submit_status(live):
    start = live.call(
        "POST", "/dcv/v1/validation/start/domain/cname", json={"domain": "acme.example"}
    )
    assert start.status_code == 200, start.text
    host, point = start.json()["host"], start.json()["point"]
    assert host.startswith("_") and host.endswith(".acme.example.") and point.endswith(".")
    status = live.call("POST", "/dcv/v1/validation/status", json={"domain": "acme.example"}).json()
    assert (
        status["orderStatus"] == "INITIATED" and status["host"] == host and status["point"] == point
    )
    assert status["status"] == "VALIDATED" and status["orderMode"] == "CNAME"
    # not published yet: the check fails, the domain's own state is unchanged
    failed = live.call(
        "POST", "/dcv/v1/validation/submit/domain/cname", json={"domain": "acme.example"}
    ).json()
    assert failed == {
        "status": "NOT_VALIDATED",
        "orderStatus": "SUBMITTED",
        "message": "DCV status: Not Validated; DCV order status: Submitted",
    }
    live.dns.records[host.lower()] = point
    passed = live.call(
        "POST", "/dcv/v1/validation/submit/domain/cname", json={"domain": "acme.example"}
    ).json()
    assert passed == {
        "status": "VALIDATED",
        "orderStatus": "SUBMITTED",
        "message": "DCV status: Validated; DCV order status: Submitted",
    }
    status = live.call("POST", "/dcv/v1/validation/status", json={"domain": "acme.example"}).json()
    assert status["status"] == "VALIDATED" and status["expirationDate"] > status["validationDate"]
    domain_id = live.call("GET", "/domain/v1", params={"name": "acme.example"}).json()[0]["id"]
    details = live.call("GET", f"/domain/v1/{domain_id}").json()
    assert (
        details["validationMethod"] == "CNAME"
        and details["dcvExpiration"] == status["expirationDate"]
    )
    listed = live.call("GET", "/dcv/v1/validation", params={"domain": "acme.example"})
    assert listed.json()[0] == {
        "domain": "acme.example",
        "dcvStatus": "VALIDATED",
        "dcvOrderStatus": "SUBMITTED",
        "dcvMethod": "CNAME",
        "dcvOrderMethod": "CNAME",
        "expirationDate": status["expirationDate"],
    }
    assert (
        live.call(
            "GET", "/dcv/v1/validation", params={"expiresIn": 500, "domain": "acme.example"}
        ).headers["X-Total-Count"]
        == "1"
    )
    assert (
        live.call(
            "GET", "/dcv/v1/validation", params={"expiresIn": 30, "domain": "acme.example"}
        ).json()
        == []
    )
    actions = set(
        db.session.execute(
            select(AuditEvent.action).where(AuditEvent.object_label == "acme.example")
        ).scalars()
    )
    assert {"dcv.start", "dcv.submit"} <= actions


def test_dcv_errors_and_scope(live):
    error(
        live.call("POST", "/dcv/v1/validation/status", json={"domain": "nowhere.example"}),
        400,
        -727,
    )
    error(
        live.call("POST", "/dcv/v1/validation/status", json={"domain": "www.acme.example"}),
        400,
        -723,
    )
    error(
        live.call(
            "POST", "/dcv/v1/validation/submit/domain/cname", json={"domain": "beta.example"}
        ),
        400,
        -724,
    )
    error(live.call("POST", "/dcv/v1/validation/status", json={}), 400, -7)
    # another organization's domain does not exist for an RAO
    error(
        live.call(
            "POST",
            "/dcv/v1/validation/start/domain/cname",
            "api-acme",
            json={"domain": "beta.example"},
        ),
        400,
        -727,
    )
    assert "beta.example" not in [
        v["domain"] for v in live.call("GET", "/dcv/v1/validation", "api-acme").json()
    ]


def test_numbers_out_of_range_are_refused_not_crashed(live):
    # schemathesis found these answering 500: a timedelta overflow and a 64-bit id
    error(live.call("GET", "/dcv/v1/validation", params={"expiresIn": 335126357}), 400, -1601)
    assert (
        error(live.call("GET", f"/ssl/v1/{2**63}"), 404, -124)
        == f"Wrong SSL certificate id {2**63}."
    )
    error(live.call("GET", f"/ssl/v1/collect/{2**40}/x509"), 404, -124)
    error(live.call("GET", f"/domain/v1/{2**40}"), 404, -727)
    error(live.call("GET", "/"), 404, -1)
    answer = live.call(
        "POST", "/ssl/v1/enroll", json={"orgId": 2**70, "csr": "x", "certType": 1, "term": 90}
    )
    error(answer, 400, -1601)
