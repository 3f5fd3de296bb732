"""SCM report service (contract §7): POST /report/v1/{report} with a JSON filter."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any

from flask import Response

from app.api.scm.base import (
    ApiError,
    Codes,
    actor,
    answer,
    body,
    call,
    department_api_id,
    get_int,
    get_str,
    invalid,
    route,
)
from app.api.scm.ssl import colon_serial
from app.extensions import db
from app.models import CertStatus, CertType, Person
from app.services.errors import NotFound
from app.services.reports import records
from app.services.structure import dcv, directory, domain_views

SSL_STATUSES = {
    0: (),
    1: ("Requested", "Applied"),
    2: ("Issued",),
    3: ("Revoked",),
    4: ("Expired",),
}
SSL_DATE_ATTRIBUTES = {2: "revoked", 3: "expires", 4: "requested", 5: "issued"}
CLIENT_STATUSES = {
    0: (),
    2: (CertStatus.ISSUED,),
    3: (CertStatus.REVOKED,),
    4: (CertStatus.EXPIRED,),
    5: (),
    6: (),
}
CLIENT_DATE_ATTRIBUTES = {0: "enrolled", 1: "issued", 2: "revoked", 3: "expires"}
DEVICE_STATUSES = {**{k: v for k, v in CLIENT_STATUSES.items() if k in (0, 2, 3, 4)}, 8: (), 9: ()}
DEVICE_DATE_ATTRIBUTES = {2: "revoked", 3: "expires", 4: "enrolled", 5: "issued"}


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


def _when(data: dict[str, Any], name: str, *, end: bool) -> datetime | None:
    text = get_str(data, name)
    if text is None or not text.strip():
        return None
    value = text.strip()
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").date()
            return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        invalid(name, "Expected YYYY-MM-DD or an ISO-8601 timestamp.")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _period(data: dict[str, Any]) -> records.Period:
    start, end = _when(data, "from", end=False), _when(data, "to", end=True)
    if start is not None and end is not None and start > end:
        invalid("from", "'from' must precede 'to'.")
    return records.Period(start, end)


def _org_ids(data: dict[str, Any]) -> list[int]:
    value = data.get("organizationIds")
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        invalid("organizationIds", "Expected an array of organization ids.")
    for organization_id in dict.fromkeys(value):
        # A filter naming an organization the admin cannot see is refused like a missing
        # one (and the look recorded), rather than answered with an empty report.
        try:
            directory.get_place(actor=actor(), organization_id=organization_id, department_id=None)
        except NotFound:
            invalid("organizationIds", f"No such organization: {organization_id}.")
    return list(value)


def _choice(data: dict[str, Any], name: str, allowed: dict[int, Any]) -> Any:
    value = get_int(data, name)
    if value is None:
        return None
    if value not in allowed:
        invalid(name, f"Expected one of {', '.join(str(k) for k in allowed)}.")
    return allowed[value]


def _activity(data: dict[str, Any]) -> list[dict[str, Any]]:
    items = call(lambda: records.activity(actor=actor(), period=_period(data)), Codes())
    return [
        {
            "id": item.event.seq,
            "guid": item.event.hash[:32],
            "action": {
                "id": zlib.crc32(item.event.action.encode()) & 0x7FFFFFFF,
                "actionName": item.event.action,
            },
            "admin": {
                "login": item.event.actor,
                "fullName": item.admin.full_name if item.admin else "",
                "email": item.admin.email if item.admin else "",
            },
            "accessMethod": records.access_method(item),
            "date": iso(item.event.at),
            "address": item.event.ip,
            "description": " ".join(p for p in (item.event.object_label, item.event.message) if p),
        }
        for item in items
    ]


def _ssl(data: dict[str, Any]) -> list[dict[str, Any]]:
    statuses = _choice(data, "certificateStatus", SSL_STATUSES) or ()
    attribute = _choice(data, "certificateDateAttribute", SSL_DATE_ATTRIBUTES)
    period = _period(data)
    get_str(data, "certificateRequestSource")
    serial_format = get_str(data, "serialNumberFormat")
    found = records.ssl_orders(
        actor=actor(),
        organization_ids=_org_ids(data),
        common_name=get_str(data, "commonName"),
        external_requester=get_str(data, "externalRequester"),
        statuses=statuses,
        date_attribute=attribute,
        period=period,
    )
    items = []
    for order in found:
        req, cert = order.current, order.certificate
        requester = order.requester
        serial = ""
        if cert is not None:
            serial = colon_serial(cert.serial_hex)
            if serial_format and serial_format.upper() == "HEX":
                serial = serial.replace(":", "")
        item = {
            "id": order.id,
            "commonName": req.common_name,
            "orgId": department_api_id(req.department_id)
            if req.department_id
            else req.organization_id,
            "organizationName": req.organization.name,
            "status": order.status(),
            "type": req.profile.name,
            "typeId": req.profile_id,
            "term": req.term_days,
            "subjAltNames": ",".join(cert.sans if cert else req.sans),
            "serialNumber": serial,
            "requester": requester.login if requester else req.requester_email,
            "requestedVia": order.requested_via,
            "requested": iso(order.root.created_at),
            "expires": iso(cert.not_after) if cert else None,
            "revoked": iso(cert.revoked_at) if cert else None,
            "backendCertId": str(order.id),
            "orderNumber": order.id,
            "publicKeyType": req.key_type,
            "customFields": [],
        }
        items.append({k: v for k, v in item.items() if v is not None})
    return items


def _client(data: dict[str, Any]) -> list[dict[str, Any]]:
    statuses = _choice(data, "certificateStatus", CLIENT_STATUSES) or ()
    attribute = _choice(data, "certificateDateAttribute", CLIENT_DATE_ATTRIBUTES)
    found = records.certificates(
        actor=actor(),
        cert_type=CertType.CLIENT,
        organization_ids=_org_ids(data),
        statuses=statuses,
        date_attribute=attribute,
        period=_period(data),
    )
    items = []
    for cert in found:
        email = next((s for s in cert.sans if "@" in s), "")
        # The person the certificate was issued to (§5), else its CN and first address.
        person = (
            db.session.get(Person, cert.request.person_id)
            if cert.request is not None and cert.request.person_id is not None
            else None
        )
        who = (
            {"name": person.full_name, "email": person.email, "guid": str(person.id)}
            if person is not None
            else {"name": cert.common_name, "email": email, "guid": ""}
        )
        items.append(
            {
                "id": cert.id,
                "person": who,
                "organization": {
                    "id": cert.organization_id,
                    "name": cert.organization.name if cert.organization else "",
                },
                "subject": cert.subject_dn,
                "email": email,
                "orderNumber": cert.request_id or cert.id,
                "backendCertId": str(cert.request_id or cert.id),
                "enrolled": iso(cert.created_at),
                "expire": iso(cert.not_after),
                "enrollType": "Admin" if cert.request_id else "Import",
            }
        )
    return items


def _device(data: dict[str, Any]) -> list[dict[str, Any]]:
    statuses = _choice(data, "certificateStatus", DEVICE_STATUSES) or ()
    attribute = _choice(data, "certificateDateAttribute", DEVICE_DATE_ATTRIBUTES)
    found = records.certificates(
        actor=actor(),
        cert_type=CertType.DEVICE,
        organization_ids=_org_ids(data),
        statuses=statuses,
        date_attribute=attribute,
        period=_period(data),
    )
    return [
        {
            "id": cert.id,
            "commonName": cert.common_name,
            "deviceCertStatus": cert.status.value,
            "subject": cert.subject_dn,
            "serialNumber": colon_serial(cert.serial_hex),
            "expire": iso(cert.not_after),
        }
        for cert in found
    ]


def _domains(data: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    for view in domain_views.list_domains(actor=actor()):
        validation = dcv.validation_of(view.domain)
        item = {
            "id": view.domain.id,
            "name": view.domain.name,
            "status": "Active" if view.domain.active else "Suspended",
            "requested": iso(view.domain.created_at),
            "dcvStatus": validation.status,
            "stickyUntil": iso(validation.expires),
        }
        items.append({k: v for k, v in item.items() if v is not None})
    return items


REPORTS: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "activity": _activity,
    "ssl-certificates": _ssl,
    "client-certificates": _client,
    "device-certificates": _device,
    "domains": _domains,
}


@route("/report/v1/<path:report>", methods=["POST"])
def run_report(report: str) -> Response:
    build = REPORTS.get(report.strip("/"))
    if build is None:
        raise ApiError(404, -1, f"Unknown report '{report.strip('/')}'.")
    return answer({"statusCode": 0, "reports": build(body())})
