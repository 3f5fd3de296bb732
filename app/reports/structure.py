"""Account Structure as XML: organizations with their departments, domains with their
delegations, administrators with their privileges. Pure: dataclasses in, bytes out.

The output validates against ``schemas/account_structure.xsd`` (shipped with the code,
``SCHEMA_PATH``); text goes through the same XML 1.0 cleaning as every report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.reports.export import Cell, xml_text

SCHEMA_PATH = Path(__file__).parent / "schemas" / "account_structure.xsd"
NAMESPACE = "urn:certwright:account-structure:1"
CERT_TYPES = ("SSL", "Client", "Code Signing", "Device")


@dataclass(frozen=True)
class DepartmentNode:
    id: int
    name: str


@dataclass(frozen=True)
class OrganizationNode:
    id: int
    name: str
    address: tuple[str, str, str] = ("", "", "")
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""
    departments: Sequence[DepartmentNode] = field(default_factory=tuple)


@dataclass(frozen=True)
class DelegationNode:
    id: int
    organization_id: int
    department_id: int | None
    types: Sequence[str]  # of CERT_TYPES
    status: str  # Requested | Approved | Rejected


@dataclass(frozen=True)
class DomainNode:
    id: int
    name: str
    description: str
    active: bool
    delegations: Sequence[DelegationNode] = field(default_factory=tuple)


@dataclass(frozen=True)
class GrantNode:
    organization_id: int
    department_id: int | None
    types: Sequence[str]


@dataclass(frozen=True)
class AdminNode:
    id: int
    login: str
    name: str
    email: str
    role: str  # MRAO | RAO | DRAO
    active: bool
    grants: Sequence[GrantNode] = field(default_factory=tuple)


@dataclass(frozen=True)
class AccountStructure:
    generated_at: dt.datetime
    organizations: Sequence[OrganizationNode]
    domains: Sequence[DomainNode]
    admins: Sequence[AdminNode]


def _el(name: str, value: Cell) -> str:
    return f"<{name}>{xml_text(value)}</{name}>"


def _types(types: Sequence[str]) -> str:
    ordered = [t for t in CERT_TYPES if t in types]
    return "<types>" + "".join(_el("type", t) for t in ordered) + "</types>"


def _dept_attr(department_id: int | None) -> str:
    return "" if department_id is None else f' department="{department_id}"'


def render(structure: AccountStructure) -> Iterator[bytes]:
    """The document as a stream of bytes, one element of the top level at a time."""
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<accountStructure xmlns="{NAMESPACE}" '
        f'generated="{xml_text(structure.generated_at)}">\n<organizations>\n'
    ).encode()
    for org in structure.organizations:
        departments = "".join(
            f'<department id="{d.id}">{_el("name", d.name)}</department>' for d in org.departments
        )
        address = "".join(_el("line", line) for line in org.address if line)
        yield (
            f'<organization id="{org.id}">{_el("name", org.name)}'
            f"<address>{address}</address>{_el('city', org.city)}{_el('state', org.state)}"
            f"{_el('postalCode', org.postal_code)}{_el('country', org.country)}"
            f"<departments>{departments}</departments></organization>\n"
        ).encode()
    yield b"</organizations>\n<domains>\n"
    for domain in structure.domains:
        delegations = "".join(
            f'<delegation id="{d.id}" organization="{d.organization_id}"'
            f'{_dept_attr(d.department_id)} status="{xml_text(d.status)}">'
            f"{_types(d.types)}</delegation>"
            for d in domain.delegations
        )
        yield (
            f'<domain id="{domain.id}" active="{str(domain.active).lower()}">'
            f"{_el('name', domain.name)}{_el('description', domain.description)}"
            f"<delegations>{delegations}</delegations></domain>\n"
        ).encode()
    yield b"</domains>\n<admins>\n"
    for admin in structure.admins:
        grants = "".join(
            f'<grant organization="{g.organization_id}"{_dept_attr(g.department_id)}>'
            f"{_types(g.types)}</grant>"
            for g in admin.grants
        )
        yield (
            f'<admin id="{admin.id}" role="{xml_text(admin.role)}" '
            f'active="{str(admin.active).lower()}">{_el("login", admin.login)}'
            f"{_el('name', admin.name)}{_el('email', admin.email)}"
            f"<grants>{grants}</grants></admin>\n"
        ).encode()
    yield b"</admins>\n</accountStructure>\n"
