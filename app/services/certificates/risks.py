"""The dashboard's "top risks": certificates that need someone today, each a WHERE clause
shared by the dashboard's count and the certificate list's "Risk" filter (so a number and
the list it opens agree).

"Served" means seen on a discovered endpoint in its task's latest finished scan (or in the
scan under way, which updates the endpoints it reaches again). "Production ranges" are the
address ranges of the discovery tasks: an endpoint exists only for an address a task was
set to scan, so a self-signed certificate on a served endpoint is one in production ranges.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import false, func, select
from sqlalchemy.sql import ColumnElement

from app.models import Certificate, CertificateFinding, Endpoint, ScanRun

RISKS: dict[str, str] = {
    "expired_served": "Expired but still served",
    "weak_key": "Weak keys",
    "weak_signature": "SHA-1 or MD5 signatures",
    "self_signed_served": "Self-signed in production ranges",
}
# Key hygiene findings that make a key weak by itself (app.services.imports.findings):
# too short, ROCA, close primes, on the compromised-keys blocklist, Debian's weak keys.
WEAK_KEY_CODES = ("weak_key_size", "roca", "close_primes", "blocked_key", "debian_weak_key")
SIGNATURE_CODES = ("weak_signature",)  # SHA-1 or MD5 (findings.LABELS)


def served_clause() -> ColumnElement[bool]:
    """Certificates on an endpoint seen in its task's latest finished scan (or later: the
    scan under way, or a task's first scan before it finishes)."""
    latest = (
        select(ScanRun.task_id, func.max(ScanRun.id).label("run_id"))
        .where(ScanRun.finished_at.is_not(None))
        .group_by(ScanRun.task_id)
        .subquery()
    )
    return Certificate.id.in_(
        select(Endpoint.certificate_id)
        .outerjoin(latest, latest.c.task_id == Endpoint.task_id)
        .where(
            Endpoint.certificate_id.is_not(None),
            Endpoint.last_run_id.is_not(None),
            Endpoint.last_run_id >= func.coalesce(latest.c.run_id, 0),
        )
    )


def _with_findings(codes: tuple[str, ...]) -> ColumnElement[bool]:
    return Certificate.id.in_(
        select(CertificateFinding.certificate_id).where(CertificateFinding.code.in_(codes))
    )


def risk_clause(code: str, *, now: datetime) -> ColumnElement[bool]:
    """The certificates carrying risk ``code`` (a key of RISKS); none for an unknown code."""
    if code == "expired_served":
        return (Certificate.not_after < now) & served_clause()
    if code == "weak_key":
        return _with_findings(WEAK_KEY_CODES)
    if code == "weak_signature":
        return _with_findings(SIGNATURE_CODES)
    if code == "self_signed_served":
        return Certificate.is_self_signed.is_(True) & served_clause()
    return false()
