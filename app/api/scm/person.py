"""SCM person service (contract §5): the persons client certificates are issued to, over
the console's person services (app/services/persons/persons.py), so scope (the Client
privilege where the person is), validation, delegated e-mail domains and audit are the
console's."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

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
    split_org_id,
)
from app.api.scm.report import iso
from app.api.scm.ssl import place_of
from app.models import Person, ValidationType
from app.services.persons import persons

# SCM's validation types and ours.
VALIDATION_TYPES = {"STANDARD": ValidationType.STANDARD, "HIGH": ValidationType.HIGH}
SCM_VALIDATION = {v: k for k, v in VALIDATION_TYPES.items()}

# The service's field names -> the contract's (errors name what the client sent).
FIELD_NAMES = {
    "first_name": "firstName",
    "middle_name": "middleName",
    "last_name": "lastName",
    "email": "email",
    "alt_emails": "secondaryEmails",
    "phone": "phone",
    "organization": "organizationId",
    "department": "organizationId",
    "domain": "email",
}


def person_object(person: Person) -> dict[str, Any]:
    return {
        "id": person.id,
        "firstName": person.first_name,
        "middleName": person.middle_name,
        "lastName": person.last_name,
        "email": person.email,
        "organizationId": department_api_id(person.department_id)
        if person.department_id
        else person.organization_id,
        "validationType": SCM_VALIDATION[person.validation_type],
        "phone": person.phone,
        "secondaryEmails": list(person.alt_emails or []),
        "commonName": person.full_name,
        "eppn": "",
        "upn": "",
        "created": iso(person.created_at),
        "modified": iso(person.updated_at),
    }


def _by_id(person_id: int) -> tuple[int, str]:
    return (-105, f"Person with ID: {person_id} was not found")


class _PersonCodes(Codes):
    """The person services' refusals, with the contract's field names in the text."""

    def translate(self, exc: Any) -> ApiError:
        translated = super().translate(exc)
        if translated.status == 400 and translated.code == -1601:
            fields = list(getattr(exc, "errors", None) or [exc.field or ""])
            named = [FIELD_NAMES.get(f, f) for f in fields if f]
            if named and not translated.description.startswith("Field"):
                translated.description = (
                    f"Field '{named[0]}' has invalid value. {translated.description}"
                )
        return translated


def _codes(person_id: int | None = None, org_ref: int | None = None) -> Codes:
    org = (-1023, f"Organization '{org_ref}' not found.")
    return _PersonCodes(
        not_found=_by_id(person_id) if person_id is not None else None,
        by_field={"NotFound:organization": org, "NotFound:department": org},
    )


@route("/person/v1", methods=["GET"])
def list_persons() -> Response:
    paging_ = paging()
    org = query_int("organizationId")
    organization_id, department_id = split_org_id(org) if org is not None else (None, None)
    found, total = persons.list_persons(
        actor=actor(),
        flt=persons.PersonFilter(
            organization_id=organization_id,
            department_id=department_id,
            name=query_str("name"),
            email=query_str("email"),
            common_name=query_str("commonName"),
            phone=query_str("phone"),
            secondary_email=query_str("secondaryEmail"),
        ),
        position=paging_.position,
        size=paging_.size,
    )
    return page([person_object(p) for p in found], total)


@route("/person/v1/id/byEmail/<path:email>", methods=["GET"])
def person_id_by_email(email: str) -> Response:
    address = unquote(email).strip()
    not_found = ApiError(404, -105, f"Person with e-mail: {address} was not found")
    person = persons.find_by_email(address)
    if person is None:
        raise not_found
    call(
        lambda: persons.get_person(actor=actor(), person_id=person.id),
        Codes(not_found=(not_found.code, not_found.description)),
    )
    return answer({"personId": person.id})


@route("/person/v1/<int:person_id>", methods=["GET"])
def person_details(person_id: int) -> Response:
    person = call(lambda: persons.get_person(actor=actor(), person_id=person_id), _codes(person_id))
    return answer(person_object(person))


def _validation(data: dict[str, Any], *, required: bool) -> ValidationType | None:
    value = get_str(data, "validationType", required=required)
    if value is None:
        return None
    chosen = VALIDATION_TYPES.get(value.strip().upper())
    if chosen is None:
        invalid("validationType", "STANDARD or HIGH.")
    return chosen


def _names_only(data: dict[str, Any]) -> None:
    """Fields the contract defines that Certwright does not keep: checked, not stored
    (docs/api.md): commonName is always the person's full name, eppn and upn are unused."""
    for name in ("commonName", "eppn", "upn"):
        get_str(data, name, max_length=256)


@route("/person/v1", methods=["POST"])
def create_person() -> Response:
    data = body()
    first = get_str(data, "firstName", required=True)
    last = get_str(data, "lastName", required=True)
    email = get_str(data, "email", required=True)
    validation = _validation(data, required=True)
    org_ref = get_int(data, "organizationId", required=True)
    middle = get_str(data, "middleName") or ""
    phone = get_str(data, "phone") or ""
    alts = get_str_list(data, "secondaryEmails") or []
    _names_only(data)
    assert first and last and email and validation and org_ref is not None
    organization_id, department_id = place_of(org_ref)
    person = call(
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
                validation_type=validation,
                phone=phone,
            ),
        ),
        _codes(org_ref=org_ref),
    )
    commit()
    return created("scm.person_details", person_id=person.id)


@route("/person/v1/<int:person_id>", methods=["PUT"])
def update_person(person_id: int) -> Response:
    data = body()
    person = call(lambda: persons.get_person(actor=actor(), person_id=person_id), _codes(person_id))
    for name in ("firstName", "lastName", "email"):
        if name in data and data[name] is not None and not str(data[name]).strip():
            missing(name)
    org_ref = get_int(data, "organizationId")
    if org_ref is not None:
        organization_id, department_id = place_of(org_ref)
    else:
        organization_id, department_id = person.organization_id, person.department_id
    email = get_str(data, "email")
    alts = get_str_list(data, "secondaryEmails")
    validation = _validation(data, required=False)
    _names_only(data)
    changed = persons.PersonData(
        organization_id=organization_id,
        department_id=department_id,
        # A new address may lie in another delegated domain: the service finds it.
        domain_id=person.domain_id if email is None and org_ref is None else None,
        email=email if email is not None else person.email,
        first_name=get_str(data, "firstName") or person.first_name,
        middle_name=_keep(get_str(data, "middleName"), person.middle_name),
        last_name=get_str(data, "lastName") or person.last_name,
        alt_emails=alts if alts is not None else list(person.alt_emails or []),
        validation_type=validation or person.validation_type,
        phone=_keep(get_str(data, "phone"), person.phone),
    )
    call(
        lambda: persons.update_person(actor=actor(), person_id=person_id, data=changed),
        _codes(person_id, org_ref),
    )
    commit()
    return empty(200)


def _keep(value: str | None, current: str) -> str:
    return current if value is None else value


@route("/person/v1/<int:person_id>", methods=["DELETE"])
def delete_person(person_id: int) -> Response:
    call(lambda: persons.delete_person(actor=actor(), person_id=person_id), _codes(person_id))
    commit()
    return empty(200)
