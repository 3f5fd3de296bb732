"""Report records for the REST API's report service: account activity, SSL, client and
device certificates, domains; each through the viewer's scope (docs/api.md, reports).

Account activity is the audit log, which only an MRAO may read (docs/authorization.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, AdminKind, AuditEvent, Certificate, CertStatus, CertType
from app.models.types import utcnow
from app.services.certificates import inventory, orders
from app.services.errors import Forbidden
from app.services.scope import Actor, scope_of


@dataclass(frozen=True)
class Period:
    """from/to on one date attribute (None: not filtered)."""

    start: datetime | None = None
    end: datetime | None = None

    def holds(self, value: datetime | None) -> bool:
        if self.start is None and self.end is None:
            return True
        if value is None:
            return False
        return (self.start is None or value >= self.start) and (
            self.end is None or value <= self.end
        )


@dataclass(frozen=True)
class Activity:
    event: AuditEvent
    admin: Admin | None


def activity(*, actor: Actor, period: Period = Period()) -> list[Activity]:
    """Audit events (ascending), MRAO only.

    Raises:
        Forbidden: the viewer is not an MRAO.
    """
    if not scope_of(actor).is_master:
        raise Forbidden("Only an MRAO may read the account activity.")
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if period.start is not None:
        query = query.where(AuditEvent.at >= period.start)
    if period.end is not None:
        query = query.where(AuditEvent.at <= period.end)
    events = list(db.session.execute(query).scalars())
    ids = {e.actor_id for e in events if e.actor_id is not None}
    admins = (
        {a.id: a for a in db.session.execute(select(Admin).where(Admin.id.in_(ids))).scalars()}
        if ids
        else {}
    )
    return [Activity(e, admins.get(e.actor_id) if e.actor_id else None) for e in events]


def access_method(item: Activity) -> str:
    if item.admin is None:
        return (
            "System"
            if item.event.actor in ("system", "scheduler", "cli", "bootstrap")
            else "Web UI"
        )
    return "Web API" if item.admin.kind == AdminKind.API else "Web UI"


# SSL certificates --------------------------------------------------------------------------


def ssl_orders(
    *,
    actor: Actor,
    organization_ids: Sequence[int] = (),
    common_name: str | None = None,
    external_requester: str | None = None,
    statuses: Sequence[str] = (),
    date_attribute: str | None = None,
    period: Period = Period(),
) -> list[orders.Order]:
    """SSL orders in scope; ``statuses`` in SCM's words (empty: any); ``date_attribute`` one
    of requested, issued, expires, revoked, to which ``period`` applies."""
    found, _ = orders.list_orders(actor=actor, cert_type=CertType.SSL)
    orders.renewals_of(found)
    now = utcnow()
    picked = []
    for order in found:
        req, cert = order.current, order.certificate
        if organization_ids and req.organization_id not in organization_ids:
            continue
        if common_name is not None and common_name.strip().lower() != req.common_name.lower():
            continue
        if external_requester is not None and external_requester.strip().lower() not in [
            e.lower() for e in req.external_requesters
        ]:
            continue
        if statuses and order.status(now) not in statuses:
            continue
        if date_attribute is not None:
            value = {
                "requested": order.root.created_at,
                "issued": cert.not_before if cert else None,
                "expires": cert.not_after if cert else None,
                "revoked": cert.revoked_at if cert else None,
            }[date_attribute]
            if not period.holds(value):
                continue
        picked.append(order)
    return picked


# Client and device certificates: the inventory ---------------------------------------------


def certificates(
    *,
    actor: Actor,
    cert_type: CertType,
    organization_ids: Sequence[int] = (),
    statuses: Sequence[CertStatus] = (),
    date_attribute: str | None = None,
    period: Period = Period(),
) -> list[Certificate]:
    """Certificates of one type in scope (ascending id)."""
    query = select(Certificate).where(Certificate.cert_type == cert_type).order_by(Certificate.id)
    clause = inventory.visible_clause(scope_of(actor), cert_type)
    if clause is not None:
        query = query.where(clause)
    if organization_ids:
        query = query.where(Certificate.organization_id.in_(list(organization_ids)))
    if statuses:
        query = query.where(Certificate.status.in_(list(statuses)))
    found = list(db.session.execute(query).scalars())
    if date_attribute is None:
        return found
    attribute = {
        "enrolled": lambda c: c.created_at,
        "issued": lambda c: c.not_before,
        "expires": lambda c: c.not_after,
        "revoked": lambda c: c.revoked_at,
    }[date_attribute]
    return [c for c in found if period.holds(attribute(c))]
