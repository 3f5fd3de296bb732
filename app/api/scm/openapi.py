"""The OpenAPI 3.1 document of the SCM REST API, generated from the application itself.

Paths, methods and path parameters come from the blueprint's URL rules (so a route cannot
exist undocumented: tests/integration/test_scm_openapi.py fails on one); bodies, query
parameters and answers from OPERATIONS below, keyed by endpoint. Every operation may also
answer the contract's error body with 400, 401, 403, 404, 413 and 429.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from app.api.scm.base import MAX_ID, MAX_PAGE, PATH_ID, answer, bp
from app.version import __version__

JSON = "application/json"
BYTES = "application/octet-stream"
ERROR_STATUSES = ("400", "401", "403", "404", "413", "429")

# --- schemas (components) ------------------------------------------------------------------


def obj(required: list[str] | None = None, **properties: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NSTR = {"type": ["string", "null"]}
NINT = {"type": ["integer", "null"]}
CERT_TYPES = array({"type": "string", "enum": ["SSL", "SMIME", "CodeSign"]})
DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}

SCHEMAS: dict[str, Any] = {
    "Error": obj(
        ["code", "description"],
        code={"type": "integer", "maximum": 0},
        description=STR,
    ),
    "Department": obj(["id", "name"], id=INT, name=STR, parentName=STR, certTypes=CERT_TYPES),
    "Organization": obj(
        ["id", "name"],
        id=INT,
        name=STR,
        certTypes=CERT_TYPES,
        departments=array(ref("Department")),
    ),
    "OrganizationDetails": {
        "allOf": [ref("Organization")],
        "type": "object",
        "properties": {
            "alias": STR,
            "secondaryName": STR,
            "contactEmails": array(STR),
            "address1": STR,
            "address2": STR,
            "address3": STR,
            "city": STR,
            "stateOrProvince": STR,
            "postalCode": STR,
            "country": STR,
            "sslCertsApiEnabled": BOOL,
            "clientCertsApiEnabled": BOOL,
        },
    },
    "Delegation": obj(
        ["orgId", "certTypes", "status"],
        orgId=INT,
        certTypes=CERT_TYPES,
        domainCertificateRequestPrivileges=array(
            {
                "type": "string",
                "enum": ["DOMAIN", "SUBDOMAIN", "WILDCARD_1ST_LEVEL", "WILDCARD_2ND_LEVEL"],
            }
        ),
        status={"type": "string", "enum": ["ACTIVE", "REQUESTED", "REJECTED"]},
    ),
    "DomainSummary": obj(["id", "name"], id=INT, name=STR),
    "Domain": obj(
        ["id", "name", "delegationStatus", "state", "validationStatus", "delegations"],
        id=INT,
        name=STR,
        description=STR,
        delegationStatus={"type": "string", "enum": ["ACTIVE", "REQUESTED"]},
        state={"type": "string", "enum": ["ACTIVE", "SUSPENDED"]},
        validationStatus={"type": "string", "enum": ["NOT_VALIDATED", "VALIDATED", "EXPIRED"]},
        validationMethod=STR,
        dcvValidation=DATE,
        dcvExpiration=DATE,
        delegations=array(ref("Delegation")),
    ),
    "DelegationRequest": obj(
        ["orgId", "certTypes"],
        orgId=INT,
        certTypes=CERT_TYPES,
        domainCertificateRequestPrivileges={"type": ["array", "null"], "items": STR},
    ),
    "DomainCreate": obj(
        ["name", "delegations"],
        name={"type": "string", "minLength": 4, "maxLength": 255},
        delegations=array(ref("DelegationRequest")),
        description=NSTR,
        active={"type": ["boolean", "null"]},
    ),
    "Profile": obj(
        ["id", "name", "terms"],
        id=INT,
        name=STR,
        description=STR,
        terms=array(INT),
        keyTypes={"type": "object", "additionalProperties": array(STR)},
        useSecondaryOrgName=BOOL,
    ),
    "CustomField": obj(["id", "name", "mandatory"], id=INT, name=STR, mandatory=BOOL),
    "SslSummary": obj(
        ["sslId", "commonName"],
        sslId=INT,
        commonName=STR,
        subjectAlternativeNames=array(STR),
        serialNumber=STR,
    ),
    "SslDetails": obj(
        ["sslId", "id", "commonName", "orgId", "status", "certType"],
        sslId=INT,
        id=INT,
        commonName=STR,
        orgId=INT,
        status={
            "type": "string",
            "enum": [
                "Invalid",
                "Requested",
                "Approved",
                "Declined",
                "Applied",
                "Issued",
                "Revoked",
                "Expired",
                "Replaced",
                "Rejected",
                "SAApproved",
                "Init",
            ],
        },
        orderNumber=INT,
        backendCertId={"type": "string", "pattern": r"^\d+$"},
        vendor=STR,
        certType=ref("Profile"),
        validationType=STR,
        term=INT,
        owner=STR,
        ownerId=INT,
        requester=STR,
        requesterId=INT,
        requestedVia=STR,
        externalRequester=STR,
        comments=STR,
        requested=STR,
        approved=STR,
        issued=STR,
        declined=STR,
        expires=STR,
        replaced=STR,
        revoked=STR,
        reasonCode=INT,
        renewed=BOOL,
        renewedDate=STR,
        serialNumber=STR,
        signatureAlg=STR,
        keyAlgorithm=STR,
        keySize=NINT,
        keyType=STR,
        keyUsages=array(STR),
        extendedKeyUsages=array(STR),
        subjectAlternativeNames=array(STR),
        customFields=array(obj(["name"], name=STR, value=STR)),
        certificateDetails={"type": "object"},
        autoInstallDetails={"type": "object"},
        autoRenewDetails={"type": "object"},
        suspendNotifications=BOOL,
    ),
    "Enroll": obj(
        ["orgId", "csr", "certType", "term"],
        orgId=INT,
        csr=STR,
        certType=INT,
        term=INT,
        subjAltNames=NSTR,
        numberServers=NINT,
        serverType=NINT,
        comments={"type": ["string", "null"], "maxLength": 1024},
        externalRequester={"type": ["string", "null"], "maxLength": 512},
        dcvMode=NSTR,
        dcvEmail=NSTR,
        customFields={"type": ["array", "null"], "items": {"type": "object"}},
    ),
    "EnrollAnswer": obj(
        ["sslId", "renewId"], sslId=INT, renewId={"type": "string", "maxLength": 20}
    ),
    "Renew": obj(csr=NSTR, dcvMode=NSTR, dcvEmail=NSTR),
    "Replace": obj(
        ["csr"],
        csr=STR,
        commonName={"type": ["string", "null"], "maxLength": 64},
        subjectAlternativeNames={"type": ["array", "null"], "items": STR},
        reason={"type": ["string", "null"], "maxLength": 512},
        dcvMode=NSTR,
        dcvEmail=NSTR,
    ),
    "Revoke": obj(
        ["reason"],
        reason={"type": "string", "minLength": 1, "maxLength": 512},
        reasonCode={"type": ["integer", "null"], "enum": [0, 1, 3, 4, 5, None]},
    ),
    "AdminSummary": obj(
        ["id", "type", "login"],
        id=INT,
        type={"type": "string", "enum": ["STANDARD", "API", "IDP", "SAS"]},
        login=STR,
        forename=STR,
        surname=STR,
        email=STR,
    ),
    "Credential": obj(["role"], role=STR, orgId=INT),
    "AdminDetails": {
        "allOf": [ref("AdminSummary")],
        "type": "object",
        "properties": {
            "status": STR,
            "activeStatus": STR,
            "created": DATE,
            "modified": DATE,
            "lastPasswordChange": DATE,
            "credentials": array(ref("Credential")),
            "privileges": array(STR),
            "passwordState": STR,
            "failedAttempts": INT,
        },
    },
    "AdminCreate": obj(
        ["login", "email", "forename", "surname", "password", "credentials"],
        login={"type": "string", "minLength": 3, "maxLength": 128},
        email=STR,
        forename=STR,
        surname=STR,
        password={"type": "string", "maxLength": 64},
        credentials=array(ref("Credential")),
        type=NSTR,
        privileges={"type": ["array", "null"], "items": STR},
        activeStatus=NSTR,
    ),
    "AdminUpdate": obj(
        email=NSTR,
        forename=NSTR,
        surname=NSTR,
        password={"type": ["string", "null"], "maxLength": 64},
        credentials={"type": ["array", "null"], "items": ref("Credential")},
        activeStatus=NSTR,
    ),
    "DcvDomain": obj(["domain"], domain={"type": "string", "minLength": 3, "maxLength": 255}),
    "DcvItem": obj(
        ["domain", "dcvStatus", "dcvOrderStatus"],
        domain=STR,
        dcvStatus=STR,
        dcvOrderStatus=STR,
        dcvMethod=STR,
        dcvOrderMethod=STR,
        expirationDate=DATE,
    ),
    "DcvStatus": obj(
        ["status", "orderStatus"],
        status=STR,
        orderStatus=STR,
        validationDate=DATE,
        expirationDate=DATE,
        orderMode=STR,
        host=STR,
        point=STR,
    ),
    "DcvStart": obj(["host", "point"], host=STR, point=STR),
    "DcvSubmit": obj(
        ["status", "orderStatus", "message"], status=STR, orderStatus=STR, message=STR
    ),
    "Count": obj(["count"], count=INT),
    "ReportAnswer": obj(
        ["statusCode", "reports"], statusCode=INT, reports=array({"type": "object"})
    ),
    "SmimeItem": obj(
        ["id", "state", "orderNumber", "backendCertId"],
        id=INT,
        state={
            "type": "string",
            "enum": [
                "blank",
                "created",
                "requested",
                "issued",
                "expired",
                "revoked",
                "rejected",
                "pre_revoked",
            ],
        },
        certificateDetails={"type": "object"},
        serialNumber=STR,
        orderNumber=INT,
        backendCertId={"type": "string", "pattern": r"^\d+$"},
        expires=DATE,
        comments=STR,
    ),
    "SmimeDetails": obj(
        ["id", "commonName", "orgId", "status", "backendCertId", "certType"],
        commonName=STR,
        id=INT,
        orgId=INT,
        status=STR,
        orderNumber=INT,
        backendCertId={"type": "string", "pattern": r"^\d+$"},
        certType=ref("Profile"),
        term=INT,
        personId=INT,
        requestedVia=STR,
        requested=STR,
        issued=STR,
        expires=STR,
        revoked=STR,
        serialNumber=STR,
        keyType=STR,
        subjectAlternativeNames=array(STR),
        certificateDetails={"type": "object"},
        comments=STR,
    ),
    "SmimeEnroll": obj(
        ["orgId", "csr", "certType", "term", "email", "firstName", "lastName"],
        orgId=INT,
        csr=STR,
        certType=INT,
        term=INT,
        email=STR,
        firstName=STR,
        middleName=NSTR,
        lastName=STR,
        phone=NSTR,
        commonName=NSTR,
        eppn=NSTR,
        upn=NSTR,
        comments={"type": ["string", "null"], "maxLength": 1024},
        secondaryEmails={"type": ["array", "null"], "items": STR},
        customFields={"type": ["array", "null"], "items": {"type": "object"}},
    ),
    "SmimeOrder": obj(
        ["orderNumber", "backendCertId"],
        orderNumber=INT,
        backendCertId={"type": "string", "pattern": r"^\d+$"},
    ),
    "Person": obj(
        ["id", "firstName", "lastName", "email", "organizationId", "validationType"],
        id=INT,
        firstName=STR,
        middleName=STR,
        lastName=STR,
        email=STR,
        organizationId=INT,
        validationType={"type": "string", "enum": ["STANDARD", "HIGH"]},
        phone=STR,
        secondaryEmails=array(STR),
        commonName=STR,
        eppn=STR,
        upn=STR,
        created=STR,
        modified=STR,
    ),
    "PersonCreate": obj(
        ["firstName", "lastName", "email", "validationType", "organizationId"],
        firstName=STR,
        middleName=NSTR,
        lastName=STR,
        email=STR,
        validationType={"type": "string", "enum": ["STANDARD", "HIGH"]},
        organizationId=INT,
        phone=NSTR,
        commonName=NSTR,
        secondaryEmails={"type": ["array", "null"], "items": STR},
        eppn=NSTR,
        upn=NSTR,
    ),
    "PersonUpdate": obj(
        firstName=NSTR,
        middleName=NSTR,
        lastName=NSTR,
        email=NSTR,
        validationType={"type": ["string", "null"], "enum": ["STANDARD", "HIGH", None]},
        organizationId=NINT,
        phone=NSTR,
        commonName=NSTR,
        secondaryEmails={"type": ["array", "null"], "items": STR},
        eppn=NSTR,
        upn=NSTR,
    ),
    "AcmeAccount": obj(
        ["id", "name", "status"],
        id=INT,
        name=STR,
        status={"type": "string", "enum": ["pending", "valid", "deactivated"]},
        macKey=STR,
        macId=STR,
        acmeServer=STR,
        organizationId=INT,
        certValidationType={"type": "string", "enum": ["DV", "OV", "EV"]},
        accountId=STR,
        contacts=STR,
        evDetails={"type": "object"},
        domains=array(obj(["name"], name=STR)),
    ),
    "AcmeServer": obj(
        ["name", "url"],
        name=STR,
        url=STR,
        caId=INT,
        certValidationType=STR,
        singleProductId=INT,
        multiProductId=INT,
        wcProductId=INT,
    ),
    "AcmeDomains": obj(["domains"], domains=array(obj(["name"], name=STR))),
}


# --- operations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    ok: str = "200"
    answer: dict[str, Any] | None = None  # JSON body of the success answer
    body: dict[str, Any] | None = None  # JSON request body
    body_required: bool = True
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    paged: bool = False
    created: bool = False
    binary: bool = False
    total_header: bool = False
    media: str = "application/octet-stream"  # of a binary answer
    upload: bool = False  # multipart/form-data with one or more "file" parts


PAGE = {
    "position": {"type": "integer", "minimum": 0},
    "size": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE},
}


def listing(summary: str, tag: str, item: str, **query: dict[str, Any]) -> Operation:
    return Operation(summary, tag, answer=array(ref(item)), query={**PAGE, **query}, paged=True)


REPORT_FILTER = obj(
    organizationIds={"type": ["array", "null"], "items": INT},
    commonName=NSTR,
    externalRequester=NSTR,
    certificateStatus=NINT,
    certificateDateAttribute=NINT,
    certificateRequestSource=NSTR,
    serialNumberFormat=NSTR,
    **{"from": NSTR, "to": NSTR},
)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("scm.list_organizations", "GET"): Operation(
        "Organizations in scope, with departments",
        "organization",
        answer=array(ref("Organization")),
    ),
    ("scm.organization_details", "GET"): Operation(
        "An organization (or a department by its API id)",
        "organization",
        answer={"anyOf": [ref("OrganizationDetails"), ref("Department")]},
    ),
    ("scm.list_domains", "GET"): listing(
        "Domains in scope",
        "domain",
        "DomainSummary",
        name=STR,
        state={"type": "string", "enum": ["active", "inactive"]},
        status={"type": "string", "enum": ["requested", "approved"]},
        orgId=INT,
    ),
    ("scm.count_domains", "GET"): Operation(
        "How many domains match",
        "domain",
        answer=ref("Count"),
        query={
            "name": STR,
            "state": {"type": "string", "enum": ["active", "inactive"]},
            "status": {"type": "string", "enum": ["requested", "approved"]},
            "orgId": INT,
        },
    ),
    ("scm.domain_details", "GET"): Operation("A domain", "domain", answer=ref("Domain")),
    ("scm.create_domain", "POST"): Operation(
        "Create a domain with its delegations",
        "domain",
        ok="201",
        body=ref("DomainCreate"),
        created=True,
    ),
    ("scm.delete_domain", "DELETE"): Operation("Delete a domain", "domain", ok="204"),
    ("scm.activate_domain", "PUT"): Operation("Activate a domain", "domain"),
    ("scm.suspend_domain", "PUT"): Operation("Suspend a domain", "domain"),
    ("scm.add_delegation", "POST"): Operation(
        "Delegate (or add types to a delegation)", "domain", body=ref("DelegationRequest")
    ),
    ("scm.remove_delegation", "DELETE"): Operation(
        "Remove types from a delegation", "domain", body=ref("DelegationRequest")
    ),
    ("scm.approve_delegation", "POST"): Operation(
        "Approve a requested delegation (MRAO)", "domain", body=obj(["orgId"], orgId=INT)
    ),
    ("scm.reject_delegation", "POST"): Operation(
        "Reject a requested delegation (MRAO)", "domain", body=obj(["orgId"], orgId=INT)
    ),
    ("scm.types", "GET"): Operation(
        "SSL certificate profiles",
        "ssl",
        answer=array(ref("Profile")),
        query={"organizationId": INT},
    ),
    ("scm.custom_fields", "GET"): Operation(
        "SSL custom fields", "ssl", answer=array(ref("CustomField"))
    ),
    ("scm.list_certificates", "GET"): listing(
        "SSL certificates in scope",
        "ssl",
        "SslSummary",
        commonName=STR,
        subjectAlternativeName=STR,
        status=STR,
        sslTypeId=INT,
        orgId=INT,
        serialNumber=STR,
        requester=STR,
        externalRequester=STR,
        issuer=STR,
        keyAlgorithm=STR,
        keyParam=STR,
        requestedVia=STR,
    ),
    ("scm.list_certificates", "HEAD"): Operation(
        "How many SSL certificates match (X-Total-Count)",
        "ssl",
        query={
            "commonName": STR,
            "status": STR,
            "sslTypeId": INT,
            "orgId": INT,
            "serialNumber": STR,
        },
        total_header=True,
    ),
    ("scm.certificate_details", "GET"): Operation(
        "An SSL certificate",
        "ssl",
        answer=ref("SslDetails"),
        query={"dateFormat": STR},
    ),
    ("scm.enroll", "POST"): Operation(
        "Enroll (idempotent with an Idempotency-Key)",
        "ssl",
        body=ref("Enroll"),
        answer=ref("EnrollAnswer"),
    ),
    ("scm.collect_format", "GET"): Operation("Collect in a format", "ssl", binary=True),
    ("scm.collect", "GET"): Operation(
        "Collect (format as a query parameter)",
        "ssl",
        binary=True,
        query={"format": STR},
    ),
    ("scm.renew", "POST"): Operation(
        "Renew (a new certificate record)",
        "ssl",
        body=ref("Renew"),
        body_required=False,
        answer=obj(["sslId"], sslId=INT),
    ),
    ("scm.replace", "POST"): Operation(
        "Replace with a new CSR (same sslId)", "ssl", ok="204", body=ref("Replace")
    ),
    ("scm.revoke", "POST"): Operation("Revoke", "ssl", ok="204", body=ref("Revoke")),
    ("scm.revoke_by_serial", "POST"): Operation(
        "Revoke by serial number", "ssl", ok="204", body=ref("Revoke")
    ),
    ("scm.smime_types", "GET"): Operation(
        "Client certificate profiles",
        "smime",
        answer=array(ref("Profile")),
        query={"organizationId": INT},
    ),
    ("scm.smime_custom_fields", "GET"): Operation(
        "Client certificate custom fields", "smime", answer=array(ref("CustomField"))
    ),
    ("scm.list_smime", "GET"): listing(
        "Client certificates in scope",
        "smime",
        "SmimeItem",
        personId=INT,
        state=STR,
        certTypeId=INT,
        serialNumber=STR,
        backendCertId=STR,
        email=STR,
    ),
    ("scm.by_person_email", "GET"): Operation(
        "A person's client certificates (v2)", "smime", answer=array(ref("SmimeItem"))
    ),
    ("scm.smime_details", "GET"): Operation(
        "A client certificate", "smime", answer=ref("SmimeDetails"), query={"dateFormat": STR}
    ),
    ("scm.smime_enroll", "POST"): Operation(
        "Enroll a client certificate for a person (created when new)",
        "smime",
        body=ref("SmimeEnroll"),
        answer=ref("SmimeOrder"),
    ),
    ("scm.smime_collect", "GET"): Operation(
        "Collect a client certificate", "smime", binary=True, query={"format": STR}
    ),
    ("scm.smime_renew_by_order", "POST"): Operation(
        "Renew a client certificate (v2)", "smime", answer=ref("SmimeOrder")
    ),
    ("scm.smime_renew_by_serial", "POST"): Operation(
        "Renew a client certificate by serial number (v2)", "smime", answer=ref("SmimeOrder")
    ),
    ("scm.smime_replace", "POST"): Operation(
        "Replace a client certificate with a new CSR (v2)",
        "smime",
        ok="204",
        body=obj(
            ["csr"],
            csr=STR,
            reason={"type": ["string", "null"], "maxLength": 512},
            revoke={"type": ["boolean", "null"]},
        ),
    ),
    ("scm.smime_revoke_by_order", "POST"): Operation(
        "Revoke a client certificate", "smime", ok="204", body=ref("Revoke")
    ),
    ("scm.smime_revoke_by_email", "POST"): Operation(
        "Revoke every valid client certificate of a person",
        "smime",
        ok="204",
        body=obj(
            ["email", "reason"],
            email=STR,
            reason={"type": "string", "minLength": 1, "maxLength": 512},
        ),
    ),
    ("scm.list_persons", "GET"): listing(
        "Persons in scope",
        "person",
        "Person",
        name=STR,
        organizationId=INT,
        email=STR,
        commonName=STR,
        phone=STR,
        secondaryEmail=STR,
    ),
    ("scm.person_id_by_email", "GET"): Operation(
        "A person's id by e-mail", "person", answer=obj(["personId"], personId=INT)
    ),
    ("scm.person_details", "GET"): Operation("A person", "person", answer=ref("Person")),
    ("scm.create_person", "POST"): Operation(
        "Create a person", "person", ok="201", body=ref("PersonCreate"), created=True
    ),
    ("scm.update_person", "PUT"): Operation(
        "Update a person (partial)", "person", body=ref("PersonUpdate"), body_required=False
    ),
    ("scm.delete_person", "DELETE"): Operation("Delete a person", "person"),
    ("scm.list_admins", "GET"): listing(
        "Administrators in scope",
        "admin",
        "AdminSummary",
        type=STR,
        login=STR,
        email=STR,
        activeState=STR,
        orgId=INT,
        role=STR,
    ),
    ("scm.identity_providers", "GET"): Operation(
        "Identity providers", "admin", answer=array(obj(["id", "name"], id=INT, name=STR))
    ),
    ("scm.admin_details", "GET"): Operation(
        "An administrator", "admin", answer=ref("AdminDetails")
    ),
    ("scm.create_admin", "POST"): Operation(
        "Create an administrator", "admin", ok="201", body=ref("AdminCreate"), created=True
    ),
    ("scm.update_admin", "PUT"): Operation(
        "Update an administrator (partial)", "admin", body=ref("AdminUpdate")
    ),
    ("scm.delete_admin", "DELETE"): Operation(
        "Delete an administrator",
        "admin",
        ok="204",
        query={"replacingRequesterId": INT},
    ),
    ("scm.list_validations", "GET"): listing(
        "Domain validations in scope",
        "dcv",
        "DcvItem",
        domain=STR,
        org=INT,
        department=INT,
        dcvStatus=STR,
        orderStatus=STR,
        expiresIn={"type": "integer", "minimum": 0, "maximum": 36500},
    ),
    ("scm.run_report", "POST"): Operation(
        "A report (activity, ssl-certificates, client-certificates, device-certificates, domains)",
        "report",
        body=REPORT_FILTER,
        body_required=False,
        answer=ref("ReportAnswer"),
    ),
    ("scm.list_accounts", "GET"): listing(
        "ACME accounts of an organization",
        "acme",
        "AcmeAccount",
        organizationId=INT,
        name=STR,
        acmeServer=STR,
        certValidationType=STR,
        status=STR,
    ),
    ("scm.account_details", "GET"): Operation("An ACME account", "acme", answer=ref("AcmeAccount")),
    ("scm.create_account", "POST"): Operation(
        "Create an ACME account",
        "acme",
        ok="201",
        created=True,
        body=obj(
            ["name", "acmeServer", "organizationId"],
            name=STR,
            acmeServer=STR,
            organizationId=INT,
            evDetails={"type": ["object", "null"]},
        ),
    ),
    ("scm.update_account", "PUT"): Operation(
        "Rename an ACME account", "acme", body=obj(["name"], name=STR)
    ),
    ("scm.delete_account", "DELETE"): Operation("Delete an ACME account", "acme", ok="204"),
    ("scm.add_account_domains", "POST"): Operation(
        "Add domains to an ACME account",
        "acme",
        body=ref("AcmeDomains"),
        answer=obj(["notAddedDomains"], notAddedDomains=array(STR)),
    ),
    ("scm.remove_account_domains", "DELETE"): Operation(
        "Remove domains from an ACME account",
        "acme",
        body=ref("AcmeDomains"),
        answer=obj(["notRemovedDomains"], notRemovedDomains=array(STR)),
    ),
    ("scm.list_servers", "GET"): listing(
        "ACME servers", "acme", "AcmeServer", name=STR, url=STR, certValidationType=STR
    ),
    ("scm.validation_status", "POST"): Operation(
        "A domain's validation state", "dcv", body=ref("DcvDomain"), answer=ref("DcvStatus")
    ),
    ("scm.start_cname", "POST"): Operation(
        "Start a CNAME validation", "dcv", body=ref("DcvDomain"), answer=ref("DcvStart")
    ),
    ("scm.submit_cname", "POST"): Operation(
        "Check the published CNAME", "dcv", body=ref("DcvDomain"), answer=ref("DcvSubmit")
    ),
}

OPERATIONS.update(
    {
        ("scm.start_import", "POST"): Operation(
            "Import certificates (Certwright extension): ZIP, PEM or PKCS#7 bundles, or "
            "single files, into an organization or department (docs/imports.md)",
            "ssl",
            ok="202",
            answer=obj(["importId"], importId=INT),
            query={"orgId": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
            upload=True,
            created=True,
        ),
        ("scm.import_state", "GET"): Operation(
            "An import's state and counts (Certwright extension)",
            "ssl",
            answer=obj(
                ["importId", "status", "progress", "counts"],
                importId=INT,
                status={"type": "string", "enum": ["pending", "running", "done", "failed"]},
                progress=INT,
                files=array(STR),
                bytes=INT,
                counts={"type": "object", "additionalProperties": INT},
                message=STR,
                created=STR,
                finished=NSTR,
            ),
        ),
        ("scm.import_results", "GET"): Operation(
            "An import's per-file results as CSV (Certwright extension)",
            "ssl",
            binary=True,
            media="text/csv",
        ),
    }
)

CATCH_ALL = "scm.unknown_operation"
_CONVERTER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for converter, name in _CONVERTER.findall(rule):
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": 0, "maximum": MAX_ID}
            if converter in ("int", PATH_ID)
            else {"type": "string"}
        )
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    path = _CONVERTER.sub(lambda m: "{" + m.group(2) + "}", rule).rstrip("/") or "/"
    return path, params


def _operation(endpoint: str, method: str, op: Operation, params: list[Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {"description": op.summary}
    if op.answer is not None:
        success["content"] = {JSON: {"schema": op.answer}}
    if op.binary:
        success["content"] = {op.media: {"schema": {"type": "string"}}}
    headers: dict[str, Any] = {}
    if op.paged or op.total_header:
        headers["X-Total-Count"] = {"schema": {"type": "integer"}}
    if op.created:
        headers["Location"] = {"schema": {"type": "string", "format": "uri"}, "required": True}
    if headers:
        success["headers"] = headers
    responses[op.ok] = success
    for status in ERROR_STATUSES:
        responses[status] = {"$ref": "#/components/responses/Error"}
    parameters = list(params) + [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in op.query.items()
    ]
    if endpoint in ("scm.enroll", "scm.smime_enroll"):
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 150},
            }
        )
    result: dict[str, Any] = {
        "operationId": f"{endpoint.split('.', 1)[1]}_{method.lower()}",
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if op.upload:
        files = {"type": "array", "items": {"type": "string", "contentMediaType": BYTES}}
        result["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": obj(["file"], file=files)}},
        }
    if op.body is not None:
        result["requestBody"] = {
            "required": op.body_required,
            "content": {JSON: {"schema": op.body}},
        }
    return result


def build(app: Flask) -> dict[str, Any]:
    """The document for this application's routes."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(f"{bp.name}.") or rule.endpoint == CATCH_ALL:
            continue
        path, params = _path(rule.rule.removeprefix(bp.url_prefix or ""))
        for method in sorted(rule.methods or ()):
            op = OPERATIONS.get((rule.endpoint, method))
            if op is None:
                continue  # HEAD and OPTIONS that Flask adds by itself
            paths.setdefault(path, {})[method.lower()] = _operation(
                rule.endpoint, method, op, params
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Certwright SCM-compatible REST API",
            "version": f"v1 (Certwright {__version__})",
            "description": "Sectigo Certificate Manager REST API v1, as Certwright answers it "
            "(docs/api.md). Authenticate every call with the login, password and customerUri "
            "headers of an API administrator.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"login": [], "password": [], "customerUri": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                "Error": {
                    "description": "A refusal: {code, description}",
                    "content": {JSON: {"schema": ref("Error")}},
                }
            },
            "securitySchemes": {
                "login": {"type": "apiKey", "in": "header", "name": "login"},
                "password": {"type": "apiKey", "in": "header", "name": "password"},
                "customerUri": {"type": "apiKey", "in": "header", "name": "customerUri"},
            },
        },
    }


doc_bp = Blueprint("scm_doc", __name__, url_prefix="/api")


@doc_bp.get("/openapi.json")
def openapi_document() -> Response:
    """GET /api/openapi.json: public (no credentials), like any API description."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get("cw_scm_openapi")
    if cached is None:
        cached = app.extensions["cw_scm_openapi"] = build(app)
    return answer(cached)
