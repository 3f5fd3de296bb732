"""SCM domain service (contract §2): domains, their delegations, activate/suspend."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.api.scm.base import (
    ApiError,
    Codes,
    actor,
    answer,
    body,
    call,
    commit,
    created,
    department_api_id,
    empty,
    get_bool,
    get_int,
    get_str,
    get_str_list,
    invalid,
    missing,
    page,
    paging,
    query_int,
    query_str,
    route,
    slice_page,
    split_org_id,
)
from app.models import CertType, Delegation, DelegationStatus, Domain
from app.models.types import utcnow
from app.services.errors import Conflict
from app.services.structure import domain_views, domains

TYPES_BY_NAME = {"SSL": CertType.SSL, "SMIME": CertType.CLIENT, "CodeSign": CertType.CODE_SIGNING}
NAMES_BY_TYPE = {t: n for n, t in TYPES_BY_NAME.items()}
DELEGATION_STATUS = {
    DelegationStatus.APPROVED: "ACTIVE",
    DelegationStatus.REQUESTED: "REQUESTED",
    DelegationStatus.REJECTED: "REJECTED",
}


def _types(values: list[str] | None, name: str = "certTypes") -> set[CertType]:
    if values is None:
        missing(name)
    chosen = set()
    for value in values:
        if value not in TYPES_BY_NAME:
            invalid(name, f"'{value}' is not one of SSL, SMIME, CodeSign.")
        chosen.add(TYPES_BY_NAME[value])
    return chosen


def _org_id(data: dict[str, Any]) -> tuple[int, int | None]:
    """(organization id, department id) of an ``orgId``; a department names its org."""
    value = get_int(data, "orgId", required=True)
    assert value is not None
    organization_id, department_id = split_org_id(value)
    if department_id is not None:
        organization_id = call(
            lambda: domain_views.organization_of_department(
                actor=actor(), department_id=department_id
            ),
            Codes(not_found=(-1023, f"Organization '{value}' not found.")),
        )
    assert organization_id is not None
    return organization_id, department_id


def _delegation(d: Delegation) -> dict[str, Any]:
    return {
        "orgId": department_api_id(d.department_id) if d.department_id else d.organization_id,
        "certTypes": [NAMES_BY_TYPE[t] for t in d.types() if t in NAMES_BY_TYPE],
        "domainCertificateRequestPrivileges": list(
            d.request_privileges or domains.DEFAULT_REQUEST_PRIVILEGES
        ),
        "status": DELEGATION_STATUS[d.status],
    }


def details(view: domain_views.DomainView) -> dict[str, Any]:
    domain = view.domain
    now = utcnow()
    delegations = view.delegations
    requested = bool(delegations) and all(
        d.status == DelegationStatus.REQUESTED for d in delegations
    )
    dcv = domain_views.dcv_state(domain, now)
    data: dict[str, Any] = {
        "id": domain.id,
        "name": domain.name,
        "description": domain.description,
        "delegationStatus": "REQUESTED" if requested else "ACTIVE",
        "state": "ACTIVE" if domain.active else "SUSPENDED",
        "validationStatus": dcv.status,
        "validationMethod": dcv.method,
        "dcvValidation": dcv.validated.date().isoformat(),
        "delegations": [_delegation(d) for d in delegations],
    }
    if dcv.expires is not None:
        data["dcvExpiration"] = dcv.expires.date().isoformat()
    return data


def _filters() -> domain_views.DomainFilter:
    state = query_str("state")
    status = query_str("status")
    if state is not None and state.lower() not in ("active", "inactive"):
        invalid("state", "Expected active or inactive.")
    if status is not None and status.lower() not in ("requested", "approved"):
        invalid("status", "Expected requested or approved.")
    org = query_int("orgId")
    organization_id, department_id = split_org_id(org) if org is not None else (None, None)
    return domain_views.DomainFilter(
        name=query_str("name"),
        active=None if state is None else state.lower() == "active",
        delegation_status=None
        if status is None
        else (
            DelegationStatus.REQUESTED
            if status.lower() == "requested"
            else DelegationStatus.APPROVED
        ),
        organization_id=organization_id,
        department_id=department_id,
    )


@route("/domain/v1", methods=["GET"])
def list_domains() -> Response:
    paging_ = paging()
    views = domain_views.list_domains(actor=actor(), flt=_filters())
    items = [{"id": v.domain.id, "name": v.domain.name} for v in slice_page(views, paging_)]
    return page(items, len(views))


@route("/domain/v1/count", methods=["GET"])
def count_domains() -> Response:
    return answer({"count": len(domain_views.list_domains(actor=actor(), flt=_filters()))})


def _not_found(domain_id: int) -> Codes:
    return Codes(not_found=(-727, f"The domain '{domain_id}' does not exist."))


@route("/domain/v1/<int:domain_id>", methods=["GET"])
def domain_details(domain_id: int) -> Response:
    view = call(
        lambda: domain_views.get_domain_view(actor=actor(), domain_id=domain_id),
        _not_found(domain_id),
    )
    return answer(details(view))


CREATE_CODES = Codes(
    default=-1601,
    by_class={domains.DuplicateDomain: (-700, "Such domain already exists")},
    by_field={
        "name": (-732, "Invalid domain name."),
        "organization": (-1023, "Organization not found."),
        "department": (-1023, "Organization not found."),
    },
)


@route("/domain/v1", methods=["POST"])
def create_domain() -> Response:
    data = body()
    name = get_str(data, "name", required=True)
    assert name is not None
    if not 4 <= len(name) <= 255:
        raise ApiError(400, -732, "Invalid domain name. It must be 4 to 255 characters.")
    raw = data.get("delegations")
    if raw is None or raw == []:
        raise ApiError(
            400, -709, "Please delegate domain to at least one organization or department."
        )
    if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
        invalid("delegations", "Expected an array of objects.")
    wanted = []
    for item in raw:
        organization_id, department_id = _org_id(item)
        wanted.append(
            domain_views.DelegationSpec(
                organization_id=organization_id,
                department_id=department_id,
                types=frozenset(_types(get_str_list(item, "certTypes"))),
                request_privileges=get_str_list(item, "domainCertificateRequestPrivileges"),
            )
        )
    description = get_str(data, "description", max_length=1024) or ""
    active = get_bool(data, "active")
    domain = call(
        lambda: domain_views.create_with_delegations(
            actor=actor(),
            name=name,
            description=description,
            active=True if active is None else active,
            delegations=wanted,
        ),
        CREATE_CODES,
    )
    commit()
    return created("scm.domain_details", domain_id=domain.id)


@route("/domain/v1/<int:domain_id>", methods=["DELETE"])
def delete_domain(domain_id: int) -> Response:
    call(
        lambda: domains.delete_domain(actor=actor(), domain_id=domain_id),
        Codes(
            not_found=(-727, f"The domain '{domain_id}' does not exist."),
            by_class={
                domains.DomainInUse: (
                    -740,
                    "SSL certificates enrolled for this domain or its subdomains",
                )
            },
        ),
    )
    commit()
    return empty(204)


def _set_active(domain_id: int, active: bool) -> Response:
    def act() -> Domain:
        domain = domains.get_domain(actor=actor(), domain_id=domain_id)
        return domains.update_domain(
            actor=actor(), domain_id=domain_id, description=domain.description, active=active
        )

    call(act, _not_found(domain_id))
    commit()
    return empty(200)


@route("/domain/v1/<int:domain_id>/activate", methods=["PUT"])
def activate_domain(domain_id: int) -> Response:
    return _set_active(domain_id, True)


@route("/domain/v1/<int:domain_id>/suspend", methods=["PUT"])
def suspend_domain(domain_id: int) -> Response:
    return _set_active(domain_id, False)


DELEGATION_CODES = Codes(
    not_found=None,
    by_class={Conflict: (-705, "delegation status is other than 'Requested'")},
    by_field={
        "organization": (-1023, "Organization not found."),
        "department": (-1023, "Organization not found."),
    },
)


def _domain_codes(domain_id: int) -> Codes:
    return Codes(
        not_found=(-727, f"The domain '{domain_id}' does not exist."),
        by_class=DELEGATION_CODES.by_class,
        by_field=DELEGATION_CODES.by_field,
    )


@route("/domain/v1/<int:domain_id>/delegation", methods=["POST"])
def add_delegation(domain_id: int) -> Response:
    data = body()
    organization_id, department_id = _org_id(data)
    types = _types(get_str_list(data, "certTypes"))
    privileges = get_str_list(data, "domainCertificateRequestPrivileges")
    call(
        lambda: domain_views.merge_delegation(
            actor=actor(),
            domain_id=domain_id,
            spec=domain_views.DelegationSpec(
                organization_id, department_id, frozenset(types), privileges
            ),
        ),
        _domain_codes(domain_id),
    )
    commit()
    return empty(200)


@route("/domain/v1/<int:domain_id>/delegation", methods=["DELETE"])
def remove_delegation(domain_id: int) -> Response:
    data = body()
    organization_id, department_id = _org_id(data)
    types = _types(get_str_list(data, "certTypes"))
    call(
        lambda: domain_views.remove_delegation_types(
            actor=actor(),
            domain_id=domain_id,
            organization_id=organization_id,
            department_id=department_id,
            types=frozenset(types),
        ),
        _domain_codes(domain_id),
    )
    commit()
    return empty(200)


def _decide(domain_id: int, approve: bool) -> Response:
    data = body()
    organization_id, department_id = _org_id(data)
    message = get_str(data, "message", max_length=1024) or ""
    call(
        lambda: domain_views.decide(
            actor=actor(),
            domain_id=domain_id,
            organization_id=organization_id,
            department_id=department_id,
            approve=approve,
            message=message,
        ),
        _domain_codes(domain_id),
    )
    commit()
    return empty(200)


@route("/domain/v1/<int:domain_id>/delegation/approve", methods=["POST"])
def approve_delegation(domain_id: int) -> Response:
    return _decide(domain_id, True)


@route("/domain/v1/<int:domain_id>/delegation/reject", methods=["POST"])
def reject_delegation(domain_id: int) -> Response:
    return _decide(domain_id, False)
