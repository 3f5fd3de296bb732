"""Findings per certificate: what reading it found (odd serials, v1, unknown critical
extensions, undecodable names), what is weak about its key or signature, and what only
the whole inventory shows (a key several certificates share, within the organization or
across organizations; a key served on several hosts; an issuer and serial that another
certificate has too; a key on the blocklist of compromised keys).

A key shared with another organization's certificate is the one finding only an MRAO sees
(MRAO_ONLY): an RAO must not learn from it what another organization holds. Every function
that shows, filters or counts findings for an admin leaves it out for the others.

Stored by code in certificate_findings (an upsert: recomputing is safe), written in the
transaction that writes the certificates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Table, and_, false, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import BlockedKey, Certificate, CertificateFinding, Endpoint, NotificationType
from app.models.types import utcnow
from app.pki.bundles import Finding
from app.services import bulk
from app.services.certificates import inventory
from app.services.notifications import events
from app.services.scope import Actor, scope_of

LINT_ERROR: Final = "lint_error"
# Findings only an MRAO is shown (in lists, filters, counts, details and notices).
MRAO_ONLY: Final = frozenset({"shared_key_other_org"})
LINT_WARNING: Final = "lint_warning"
# code -> a short label for lists and filters
LABELS = {
    "serial_not_positive": "Serial not positive",
    "serial_too_long": "Serial over 20 octets",
    "version_1": "Version 1",
    "extensions_unreadable": "Unreadable extensions",
    "unknown_critical_extension": "Unknown critical extension",
    "subject_not_decodable": "Undecodable subject",
    "issuer_not_decodable": "Undecodable issuer",
    "duplicate_issuer_serial": "Issuer and serial reused",
    "key_unreadable": "Unreadable key",
    "weak_key_size": "Weak key size",
    "roca": "ROCA key",
    "close_primes": "Close-prime RSA key",
    "weak_signature": "SHA-1/MD5 signature",
    "shared_key": "Key shared with other certificates",
    "shared_key_other_org": "Key shared with another organization",
    "key_on_hosts": "Key served on several hosts",
    "blocked_key": "Compromised key (blocklist)",
    "debian_weak_key": "Debian weak key",
    "lint_failed": "pkilint could not check it",
    # Filters over the pkilint findings (stored under pkilint's own codes, source "lint").
    LINT_ERROR: "pkilint error",
    LINT_WARNING: "pkilint warning",
}


@dataclass(frozen=True)
class Found:
    certificate_id: int
    finding: Finding
    source: str  # "parse", "key" or "inventory"


def store(found: Iterable[Found]) -> int:
    """Upsert findings by (certificate, code); how many rows were new."""
    now = utcnow()
    rows = [
        {
            "certificate_id": f.certificate_id,
            "code": f.finding.code,
            "severity": f.finding.severity,
            "source": f.source,
            "detail": f.finding.detail,
            "created_at": now,
        }
        for f in found
    ]
    if not rows:
        return 0
    return insert_ignoring(CertificateFinding.__table__, rows, ["certificate_id", "code"])


def insert_ignoring(table: Table, rows: list[dict[str, Any]], keys: list[str]) -> int:
    """INSERT ... ON CONFLICT (keys) DO NOTHING (app.services.bulk); rows inserted."""
    return len(bulk.insert_ignoring(table, rows, keys, returning=keys[0]))


@dataclass(frozen=True)
class Facts:
    """What the inventory findings need of a certificate an import batch is about to write."""

    issuer_dn: str
    serial_hex: str
    spki_sha256: str


@dataclass(frozen=True)
class Alike:
    """Certificates already stored that have a key, or an issuer and serial, of a batch
    about to be written: (id, key, organization) and (id, issuer, serial)."""

    keys: list[tuple[int, str, int | None]]
    serials: list[tuple[int, str, str]]

    def placed(self, cert_ids: set[int], organization_id: int | None) -> Alike:
        """As after these certificates were placed in ``organization_id``."""
        if not cert_ids:
            return self
        keys = [(i, k, organization_id if i in cert_ids else o) for i, k, o in self.keys]
        return Alike(keys, self.serials)


def stored_alike(facts: Iterable[Facts]) -> Alike:
    """Read before the batch is written, so that both look-ups find only other
    certificates: usually none, and an index probe that finds nothing reads no table page
    (after the write each probe also fetched the batch's own rows: at 100,000 certificates
    that was a third of PostgreSQL's work per certificate)."""
    facts = list(facts)
    spkis = sorted({f.spki_sha256 for f in facts if f.spki_sha256})
    pairs = {(f.issuer_dn, f.serial_hex) for f in facts if f.issuer_dn != ""}
    keys: list[tuple[int, str, int | None]] = []
    if spkis:
        keys = [
            (cert_id, spki, org_id)
            for cert_id, spki, org_id in db.session.execute(
                select(Certificate.id, Certificate.spki_sha256, Certificate.organization_id).where(
                    bulk.among(Certificate.spki_sha256, spkis)
                )
            )
        ]
    serials: list[tuple[int, str, str]] = []
    if pairs:
        # By serial (indexed), then the issuer in Python: an OR of hundreds of
        # (issuer, serial) pairs costs more to build and plan than to run.
        serials = [
            (cert_id, issuer, serial)
            for cert_id, issuer, serial in db.session.execute(
                select(Certificate.id, Certificate.issuer_dn, Certificate.serial_hex).where(
                    bulk.among(Certificate.serial_hex, sorted({s for _, s in pairs}))
                )
            )
            if (issuer, serial) in pairs
        ]
    return Alike(keys, serials)


def batch_findings(
    new: Mapping[int, Facts], organization_id: int | None, alike: Alike
) -> list[Found]:
    """The inventory findings of certificates an import batch just wrote (``new``: id ->
    facts, all placed in ``organization_id``) and of the stored ones they involve
    (``alike``, read by stored_alike() before the write): the same findings as
    inventory_findings() computes from the table."""
    if not new:
        return []
    holders: dict[str, list[tuple[int, int | None]]] = {}
    for cert_id, spki, org_id in alike.keys:
        holders.setdefault(spki, []).append((cert_id, org_id))
    for cert_id, f in new.items():
        if f.spki_sha256:
            holders.setdefault(f.spki_sha256, []).append((cert_id, organization_id))
    found = _key_sharing({k: h for k, h in holders.items() if len(h) > 1}, set(new))
    same: dict[tuple[str, str], list[int]] = {}
    for cert_id, issuer, serial in alike.serials:
        same.setdefault((issuer, serial), []).append(cert_id)
    for cert_id, f in new.items():
        if f.issuer_dn != "":
            same.setdefault((f.issuer_dn, f.serial_hex), []).append(cert_id)
    found += [
        Found(cert_id, _duplicate_serial(serial), "inventory")
        for (_, serial), ids in same.items()
        if len(ids) > 1
        for cert_id in ids
    ]
    spkis = sorted({f.spki_sha256 for f in new.values() if f.spki_sha256})
    blocked = set(
        db.session.execute(
            select(BlockedKey.spki_sha256).where(bulk.among(BlockedKey.spki_sha256, spkis))
        ).scalars()
    )
    found += [
        Found(cert_id, BLOCKED, "inventory")
        for cert_id, f in new.items()
        if f.spki_sha256 in blocked
    ]
    return found


def _key_sharing(shared: Mapping[str, list[tuple[int, int | None]]], new: set[int]) -> list[Found]:
    """shared_key / shared_key_other_org for every holder of these shared keys ((id,
    organization) per certificate), except those already flagged."""
    if not shared:
        return []
    stored = [
        cert_id for holders in shared.values() for cert_id, _ in holders if cert_id not in new
    ]
    flagged = (
        {
            (cert_id, code)
            for cert_id, code in db.session.execute(
                select(CertificateFinding.certificate_id, CertificateFinding.code).where(
                    CertificateFinding.certificate_id.in_(stored),
                    CertificateFinding.code.in_([SHARED_KEY.code, SHARED_KEY_OTHER_ORG.code]),
                )
            )
        }
        if stored
        else set()
    )
    found: list[Found] = []
    for holders in shared.values():
        by_org: dict[int | None, int] = {}
        for _, org_id in holders:
            by_org[org_id] = by_org.get(org_id, 0) + 1
        for cert_id, org_id in holders:
            if by_org[org_id] > 1 and (cert_id, SHARED_KEY.code) not in flagged:
                found.append(Found(cert_id, SHARED_KEY, "inventory"))
            others = any(n for other, n in by_org.items() if other != org_id)
            if others and (cert_id, SHARED_KEY_OTHER_ORG.code) not in flagged:
                found.append(Found(cert_id, SHARED_KEY_OTHER_ORG, "inventory"))
    return found


def inventory_findings(certificate_ids: Sequence[int]) -> list[Found]:
    """Findings only the inventory shows, for these certificates and the others they
    involve: the same key in several certificates, an issuer and serial that two different
    certificates carry (RFC 5280 §4.1.2.2: unique per CA), a blocklisted key."""
    if not certificate_ids:
        return []
    found = _shared_key_findings(certificate_ids)
    pairs = [
        (issuer, serial)
        for issuer, serial in db.session.execute(
            select(Certificate.issuer_dn, Certificate.serial_hex).where(
                Certificate.id.in_(certificate_ids), Certificate.issuer_dn != ""
            )
        )
    ]
    found += _duplicate_serials(pairs)
    for cert_id in db.session.execute(
        select(Certificate.id).where(
            Certificate.id.in_(certificate_ids),
            Certificate.spki_sha256.in_(select(BlockedKey.spki_sha256)),
        )
    ).scalars():
        found.append(Found(cert_id, BLOCKED, "inventory"))
    return found


def _duplicate_serial(serial: str) -> Finding:
    return Finding(
        "duplicate_issuer_serial",
        "error",
        f"Another certificate has the same issuer and serial {serial}: a CA MUST give each "
        "certificate a unique serial (RFC 5280 §4.1.2.2); revoking one revokes both.",
    )


def _duplicate_serials(pairs: Sequence[tuple[str, str]]) -> list[Found]:
    """duplicate_issuer_serial on every certificate that shares one of these (issuer,
    serial) pairs with another certificate."""
    found: list[Found] = []
    if pairs:
        # By serial (indexed), then the issuer in Python: an OR of hundreds of
        # (issuer, serial) pairs costs more to build and plan than to run.
        wanted = {(issuer, serial) for issuer, serial in pairs}
        duplicated = [
            (issuer, serial)
            for issuer, serial in db.session.execute(
                select(Certificate.issuer_dn, Certificate.serial_hex)
                .where(Certificate.serial_hex.in_(sorted({s for _, s in wanted})))
                .group_by(Certificate.issuer_dn, Certificate.serial_hex)
                .having(func.count(Certificate.id) > 1)
            )
            if (issuer, serial) in wanted
        ]
        if duplicated:
            clause = or_(
                *(
                    and_(Certificate.issuer_dn == i, Certificate.serial_hex == s)
                    for i, s in duplicated
                )
            )
            for cert_id, serial in db.session.execute(
                select(Certificate.id, Certificate.serial_hex).where(clause)
            ):
                found.append(Found(cert_id, _duplicate_serial(serial), "inventory"))
    return found


SHARED_KEY: Final = Finding(
    "shared_key",
    "warning",
    "The same public key is in other certificates of this organization: one compromise "
    "exposes them all, and revoking one leaves the key in use.",
)
SHARED_KEY_OTHER_ORG: Final = Finding(
    "shared_key_other_org",
    "warning",
    "The same public key is in a certificate of another organization (or in one not "
    "assigned to any): whoever holds one private key holds both. Shown to MRAOs only.",
)
KEY_ON_HOSTS: Final = Finding(
    "key_on_hosts",
    "notice",
    "Discovery found this key served on more than one host (Network Assets lists those you "
    "may see): each host holding the private key is one more place it can leak from.",
)


def _shared_key_findings(certificate_ids: Sequence[int]) -> list[Found]:
    """The same key in several certificates, for these certificates' keys: "shared_key" on
    each certificate whose key another certificate of its organization has, and
    "shared_key_other_org" on each whose key a certificate of another organization (or an
    unassigned one) has. Certificates already flagged are not flagged again."""
    mine = select(Certificate.spki_sha256).where(
        Certificate.id.in_(certificate_ids), Certificate.spki_sha256 != ""
    )
    keys = list(
        db.session.execute(
            select(Certificate.spki_sha256)
            .where(Certificate.spki_sha256.in_(mine))
            .group_by(Certificate.spki_sha256)
            .having(func.count(Certificate.id) > 1)
        ).scalars()
    )
    if not keys:
        return []
    holders: dict[str, list[tuple[int, int | None]]] = {}
    for cert_id, spki, org_id in db.session.execute(
        select(Certificate.id, Certificate.spki_sha256, Certificate.organization_id).where(
            Certificate.spki_sha256.in_(keys)
        )
    ):
        holders.setdefault(spki, []).append((cert_id, org_id))
    return _key_sharing(holders, set())


def key_on_hosts_findings(certificate_ids: Sequence[int]) -> list[Found]:
    """ "key_on_hosts" on every certificate whose key discovery found on two or more hosts
    (distinct addresses: one host's ports are one place), for these certificates' keys;
    those already flagged are left alone."""
    if not certificate_ids:
        return []
    mine = select(Certificate.spki_sha256).where(
        Certificate.id.in_(list(certificate_ids)), Certificate.spki_sha256 != ""
    )
    spread = (
        select(Certificate.spki_sha256)
        .join(Endpoint, Endpoint.certificate_id == Certificate.id)
        .where(Certificate.spki_sha256.in_(mine))
        .group_by(Certificate.spki_sha256)
        .having(func.count(func.distinct(Endpoint.ip)) > 1)
    )
    flagged = select(CertificateFinding.certificate_id).where(
        CertificateFinding.code == KEY_ON_HOSTS.code
    )
    return [
        Found(cert_id, KEY_ON_HOSTS, "inventory")
        for cert_id in db.session.execute(
            select(Certificate.id).where(
                Certificate.spki_sha256.in_(spread), Certificate.id.not_in(flagged)
            )
        ).scalars()
    ]


BLOCKED: Final = Finding(
    "blocked_key",
    "error",
    "The key is on the blocklist of compromised keys (CA/B Forum BR §6.1.1.3(4)): replace it.",
)


def notify(pairs: Iterable[tuple[int, str]]) -> None:
    """The "weak, shared or compromised key found" notice: one event per certificate with
    a key finding it did not have (or, checked for the first time, any), naming them; in
    the transaction that stores the findings, so it is written once. A finding only MRAOs
    see (MRAO_ONLY) goes out in an event of no organization, which only the rules for
    every organization (an MRAO's) match."""
    by_certificate: dict[int, set[str]] = {}
    for cert_id, code in pairs:
        by_certificate.setdefault(cert_id, set()).add(code)
    if not by_certificate:
        return
    if not events.listened_types([NotificationType.KEY_FINDING]):
        return
    certs = db.session.execute(
        select(Certificate).where(Certificate.id.in_(list(by_certificate)))
    ).scalars()
    out: list[events.Event] = []
    for cert in certs:
        codes = by_certificate[cert.id]
        for shown, only_mrao in ((codes - MRAO_ONLY, False), (codes & MRAO_ONLY, True)):
            if not shown:
                continue
            event = events.certificate_event(
                NotificationType.KEY_FINDING,
                cert,
                Findings=", ".join(LABELS.get(code, code) for code in sorted(shown)),
            )
            if only_mrao:
                event = dataclasses.replace(event, organization_id=None, department_id=None)
            out.append(event)
    events.emit_many(out, actor="hygiene")


def record_key_on_hosts(certificate_ids: Sequence[int]) -> int:
    """After discovery stored endpoints: flag (and notify) the certificates whose key is now
    seen on several hosts; how many were flagged."""
    found = key_on_hosts_findings(certificate_ids)
    if not found:
        return 0
    stored = store(found)
    notify((f.certificate_id, f.finding.code) for f in found)
    return stored


def insert_selected(rows: Any, columns: list[str]) -> int:
    """INSERT INTO certificate_findings (columns) SELECT ..., ignoring findings already
    stored (certificate, code); rows inserted."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(CertificateFinding.__table__)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["certificate_id", "code"])
    )
    return int(db.session.execute(statement).rowcount or 0)


def _hidden_from(actor: Actor) -> list[str]:
    """The finding codes this admin is not shown."""
    return [] if scope_of(actor).is_master else sorted(MRAO_ONLY)


def of_certificate(certificate_id: int, *, actor: Actor) -> list[CertificateFinding]:
    """A certificate's findings the admin may see, worst first (the caller has checked it
    may see the certificate)."""
    order = {"error": 0, "warning": 1}
    query = select(CertificateFinding).where(CertificateFinding.certificate_id == certificate_id)
    hidden = _hidden_from(actor)
    if hidden:
        query = query.where(CertificateFinding.code.not_in(hidden))
    found = db.session.execute(query).scalars()
    return sorted(found, key=lambda f: (order.get(f.severity, 2), f.code))


def with_finding(code: str, *, actor: Actor) -> Any:
    """A WHERE clause: certificates that carry the finding ``code`` (or, for LINT_ERROR and
    LINT_WARNING, any pkilint finding of that severity); none for a code the admin is not
    shown."""
    if code in _hidden_from(actor):
        return false()
    lint_severity = {LINT_ERROR: "error", LINT_WARNING: "warning"}.get(code)
    if lint_severity is not None:
        matches = and_(
            CertificateFinding.source == "lint", CertificateFinding.severity == lint_severity
        )
    else:
        matches = CertificateFinding.code == code
    return Certificate.id.in_(select(CertificateFinding.certificate_id).where(matches))


# The key hygiene findings (issue 16 §3): the dashboard counts certificates with any of them.
KEY_CODES = (
    "weak_key_size",
    "roca",
    "close_primes",
    "weak_signature",
    "shared_key",
    "shared_key_other_org",
    "key_on_hosts",
    "blocked_key",
    "debian_weak_key",
)


def count_with_findings(*, actor: Actor, codes: Sequence[str] = KEY_CODES) -> int:
    """How many certificates the actor may see carry one of these findings."""
    query = select(func.count(func.distinct(CertificateFinding.certificate_id))).join(
        Certificate, Certificate.id == CertificateFinding.certificate_id
    )
    hidden = _hidden_from(actor)
    query = query.where(CertificateFinding.code.in_([c for c in codes if c not in hidden]))
    clause = inventory.held_types_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    return int(db.session.execute(query).scalar_one())


def counts_by_certificate(
    certificate_ids: Sequence[int], *, actor: Actor
) -> dict[int, dict[str, int]]:
    """Each certificate's findings the admin may see, by severity (a list page or an export
    chunk at once)."""
    if not certificate_ids:
        return {}
    counts: dict[int, dict[str, int]] = {}
    query = select(
        CertificateFinding.certificate_id,
        CertificateFinding.severity,
        func.count(CertificateFinding.id),
    ).where(CertificateFinding.certificate_id.in_(list(certificate_ids)))
    hidden = _hidden_from(actor)
    if hidden:
        query = query.where(CertificateFinding.code.not_in(hidden))
    for cert_id, severity, count in db.session.execute(
        query.group_by(CertificateFinding.certificate_id, CertificateFinding.severity)
    ):
        counts.setdefault(cert_id, {})[severity] = int(count)
    return counts


def summary_of(counts: dict[str, int]) -> str:
    """ "2 errors, 1 warning" ("" when none), worst first."""
    parts = []
    for severity in ("error", "warning", "notice"):
        n = counts.get(severity, 0)
        if n:
            parts.append(f"{n} {severity}{'s' if n != 1 else ''}")
    return ", ".join(parts)
