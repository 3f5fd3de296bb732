"""The OpenAPI 3.1 document: generated from the routes (none undocumented, none invented),
served without credentials, linked from About, and its schemas accept the contract's own
examples (shared/api/scm-rest-v1.md) and what the live API answers."""

from __future__ import annotations

import jsonschema_rs
import pytest

from app.api.scm import openapi, openapi_schemas
from tests.conftest import login
from tests.factories import PASSWORD, make_admin

# The contract's examples (§1-§9), as printed there (abbreviations "..." filled in).
EXAMPLES = [
    (
        "Organization",
        {
            "id": 1234,
            "name": "Some Organization",
            "certTypes": ["SSL", "SMIME"],
            "departments": [
                {
                    "id": 4321,
                    "name": "Org Unit 1",
                    "parentName": "Some Organization",
                    "certTypes": ["CodeSign", "SMIME", "SSL"],
                }
            ],
        },
    ),
    ("DomainSummary", {"id": 1234, "name": "example.com"}),
    ("Count", {"count": 4}),
    (
        "Domain",
        {
            "id": 409,
            "name": "ccmqa.com",
            "delegationStatus": "ACTIVE",
            "state": "ACTIVE",
            "validationStatus": "VALIDATED",
            "validationMethod": "CNAME",
            "dcvValidation": "2025-05-21",
            "dcvExpiration": "2026-05-21",
            "delegations": [
                {
                    "orgId": 2645,
                    "certTypes": ["SSL", "SMIME"],
                    "domainCertificateRequestPrivileges": ["DOMAIN", "SUBDOMAIN"],
                    "status": "ACTIVE",
                }
            ],
        },
    ),
    (
        "DomainCreate",
        {
            "name": "sub2.example.com",
            "delegations": [{"orgId": 4321, "certTypes": ["SSL", "SMIME"]}],
            "description": "Example sub domain",
        },
    ),
    (
        "Profile",
        {
            "id": 224,
            "name": "InCommon SSL (SHA-2)",
            "description": "",
            "terms": [365, 730],
            "keyTypes": {"RSA": ["2048", "4096"]},
            "useSecondaryOrgName": False,
        },
    ),
    ("CustomField", {"id": 57, "name": "testName", "mandatory": True}),
    (
        "SslSummary",
        {
            "sslId": 58,
            "commonName": "ccmqa.com",
            "subjectAlternativeNames": ["ccmqa.com"],
            "serialNumber": "2E:1A:00:01",
        },
    ),
    (
        "SslDetails",
        {
            "commonName": "ccmqa.com",
            "sslId": 54,
            "id": 54,
            "orgId": 99,
            "status": "Issued",
            "orderNumber": 7344326,
            "backendCertId": "7344326",
            "vendor": "Sectigo",
            "certType": {
                "id": 224,
                "name": "InCommon SSL (SHA-2)",
                "description": "",
                "terms": [365],
                "keyTypes": {"RSA": ["2048"]},
                "useSecondaryOrgName": False,
            },
            "validationType": "Organization Validation (OV)",
            "term": 365,
            "requester": "admin",
            "requestedVia": "Web API",
            "comments": "Enrolled by x",
            "requested": "05/21/2025",
            "issued": "05/21/2025",
            "expires": "05/21/2026",
            "renewed": False,
            "serialNumber": "00:A1:B2",
            "keyAlgorithm": "RSA",
            "keySize": 2048,
            "keyType": "RSA - 2048",
            "subjectAlternativeNames": ["ccmqa.com"],
            "customFields": [],
            "certificateDetails": {
                "issuer": "CN=Test CA",
                "subject": "CN=ccmqa.com",
                "sha1Hash": "AB",
            },
            "autoInstallDetails": {"state": "Not configured"},
            "autoRenewDetails": {"state": "Not scheduled"},
            "suspendNotifications": False,
        },
    ),
    (
        "Enroll",
        {
            "orgId": 1234,
            "csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIC\n-----END CERTIFICATE REQUEST-----",
            "subjAltNames": "host.example.com",
            "certType": 224,
            "numberServers": 1,
            "serverType": -1,
            "term": 365,
            "comments": "Enrolled by x",
            "externalRequester": None,
            "dcvMode": "CNAME",
        },
    ),
    ("EnrollAnswer", {"sslId": 999, "renewId": "xwL9Mux8-eLNTsweYYv8"}),
    (
        "Replace",
        {
            "csr": "-----BEGIN CERTIFICATE REQUEST-----\n...",
            "commonName": "ccmqa.com",
            "subjectAlternativeNames": ["ccmqa1.com", "ccmqa2.com"],
            "reason": "",
        },
    ),
    ("Revoke", {"reason": "key compromised"}),
    (
        "AdminSummary",
        {
            "id": 1234,
            "type": "STANDARD",
            "login": "user1@example.com",
            "forename": "Test1",
            "surname": "User1",
            "email": "user1@example.com",
        },
    ),
    (
        "AdminDetails",
        {
            "id": 1630,
            "type": "STANDARD",
            "status": "Active",
            "activeStatus": "ACTIVE",
            "forename": "Test1",
            "surname": "User1",
            "login": "drao",
            "email": "d@example.com",
            "created": "2025-05-21",
            "modified": "2025-05-21",
            "lastPasswordChange": "2025-05-21",
            "credentials": [{"role": "DRAO_SSL", "orgId": 1459}],
            "privileges": ["allowEdit"],
            "passwordState": "ALIVE",
            "passwordExpiryDate": "2025-08-21",
            "failedAttempts": 0,
        },
    ),
    (
        "AdminCreate",
        {
            "login": "user1@example.com",
            "email": "user1@example.com",
            "forename": "Test1",
            "surname": "User1",
            "password": "Passw0rd!",
            "credentials": [{"role": "DRAO_SSL", "orgId": 123}],
        },
    ),
    ("DcvDomain", {"domain": "mydomain.org"}),
    (
        "DcvStatus",
        {
            "status": "EXPIRED",
            "orderStatus": "SUBMITTED",
            "validationDate": "2019-01-14",
            "expirationDate": "2020-01-14",
            "orderMode": "CNAME",
        },
    ),
    ("DcvStart", {"host": "_916d66.mydomain.org.", "point": "547a53.sectigo.com."}),
    (
        "DcvSubmit",
        {
            "status": "NOT_VALIDATED",
            "orderStatus": "SUBMITTED",
            "message": "DCV status: Not Validated; DCV order status: Submitted",
        },
    ),
    ("Error", {"code": -16, "description": "Unknown user"}),
    # §4 S/MIME
    (
        "Profile",
        {
            "id": 15702,
            "name": "Sectigo SMIME",
            "description": "",
            "terms": [365],
            "keyTypes": {"RSA": ["2048", "3072", "4096"]},
            "useSecondaryOrgName": False,
        },
    ),
    (
        "SmimeItem",
        {
            "id": 1,
            "state": "issued",
            "certificateDetails": {"subject": "CN=Fry,E=fry@example.org"},
            "serialNumber": "C3:DB:01",
            "orderNumber": 12345,
            "backendCertId": "12345",
            "expires": "2026-06-07",
            "comments": "",
        },
    ),
    (
        "SmimeEnroll",
        {
            "orgId": 1234,
            "csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIC\n",
            "certType": 15702,
            "term": 365,
            "email": "fry@example.org",
            "phone": None,
            "secondaryEmails": None,
            "firstName": "Philip",
            "middleName": None,
            "lastName": "Fry",
            "commonName": None,
            "eppn": None,
            "upn": None,
        },
    ),
    ("SmimeOrder", {"orderNumber": 123456, "backendCertId": "123456"}),
    # §5 persons
    (
        "Person",
        {
            "id": 120,
            "firstName": "Tester",
            "middleName": "",
            "lastName": "",
            "email": "t@example.org",
            "organizationId": 1234,
            "validationType": "STANDARD",
            "secondaryEmails": [],
            "commonName": "Tester",
        },
    ),
    (
        "PersonCreate",
        {
            "firstName": "Philip",
            "middleName": None,
            "lastName": "Fry",
            "email": "fry@example.org",
            "validationType": "STANDARD",
            "organizationId": 1234,
            "phone": None,
            "commonName": None,
            "secondaryEmails": None,
            "eppn": None,
            "upn": None,
        },
    ),
    # §8 ACME accounts
    (
        "AcmeAccount",
        {
            "id": 4321,
            "name": "api_account2",
            "status": "valid",
            "macKey": "Xk9R",
            "macId": "mZLT4rsopz1veRo9S6IWhQ",
            "acmeServer": "https://acme.sectigo.com/v2/OV",
            "organizationId": 1234,
            "certValidationType": "OV",
            "accountId": "mZLT4rsopz1veRo9S6IWhQ",
            "ovOrderNumber": 387134123,
            "contacts": "",
            "evDetails": {},
        },
    ),
    ("AcmeDomains", {"domains": [{"name": "example.com"}]}),
]


def validator(name: str) -> jsonschema_rs.Draft202012Validator:
    document = {
        "$ref": f"#/components/schemas/{name}",
        "components": {"schemas": openapi_schemas.SCHEMAS},
    }
    return jsonschema_rs.Draft202012Validator(document)


@pytest.mark.parametrize(("name", "example"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_the_contracts_examples_fit_the_schemas(name, example):
    errors = [str(e) for e in validator(name).iter_errors(example)]
    assert not errors, errors


def test_every_route_is_documented_and_nothing_else(app):
    documented = set(openapi.OPERATIONS)
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("scm.") and rule.endpoint != openapi.CATCH_ALL:
            for method in rule.methods - {"OPTIONS"}:
                if method == "HEAD" and (rule.endpoint, "HEAD") not in documented:
                    continue  # Flask answers HEAD for every GET
                routed.add((rule.endpoint, method))
    assert routed == documented
    document = openapi.build(app)
    assert document["openapi"] == "3.1.0"
    assert document["paths"]["/ssl/v1/collect/{ssl_id}/{fmt}"]["get"]["parameters"][0] == {
        "name": "ssl_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    }
    operations = sum(len(p) for p in document["paths"].values())
    assert operations == len(documented)


def test_served_without_credentials_and_linked_from_about(client):
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200 and answer.get_json()["info"]["title"].startswith("Certwright")
    assert "/domain/v1/{domain_id}/delegation/approve" in answer.get_json()["paths"]
    make_admin("mrao")
    login(client, "mrao", PASSWORD)
    assert 'href="/api/openapi.json"' in client.get("/admin/about/").get_data(as_text=True)


def test_live_answers_fit_the_schemas(live):
    """What the running API answers validates against its own document."""
    checks = [
        ("/organization/v1", lambda d: (validator("Organization"), d)),
        ("/ssl/v1/types", lambda d: (validator("Profile"), d)),
        ("/domain/v1", lambda d: (validator("DomainSummary"), d)),
        ("/admin/v1", lambda d: (validator("AdminSummary"), d)),
    ]
    for path, pick in checks:
        items = live.call("GET", path).json()
        assert items, path
        for item in items:
            check, value = pick(item)
            assert not [str(e) for e in check.iter_errors(value)], (path, item)
    domain = live.call("GET", "/domain/v1").json()[0]["id"]
    details = live.call("GET", f"/domain/v1/{domain}").json()
    assert not list(validator("Domain").iter_errors(details))
