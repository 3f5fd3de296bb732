"""The OpenAPI 3.1 document of the SCM REST API, generated from the application itself.

Paths, methods and path parameters come from the blueprint's URL rules (so a route cannot
exist undocumented: tests/integration/test_scm_openapi.py fails on one); bodies, query
parameters and answers from OPERATIONS below, keyed by endpoint; the schemas of the
bodies from app/api/scm/openapi_schemas.py. Every operation may also
answer the contract's error body with 400, 401, 403, 404, 413 and 429.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from app.api.scm.base import MAX_ID, MAX_PAGE, PATH_ID, answer, bp
from app.api.scm.openapi_schemas import (
    INT,
    NINT,
    NSTR,
    SCHEMAS,
    STR,
    array,
    obj,
    ref,
)
from app.version import __version__

JSON = "application/json"
BYTES = "application/octet-stream"
ERROR_STATUSES = ("400", "401", "403", "404", "413", "429")

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
