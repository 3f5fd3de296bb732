"""Revocation (RFC 5280 reasons) and the CRL each CA publishes.

A revocation and the CA's new CRL are written in the same transaction, so the CRL served
at the CDP URL lists a certificate as soon as its revocation is committed. The OCSP
responder reads the same rows (app/services/ocsp.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update

from app.extensions import db
from app.models import (
    Admin,
    Certificate,
    CertificateAuthority,
    CertOrigin,
    CertStatus,
    CrlPublication,
)
from app.models.types import utcnow
from app.pki import crl as pki_crl
from app.pki.errors import PkiError
from app.services import audit, ca
from app.services.errors import Conflict, DomainError, Forbidden, NotFound
from app.services.scope import scope_of

CRL_VALIDITY = timedelta(days=7)
CRL_REFRESH_BEFORE = timedelta(days=3)  # re-publish when less than this is left
REVOCABLE = (CertStatus.ISSUED, CertStatus.EXPIRED, CertStatus.REPLACED)


def reason_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in pki_crl.REASON_NAMES if name != "removeFromCRL"]


def _visible(actor: Admin, certificate_id: int) -> Certificate:
    cert = db.session.get(Certificate, certificate_id)
    if cert is None or not scope_of(actor).covers(cert.organization_id, cert.department_id):
        raise NotFound("No such certificate.")
    return cert


def revoke(
    *, actor: Admin, certificate_ids: Sequence[int], reason: str, message: str = ""
) -> list[Certificate]:
    """Revoke certificates that our CAs issued; each CA touched publishes a new CRL.

    Raises:
        DomainError: unknown reason, an external certificate, or one already revoked
            (when a single certificate is asked for).
        NotFound / Forbidden: outside the actor's scope or privileges.
    """
    try:
        flag = pki_crl.parse_reason(reason)
    except PkiError as exc:
        raise DomainError(str(exc), field="reason") from exc
    if flag == x509.ReasonFlags.remove_from_crl:
        raise DomainError(
            "removeFromCRL is only for delta CRLs; choose another reason.", field="reason"
        )
    certs = [_visible(actor, i) for i in certificate_ids]
    scope = scope_of(actor)
    for cert in certs:
        if cert.origin != CertOrigin.ISSUED or cert.ca_id is None:
            raise DomainError(
                f"{cert.common_name} was not issued by a Certwright CA; revoke it with its issuer."
            )
        if cert.cert_type is None or not scope.may(
            cert.cert_type, cert.organization_id, cert.department_id
        ):
            raise Forbidden(
                f"You may not revoke {cert.common_name}: you lack the privilege for its type here."
            )
    now = utcnow()
    done = []
    for cert in certs:
        result = db.session.execute(
            update(Certificate)
            .where(Certificate.id == cert.id, Certificate.status.in_(REVOCABLE))
            .values(
                status=CertStatus.REVOKED,
                revoked_at=now,
                revocation_reason=flag.value,
                revoked_by_id=actor.id,
                renewal_state="",
            )
        )
        if result.rowcount == 1:
            done.append(cert)
            audit.record(
                action="certificate.revoke",
                actor=actor,
                object_type="Certificate",
                object_id=cert.id,
                label=cert.common_name,
                before={"status": cert.status.value},
                after={"status": "Revoked", "reason": flag.value, "serial": cert.serial_hex},
                message=message.strip(),
                organization_id=cert.organization_id,
                department_id=cert.department_id,
            )
    if len(certs) == 1 and not done:
        raise Conflict(f"{certs[0].common_name} is already {certs[0].status.value}.")
    for ca_id in sorted({c.ca_id for c in done if c.ca_id is not None}):
        publish_crl(ca_id=ca_id, trigger="revocation")
    for cert in done:
        db.session.expire(cert)
    return done


def supersede(*, old_id: int, new_id: int, revoke: bool) -> None:
    """A renewal (old -> Replaced) or a replacement (old -> Revoked, superseded)."""
    old = db.session.get(Certificate, old_id)
    if old is None or old.status not in REVOCABLE:
        return
    if revoke and old.origin == CertOrigin.ISSUED:
        old.status = CertStatus.REVOKED
        old.revoked_at = utcnow()
        old.revocation_reason = x509.ReasonFlags.superseded.value
        if old.ca_id is not None:
            publish_crl(ca_id=old.ca_id, trigger="replacement")
    else:
        old.status = CertStatus.REPLACED
    old.replaced_by_id = new_id
    old.renewal_state = "Renewed" if not revoke else "Replaced"
    audit.record(
        action="certificate.supersede",
        actor="system",
        object_type="Certificate",
        object_id=old.id,
        label=old.common_name,
        after={"status": old.status.value, "replaced_by": new_id},
        organization_id=old.organization_id,
        department_id=old.department_id,
    )


def publish_crl(*, ca_id: int, trigger: str) -> CertificateAuthority:
    """Sign and store a new full CRL for the CA (the CA row is locked while numbering)."""
    authority = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.id == ca_id).with_for_update()
    ).scalar_one_or_none()
    if authority is None:
        raise NotFound("No such certificate authority.")
    issuer = ca.ISSUERS.get(authority)  # a retired CA still publishes CRLs
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


def expire_sweep() -> int:
    """Issued certificates whose notAfter has passed become Expired."""
    result = db.session.execute(
        update(Certificate)
        .where(Certificate.status == CertStatus.ISSUED, Certificate.not_after < utcnow())
        .values(status=CertStatus.EXPIRED)
    )
    return int(result.rowcount or 0)
