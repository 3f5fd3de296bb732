"""SCM SSL certificate service (contract §3): profiles, list, count, details, enroll,
collect, renew, replace and revoke. An ``sslId`` is an order (app/services/certificates/
orders.py): the enrollment's request, followed through its replacements."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

from cryptography import x509
from flask import Response, request

from app.api.scm.base import (
    ApiError,
    Codes,
    actor,
    answer,
    body,
    call,
    commit,
    department_api_id,
    empty,
    get_int,
    get_str,
    get_str_list,
    invalid,
    page,
    paging,
    query_int,
    query_str,
    route,
    split_org_id,
)
from app.downloads import content_disposition
from app.models import CertificateProfile, CertType, RequestMode, RequestStatus
from app.services.certificates import enrollment, orders
from app.services.errors import Conflict, DomainError
from app.services.structure import directory, domain_views

EC_CURVES = {"P256": "P-256", "P384": "P-384", "P521": "P-521"}
REASON_NUMBERS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}


def key_types(profile: CertificateProfile) -> dict[str, list[str]]:
    """["RSA-2048", "EC-P256"] -> {"RSA": ["2048"], "EC": ["P-256"]}."""
    grouped: dict[str, list[str]] = {}
    for value in profile.key_types:
        family, _, size = value.partition("-")
        if family == "RSA":
            grouped.setdefault("RSA", []).append(size)
        elif family == "EC":
            grouped.setdefault("EC", []).append(EC_CURVES.get(size, size))
        else:
            grouped.setdefault(family, [])
    return grouped


def profile_object(profile: CertificateProfile) -> dict[str, Any]:
    return {
        "id": profile.id,
        "name": profile.name,
        "description": profile.description,
        "terms": sorted(profile.terms or []),
        "keyTypes": key_types(profile),
        "useSecondaryOrgName": False,
    }


@route("/ssl/v1/types", methods=["GET"])
def types() -> Response:
    org = query_int("organizationId")
    if org is not None:
        organization_id, department_id = split_org_id(org)
        call(
            lambda: directory.get_place(
                actor=actor(), organization_id=organization_id, department_id=department_id
            ),
            Codes(not_found=(-1023, f"Organization '{org}' not found.")),
        )
    return answer([profile_object(p) for p in orders.enrollable_profiles(cert_type=CertType.SSL)])


@route("/ssl/v1/customFields", methods=["GET"])
def custom_fields() -> Response:
    # Certwright defines no custom fields, so none is mandatory (docs/api.md).
    return answer([])


# --- views of an order ------------------------------------------------------------------

DATE_FORMATS = {"US": "%m/%d/%Y", "EU": "%d/%m/%Y", "ISO": "%Y-%m-%d"}


def _date_format() -> str:
    chosen = (query_str("dateFormat") or "US").upper()
    return DATE_FORMATS.get(chosen, DATE_FORMATS["US"])


def colon_serial(serial_hex: str) -> str:
    text = serial_hex.upper()
    if len(text) % 2:
        text = "0" + text
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def _org_ref(organization_id: int, department_id: int | None) -> int:
    return department_api_id(department_id) if department_id else organization_id


def _usages(der: bytes) -> tuple[list[str], list[str]]:
    cert = x509.load_der_x509_certificate(der)
    usages: list[str] = []
    extended: list[str] = []
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        for name in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ):
            if getattr(ku, name):
                usages.append(name)
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        extended = [getattr(oid, "_name", None) or oid.dotted_string for oid in eku]
    except x509.ExtensionNotFound:
        pass
    return usages, extended


def summary(order: orders.Order) -> dict[str, Any]:
    cert = order.certificate
    item: dict[str, Any] = {
        "sslId": order.id,
        "commonName": order.current.common_name,
        "subjectAlternativeNames": list(cert.sans if cert is not None else order.current.sans),
    }
    if cert is not None:
        item["serialNumber"] = colon_serial(cert.serial_hex)
    return item


def details(order: orders.Order) -> dict[str, Any]:
    fmt = _date_format()
    req, root, cert = order.current, order.root, order.certificate
    status = order.status()

    def day(value: datetime | None) -> str | None:
        return value.strftime(fmt) if value is not None else None

    requester = order.requester
    data: dict[str, Any] = {
        "commonName": req.common_name,
        "sslId": order.id,
        "id": order.id,
        "orgId": _org_ref(req.organization_id, req.department_id),
        "status": status,
        "orderNumber": order.id,
        "backendCertId": str(order.id),
        "vendor": "Certwright",
        "certType": profile_object(req.profile),
        "validationType": "Organization Validation (OV)",
        "term": req.term_days,
        "owner": requester.login if requester else req.requester_email,
        "requester": requester.login if requester else req.requester_email,
        "requestedVia": order.requested_via,
        "externalRequester": ",".join(req.external_requesters),
        "comments": root.comments,
        "requested": day(root.created_at),
        "renewed": bool(order.renewals),
        "subjectAlternativeNames": list(cert.sans if cert is not None else req.sans),
        "customFields": [],
        "autoInstallDetails": {"state": "Not configured"},
        "autoRenewDetails": {
            "state": "Scheduled" if req.auto_renew else "Not scheduled",
            "daysBeforeExpiration": req.renew_days_before,
        },
        "suspendNotifications": False,
    }
    if requester is not None:
        data["ownerId"] = requester.id
        data["requesterId"] = requester.id
    if req.decided_at is not None and req.status != RequestStatus.DECLINED:
        data["approved"] = day(req.decided_at)
    if req.status == RequestStatus.DECLINED:
        data["declined"] = day(req.decided_at)
    if order.renewals:
        data["renewedDate"] = day(order.renewals[0].created_at)
    if cert is not None:
        usages, extended = _usages(cert.der)
        der_hashes = {
            "md5Hash": hashlib.md5(cert.der, usedforsecurity=False).hexdigest().upper(),
            "sha1Hash": hashlib.sha1(cert.der, usedforsecurity=False).hexdigest().upper(),
        }
        data.update(
            {
                "issued": day(cert.not_before),
                "expires": day(cert.not_after),
                "serialNumber": colon_serial(cert.serial_hex),
                "signatureAlg": cert.signature_algorithm,
                "keyAlgorithm": cert.key_algorithm,
                "keySize": cert.key_size,
                "keyType": f"{cert.key_algorithm} - {cert.key_size}",
                "keyUsages": usages,
                "extendedKeyUsages": extended,
                "certificateDetails": {
                    "issuer": cert.issuer_dn,
                    "subject": cert.subject_dn,
                    "subjectAltNames": ",".join(f"dNSName={s}" for s in cert.sans),
                    **der_hashes,
                },
            }
        )
        if cert.replaced_by_id is not None or status == "Replaced":
            data["replaced"] = day(cert.revoked_at or cert.not_after)
        if cert.revoked_at is not None:
            data["revoked"] = day(cert.revoked_at)
            data["reasonCode"] = REASON_NUMBERS.get(cert.revocation_reason, 0)
    return {k: v for k, v in data.items() if v is not None}


def _not_found(ssl_id: int) -> tuple[int, str]:
    return (-124, f"Wrong SSL certificate id {ssl_id}.")


def _get(ssl_id: int, action: str = "") -> orders.Order:
    return call(
        lambda: orders.get_order(actor=actor(), order_id=ssl_id, action=action),
        Codes(not_found=_not_found(ssl_id)),
    )


def _filters() -> orders.OrderFilter:
    org = query_int("orgId")
    organization_id, department_id = split_org_id(org) if org is not None else (None, None)
    return orders.OrderFilter(
        organization_id=organization_id,
        department_id=department_id,
        profile_id=query_int("sslTypeId"),
        requester=query_str("requester"),
        common_name=query_str("commonName"),
        san=query_str("subjectAlternativeName"),
        status=query_str("status"),
        serial=query_str("serialNumber"),
        external_requester=query_str("externalRequester"),
        issuer=query_str("issuer"),
        key_algorithm=query_str("keyAlgorithm"),
        key_param=query_str("keyParam"),
        requested_via=query_str("requestedVia"),
    )


@route("/ssl/v1", methods=["GET", "HEAD"])
def list_certificates() -> Response:
    paging_ = paging()
    found, total = orders.list_orders(
        actor=actor(),
        flt=_filters(),
        position=paging_.position,
        size=0 if request.method == "HEAD" else paging_.size,
    )
    if request.method == "HEAD":
        response = empty(200)
        response.headers["X-Total-Count"] = str(total)
        return response
    return page([summary(o) for o in found], total)


@route("/ssl/v1/<int:ssl_id>", methods=["GET"])
def certificate_details(ssl_id: int) -> Response:
    order = _get(ssl_id)
    orders.renewals_of([order])
    return answer(details(order))


# --- enroll -----------------------------------------------------------------------------


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in re.split(r"[,\s]+", value or "") if v.strip()]


_NAME = re.compile(r"(?:name|address) (\S+)")


class _EnrollCodes(Codes):
    """Enrollment's refusals: the CSR's own problems and its key's policy differ in SCM."""

    def translate(self, exc: DomainError) -> ApiError:
        if exc.field == "csr" and not exc.message.startswith(("The CSR", "Paste or upload")):
            return ApiError(400, -141, exc.message)
        if exc.field == "sans" and not exc.message.startswith("Invalid name"):
            found = _NAME.search(exc.message)
            name = found.group(1) if found else "?"
            return ApiError(400, -1010, f"Domain '{name}' is not allowed. {exc.message}")
        return super().translate(exc)


def _enroll_codes(org_ref: int | None) -> _EnrollCodes:
    return _EnrollCodes(
        by_class={orders.IdempotencyMismatch: (-1601, "")},
        by_field={
            **ENROLL_FIELDS,
            "NotFound:organization": (-1023, f"Organization '{org_ref}' not found."),
            "department": (-1023, f"Organization '{org_ref}' not found."),
        },
    )


ENROLL_FIELDS = {
    "NotFound:profile": (-111, "No certificate profile found by id."),
    "profile": (-39, "The certificate profile id is invalid!"),
    "term": (-36, "The validity period (term) is invalid for this certificate profile."),
    "csr": (-10, "The CSR cannot be decoded."),
    "common_name": (-1601, ""),
    "sans": (-1601, ""),
    "external_requesters": (-1601, "Field 'externalRequester' has invalid value."),
    "organization": (-1601, ""),
}


def place_of(org_ref: int) -> tuple[int, int | None]:
    organization_id, department_id = split_org_id(org_ref)
    if department_id is not None:
        organization_id = call(
            lambda: domain_views.organization_of_department(
                actor=actor(), department_id=department_id
            ),
            Codes(not_found=(-1023, f"Organization '{org_ref}' not found.")),
        )
    assert organization_id is not None
    return organization_id, department_id


def _custom_fields(data: dict[str, Any]) -> None:
    fields = data.get("customFields")
    if fields is None:
        return
    if not isinstance(fields, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) for f in fields
    ):
        invalid("customFields", "Expected an array of {name, value} objects.")


def _body_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@route("/ssl/v1/enroll", methods=["POST"])
def enroll() -> Response:
    data = body()
    org_ref = get_int(data, "orgId", required=True)
    csr = get_str(data, "csr", required=True)
    profile_id = get_int(data, "certType", required=True)
    term = get_int(data, "term", required=True)
    assert org_ref is not None and csr is not None and profile_id is not None and term is not None
    sans = get_str(data, "subjAltNames")
    comments = get_str(data, "comments", max_length=1024) or ""
    external = get_str(data, "externalRequester", max_length=512)
    for name in ("dcvMode", "dcvEmail"):
        get_str(data, name)
    _custom_fields(data)
    organization_id, department_id = place_of(org_ref)
    admin = actor()
    request_data = enrollment.RequestData(
        organization_id=organization_id,
        department_id=department_id,
        profile_id=profile_id,
        term_days=term,
        mode=RequestMode.CSR,
        csr=csr.encode("utf-8"),
        sans=_split(sans),
        requester_email=admin.email,
        external_requesters=_split(external),
        comments=comments,
        eula_accepted=True,
        cert_type=CertType.SSL,
    )
    key = request.headers.get("Idempotency-Key", "").strip() or None
    order_id, _ = call(
        lambda: orders.enroll(
            actor=admin, data=request_data, body_hash=_body_hash(data), idempotency_key=key
        ),
        _enroll_codes(org_ref),
    )
    commit()
    return answer({"sslId": order_id, "renewId": orders.renew_token(order_id)})


# --- collect ----------------------------------------------------------------------------

COLLECT_CODES_BY_CLASS = {
    orders.NotCollectable: (-183, "Certificate is not collectable."),
    orders.RevokedOrder: (-110, "Certificate has been revoked and cannot be downloaded."),
    orders.UnknownFormat: (-126, ""),
}


def _collect(ssl_id: int, fmt: str) -> Response:
    download, cert = call(
        lambda: orders.collect(actor=actor(), order_id=ssl_id, fmt=fmt),
        Codes(not_found=_not_found(ssl_id), by_class=COLLECT_CODES_BY_CLASS),
    )
    charset = "ISO-8859-1" if fmt.lower() == "bin" else "UTF-8"
    return Response(
        download.content,
        status=200,
        content_type=f"application/octet-stream;charset={charset}",
        headers={
            "Content-Disposition": content_disposition(f"{cert.common_name}.{download.extension}")
        },
    )


@route("/ssl/v1/collect/<int:ssl_id>/<fmt>", methods=["GET"])
def collect_format(ssl_id: int, fmt: str) -> Response:
    return _collect(ssl_id, fmt)


@route("/ssl/v1/collect/<int:ssl_id>", methods=["GET"])
def collect(ssl_id: int) -> Response:
    return _collect(ssl_id, request.args.get("format") or "base64")


# --- renew, replace, revoke -------------------------------------------------------------


@route("/ssl/v1/renewById/<int:ssl_id>", methods=["POST"])
def renew(ssl_id: int) -> Response:
    data = body()
    csr = get_str(data, "csr")
    for name in ("dcvMode", "dcvEmail"):
        get_str(data, name)
    new = call(
        lambda: orders.renew(
            actor=actor(), order_id=ssl_id, csr=csr.encode("utf-8") if csr else None
        ),
        Codes(
            default=-180,
            not_found=_not_found(ssl_id),
            by_class={orders.NotIssued: (-130, "")},
            by_field={"csr": (-10, "The CSR cannot be decoded."), "sans": (-1010, "")},
        ),
    )
    commit()
    return answer({"sslId": new.id})


@route("/ssl/v1/replace/<int:ssl_id>", methods=["POST"])
def replace(ssl_id: int) -> Response:
    data = body()
    csr = get_str(data, "csr", required=True)
    assert csr is not None
    common_name = get_str(data, "commonName", max_length=64)
    if common_name is not None and not common_name.strip():
        invalid("commonName", "1 to 64 characters, or null to keep it.")
    sans = get_str_list(data, "subjectAlternativeNames")
    reason = get_str(data, "reason", max_length=512) or ""
    for name in ("dcvMode", "dcvEmail"):
        get_str(data, name)
    call(
        lambda: orders.replace(
            actor=actor(),
            order_id=ssl_id,
            csr=csr.encode("utf-8"),
            common_name=common_name,
            sans=sans,
            reason=reason,
        ),
        _EnrollCodes(
            not_found=_not_found(ssl_id),
            by_class={orders.NotIssued: (-130, "")},
            by_field=_enroll_codes(None).by_field,
        ),
    )
    commit()
    return empty(204)


REVOKE_BY_CLASS: dict[type[DomainError], tuple[int, str]] = {
    orders.AlreadyRevoked: (-159, "Your certificate already revoked"),
    orders.NotIssued: (-102, "Only issued certificates could be revoked."),
    Conflict: (-159, "Your certificate already revoked"),
}


def _revoke_fields(data: dict[str, Any]) -> tuple[str, int]:
    reason = get_str(data, "reason", required=True, max_length=512)
    assert reason is not None
    code = get_int(data, "reasonCode")
    return reason, 0 if code is None else code


@route("/ssl/v1/revoke/<int:ssl_id>", methods=["POST"])
def revoke(ssl_id: int) -> Response:
    reason, code = _revoke_fields(body())
    call(
        lambda: orders.revoke_by_id(
            actor=actor(), order_id=ssl_id, reason_code=code, reason=reason
        ),
        Codes(not_found=_not_found(ssl_id), by_class=REVOKE_BY_CLASS),
    )
    commit()
    return empty(204)


@route("/ssl/v1/revoke/serial/<serial>", methods=["POST"])
def revoke_by_serial(serial: str) -> Response:
    reason, code = _revoke_fields(body())
    call(
        lambda: orders.revoke_by_serial(
            actor=actor(), serial=serial, reason_code=code, reason=reason
        ),
        Codes(
            not_found=(-124, f"Wrong SSL certificate serial number {serial}."),
            by_class=REVOKE_BY_CLASS,
        ),
    )
    commit()
    return empty(204)
