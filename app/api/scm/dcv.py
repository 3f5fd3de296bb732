"""SCM DCV service (contract §9): domain control validation by CNAME."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.api.scm.base import (
    Codes,
    actor,
    answer,
    body,
    call,
    commit,
    get_str,
    invalid,
    page,
    paging,
    query_int,
    query_str,
    route,
    slice_page,
    split_org_id,
)
from app.services.structure import dcv

DCV_CODES = Codes(
    by_class={
        dcv.UnknownDomain: (-727, ""),
        dcv.NotHighLevel: (-723, ""),
        dcv.WrongState: (-724, ""),
    },
    by_field={"domain": (-1601, "Field 'domain' has invalid value.")},
)


def _domain() -> str:
    name = get_str(body(), "domain", required=True)
    assert name is not None
    return name


def _day(value: Any) -> str | None:
    return value.date().isoformat() if value is not None else None


@route("/dcv/v1/validation", methods=["GET"])
def list_validations() -> Response:
    paging_ = paging()
    found = dcv.list_validations(actor=actor())
    name = query_str("domain")
    status = query_str("dcvStatus")
    order = query_str("orderStatus")
    org = query_int("org")
    dept = query_int("department")
    expires_in = query_int("expiresIn", minimum=0, maximum=36500)
    if name is not None:
        found = [v for v in found if name.lower().rstrip(".") in v.domain.name]
    if status is not None:
        found = [v for v in found if v.status == status.upper()]
    if order is not None:
        found = [v for v in found if v.order_status == order.upper()]
    if org is not None or dept is not None:
        organization_id = split_org_id(org)[0] if org is not None else None
        department_id = split_org_id(dept)[1] if dept is not None else None
        if dept is not None and department_id is None:
            invalid("department", "Expected a department id (1000000 + id).")
        found = [
            v
            for v in found
            if any(
                (organization_id is None or d.organization_id == organization_id)
                and (department_id is None or d.department_id == department_id)
                for d in v.domain.delegations
            )
        ]
    if expires_in is not None:
        found = dcv.expiring_within(found, expires_in)
    items = [
        {
            "domain": v.domain.name,
            "dcvStatus": v.status,
            "dcvOrderStatus": v.order_status,
            "dcvMethod": v.method,
            "dcvOrderMethod": v.order_method or None,
            "expirationDate": _day(v.expires),
        }
        for v in slice_page(found, paging_)
    ]
    return page([{k: x for k, x in i.items() if x is not None} for i in items], len(found))


@route("/dcv/v1/validation/status", methods=["POST"])
def validation_status() -> Response:
    name = _domain()
    v = call(lambda: dcv.validation_of(dcv.find_domain(actor=actor(), name=name)), DCV_CODES)
    data = {
        "status": v.status,
        "orderStatus": v.order_status,
        "validationDate": _day(v.validated),
        "expirationDate": _day(v.expires),
        "orderMode": v.order_method or v.method,
        "host": v.host,
        "point": v.point,
    }
    return answer({k: x for k, x in data.items() if x is not None})


@route("/dcv/v1/validation/start/domain/cname", methods=["POST"])
def start_cname() -> Response:
    name = _domain()
    v = call(lambda: dcv.start_cname(actor=actor(), name=name), DCV_CODES)
    commit()
    return answer({"host": v.host, "point": v.point})


@route("/dcv/v1/validation/submit/domain/cname", methods=["POST"])
def submit_cname() -> Response:
    name = _domain()
    v, passed, _ = call(lambda: dcv.submit_cname(actor=actor(), name=name), DCV_CODES)
    commit()
    status = "VALIDATED" if passed else "NOT_VALIDATED"
    words = "Validated" if passed else "Not Validated"
    return answer(
        {
            "status": status,
            "orderStatus": v.order_status,
            "message": f"DCV status: {words}; DCV order status: Submitted",
        }
    )
