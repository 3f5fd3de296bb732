"""Domain control validation (DCV) by CNAME: start (a random host and target to publish),
submit (look the record up now), and each domain's validation state.

A domain an administrator added is validated by that administrator's word (method MANUAL):
for a private CA the delegation is the authority, and DCV does not gate issuance. A CNAME
proof records that someone also controls the domain's DNS (method CNAME), valid 397 days
(BR 3.2.2.4's reuse period for public CAs); an expired proof reads EXPIRED until renewed.
The lookup uses the system resolver, or CW_DCV_NAMESERVERS ("ip[:port],...") when set.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import dns.exception
import dns.name
import dns.resolver
from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Admin, Domain
from app.models.types import utcnow
from app.services import audit
from app.services.errors import DomainError, Forbidden
from app.services.scope import Actor, scope_of
from app.services.structure import domain_views

VALID_DAYS = 397
POINT_SUFFIX = "dcv.certwright.invalid."
DCV_FIELDS = (
    "dcv_method",
    "dcv_validated_at",
    "dcv_expires_at",
    "dcv_order_status",
    "dcv_order_method",
)


class UnknownDomain(DomainError):
    pass


class NotHighLevel(DomainError):
    """A name below a registered domain: the registered domain is what gets validated."""


class WrongState(DomainError):
    """Submit before start."""


@dataclass(frozen=True)
class Validation:
    domain: Domain
    status: str  # NOT_VALIDATED | VALIDATED | EXPIRED
    method: str
    validated: datetime
    expires: datetime | None
    order_status: str  # NOT_INITIATED | INITIATED | SUBMITTED
    order_method: str
    host: str | None
    point: str | None


def _names(domain: Domain) -> tuple[str, str]:
    base = domain.name.removeprefix("*.")
    token = domain.dcv_token
    return f"_{token[:32]}.{base}.", f"{token[32:48]}.{token[48:]}.{POINT_SUFFIX}"


def validation_of(domain: Domain, now: datetime | None = None) -> Validation:
    state = domain_views.dcv_state(domain, now or utcnow())
    host = point = None
    if domain.dcv_token:
        host, point = _names(domain)
    return Validation(
        domain,
        state.status,
        state.method,
        state.validated,
        state.expires,
        domain.dcv_order_status or "NOT_INITIATED",
        domain.dcv_order_method,
        host,
        point,
    )


def find_domain(*, actor: Actor, name: str) -> Domain:
    """The visible registered domain of this name.

    Raises:
        DomainError: not 3-255 characters. NotHighLevel: a name below a registered domain.
        UnknownDomain: no such (visible) domain.
    """
    text = name.strip().lower().rstrip(".")
    if not 3 <= len(text) <= 255:
        raise DomainError("The domain must be 3 to 255 characters.", field="domain")
    visible = domain_views.list_domains(actor=actor)
    for view in visible:
        if view.domain.name in (text, f"*.{text}"):
            return view.domain
    for view in visible:
        base = view.domain.name.removeprefix("*.")
        if text.endswith(f".{base}"):
            raise NotHighLevel(
                f"'{text}' is not a high-level domain: validate {base} instead.", field="domain"
            )
    hidden = db.session.execute(
        select(Domain.id).where(Domain.name.in_((text, f"*.{text}"))).order_by(Domain.id)
    ).scalar()
    if hidden is not None:  # registered, outside the actor's scope: answered as missing
        audit.record_denied(
            actor=actor,
            object_type="Domain",
            object_id=hidden,
            attempted="domain control validation",
        )
    raise UnknownDomain(f"The domain '{text}' does not exist.", field="domain")


def _acting(actor: Admin, domain: Domain) -> None:
    scope = scope_of(actor)
    if scope.is_master or any(
        scope.covers(d.organization_id, d.department_id) for d in domain.delegations
    ):
        return
    raise Forbidden(f"You may not validate {domain.name}: none of its delegations is yours.")


def list_validations(*, actor: Actor) -> list[Validation]:
    now = utcnow()
    return [validation_of(v.domain, now) for v in domain_views.list_domains(actor=actor)]


def start_cname(*, actor: Admin, name: str) -> Validation:
    """A new CNAME challenge for the domain: publish ``host`` CNAME ``point``, then submit."""
    domain = find_domain(actor=actor, name=name)
    _acting(actor, domain)
    before = audit.snapshot(domain, DCV_FIELDS)
    domain.dcv_token = secrets.token_hex(32)
    domain.dcv_order_status = "INITIATED"
    domain.dcv_order_method = "CNAME"
    db.session.flush()
    host, point = _names(domain)
    audit.record(
        action="dcv.start",
        actor=actor,
        object_type="Domain",
        object_id=domain.id,
        label=domain.name,
        before=before,
        after={**audit.snapshot(domain, DCV_FIELDS), "host": host, "point": point},
    )
    return validation_of(domain)


def _resolver() -> dns.resolver.Resolver:
    configured = str(current_app.config.get("CW_DCV_NAMESERVERS") or "").strip()
    if not configured:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        servers, ports = [], {}
        for item in configured.split(","):
            text = item.strip()
            host, port = (text.rsplit(":", 1)) if text.count(":") == 1 else (text, "")
            servers.append(host)
            if port:
                ports[host] = int(port)
        resolver.nameservers = servers
        resolver.nameserver_ports = ports
    resolver.lifetime = 5.0
    return resolver


def lookup_cname(host: str) -> str | None:
    """The CNAME target published at ``host`` (absolute, lower-case), or None."""
    try:
        answer = _resolver().resolve(host, "CNAME")
    except (dns.exception.DNSException, OSError):
        return None
    for record in answer:
        return str(record.target).lower()  # type: ignore[attr-defined]
    return None


def submit_cname(*, actor: Admin, name: str) -> tuple[Validation, bool, str]:
    """Check the published CNAME now; (state, passed, what was found).

    Raises:
        WrongState: no CNAME validation was started for the domain.
    """
    domain = find_domain(actor=actor, name=name)
    _acting(actor, domain)
    if domain.dcv_order_method != "CNAME" or not domain.dcv_token:
        raise WrongState(
            f"No CNAME validation was started for {domain.name}; start one first.", field="domain"
        )
    host, point = _names(domain)
    found = lookup_cname(host)
    passed = found is not None and dns.name.from_text(found) == dns.name.from_text(point)
    before = audit.snapshot(domain, DCV_FIELDS)
    domain.dcv_order_status = "SUBMITTED"
    if passed:
        now = utcnow()
        domain.dcv_method = "CNAME"
        domain.dcv_validated_at = now
        domain.dcv_expires_at = now + timedelta(days=VALID_DAYS)
    db.session.flush()
    audit.record(
        action="dcv.submit",
        actor=actor,
        object_type="Domain",
        object_id=domain.id,
        label=domain.name,
        before=before,
        after=audit.snapshot(domain, DCV_FIELDS),
        message=f"CNAME {host} -> {found or 'no record'} ({'matches' if passed else 'expected ' + point})",
    )
    return validation_of(domain), passed, found or ""


def expiring_within(validations: list[Validation], days: int) -> list[Validation]:
    limit = utcnow() + timedelta(days=days)
    return [v for v in validations if v.expires is not None and v.expires <= limit]
