"""SCM organization service (contract §1): organizations and departments in scope."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.api.scm.base import Codes, actor, answer, call, department_api_id, route, split_org_id
from app.models import CertType
from app.services.structure import directory

# SCM's names for our certificate types (Device certificates have none in SCM).
SCM_TYPES = {CertType.SSL: "SSL", CertType.CLIENT: "SMIME", CertType.CODE_SIGNING: "CodeSign"}


def cert_types(types: frozenset[CertType]) -> list[str]:
    return [name for t, name in SCM_TYPES.items() if t in types]


def _department(place: directory.Place) -> dict[str, Any]:
    assert place.department is not None
    return {
        "id": department_api_id(place.department.id),
        "name": place.department.name,
        "parentName": place.organization.name,
        "certTypes": cert_types(place.types),
    }


def _summary(entry: directory.OrgEntry) -> dict[str, Any]:
    org = entry.place.organization
    return {
        "id": org.id,
        "name": org.name,
        "certTypes": cert_types(entry.place.types),
        "departments": [_department(d) for d in entry.departments],
    }


@route("/organization/v1", methods=["GET"])
def list_organizations() -> Response:
    return answer([_summary(e) for e in directory.visible_structure(actor=actor())])


@route("/organization/v1/<int:org_id>", methods=["GET"])
def organization_details(org_id: int) -> Response:
    organization_id, department_id = split_org_id(org_id)
    entry = call(
        lambda: directory.get_place(
            actor=actor(), organization_id=organization_id, department_id=department_id
        ),
        Codes(not_found=(-1023, f"Organization '{org_id}' not found.")),
    )
    if entry.place.department is not None:
        return answer(_department(entry.place))
    org = entry.place.organization
    return answer(
        {
            **_summary(entry),
            "alias": "",
            "secondaryName": "",
            "contactEmails": [],
            "address1": org.address1,
            "address2": org.address2,
            "address3": org.address3,
            "city": org.city,
            "stateOrProvince": org.state,
            "postalCode": org.postal_code,
            "country": org.country,
            "sslCertsApiEnabled": True,
            "clientCertsApiEnabled": True,
        }
    )
