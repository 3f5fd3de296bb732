"""SCM S/MIME (client certificate) service (contract §4): profiles, list, by person,
enroll, collect, renew, replace, revoke and details. A ``backendCertId`` (= ``orderNumber``,
= ``id``) is an order of a client certificate (app/services/certificates/orders.py), made
for a person (app/services/persons): the console's enrollment, approval, issuance,
renewal and revocation, so scope, validation and audit are the console's."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from flask import Response, request

from app.api.scm.base import (
    ApiError,
    Codes,
    actor,
    answer,
    body,
    call,
    commit,
    empty,
    get_bool,
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
from app.api.scm.ssl import (
    ENROLL_FIELDS,
    REVOKE_BY_CLASS,
    _body_hash,
    _custom_fields,
    _date_format,
    _EnrollCodes,
    _org_ref,
    _revoke_fields,
    colon_serial,
    place_of,
    profile_object,
)
from app.downloads import content_disposition
from app.models import CertType, Person, RequestMode, ValidationType
from app.services.certificates import enrollment, orders
from app.services.errors import DomainError, NotFound
from app.services.persons import persons, registration
from app.services.structure import directory

# Our order status words -> SCM's client-certificate states (lower case, contract §4).
STATES = {
    "Requested": "requested",
    "Applied": "requested",
    "Issued": "issued",
    "Revoked": "revoked",
    "Expired": "expired",
    "Replaced": "expired",  # renewed: the renewal is the valid one
    "Declined": "rejected",
    "Rejected": "rejected",
}


def _not_found(order_id: int | str) -> tuple[int, str]:
    return (-1104, f"Invalid order number {order_id}")


def _get(order_id: int, action: str = "") -> orders.Order:
    return call(
        lambda: orders.get_order(
            actor=actor(), order_id=order_id, cert_type=CertType.CLIENT, action=action
        ),
        Codes(not_found=_not_found(order_id)),
    )


@route("/smime/v1/types", methods=["GET"])
def smime_types() -> Response:
    org = query_int("organizationId")
    if org is not None:
        organization_id, department_id = split_org_id(org)
        call(
            lambda: directory.get_place(
                actor=actor(), organization_id=organization_id, department_id=department_id
            ),
            Codes(not_found=(-1023, f"Organization '{org}' not found.")),
        )
    return answer(
        [profile_object(p) for p in orders.enrollable_profiles(cert_type=CertType.CLIENT)]
    )


@route("/smime/v1/customFields", methods=["GET"])
def smime_custom_fields() -> Response:
    return answer([])  # Certwright defines no custom fields (docs/api.md)


# --- views --------------------------------------------------------------------------------


def _expires(order: orders.Order) -> str | None:
    cert = order.certificate
    return cert.not_after.strftime("%Y-%m-%d") if cert is not None else None


def item(order: orders.Order) -> dict[str, Any]:
    cert = order.certificate
    data: dict[str, Any] = {
        "id": order.id,
        "state": STATES.get(order.status(), "requested"),
        "certificateDetails": {"subject": cert.subject_dn if cert else ""},
        "orderNumber": order.id,
        "backendCertId": str(order.id),
        "comments": order.root.comments,
    }
    if cert is not None:
        data["serialNumber"] = colon_serial(cert.serial_hex)
        data["expires"] = _expires(order)
    return data


def details(order: orders.Order) -> dict[str, Any]:
    fmt = _date_format()
    req, root, cert = order.current, order.root, order.certificate

    def day(value: datetime | None) -> str | None:
        return value.strftime(fmt) if value is not None else None

    data: dict[str, Any] = {
        "commonName": req.common_name,
        "id": order.id,
        "orgId": _org_ref(req.organization_id, req.department_id),
        "status": STATES.get(order.status(), "requested"),
        "orderNumber": order.id,
        "backendCertId": str(order.id),
        "certType": profile_object(req.profile),
        "term": req.term_days,
        "requestedVia": order.requested_via,
        "requested": day(root.created_at),
        "subjectAlternativeNames": list(cert.sans if cert is not None else req.sans),
        "comments": root.comments,
    }
    if req.person_id is not None:
        data["personId"] = req.person_id
    if cert is not None:
        data.update(
            {
                "issued": day(cert.not_before),
                "expires": day(cert.not_after),
                "serialNumber": colon_serial(cert.serial_hex),
                "keyType": f"{cert.key_algorithm} - {cert.key_size}",
                "certificateDetails": {
                    "issuer": cert.issuer_dn,
                    "subject": cert.subject_dn,
                    "subjectAltNames": ",".join(f"rfc822Name={s}" for s in cert.sans),
                    "md5Hash": hashlib.md5(cert.der, usedforsecurity=False).hexdigest().upper(),
                    "sha1Hash": hashlib.sha1(cert.der, usedforsecurity=False).hexdigest().upper(),
                },
            }
        )
        if cert.revoked_at is not None:
            data["revoked"] = day(cert.revoked_at)
    return {k: v for k, v in data.items() if v is not None}


def _person_of(email: str) -> Person | None:
    """The person with this e-mail if the caller may see them (None otherwise)."""
    person = persons.find_by_email(email)
    if person is None:
        return None
    try:
        return persons.get_person(actor=actor(), person_id=person.id)
    except NotFound:
        return None


@route("/smime/v1", methods=["GET"])
def list_smime() -> Response:
    paging_ = paging()
    person_id = query_int("personId")
    email = query_str("email")
    if email is not None:
        person = _person_of(email)
        if person is None or (person_id is not None and person_id != person.id):
            return page([], 0)
        person_id = person.id
    backend = query_str("backendCertId")
    state = (query_str("state") or "").strip().lower() or None
    flt = orders.OrderFilter(
        profile_id=query_int("certTypeId"),
        serial=query_str("serialNumber"),
        person_id=person_id,
    )
    if backend is None and state is None:
        found, total = orders.list_orders(
            actor=actor(),
            cert_type=CertType.CLIENT,
            flt=flt,
            position=paging_.position,
            size=paging_.size,
        )
        return page([item(o) for o in found], total)
    everything, _ = orders.list_orders(actor=actor(), cert_type=CertType.CLIENT, flt=flt)
    matching = [
        o
        for o in everything
        if (backend is None or backend.strip() == str(o.id))
        and (state is None or STATES.get(o.status(), "requested") == state)
    ]
    end = None if paging_.size is None else paging_.position + paging_.size
    return page([item(o) for o in matching[paging_.position : end]], len(matching))


@route("/smime/v2/byPersonEmail/<path:email>", methods=["GET"])
def by_person_email(email: str) -> Response:
    person = _person_of(unquote(email).strip())
    if person is None:
        return answer([])
    found, _ = orders.list_orders(
        actor=actor(), cert_type=CertType.CLIENT, flt=orders.OrderFilter(person_id=person.id)
    )
    return answer([item(o) for o in found])


@route("/smime/v1/<int:order_id>", methods=["GET"])
def smime_details(order_id: int) -> Response:
    return answer(details(_get(order_id)))


# --- enroll -------------------------------------------------------------------------------

PERSON_FIELDS = {
    "first_name": (-1601, "Field 'firstName' has invalid value."),
    "middle_name": (-1601, "Field 'middleName' has invalid value."),
    "last_name": (-1601, "Field 'lastName' has invalid value."),
    "alt_emails": (-1601, "Field 'secondaryEmails' has invalid value."),
    "phone": (-1601, "Field 'phone' has invalid value."),
}


_ADDRESS = re.compile(r"[^\s@]+@(\S+)")


class _SmimeEnrollCodes(_EnrollCodes):
    """Enrollment's refusals with the S/MIME codes: profile -172, e-mail domain -1010."""

    def translate(self, exc: DomainError) -> ApiError:
        if exc.field == "email" and "delegated" in exc.message:
            found = _ADDRESS.search(exc.message)
            domain = found.group(1).rstrip(".") if found else "?"
            return ApiError(400, -1010, f"Domain '{domain}' is not allowed. {exc.message}")
        if exc.field == "email":
            return ApiError(400, -1601, f"Field 'email' has invalid value. {exc.message}")
        return super().translate(exc)


def _smime_codes(org_ref: int) -> _SmimeEnrollCodes:
    return _SmimeEnrollCodes(
        by_class={orders.IdempotencyMismatch: (-1601, "")},
        by_field={
            **ENROLL_FIELDS,
            **PERSON_FIELDS,
            "NotFound:profile": (-172, "The Client Certificate Profile is invalid!"),
            "profile": (-172, "The Client Certificate Profile is invalid!"),
            "NotFound:organization": (-1023, f"Organization '{org_ref}' not found."),
            "department": (-1023, f"Organization '{org_ref}' not found."),
        },
    )


def _enroll_person(
    data: dict[str, Any], org_ref: int, organization_id: int, department_id: int | None
) -> Person:
    """The person with the e-mail (in the caller's scope and in orgId), or a new one
    (validationType STANDARD) when nobody has that address."""
    email = get_str(data, "email", required=True)
    first = get_str(data, "firstName", required=True)
    last = get_str(data, "lastName", required=True)
    middle = get_str(data, "middleName") or ""
    phone = get_str(data, "phone") or ""
    alts = get_str_list(data, "secondaryEmails") or []
    for name in ("commonName", "eppn", "upn"):
        get_str(data, name, max_length=256)
    assert email and first and last
    existing = persons.find_by_email(email)
    if existing is None:
        return call(
            lambda: persons.create_person(
                actor=actor(),
                data=persons.PersonData(
                    organization_id=organization_id,
                    department_id=department_id,
                    email=email,
                    first_name=first,
                    middle_name=middle,
                    last_name=last,
                    alt_emails=alts,
                    validation_type=ValidationType.STANDARD,
                    phone=phone,
                ),
            ),
            _smime_codes(org_ref),
        )
    person = _person_of(email)
    if person is None or (person.organization_id, person.department_id) != (
        organization_id,
        department_id,
    ):
        invalid(
            "email",
            f"The email address {email.strip().lower()} already belongs to a person of another organization or department.",
        )
    return person


@route("/smime/v1/enroll", methods=["POST"])
def smime_enroll() -> Response:
    data = body()
    org_ref = get_int(data, "orgId", required=True)
    csr = get_str(data, "csr", required=True)
    profile_id = get_int(data, "certType", required=True)
    term = get_int(data, "term", required=True)
    assert org_ref is not None and csr is not None and profile_id is not None and term is not None
    comments = get_str(data, "comments", max_length=1024) or ""
    _custom_fields(data)
    organization_id, department_id = place_of(org_ref)
    person = _enroll_person(data, org_ref, organization_id, department_id)
    admin = actor()
    request_data = enrollment.RequestData(
        organization_id=organization_id,
        department_id=department_id,
        profile_id=profile_id,
        term_days=term,
        mode=RequestMode.CSR,
        csr=csr.encode("utf-8"),
        sans=person.emails,
        requester_email=admin.email,
        comments=comments,
        eula_accepted=True,
        cert_type=CertType.CLIENT,
        person_id=person.id,
        smime_subject=call(lambda: registration.smime_subject(person), _smime_codes(org_ref)),
    )
    key = request.headers.get("Idempotency-Key", "").strip() or None
    order_id, _ = call(
        lambda: orders.enroll(
            actor=admin, data=request_data, body_hash=_body_hash(data), idempotency_key=key
        ),
        _smime_codes(org_ref),
    )
    commit()
    return answer({"orderNumber": order_id, "backendCertId": str(order_id)})


# --- collect ------------------------------------------------------------------------------


def _order_number(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise ApiError(404, *_not_found(text))
    return int(value)


COLLECT_ERRORS = {
    -183: (-183, "Certificate is not collectable."),
    -192: (-192, "The Certificate has been revoked!"),
}


@route("/smime/v1/collect/<backend_cert_id>", methods=["GET"])
def smime_collect(backend_cert_id: str) -> Response:
    order_id = _order_number(backend_cert_id)
    fmt = request.args.get("format") or "base64"
    try:
        download, cert = call(
            lambda: orders.collect(
                actor=actor(), order_id=order_id, fmt=fmt, cert_type=CertType.CLIENT
            ),
            Codes(
                not_found=_not_found(backend_cert_id),
                by_class={
                    orders.NotCollectable: COLLECT_ERRORS[-183],
                    orders.RevokedOrder: COLLECT_ERRORS[-192],
                    orders.UnknownFormat: (-126, ""),
                },
            ),
        )
    except ApiError as exc:
        # The contract fixes these two descriptions exactly (§4.5).
        exc.description = COLLECT_ERRORS.get(exc.code, (0, exc.description))[1]
        raise

    charset = "ISO-8859-1" if fmt.lower() == "bin" else "UTF-8"
    return Response(
        download.content,
        status=200,
        content_type=f"application/octet-stream;charset={charset}",
        headers={
            "Content-Disposition": content_disposition(f"{cert.common_name}.{download.extension}")
        },
    )


# --- renew, replace, revoke ---------------------------------------------------------------


def _renew(order: orders.Order) -> Response:
    new = call(
        lambda: orders.renew(actor=actor(), order_id=order.id, cert_type=CertType.CLIENT),
        Codes(
            not_found=_not_found(order.id),
            by_class={orders.NotIssued: (-130, "")},
            by_field={"sans": (-1010, "")},
        ),
    )
    commit()
    return answer({"orderNumber": new.id, "backendCertId": str(new.id)})


@route("/smime/v2/renew/order/<backend_cert_id>", methods=["POST"])
def smime_renew_by_order(backend_cert_id: str) -> Response:
    return _renew(_get_text(backend_cert_id, "renew"))


def _get_text(backend_cert_id: str, action: str) -> orders.Order:
    order_id = _order_number(backend_cert_id)
    return call(
        lambda: orders.get_order(
            actor=actor(), order_id=order_id, cert_type=CertType.CLIENT, action=action
        ),
        Codes(not_found=_not_found(backend_cert_id)),
    )


@route("/smime/v2/renew/serial/<serial>", methods=["POST"])
def smime_renew_by_serial(serial: str) -> Response:
    order = call(
        lambda: orders.order_of_serial(
            actor=actor(), serial=serial, cert_type=CertType.CLIENT, action="renew"
        ),
        Codes(not_found=(-1104, f"Invalid serial number {serial}")),
    )
    return _renew(order)  # the order's current certificate


@route("/smime/v2/replace/order/<backend_cert_id>", methods=["POST"])
def smime_replace(backend_cert_id: str) -> Response:
    data = body()
    csr = get_str(data, "csr", required=True)
    assert csr is not None
    reason = get_str(data, "reason", max_length=512) or ""
    revoke = get_bool(data, "revoke")
    if revoke is False:
        invalid(
            "revoke",
            "Certwright always revokes the replaced certificate (superseded) once the new one is issued.",
        )
    order = _get_text(backend_cert_id, "replace")
    call(
        lambda: orders.replace(
            actor=actor(),
            order_id=order.id,
            csr=csr.encode("utf-8"),
            reason=reason,
            cert_type=CertType.CLIENT,
        ),
        _SmimeEnrollCodes(
            not_found=_not_found(backend_cert_id),
            by_class={orders.NotIssued: (-130, "")},
            by_field=_smime_codes(0).by_field,
        ),
    )
    commit()
    return empty(204)


@route("/smime/v1/revoke/order/<backend_cert_id>", methods=["POST"])
def smime_revoke_by_order(backend_cert_id: str) -> Response:
    reason, code = _revoke_fields(body())
    order_id = _order_number(backend_cert_id)
    call(
        lambda: orders.revoke_by_id(
            actor=actor(),
            order_id=order_id,
            reason_code=code,
            reason=reason,
            cert_type=CertType.CLIENT,
        ),
        Codes(not_found=_not_found(backend_cert_id), by_class=REVOKE_BY_CLASS),
    )
    commit()
    return empty(204)


@route("/smime/v1/revoke", methods=["POST"])
def smime_revoke_by_email() -> Response:
    data = body()
    email = get_str(data, "email", required=True)
    reason, _ = _revoke_fields(data)
    assert email is not None
    none = (-1108, f"No valid client certificates found for {email.strip()}.")
    person = _person_of(email)
    if person is None:
        raise ApiError(400, *none)
    call(
        lambda: persons.revoke_certificates(actor=actor(), person_id=person.id, reason=reason),
        Codes(by_class={persons.NoValidCertificates: none}),
    )
    commit()
    return empty(204)
