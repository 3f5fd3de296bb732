"""The CRL each CA publishes (RFC 5280 §5): numbered under a row lock, monotonic in number
and thisUpdate, linted before signing, refreshed before it expires; a revocation publishes
in its own transaction (app/services/certificates/revocation.py, authorities.revoke_ca).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from app.extensions import db
from app.models import (
    Certificate,
    CertificateAuthority,
    CertStatus,
    CertType,
    CrlPublication,
)
from app.models.types import utcnow
from app.pki import crl as pki_crl
from app.pki import revocation
from app.pki.errors import PkiError
from app.services.ca import signing
from app.services.errors import DomainError, NotFound

CRL_VALIDITY = timedelta(days=7)
CRL_REFRESH_BEFORE = timedelta(days=3)  # re-publish when less than this is left
# RFC 5280 §3.3 lets a CRL drop a certificate once it expires; we keep it a day longer.
KEEP_AFTER_EXPIRY = timedelta(days=1)
# Code Signing BR 4.9.7 / 7.2: a revoked code-signing certificate stays on the CRL for at
# least ten years after it expires (signatures made with it are still checked then).
KEEP_CODE_SIGNING_AFTER_EXPIRY = timedelta(days=3653)

log = logging.getLogger(__name__)


def publish_crl(*, ca_id: int, trigger: str) -> CertificateAuthority:
    """Sign and store a new full CRL for the CA (the CA row is locked while numbering).

    The CRL lists the revoked leaves the CA issued and the revoked issuing CAs it signed;
    its number and thisUpdate follow the previous CRL's whatever the clock says, and it is
    linted before the CA key signs it.

    Raises:
        NotFound: no such CA.
        DomainError: a stored revocation the rules refuse to publish, or a lint finding:
            nothing is stored (the caller rolls back).
    """
    authority = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.id == ca_id).with_for_update()
    ).scalar_one_or_none()
    if authority is None:
        raise NotFound("No such certificate authority.")
    issuer = signing.ISSUERS.get(authority)  # a retired or revoked CA still publishes CRLs
    now = utcnow()
    entries = [*_leaf_entries(ca_id, now), *_ca_entries(ca_id, now)]
    previous_number = authority.crl_number
    previous_this_update = authority.crl_this_update
    try:
        crl = pki_crl.build_crl(
            issuer,
            revoked=entries,
            crl_number=previous_number + 1,
            next_update_in=CRL_VALIDITY,
            now=now,
            previous_this_update=previous_this_update,
            previous_crl_number=previous_number if authority.crl_der is not None else None,
        )
    except PkiError as exc:
        raise DomainError(f"The CRL of CA '{authority.name}' was not published: {exc}") from exc
    authority.crl_number = previous_number + 1
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


def _reason(value: str | None) -> x509.ReasonFlags:
    return revocation.parse_reason(value or "unspecified")


def _leaf_entries(ca_id: int, now: datetime) -> list[pki_crl.RevokedEntry]:
    kept = (Certificate.not_after > now - KEEP_AFTER_EXPIRY) | (
        (Certificate.cert_type == CertType.CODE_SIGNING)
        & (Certificate.not_after > now - KEEP_CODE_SIGNING_AFTER_EXPIRY)
    )
    rows = db.session.execute(
        select(Certificate.serial_hex, Certificate.revoked_at, Certificate.revocation_reason).where(
            Certificate.ca_id == ca_id,
            Certificate.status == CertStatus.REVOKED,
            kept,
        )
    ).all()
    return [
        pki_crl.RevokedEntry(serial=int(s, 16), revoked_at=at, reason=_reason(reason))
        for s, at, reason in rows
    ]


def _ca_entries(ca_id: int, now: datetime) -> list[pki_crl.RevokedEntry]:
    """The issuing CAs this CA signed and revoked (RFC 5280 §5: the issuer's CRL)."""
    rows = db.session.execute(
        select(
            CertificateAuthority.serial_hex,
            CertificateAuthority.revoked_at,
            CertificateAuthority.revocation_reason,
        ).where(
            CertificateAuthority.parent_id == ca_id,
            CertificateAuthority.revoked_at.is_not(None),
            CertificateAuthority.not_after > now - KEEP_AFTER_EXPIRY,
        )
    ).all()
    return [
        pki_crl.RevokedEntry(int(s, 16), at, reason=_reason(reason), is_ca=True)
        for s, at, reason in rows
    ]


@dataclass
class Refresh:
    published: list[int] = field(default_factory=list)  # CA ids
    failed: dict[int, str] = field(default_factory=dict)  # CA id -> why


def refresh_crls() -> Refresh:
    """Re-publish every CRL that expires within CRL_REFRESH_BEFORE (or was never
    published). Each CA is published in its own savepoint, so one that cannot publish
    (its failure is logged and returned) does not keep the others from publishing."""
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
    result = Refresh()
    for ca_id in due:
        try:
            with db.session.begin_nested():
                publish_crl(ca_id=ca_id, trigger="schedule")
        except DomainError as exc:
            log.error("CRL refresh of CA %s failed: %s", ca_id, exc.message)
            result.failed[ca_id] = exc.message
            continue
        result.published.append(ca_id)
    return result
