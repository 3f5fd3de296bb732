"""Who receives a notice: roles turned into addresses, in SQL for the sweep (set-based, over a
table of due certificates) and in Python for events (a handful at a time).

Every address comes from data: administrators' e-mails, a request's requester and external
requesters, the person a client certificate is for (certificate_requests.person_id ->
persons.email), a rule's validated subscribers. The
composer checks each again before a message is made (app.notices.addresses).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, true, union_all
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.selectable import CTE

from app.extensions import db
from app.models import (
    Admin,
    AdminScope,
    CertificateRequest,
    CertType,
    Person,
    RecipientRole,
    Role,
)

ADMINS = Admin.__table__
SCOPES = AdminScope.__table__
REQUESTS = CertificateRequest.__table__
PERSONS = Person.__table__


def json_values(column: Any) -> Any:
    """A JSON array column as rows of text (table-valued; the column is named ``value``)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.json_array_elements_text(column).table_valued("value")
    return func.json_each(column).table_valued("value")


def role_selects(
    due: CTE, roles: Iterable[str], subscribers: Sequence[str], cert_type: CertType | None
) -> list[Select[Any]]:
    """One SELECT per role (and one for the subscribers) of (due row, recipient): ``due``
    has the columns cid, org, dept, request_id, sans, threshold, occurrence."""
    base = [due.c.cid, due.c.org, due.c.dept, due.c.threshold, due.c.occurrence]
    selects: list[Select[Any]] = []
    for role in sorted(set(roles)):
        if role == RecipientRole.MRAO:
            selects.append(
                select(*base, func.lower(ADMINS.c.email).label("recipient")).select_from(
                    due.join(
                        ADMINS,
                        and_(ADMINS.c.role == Role.MRAO, ADMINS.c.active.is_(true())),
                    )
                )
            )
        elif role == RecipientRole.ADMINS:
            privilege: ColumnElement[bool] = (
                getattr(SCOPES.c, cert_type.value).is_(true()) if cert_type else true()
            )
            selects.append(
                select(*base, func.lower(ADMINS.c.email).label("recipient"))
                .select_from(
                    due.join(
                        SCOPES,
                        and_(
                            SCOPES.c.organization_id == due.c.org,
                            or_(
                                SCOPES.c.department_id.is_(None),
                                SCOPES.c.department_id == due.c.dept,
                            ),
                            privilege,
                        ),
                    ).join(
                        ADMINS,
                        and_(
                            ADMINS.c.id == SCOPES.c.admin_id,
                            ADMINS.c.active.is_(true()),
                            ADMINS.c.role != Role.MRAO,
                        ),
                    )
                )
                .where(true())
            )
        elif role == RecipientRole.REQUESTER:
            selects.append(
                select(*base, func.lower(REQUESTS.c.requester_email).label("recipient"))
                .select_from(due.join(REQUESTS, REQUESTS.c.id == due.c.request_id))
                .where(REQUESTS.c.requester_email != "")
            )
        elif role == RecipientRole.EXTERNAL:
            items = json_values(REQUESTS.c.external_requesters)
            selects.append(
                select(*base, func.lower(items.c.value).label("recipient"))
                .select_from(
                    due.join(REQUESTS, REQUESTS.c.id == due.c.request_id).join(items, true())
                )
                .where(items.c.value != "")
            )
        elif role == RecipientRole.PERSON:
            selects.append(
                select(*base, func.lower(PERSONS.c.email).label("recipient"))
                .select_from(
                    due.join(REQUESTS, REQUESTS.c.id == due.c.request_id).join(
                        PERSONS, PERSONS.c.id == REQUESTS.c.person_id
                    )
                )
                .where(PERSONS.c.email != "")
            )
    if subscribers:
        listed = union_all(*(select(literal(a).label("address")) for a in subscribers)).subquery(
            "subscribers"
        )
        selects.append(
            select(*base, listed.c.address.label("recipient"))
            .select_from(due.join(listed, true()))
            .where(true())
        )
    return selects


# --- events: the same roles, resolved in Python -------------------------------------------


def mrao_addresses() -> list[str]:
    return sorted(
        {
            e.lower()
            for e in db.session.execute(
                select(Admin.email).where(Admin.role == Role.MRAO, Admin.active.is_(True))
            ).scalars()
        }
    )


def admin_addresses(org_id: int | None, dept_id: int | None, cert_type: str) -> list[str]:
    """Active RAO/DRAO whose scope covers (org, dept), holding cert_type's privilege if given."""
    if org_id is None:
        return []
    query = (
        select(Admin.email)
        .join(AdminScope, AdminScope.admin_id == Admin.id)
        .where(
            Admin.active.is_(True),
            Admin.role != Role.MRAO,
            AdminScope.organization_id == org_id,
            or_(AdminScope.department_id.is_(None), AdminScope.department_id == dept_id),
        )
    )
    if cert_type:
        query = query.where(getattr(AdminScope, CertType(cert_type).value).is_(True))
    return sorted({e.lower() for e in db.session.execute(query).scalars()})


class EventRecipients:
    """Addresses per role for events, the administrators' looked up once per batch."""

    def __init__(self) -> None:
        self._mrao: list[str] | None = None
        self._admins: dict[tuple[int | None, int | None, str], list[str]] = {}

    def for_roles(
        self,
        roles: Iterable[str],
        *,
        org_id: int | None,
        dept_id: int | None,
        cert_type: str,
        people: dict[str, list[str]],
    ) -> set[str]:
        found: set[str] = set()
        for role in roles:
            if role == RecipientRole.MRAO:
                if self._mrao is None:
                    self._mrao = mrao_addresses()
                found.update(self._mrao)
            elif role == RecipientRole.ADMINS:
                key = (org_id, dept_id, cert_type)
                if key not in self._admins:
                    self._admins[key] = admin_addresses(org_id, dept_id, cert_type)
                found.update(self._admins[key])
            else:
                found.update(a.lower() for a in people.get(role, []) if a)
        return found


def person_emails(person_ids: Iterable[int | None]) -> dict[int, str]:
    """The e-mail of each person (one query for a batch of requests)."""
    wanted = sorted({i for i in person_ids if i is not None})
    if not wanted:
        return {}
    return {
        int(pid): str(email)
        for pid, email in db.session.execute(
            select(Person.id, Person.email).where(Person.id.in_(wanted))
        ).all()
    }
