"""Domains and their delegations to organizations/departments for certificate types.

A delegation made by an MRAO is Approved at once; one made by an RAO/DRAO is
Requested until an MRAO approves or rejects it. A delegation to an organization
covers all its departments; one to a department covers that department only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import String, exists, func, or_, select
from sqlalchemy import cast as sa_cast
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    Admin,
    Certificate,
    CertStatus,
    CertType,
    Delegation,
    DelegationStatus,
    Department,
    Domain,
    Organization,
)
from app.models.notifications import NotificationType
from app.models.types import utcnow
from app.pki import names
from app.pki.errors import NamePolicyError
from app.services import audit
from app.services.errors import Conflict, DomainError, Forbidden, NotFound
from app.services.notifications import events
from app.services.scope import Scope, scope_of

DOMAIN_FIELDS = ("name", "description", "active")
# Which names under a delegated domain may be requested (SCM's
# domainCertificateRequestPrivileges): the domain itself, names below it, a wildcard for the
# domain (*.example.com) and a wildcard one level down (*.sub.example.com).
REQUEST_PRIVILEGES = ("DOMAIN", "SUBDOMAIN", "WILDCARD_1ST_LEVEL", "WILDCARD_2ND_LEVEL")
DEFAULT_REQUEST_PRIVILEGES = ("DOMAIN", "SUBDOMAIN")


class DuplicateDomain(DomainError):
    """A domain of that name exists already."""


class DomainInUse(DomainError):
    """Live certificates carry names inside the domain."""


def normalize_request_privileges(values: Iterable[str] | None) -> list[str] | None:
    """The privileges in their canonical order; None (or the default set) = the default.

    Raises:
        DomainError: an unknown privilege.
    """
    if values is None:
        return None
    chosen = set(values)
    unknown = chosen - set(REQUEST_PRIVILEGES)
    if unknown:
        raise DomainError(
            f"Unknown request privilege {sorted(unknown)[0]!r}; expected {', '.join(REQUEST_PRIVILEGES)}.",
            field="request_privileges",
        )
    if not chosen:
        raise DomainError("Choose at least one request privilege.", field="request_privileges")
    ordered = [p for p in REQUEST_PRIVILEGES if p in chosen]
    return None if tuple(ordered) == DEFAULT_REQUEST_PRIVILEGES else ordered


def normalize_domain(raw: str, *, field: str = "name") -> str:
    """Canonical form of a domain entry.

    A DNS name (IDNA 2008, lowercase A-labels, at least two labels), optionally a wildcard
    domain '*.example.com' (which also allows wildcard certificates), or an IP network in
    CIDR notation ('10.20.0.0/16', '2001:db8::/48'; a single address is a /32 or /128)
    so that IP address SANs can be delegated like names.

    Raises:
        DomainError: with the reason the entry is not valid.
    """
    text = raw.strip().rstrip(".")
    if not text:
        raise DomainError("The domain name is required.", field=field)
    if "/" in text or _looks_like_ip(text):
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise DomainError(f"'{raw}' is not a valid IP network: {exc}", field=field) from exc
    if "*" in text and not (text.startswith("*.") and "*" not in text[2:]):
        raise DomainError(
            f"'{raw}': a wildcard is allowed only as the whole left-most label ('*.example.com').",
            field=field,
        )
    try:
        name = names.normalize_dns_name(text, allow_wildcard=True)
    except NamePolicyError as exc:
        raise DomainError(f"'{raw}' is not a valid domain name: {exc}", field=field) from exc
    if len(name.removeprefix("*.").split(".")) < 2:
        raise DomainError(
            f"'{raw}' needs at least two labels (for example example.com).", field=field
        )
    return name


def covers_name(value: str, domain_name: str, request_privileges: Sequence[str] | None) -> bool:
    """Whether a delegation of ``domain_name`` with these request privileges allows the DNS
    name ``value`` in a certificate.

    Without privileges (None) the delegation allows the domain and every name below it, and
    wildcard names only when the domain itself is a wildcard domain ('*.example.com'). With
    them (SCM's domainCertificateRequestPrivileges): DOMAIN the domain's own name, SUBDOMAIN
    names below it, WILDCARD_1ST_LEVEL '*.<domain>', WILDCARD_2ND_LEVEL '*.<label>.<domain>'.
    """
    if request_privileges is None:
        return names.is_name_within_domain(
            value, domain_name, allow_wildcard=domain_name.startswith("*.")
        )
    wanted = names.normalize_dns_name(value, allow_wildcard=True)
    base = domain_name.removeprefix("*.")
    held = set(request_privileges)
    if wanted.startswith("*."):
        parent = wanted[2:]
        if parent == base:
            return "WILDCARD_1ST_LEVEL" in held
        label, _, rest = parent.partition(".")
        return bool(label) and rest == base and "WILDCARD_2ND_LEVEL" in held
    if wanted == base:
        return "DOMAIN" in held and not domain_name.startswith("*.")
    return wanted.endswith("." + base) and "SUBDOMAIN" in held


def _looks_like_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_network(domain_name: str) -> bool:
    return "/" in domain_name


def visible_domains_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Domains with at least one delegation the admin may see."""
    if scope.is_master:
        return None
    # An alias, so that the subquery correlates only to Domain, also in a query that joins
    # Delegation itself (the Domains report: otherwise both tables correlate away and the
    # subquery is left with no FROM).
    seen = aliased(Delegation)
    return exists().where(seen.domain_id == Domain.id, delegation_clause(scope, seen))


def delegation_clause(scope: Scope, delegation: Any = Delegation) -> ColumnElement[bool]:
    """Delegations visible to a scoped admin: their orgs, their depts, and org-level
    delegations of the organizations their departments belong to (``delegation``: the
    Delegation entity or an alias of it)."""
    parts = []
    if scope.orgs:
        parts.append(delegation.organization_id.in_(sorted(scope.orgs)))
    if scope.depts:
        parts.append(delegation.department_id.in_(sorted(scope.depts)))
        parent_orgs = sorted({org for org, _ in scope.depts.values()})
        parts.append(
            delegation.organization_id.in_(parent_orgs) & delegation.department_id.is_(None)
        )
    return or_(*parts) if parts else delegation.id.is_(None)


def get_domain(*, actor: Admin, domain_id: int) -> Domain:
    query = select(Domain).where(Domain.id == domain_id)
    clause = visible_domains_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    domain = db.session.execute(query).scalar_one_or_none()
    if domain is None:
        raise audit.not_found(actor=actor, what="domain", model=Domain, object_id=domain_id)
    return domain


def create_domain(
    *,
    actor: Admin,
    name: str,
    description: str = "",
    active: bool = True,
    organization_id: int | None = None,
    department_id: int | None = None,
    types: Iterable[CertType] = (),
    request_privileges: Iterable[str] | None = None,
) -> Domain:
    """Add a domain, optionally delegated at once. An RAO/DRAO must delegate it to their
    own organization/department (the delegation then waits for an MRAO)."""
    name = normalize_domain(name)
    if db.session.execute(select(Domain.id).where(Domain.name == name)).first():
        raise DuplicateDomain(
            f"The domain {name} already exists; ask an MRAO to delegate it to you.", field="name"
        )
    if not actor.is_master and organization_id is None:
        raise DomainError(
            "Choose the organization (or department) to delegate the new domain to.",
            field="organization",
        )
    domain = Domain(name=name, description=description.strip(), active=bool(active))
    db.session.add(domain)
    db.session.flush()
    audit.record(
        action="domain.create",
        actor=actor,
        object_type="Domain",
        object_id=domain.id,
        label=name,
        after=audit.snapshot(domain, DOMAIN_FIELDS),
    )
    if organization_id is not None:
        delegate(
            actor=actor,
            domain_id=domain.id,
            organization_id=organization_id,
            department_id=department_id,
            types=types,
            request_privileges=request_privileges,
            _domain=domain,
        )
    return domain


def update_domain(*, actor: Admin, domain_id: int, description: str, active: bool) -> Domain:
    """Only an MRAO edits a domain (the name is fixed: delete and re-add to rename)."""
    domain = get_domain(actor=actor, domain_id=domain_id)
    if not actor.is_master:
        raise Forbidden("Only an MRAO can edit a domain.")
    before = audit.snapshot(domain, DOMAIN_FIELDS)
    domain.description = description.strip()
    domain.active = bool(active)
    db.session.flush()
    old, new = audit.changes(before, audit.snapshot(domain, DOMAIN_FIELDS))
    if new:
        audit.record(
            action="domain.update",
            actor=actor,
            object_type="Domain",
            object_id=domain.id,
            label=domain.name,
            before=old,
            after=new,
        )
    return domain


def live_certificate_names(domain_name: str, *, limit: int = 3) -> list[str]:
    """Common names of issued (not revoked, not expired) certificates with a name inside
    the domain (itself or below it); at most ``limit``."""
    base = domain_name.removeprefix("*.")
    if is_network(base):
        return []
    candidates = db.session.execute(
        select(Certificate.common_name, Certificate.sans).where(
            Certificate.status == CertStatus.ISSUED,
            (Certificate.common_name == base)
            | Certificate.common_name.like(f"%.{base}")
            | sa_cast(Certificate.sans, String).like(f"%{base}%"),
        )
    )
    found = []
    for cn, sans in candidates:
        values = [cn, *(sans or [])]
        if any(v and names.is_name_within_domain(v.removeprefix("*."), base) for v in values):
            found.append(cn)
            if len(found) >= limit:
                break
    return found


def delete_domain(*, actor: Admin, domain_id: int) -> None:
    """Delete a domain (MRAO), unless issued certificates still carry names inside it.

    Raises:
        DomainInUse: live certificates for the domain or its subdomains (revoke them, or
            let them expire, first).
    """
    domain = get_domain(actor=actor, domain_id=domain_id)
    if not actor.is_master:
        raise Forbidden("Only an MRAO can delete a domain.")
    live = live_certificate_names(domain.name)
    if live:
        raise DomainInUse(
            f"Issued certificates carry names inside {domain.name} (for example {', '.join(live)}); revoke them or let them expire before deleting the domain."
        )
    before = audit.snapshot(domain, DOMAIN_FIELDS)
    before["delegations"] = [str(d) for d in domain.delegations]
    audit.record(
        action="domain.delete",
        actor=actor,
        object_type="Domain",
        object_id=domain.id,
        label=domain.name,
        before=before,
    )
    db.session.delete(domain)
    db.session.flush()


def _delegation_snapshot(d: Delegation) -> dict[str, object]:
    data = audit.snapshot(d, ("domain_id", "organization_id", "department_id", "status"))
    data["types"] = sorted(t.value for t in d.types())
    if d.request_privileges is not None:
        data["request_privileges"] = list(d.request_privileges)
    return data


def delegate(
    *,
    actor: Admin,
    domain_id: int,
    organization_id: int,
    department_id: int | None,
    types: Iterable[CertType],
    request_privileges: Iterable[str] | None = None,
    _domain: Domain | None = None,
) -> Delegation:
    """Delegate a domain to an organization/department for certificate types (and which
    names under it may be requested; None: the domain and its subdomains)."""
    domain = _domain or get_domain(actor=actor, domain_id=domain_id)
    privileges = normalize_request_privileges(request_privileges)
    types = set(types)
    if not types:
        raise DomainError(
            "Choose at least one certificate type (SSL, Client, Code Signing, Device).",
            field="types",
        )
    org = db.session.get(Organization, organization_id)
    scope = scope_of(actor)
    if org is None:
        raise NotFound("No such organization.", field="organization")
    if org.id not in scope.visible_org_ids and not scope.is_master:
        raise audit.denied(
            actor=actor,
            what="organization",
            object_type="Organization",
            object_id=org.id,
            field="organization",
        )
    if department_id is not None:
        dept = db.session.get(Department, department_id)
        if dept is None or dept.organization_id != org.id:
            raise DomainError(
                "That department does not belong to the chosen organization.", field="department"
            )
    if not scope.covers(org.id, department_id):
        raise Forbidden(
            "You can delegate domains only to your own organizations and departments.",
            field="organization",
        )
    missing = types - scope.privileges(org.id, department_id)
    if missing:
        raise Forbidden(
            f"You do not hold the privileges for: {', '.join(sorted(t.label for t in missing))}.",
            field="types",
        )
    dup = select(Delegation.id).where(
        Delegation.domain_id == domain.id,
        Delegation.organization_id == org.id,
        Delegation.department_id.is_(None)
        if department_id is None
        else Delegation.department_id == department_id,
    )
    if db.session.execute(dup).first():
        raise DomainError(
            f"{domain.name} is already delegated there; edit that delegation instead.",
            field="organization",
        )
    status = DelegationStatus.APPROVED if actor.is_master else DelegationStatus.REQUESTED
    d = Delegation(
        domain_id=domain.id,
        organization_id=org.id,
        department_id=department_id,
        status=status,
        requested_by_id=actor.id,
        decided_by_id=actor.id if actor.is_master else None,
        decided_at=utcnow() if actor.is_master else None,
        request_privileges=privileges,
        **{t.value: t in types for t in CertType},
    )
    db.session.add(d)
    db.session.flush()
    audit.record(
        action="delegation.create",
        actor=actor,
        object_type="Delegation",
        object_id=d.id,
        label=str(d),
        after=_delegation_snapshot(d),
        organization_id=org.id,
        department_id=department_id,
    )
    kind = (
        NotificationType.DELEGATION_APPROVED
        if actor.is_master
        else NotificationType.DELEGATION_REQUESTED
    )
    events.emit(_delegation_event(kind, d, **{"Requested by": actor.login}), actor=actor)
    return d


def _delegation_event(kind: NotificationType, d: Delegation, **facts: str) -> events.Event:
    where = d.organization.name + (f" / {d.department.name}" if d.department else "")
    return events.Event(
        type=kind,
        label=f"{d.domain.name} for {where}",
        organization_id=d.organization_id,
        department_id=d.department_id,
        facts={
            "Domain": d.domain.name,
            "Delegated to": where,
            "Certificate types": ", ".join(t.label for t in d.types()),
            **facts,
        },
        path=f"/admin/delegation/details/?id={d.id}",
    )


def get_delegation(*, actor: Admin, delegation_id: int) -> Delegation:
    query = select(Delegation).where(Delegation.id == delegation_id)
    scope = scope_of(actor)
    if not scope.is_master:
        query = query.where(delegation_clause(scope))
    d = db.session.execute(query).scalar_one_or_none()
    if d is None:
        raise audit.not_found(
            actor=actor, what="delegation", model=Delegation, object_id=delegation_id
        )
    return d


def decide_delegation(
    *, actor: Admin, delegation_id: int, approve: bool, message: str = ""
) -> Delegation:
    """MRAO approves or rejects a Requested delegation; a second decision is refused."""
    if not actor.is_master:
        raise Forbidden("Only an MRAO can approve or reject domain delegations.")
    d = get_delegation(actor=actor, delegation_id=delegation_id)
    new_status = DelegationStatus.APPROVED if approve else DelegationStatus.REJECTED
    # Conditional update: two MRAOs clicking at once cannot both decide.
    result = db.session.execute(
        Delegation.__table__.update()
        .where(Delegation.id == d.id, Delegation.status == DelegationStatus.REQUESTED.value)
        .values(
            status=new_status.value,
            decided_by_id=actor.id,
            decided_at=utcnow(),
            decision_message=message.strip(),
        )
    )
    if result.rowcount != 1:
        db.session.refresh(d)  # what it is now, not the copy loaded before
        raise Conflict(f"This delegation was already decided ({d.status.value}).")
    db.session.expire(d)
    audit.record(
        action="delegation.approve" if approve else "delegation.reject",
        actor=actor,
        object_type="Delegation",
        object_id=d.id,
        label=str(d),
        before={"status": "Requested"},
        after={"status": new_status.value},
        message=message.strip(),
        organization_id=d.organization_id,
        department_id=d.department_id,
    )
    decided = (
        {"Decided by": actor.login, "Message": message.strip()}
        if message.strip()
        else {"Decided by": actor.login}
    )
    kind = NotificationType.DELEGATION_APPROVED if approve else NotificationType.DELEGATION_REJECTED
    events.emit(_delegation_event(kind, d, **decided), actor=actor)
    return d


def update_delegation_types(
    *,
    actor: Admin,
    delegation_id: int,
    types: Iterable[CertType],
    request_privileges: Iterable[str] | None = None,
) -> Delegation:
    """MRAO edits the types of a delegation; an RAO/DRAO edit that adds a type sends it
    back to Requested. ``request_privileges`` None keeps them; widening them is like
    adding a type."""
    d = get_delegation(actor=actor, delegation_id=delegation_id)
    scope = scope_of(actor)
    if not scope.covers(d.organization_id, d.department_id):
        raise Forbidden("This delegation is outside your scope.")
    types = set(types)
    if not types:
        raise DomainError("Choose at least one certificate type.", field="types")
    missing = types - scope.privileges(d.organization_id, d.department_id) - set(d.types())
    if missing:
        raise Forbidden(
            f"You do not hold the privileges for: {', '.join(sorted(t.label for t in missing))}.",
            field="types",
        )
    before = _delegation_snapshot(d)
    old_privileges = set(d.request_privileges or DEFAULT_REQUEST_PRIVILEGES)
    if request_privileges is not None:
        d.request_privileges = normalize_request_privileges(request_privileges)
    widened = set(d.request_privileges or DEFAULT_REQUEST_PRIVILEGES) - old_privileges
    for t in CertType:
        setattr(d, t.value, t in types)
    if not actor.is_master and (set(d.types()) - set(before["types"]) or widened):  # type: ignore[arg-type]
        d.status = DelegationStatus.REQUESTED
        d.decided_by_id = None
        d.decided_at = None
    db.session.flush()
    old, new = audit.changes(before, _delegation_snapshot(d))
    if new:
        audit.record(
            action="delegation.update",
            actor=actor,
            object_type="Delegation",
            object_id=d.id,
            label=str(d),
            before=old,
            after=new,
            organization_id=d.organization_id,
            department_id=d.department_id,
        )
    return d


def delete_delegation(*, actor: Admin, delegation_id: int) -> None:
    d = get_delegation(actor=actor, delegation_id=delegation_id)
    if not scope_of(actor).covers(d.organization_id, d.department_id):
        raise Forbidden("This delegation is outside your scope.")
    audit.record(
        action="delegation.delete",
        actor=actor,
        object_type="Delegation",
        object_id=d.id,
        label=str(d),
        before=_delegation_snapshot(d),
        organization_id=d.organization_id,
        department_id=d.department_id,
    )
    db.session.delete(d)
    db.session.flush()


def delegated_domains(org_id: int, dept_id: int | None, cert_type: CertType) -> list[Domain]:
    """Active domains whose delegation for cert_type is Approved for this org/department
    (a delegation to the organization covers all its departments)."""
    place = Delegation.department_id.is_(None)
    if dept_id is not None:
        place = place | (Delegation.department_id == dept_id)
    query = (
        select(Domain)
        .join(Delegation, Delegation.domain_id == Domain.id)
        .where(
            Domain.active.is_(True),
            Delegation.organization_id == org_id,
            Delegation.status == DelegationStatus.APPROVED,
            getattr(Delegation, cert_type.value).is_(True),
            place,
        )
    )
    return list(db.session.execute(query).scalars().unique())


def delegation_grants(
    org_id: int, dept_id: int | None, cert_type: CertType
) -> list[tuple[Domain, list[str] | None]]:
    """Like delegated_domains, with each delegation's request privileges (None: default)."""
    place = Delegation.department_id.is_(None)
    if dept_id is not None:
        place = place | (Delegation.department_id == dept_id)
    query = (
        select(Domain, Delegation.request_privileges)
        .join(Delegation, Delegation.domain_id == Domain.id)
        .where(
            Domain.active.is_(True),
            Delegation.organization_id == org_id,
            Delegation.status == DelegationStatus.APPROVED,
            getattr(Delegation, cert_type.value).is_(True),
            place,
        )
    )
    return [(d, p) for d, p in db.session.execute(query).all()]


def _where(org: Organization, dept: Department | None) -> str:
    return f"{org.name} / {dept.name}" if dept else org.name


def check_names_delegated(
    values: Sequence[str], org: Organization, dept: Department | None, cert_type: CertType
) -> None:
    """Every name of a certificate must lie in an active domain delegated (Approved) to
    the organization/department for ``cert_type``: DNS names in a domain, within the
    delegation's request privileges (covers_name), IP addresses in a delegated network,
    email addresses (rfc822Name) by their domain part, a device's URI by its host (a URN
    names no host, so nothing to delegate).

    Raises:
        DomainError: at the field "sans", naming the first name outside.
    """
    grants = delegation_grants(org.id, dept.id if dept else None, cert_type)
    domains = [d for d, _ in grants]
    where = _where(org, dept)
    for value in values:
        if ":" in value and not _looks_like_ip(value):  # a URI (device certificates)
            host = names.uri_host(value)
            if host is None:
                continue
            value = host.strip("[]")
        elif "@" in value:
            _check_email(value, domains, where, cert_type, field="sans")
            continue
        if _looks_like_ip(value):
            ip = ipaddress.ip_address(value)
            if not any(is_network(d.name) and ip in ipaddress.ip_network(d.name) for d in domains):
                raise DomainError(
                    f"The IP address {value} is not inside a network delegated to {where} for {cert_type.label} certificates.",
                    field="sans",
                )
            continue
        dns = [d for d in domains if not is_network(d.name)]
        if not any(
            covers_name(value, d.name, privileges)
            for d, privileges in grants
            if not is_network(d.name)
        ):
            if value.startswith("*.") and any(
                names.is_name_within_domain(value[2:], d.name) for d in dns
            ):
                raise DomainError(
                    f"The wildcard name {value} needs a wildcard domain (*.{value[2:]} or above) delegated to {where}.",
                    field="sans",
                )
            raise DomainError(
                f"The name {value} is not inside an active domain delegated to {where} for {cert_type.label} certificates.",
                field="sans",
            )


def check_email_delegated(
    email: str,
    *,
    organization_id: int,
    department_id: int | None,
    cert_type: CertType = CertType.CLIENT,
    field: str = "email",
) -> str:
    """The email address, normalised (A-label domain), when its domain part lies in an
    active domain delegated (Approved) to the organization/department for ``cert_type``:
    the rule for every rfc822Name Certwright certifies (client and device requests, a
    person's email and alternative emails).

    Raises:
        DomainError: not an email address, or its domain not delegated there (``field``).
    """
    org = db.session.get(Organization, organization_id)
    if org is None:
        raise NotFound("No such organization.", field="organization")
    dept = db.session.get(Department, department_id) if department_id is not None else None
    if department_id is not None and (dept is None or dept.organization_id != org.id):
        raise DomainError(
            "That department does not belong to the chosen organization.", field="department"
        )
    domains = delegated_domains(org.id, department_id, cert_type)
    return _check_email(email, domains, _where(org, dept), cert_type, field=field)


def _check_email(
    email: str, domains: Sequence[Domain], where: str, cert_type: CertType, *, field: str
) -> str:
    try:
        address = names.normalize_email(email)
    except NamePolicyError as exc:
        raise DomainError(f"Invalid email address: {exc}", field=field) from exc
    mail_domain = address.rpartition("@")[2]
    # A mailbox belongs to exactly its domain: "*.example.com" (subdomains only) does not
    # cover user@example.com, "example.com" covers user@example.com and user@eu.example.com.
    if not any(
        names.is_name_within_domain(mail_domain, d.name) for d in domains if not is_network(d.name)
    ):
        raise DomainError(
            f"The email address {address} is not inside an active domain delegated to {where} for {cert_type.label} certificates.",
            field=field,
        )
    return address


def pending_count() -> int:
    return int(
        db.session.execute(
            select(func.count())
            .select_from(Delegation)
            .where(Delegation.status == DelegationStatus.REQUESTED)
        ).scalar_one()
    )
