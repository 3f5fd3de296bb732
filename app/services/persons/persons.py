"""Persons: the end users client certificates are issued to. Add, edit (which revokes
their earlier certificates, superseded, once confirmed), delete (only without a valid
certificate). Every email address lies in a domain delegated for Client certificates."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, func, select, update

from app.extensions import db
from app.models import (
    Admin,
    Certificate,
    CertificateRequest,
    CertStatus,
    CertType,
    Department,
    Domain,
    Organization,
    Person,
    ValidationType,
)
from app.models.types import utcnow
from app.pki import names, smime
from app.pki.errors import PkiError
from app.pki.subject_text import refused_character
from app.services import audit
from app.services.certificates import revocation
from app.services.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from app.services.persons import passphrases
from app.services.scope import Actor, Scope, require_actor, scope_of
from app.services.structure import domains, orgs

MAX_ALT_EMAILS = 10
NAME_LIMIT = smime.MAX_NAME_LENGTH
_PHONE = re.compile(r"[0-9 +()./-]{0,32}")
PERSON_FIELDS = (
    "organization_id",
    "department_id",
    "domain_id",
    "email",
    "first_name",
    "middle_name",
    "last_name",
    "alt_emails",
    "validation_type",
    "phone",
)


@dataclass(frozen=True)
class PersonData:
    organization_id: int
    email: str
    first_name: str
    last_name: str
    department_id: int | None = None
    domain_id: int | None = None  # None: the delegated domain the email address is in
    middle_name: str = ""
    alt_emails: Sequence[str] = ()
    validation_type: ValidationType = ValidationType.STANDARD
    phone: str = ""
    secret_id: str = ""  # empty keeps the current one
    clear_secret_id: bool = False


def persons_clause(scope: Scope) -> Any:
    """Persons the admin may see: in scope, where they hold the Client privilege."""
    return scope.type_filter(Person.organization_id, Person.department_id, CertType.CLIENT)


def get_person(*, actor: Actor, person_id: int) -> Person:
    """The person, if the actor holds the Client privilege where the person is.

    Raises:
        NotFound: no such person, or one outside the actor's scope (indistinguishable;
            the attempt on an existing one is recorded as denied).
    """
    person = db.session.get(Person, person_id)
    if person is None:
        raise NotFound("No such person.")
    if not scope_of(actor).may(CertType.CLIENT, person.organization_id, person.department_id):
        raise audit.denied(actor=actor, what="person", object_type="Person", object_id=person.id)
    return person


def find_by_email(email: str) -> Person | None:
    return db.session.execute(
        select(Person).where(Person.email == email.strip().lower())
    ).scalar_one_or_none()


def _normalized_email(value: str, field: str) -> str:
    try:
        return names.normalize_email(value).lower()
    except PkiError as exc:
        raise DomainError(f"{exc}", field=field) from exc


def _place(actor: Actor, data: PersonData) -> tuple[Organization, Department | None]:
    scope = scope_of(actor)
    org = db.session.get(Organization, data.organization_id)
    if org is None:
        raise NotFound("No such organization.", field="organization")
    if not (scope.is_master or org.id in scope.visible_org_ids):
        raise audit.denied(
            actor=actor,
            what="organization",
            object_type="Organization",
            object_id=org.id,
            field="organization",
        )
    dept = None
    if data.department_id is not None:
        dept = db.session.get(Department, data.department_id)
        if dept is None:
            raise NotFound("No such department.", field="department")
        if not scope.covers(dept.organization_id, dept.id):
            # A sibling department of a DRAO's: never named in the answer (docs/authorization.md).
            raise audit.denied(
                actor=actor,
                what="department",
                object_type="Department",
                object_id=dept.id,
                field="department",
            )
        if dept.organization_id != org.id:
            raise DomainError(
                "That department does not belong to the chosen organization.", field="department"
            )
    if not scope.may(CertType.CLIENT, org.id, dept.id if dept else None):
        where = f"{org.name} / {dept.name}" if dept else org.name
        raise Forbidden(
            f"You may not manage persons (Client certificates) of {where}.", field="organization"
        )
    return org, dept


def _text(
    value: str, label: str, field: str, errors: dict[str, list[str]], *, required: bool
) -> str:
    text = " ".join(value.split())
    if required and not text:
        errors.setdefault(field, []).append(f"The {label} is required.")
    elif len(text) > NAME_LIMIT:
        errors.setdefault(field, []).append(f"The {label} may be at most {NAME_LIMIT} characters.")
    elif (refused := refused_character(value.strip())) is not None:
        errors.setdefault(field, []).append(f"The {label} may not contain {refused[1]}.")
    return text


def _clean(actor: Actor, data: PersonData, person_id: int | None) -> dict[str, Any]:
    """Every check of the person form; all field errors at once, then the delegation."""
    org, dept = _place(actor, data)
    errors: dict[str, list[str]] = {}
    first = _text(data.first_name, "first name", "first_name", errors, required=True)
    middle = _text(data.middle_name, "middle name", "middle_name", errors, required=False)
    last = _text(data.last_name, "last name", "last_name", errors, required=True)
    email = ""
    try:
        email = _normalized_email(data.email, "email")
    except DomainError as exc:
        errors.setdefault("email", []).append(exc.message)
    alts: list[str] = []
    for raw in data.alt_emails:
        if not raw.strip():
            continue
        try:
            alt = _normalized_email(raw, "alt_emails")
        except DomainError as exc:
            errors.setdefault("alt_emails", []).append(exc.message)
            continue
        if alt != email and alt not in alts:
            alts.append(alt)
    if len(alts) > MAX_ALT_EMAILS:
        errors.setdefault("alt_emails", []).append(
            f"At most {MAX_ALT_EMAILS} alternative email addresses."
        )
    phone = data.phone.strip()
    if not _PHONE.fullmatch(phone):
        errors.setdefault("phone", []).append(
            "A phone number has at most 32 digits, spaces and + ( ) . / - characters."
        )
    if len(data.secret_id) > 128:
        errors.setdefault("secret_id", []).append("The secret id may be at most 128 characters.")
    if errors:
        raise ValidationFailed(errors)
    place = {"organization_id": org.id, "department_id": dept.id if dept else None}
    domains.check_email_delegated(email, **place, field="email")
    for alt in alts:
        domains.check_email_delegated(alt, **place, field="alt_emails")
    delegated = [
        d
        for d in domains.delegated_domains(org.id, place["department_id"], CertType.CLIENT)
        if not domains.is_network(d.name)
    ]
    host = email.rpartition("@")[2]
    covering = [d for d in delegated if names.is_name_within_domain(host, d.name)]
    # The most specific delegated domain that holds the address, unless one was chosen.
    domain = max(covering, key=lambda d: len(d.name))
    if data.domain_id is not None and data.domain_id != domain.id:
        chosen = db.session.get(Domain, data.domain_id)
        if chosen is None or not names.is_name_within_domain(host, chosen.name):
            raise DomainError(
                f"The email address {email} is not inside the domain {chosen.name if chosen else '?'}.",
                field="domain",
            )
        if chosen.id not in {d.id for d in delegated}:
            raise DomainError(
                f"The domain {chosen.name} is not delegated for Client certificates here.",
                field="domain",
            )
        domain = chosen
    _check_unique(email, alts, person_id)
    return {
        "organization_id": org.id,
        "department_id": dept.id if dept else None,
        "domain_id": domain.id,
        "email": email,
        "first_name": first,
        "middle_name": middle,
        "last_name": last,
        "alt_emails": alts,
        "validation_type": ValidationType(data.validation_type),
        "phone": phone,
    }


def _check_unique(email: str, alts: list[str], person_id: int | None) -> None:
    """No address may belong to two persons (primary or alternative), or one could obtain
    a certificate for the other's mailbox."""
    others = select(Person).where(Person.id != (person_id or 0))
    for address in [email, *alts]:
        taken = db.session.execute(
            others.where(
                (Person.email == address)
                | cast(Person.alt_emails, String).contains(f'"{address}"', autoescape=True)
            ).limit(1)
        ).scalar_one_or_none()
        if taken is not None:
            field = "email" if address == email else "alt_emails"
            raise DomainError(
                f"The email address {address} already belongs to a person.", field=field
            )


def _snapshot(person: Person) -> dict[str, Any]:
    values = audit.snapshot(person, PERSON_FIELDS)
    values["secret_id_set"] = bool(person.secret_id_hash)
    return values


def create_person(*, actor: Actor, data: PersonData) -> Person:
    """Add a person after every check (delegated domains, unique addresses)."""
    values = _clean(require_actor(actor), data, None)
    person = Person(**values, created_by_id=actor.id)
    if data.secret_id.strip():
        person.secret_id_hash = passphrases.hash_passphrase(data.secret_id.strip())
    db.session.add(person)
    db.session.flush()
    audit.record(
        action="person.create",
        actor=actor,
        object_type="Person",
        object_id=person.id,
        label=person.email,
        after=_snapshot(person),
        organization_id=person.organization_id,
        department_id=person.department_id,
    )
    return person


def valid_certificates(person_id: int) -> list[Certificate]:
    """The person's client certificates that are still valid (Issued and not expired)."""
    return list(
        db.session.execute(
            select(Certificate)
            .join(CertificateRequest, CertificateRequest.id == Certificate.request_id)
            .where(
                CertificateRequest.person_id == person_id,
                Certificate.status == CertStatus.ISSUED,
                Certificate.not_after > utcnow(),
            )
            .order_by(Certificate.id)
        ).scalars()
    )


class NoValidCertificates(DomainError):
    """A person with no valid client certificate to revoke."""


def revoke_certificates(*, actor: Admin, person_id: int, reason: str) -> list[Certificate]:
    """Revoke every valid client certificate of a person in the actor's scope (reason
    unspecified; ``reason`` is the administrator's words, kept in the audit log).

    Raises:
        NotFound: no such person in scope.
        NoValidCertificates: the person has none.
    """
    person = get_person(actor=actor, person_id=person_id)
    valid = valid_certificates(person.id)
    if not valid:
        raise NoValidCertificates(f"No valid client certificates found for {person.email}.")
    return revocation.revoke(
        actor=actor, certificate_ids=[c.id for c in valid], reason="unspecified", message=reason
    )


class ConfirmationNeeded(Conflict):
    """Saving would revoke these certificates: ask, then call again with confirmed=True."""

    def __init__(self, certificates: list[Certificate]) -> None:
        listed = ", ".join(f"#{c.id} (serial {c.serial_hex})" for c in certificates)
        super().__init__(
            f"Saving these changes revokes {len(certificates)} certificate(s) of this person as superseded: {listed}. Confirm to go on."
        )
        self.certificates = certificates


def pending_changes(*, actor: Actor, person_id: int, data: PersonData) -> dict[str, Any]:
    """What update_person would change (before values of the changed fields)."""
    person = get_person(actor=actor, person_id=person_id)
    values = _clean(actor, data, person.id)
    before = audit.snapshot(person, PERSON_FIELDS)
    after = audit.jsonable(values)
    return {k: before[k] for k in after if before.get(k) != after[k]}


def update_person(
    *, actor: Actor, person_id: int, data: PersonData, confirmed: bool = False
) -> Person:
    """Edit a person. Changing anything but the secret id revokes the person's earlier
    client certificates (reason superseded): their subject or names no longer hold.

    Raises:
        ConfirmationNeeded: such a change while certificates are valid and not confirmed.
    """
    person = get_person(actor=actor, person_id=person_id)
    values = _clean(actor, data, person.id)
    before = _snapshot(person)
    changed = {
        k: v for k, v in audit.jsonable(values).items() if audit.jsonable(getattr(person, k)) != v
    }
    revoked: list[int] = []
    if changed:
        certificates = valid_certificates(person.id)
        if certificates and not confirmed:
            raise ConfirmationNeeded(certificates)
        if certificates:
            if not isinstance(actor, Admin):
                raise Forbidden("Only an administrator revokes a person's certificates.")
            done = revocation.revoke(
                actor=actor,
                certificate_ids=[c.id for c in certificates],
                reason="superseded",
                message=f"the person {person.email} was edited",
            )
            revoked = [c.id for c in done]
    for key, value in values.items():
        setattr(person, key, value)
    if data.clear_secret_id:
        person.secret_id_hash = ""
    elif data.secret_id.strip():
        person.secret_id_hash = passphrases.hash_passphrase(data.secret_id.strip())
    old, new = audit.changes(before, _snapshot(person))
    if data.secret_id.strip() and "secret_id_set" not in new:
        old["secret_id"], new["secret_id"] = "(set)", "(changed)"  # never the value
    if new:
        person.updated_at = utcnow()
        audit.record(
            action="person.update",
            actor=actor,
            object_type="Person",
            object_id=person.id,
            label=person.email,
            before=old,
            after={**new, **({"revoked_certificates": revoked} if revoked else {})},
            organization_id=person.organization_id,
            department_id=person.department_id,
        )
    return person


def delete_person(*, actor: Actor, person_id: int) -> None:
    """Delete a person without valid certificates (their invitations go with them).

    Raises:
        DomainError: the person still has valid certificates: revoke them first.
    """
    person = get_person(actor=actor, person_id=person_id)
    valid = valid_certificates(person.id)
    if valid:
        raise DomainError(
            f"{person.email} has {len(valid)} valid certificate(s); revoke them before deleting the person."
        )
    audit.record(
        action="person.delete",
        actor=actor,
        object_type="Person",
        object_id=person.id,
        label=person.email,
        before=_snapshot(person),
        organization_id=person.organization_id,
        department_id=person.department_id,
    )
    # Their requests and certificates stay in the inventory, no longer a person's.
    db.session.execute(
        update(CertificateRequest)
        .where(CertificateRequest.person_id == person.id)
        .values(person_id=None)
    )
    db.session.delete(person)


@dataclass(frozen=True)
class PersonFilter:
    """List filters (the REST API's); None = not filtered. ``name`` is a case-insensitive
    substring of the full name; the others match exactly, ignoring case."""

    organization_id: int | None = None
    department_id: int | None = None
    name: str | None = None
    email: str | None = None
    common_name: str | None = None
    phone: str | None = None
    secondary_email: str | None = None


def list_persons(
    *, actor: Actor, flt: PersonFilter = PersonFilter(), position: int = 0, size: int | None = None
) -> tuple[list[Person], int]:
    """A page of the persons the actor may see (ascending id) and how many match in all."""
    query = select(Person)
    clause = persons_clause(scope_of(require_actor(actor)))
    if clause is not None:
        query = query.where(clause)
    if flt.organization_id is not None:
        query = query.where(Person.organization_id == flt.organization_id)
    if flt.department_id is not None:
        query = query.where(Person.department_id == flt.department_id)
    if flt.email is not None:
        query = query.where(Person.email == flt.email.strip().lower())
    if flt.phone is not None:
        query = query.where(Person.phone == flt.phone.strip())
    if flt.secondary_email is not None:
        address = flt.secondary_email.strip().lower()
        query = query.where(
            cast(Person.alt_emails, String).contains(f'"{address}"', autoescape=True)
        )
    query = query.order_by(Person.id)
    if flt.name is None and flt.common_name is None:
        total = db.session.execute(
            select(func.count()).select_from(query.order_by(None).subquery())
        ).scalar_one()
        page = query.offset(position)
        if size is not None:
            page = page.limit(size)
        return list(db.session.execute(page).scalars()), int(total)
    name = (flt.name or "").strip().lower()
    common = " ".join((flt.common_name or "").split()).lower()
    matching = [
        p
        for p in db.session.execute(query).scalars()
        if name in p.full_name.lower() and (not common or p.full_name.lower() == common)
    ]
    end = None if size is None else position + size
    return matching[position:end], len(matching)


def count_persons(scope: Scope) -> int:
    query = select(func.count()).select_from(Person)
    clause = persons_clause(scope)
    if clause is not None:
        query = query.where(clause)
    return int(db.session.execute(query).scalar_one())


orgs.register_reference("persons", Person, "organization_id", "department_id")
