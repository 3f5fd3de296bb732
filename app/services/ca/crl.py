"""The CRL each CA publishes (RFC 5280 §5): numbered under a row lock, refreshed before it
expires; a revocation publishes in its own transaction (app/services/certificates/revocation.py).
"""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from app.extensions import db
from app.models import (
    Certificate,
    CertificateAuthority,
    CertStatus,
    CrlPublication,
)
from app.models.types import utcnow
from app.pki import crl as pki_crl
from app.services.ca import signing
from app.services.errors import NotFound

CRL_VALIDITY = timedelta(days=7)


CRL_REFRESH_BEFORE = timedelta(days=3)  # re-publish when less than this is left


def publish_crl(*, ca_id: int, trigger: str) -> CertificateAuthority:
    """Sign and store a new full CRL for the CA (the CA row is locked while numbering)."""
    authority = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.id == ca_id).with_for_update()
    ).scalar_one_or_none()
    if authority is None:
        raise NotFound("No such certificate authority.")
    issuer = signing.ISSUERS.get(authority)  # a retired CA still publishes CRLs
    now = utcnow()
    # Keep entries until their certificate expires (RFC 5280 §3.3 lets expired ones go).
    rows = db.session.execute(
        select(Certificate.serial_hex, Certificate.revoked_at, Certificate.revocation_reason).where(
            Certificate.ca_id == ca_id,
            Certificate.status == CertStatus.REVOKED,
            Certificate.not_after > now - timedelta(days=1),
        )
    ).all()
    entries = [
        pki_crl.RevokedEntry(
            serial=int(s, 16), revoked_at=at, reason=pki_crl.parse_reason(reason or "unspecified")
        )
        for s, at, reason in rows
    ]
    authority.crl_number += 1
    crl = pki_crl.build_crl(
        issuer,
        revoked=entries,
        crl_number=authority.crl_number,
        next_update_in=CRL_VALIDITY,
        now=now,
    )
    authority.crl_der = crl.public_bytes(Encoding.DER)
    authority.crl_this_update = crl.last_update_utc
    authority.crl_next_update = crl.next_update_utc
    db.session.add(
        CrlPublication(
            ca_id=ca_id,
            crl_number=authority.crl_number,
            entries=len(entries),
            this_update=crl.last_update_utc,
            next_update=crl.next_update_utc,
            trigger=trigger,
        )
    )
    return authority


def refresh_crls() -> list[int]:
    """Re-publish every CRL that expires within CRL_REFRESH_BEFORE (or was never published)."""
    soon = utcnow() + CRL_REFRESH_BEFORE
    due = (
        db.session.execute(
            select(CertificateAuthority.id).where(
                (CertificateAuthority.crl_next_update.is_(None))
                | (CertificateAuthority.crl_next_update < soon)
            )
        )
        .scalars()
        .all()
    )
    for ca_id in due:
        publish_crl(ca_id=ca_id, trigger="schedule")
    return list(due)
