"""The configuration in the database, read into the canonical shape of document.py (what
export writes and what plan compares a file with). Nothing secret is read: no CA key, no
password hash, no session."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import (
    Admin,
    AssignmentRule,
    CertificateAuthority,
    CertificateProfile,
    Delegation,
    Department,
    DiscoveryTask,
    Domain,
    MailTemplate,
    Organization,
    PortalSettings,
)
from app.services.ca.authorities import purpose_of
from app.services.configuration.document import (
    MAIL_KINDS,
    NOTICE_KINDS,
    ORG_TEXT,
    SECTIONS,
    Doc,
)
from app.services.persons.invitations import DEFAULT_DAYS


def place_name(org: Organization, dept: Department | None) -> str:
    return f"{org.name}/{dept.name}" if dept is not None else org.name


def organizations() -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(Organization)
        .options(selectinload(Organization.departments))
        .order_by(Organization.name)
    ).scalars()
    days = {
        s.organization_id: s.invitation_days
        for s in db.session.execute(select(PortalSettings)).scalars()
    }
    templates: dict[int, dict[str, dict[str, str]]] = {}
    notices: dict[int, dict[str, dict[str, str]]] = {}
    for t in db.session.execute(select(MailTemplate)).scalars():
        if t.kind in NOTICE_KINDS:
            notices.setdefault(t.organization_id, {})[t.kind] = {
                "subject": t.subject,
                "text": t.body,
                "html": t.html or "",
            }
            continue
        templates.setdefault(t.organization_id, {})[t.kind] = {
            "subject": t.subject,
            "body": t.body,
        }
    out = []
    for org in rows:
        entry: dict[str, Any] = {"name": org.name}
        entry.update({key: getattr(org, key) or "" for key in ORG_TEXT})
        entry["country"] = org.country
        entry["departments"] = sorted((d.name for d in org.departments), key=str.lower)
        mine = templates.get(org.id, {})
        entry["portal"] = {
            "invitation_days": days.get(org.id, DEFAULT_DAYS),
            "mail_templates": {kind: mine[kind] for kind in MAIL_KINDS if kind in mine},
        }
        own = notices.get(org.id, {})
        if own:  # written only when the organization has any (absent: left alone)
            entry["notification_templates"] = {k: own[k] for k in NOTICE_KINDS if k in own}
        out.append(entry)
    return out


def authorities() -> list[dict[str, Any]]:
    out = []
    cas = db.session.execute(
        select(CertificateAuthority).order_by(CertificateAuthority.id)
    ).scalars()
    for ca in cas:
        cert = x509.load_der_x509_certificate(ca.cert_der)
        out.append(
            {
                "name": ca.name,
                "customer": ca.customer_name,
                "key_type": ca.key_type,
                "signature_hash": ca.signature_hash,
                "parent": ca.parent.name if ca.parent is not None else None,
                "city": ca.locality,
                "state": ca.state,
                "country": ca.country,
                "lifetime_years": None,
                "fingerprint": ca.fingerprint,
                "purpose": _purpose(ca),
                # Read-only: what the CA is (apply never changes a CA's certificate).
                "status": ca.status.value,
                "subject": ca.subject_dn,
                "not_before": ca.not_before.isoformat(),
                "not_after": ca.not_after.isoformat(),
                "serial": ca.serial_hex,
                "certificate": cert.public_bytes(Encoding.PEM).decode(),
            }
        )
    return out


def profiles() -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(CertificateProfile)
        .options(selectinload(CertificateProfile.ca))
        .order_by(CertificateProfile.name)
    ).scalars()
    return [
        {
            "name": p.name,
            "description": p.description or "",
            "type": p.cert_type.value,
            "ca": p.ca.name,
            "terms": sorted(set(p.terms or [])),
            "key_types": sorted(set(p.key_types or [])),
            "approval": "required" if p.requires_approval else "automatic",
            "four_eyes": p.four_eyes,
            "key_reuse": p.allow_key_reuse,
            "client_auth": p.include_client_auth,
            "server_auth": p.include_server_auth,
            "key_escrow": p.key_escrow,
            "legacy_pkcs12": p.pkcs12_legacy,
            "lint": p.lint_mode.value,
            "lint_sample": p.lint_sample_n,
            "acme_directory": p.acme_slug or "",
            "active": p.active,
        }
        for p in rows
    ]


def domains() -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(Domain)
        .options(
            selectinload(Domain.delegations).selectinload(Delegation.organization),
            selectinload(Domain.delegations).selectinload(Delegation.department),
        )
        .order_by(Domain.name)
    ).scalars()
    out = []
    for domain in rows:
        delegations = [
            {
                "to": place_name(d.organization, d.department),
                "types": sorted(t.value for t in d.types()),
                "status": d.status.value,
            }
            for d in domain.delegations
        ]
        out.append(
            {
                "name": domain.name,
                "description": domain.description or "",
                "active": domain.active,
                "delegations": sorted(delegations, key=lambda d: d["to"].lower()),
            }
        )
    return out


def assignment_rules() -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(AssignmentRule).order_by(AssignmentRule.organization_id, AssignmentRule.name)
    ).scalars()
    return [
        {
            "name": rule.name,
            "to": place_name(rule.organization, rule.department),
            "match": rule.match_mode,
            "conditions": [
                {"field": c["field"], "operator": c["operator"], "value": str(c["value"])}
                for c in rule.conditions
            ],
        }
        for rule in rows
    ]


def discovery_tasks() -> list[dict[str, Any]]:
    rows = db.session.execute(select(DiscoveryTask).order_by(DiscoveryTask.name)).scalars()
    return [
        {
            "name": task.name,
            "organization": task.organization.name if task.organization is not None else None,
            "description": task.description or "",
            "ranges": "\n".join(
                line.strip() for line in task.ranges.replace(",", "\n").splitlines() if line.strip()
            ),
            "ports": task.ports.replace(" ", ""),
            "host_overrides": "\n".join(
                line.strip() for line in (task.host_overrides or "").splitlines() if line.strip()
            ),
            "connect_timeout": float(task.connect_timeout),
            "handshake_timeout": float(task.handshake_timeout),
            "concurrency": int(task.concurrency),
            "schedule": dict(task.schedule or {"kind": "manual"}),
            "rules": [
                {"name": r.name, "to": place_name(r.organization, r.department)} for r in task.rules
            ],
        }
        for task in rows
    ]


def admins() -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(Admin).options(selectinload(Admin.scopes)).order_by(Admin.login)
    ).scalars()
    return [
        {
            "login": a.login,
            "email": a.email,
            "full_name": a.full_name or "",
            "role": a.role.value,
            "active": a.active,
            "scopes": sorted(
                (
                    {
                        "to": place_name(s.organization, s.department),
                        "types": sorted(t.value for t in s.privileges()),
                    }
                    for s in a.scopes
                ),
                key=lambda s: s["to"].lower(),
            ),
        }
        for a in rows
    ]


READERS = {
    "organizations": organizations,
    "authorities": authorities,
    "profiles": profiles,
    "domains": domains,
    "assignment_rules": assignment_rules,
    "discovery_tasks": discovery_tasks,
    "admins": admins,
}


def read(sections: tuple[str, ...] = SECTIONS) -> Doc:
    return {section: READERS[section]() for section in sections}


def _purpose(ca: CertificateAuthority) -> str | None:
    """What an issuing CA issues (CaPurpose value); None for a root or a CA made before
    purposes (it issues every kind)."""
    if ca.is_root:
        return None
    purpose = purpose_of(ca)
    return purpose.value if purpose is not None else None
