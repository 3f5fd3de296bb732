"""Findings per certificate: what reading it found (odd serials, v1, unknown critical
extensions, undecodable names), what is weak about its key or signature, and what only
the whole inventory shows (a key several certificates share, an issuer and serial that
another certificate has too, a key on the blocklist of compromised keys).

Stored by code in certificate_findings (an upsert: recomputing is safe), written in the
transaction that writes the certificates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import BlockedKey, Certificate, CertificateFinding
from app.models.types import utcnow
from app.pki.bundles import Finding
from app.services import bulk
from app.services.certificates import inventory
from app.services.scope import Actor, scope_of

LINT_ERROR: Final = "lint_error"
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


def inventory_findings(certificate_ids: Sequence[int]) -> list[Found]:
    """Findings only the inventory shows, for these certificates and the others they
    involve: the same key in several certificates, an issuer and serial that two different
    certificates carry (RFC 5280 §4.1.2.2: unique per CA), a blocklisted key."""
    if not certificate_ids:
        return []
    found: list[Found] = []
    mine = select(Certificate.spki_sha256).where(
        Certificate.id.in_(certificate_ids), Certificate.spki_sha256 != ""
    )
    shared = db.session.execute(
        select(Certificate.spki_sha256, func.count(Certificate.id))
        .where(Certificate.spki_sha256.in_(mine))
        .group_by(Certificate.spki_sha256)
        .having(func.count(Certificate.id) > 1)
    ).all()
    keys = [spki for spki, _ in shared]
    if keys:
        # Only certificates not flagged yet: a key in thousands of certificates is not
        # flagged again on all of them at every batch.
        flagged = select(CertificateFinding.certificate_id).where(
            CertificateFinding.code == "shared_key"
        )
        for cert_id in db.session.execute(
            select(Certificate.id).where(
                Certificate.spki_sha256.in_(keys), Certificate.id.not_in(flagged)
            )
        ).scalars():
            found.append(
                Found(
                    cert_id,
                    Finding(
                        "shared_key",
                        "warning",
                        "The same public key is in other certificates: one compromise "
                        "exposes them all, and revoking one leaves the key in use.",
                    ),
                    "inventory",
                )
            )
    pairs = db.session.execute(
        select(Certificate.issuer_dn, Certificate.serial_hex).where(
            Certificate.id.in_(certificate_ids), Certificate.issuer_dn != ""
        )
    ).all()
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
                found.append(
                    Found(
                        cert_id,
                        Finding(
                            "duplicate_issuer_serial",
                            "error",
                            f"Another certificate has the same issuer and serial {serial}: a "
                            "CA MUST give each certificate a unique serial (RFC 5280 §4.1.2.2); "
                            "revoking one revokes both.",
                        ),
                        "inventory",
                    )
                )
    for cert_id in db.session.execute(
        select(Certificate.id).where(
            Certificate.id.in_(certificate_ids),
            Certificate.spki_sha256.in_(select(BlockedKey.spki_sha256)),
        )
    ).scalars():
        found.append(Found(cert_id, BLOCKED, "inventory"))
    return found


BLOCKED: Final = Finding(
    "blocked_key",
    "error",
    "The key is on the blocklist of compromised keys (CA/B Forum BR §6.1.1.3(4)): replace it.",
)


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


def of_certificate(certificate_id: int) -> list[CertificateFinding]:
    """A certificate's findings, worst first (the caller has checked it may see it)."""
    order = {"error": 0, "warning": 1}
    found = db.session.execute(
        select(CertificateFinding).where(CertificateFinding.certificate_id == certificate_id)
    ).scalars()
    return sorted(found, key=lambda f: (order.get(f.severity, 2), f.code))


def with_finding(code: str) -> Any:
    """A WHERE clause: certificates that carry the finding ``code`` (or, for LINT_ERROR and
    LINT_WARNING, any pkilint finding of that severity)."""
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
    "blocked_key",
    "debian_weak_key",
)


def count_with_findings(*, actor: Actor, codes: Sequence[str] = KEY_CODES) -> int:
    """How many certificates the actor may see carry one of these findings."""
    query = select(func.count(func.distinct(CertificateFinding.certificate_id))).join(
        Certificate, Certificate.id == CertificateFinding.certificate_id
    )
    query = query.where(CertificateFinding.code.in_(list(codes)))
    clause = inventory.held_types_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    return int(db.session.execute(query).scalar_one())


def counts_by_certificate(certificate_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Each certificate's findings by severity (a list page or an export chunk at once)."""
    if not certificate_ids:
        return {}
    counts: dict[int, dict[str, int]] = {}
    for cert_id, severity, count in db.session.execute(
        select(
            CertificateFinding.certificate_id,
            CertificateFinding.severity,
            func.count(CertificateFinding.id),
        )
        .where(CertificateFinding.certificate_id.in_(list(certificate_ids)))
        .group_by(CertificateFinding.certificate_id, CertificateFinding.severity)
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
