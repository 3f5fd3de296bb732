"""Revocation (RFC 5280 reasons); the CA's new CRL is published in the same transaction.

A revocation and the CA's new CRL are written in the same transaction, so the CRL served
at the CDP URL lists a certificate as soon as its revocation is committed. The OCSP
responder reads the same rows (app/services/ca/ocsp.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from sqlalchemy import update

from app.extensions import db
from app.models import (
    Admin,
    Certificate,
    CertOrigin,
    CertStatus,
)
from app.models.notifications import NotificationType
from app.models.types import utcnow
from app.pki import revocation as pki_revocation
from app.pki.errors import PkiError
from app.pki.profiles import CertKind
from app.pki.revocation import Revoker
from app.services import audit
from app.services.ca import blocked_keys, crl
from app.services.ca.profiles import KIND_OF
from app.services.certificates import inventory
from app.services.errors import Conflict, DomainError
from app.services.notifications import events
from app.services.scope import SYSTEM

REVOCABLE = (CertStatus.ISSUED, CertStatus.EXPIRED, CertStatus.REPLACED)


def reason_choices(
    kind: CertKind = CertKind.SSL, revoker: Revoker = Revoker.ADMINISTRATOR
) -> list[tuple[str, str]]:
    """(value, label) of the reasons ``revoker`` may choose for a certificate of ``kind``,
    the default first (TLS BR 7.2.2; docs/pki.md). Administrators have the same choice for
    every kind of leaf, so a bulk revocation across kinds offers this one list."""
    return [
        (flag.value, f"{flag.value}: {pki_revocation.REASON_DESCRIPTIONS[flag]}")
        for flag in pki_revocation.allowed_reasons(kind, revoker)
    ]


def _kind(cert: Certificate) -> CertKind:
    return KIND_OF[cert.cert_type] if cert.cert_type is not None else CertKind.SSL


def revoke(
    *,
    actor: Admin,
    certificate_ids: Sequence[int],
    reason: str,
    message: str = "",
    revoker: Revoker = Revoker.ADMINISTRATOR,
) -> list[Certificate]:
    """Revoke certificates that our CAs issued; each CA touched publishes a new CRL.

    ``revoker``: an administrator, or the certificate's subscriber (a portal
    self-revocation: no privilegeWithdrawn). A keyCompromise revocation puts the key on
    the blocklist, so it is never certified again (CA/B Forum BR 6.1.1.3(4)).

    Raises:
        DomainError: a reason not allowed for the certificate's kind and revoker (field
            "reason"), an external certificate, or one already revoked (when a single
            certificate is asked for).
        NotFound / Forbidden: outside the actor's scope or privileges.
    """
    certs = [
        inventory.get_certificate(actor=actor, certificate_id=i, action="revoke")
        for i in certificate_ids
    ]
    flags: dict[int, x509.ReasonFlags] = {}
    for cert in certs:
        if cert.origin != CertOrigin.ISSUED or cert.ca_id is None:
            raise DomainError(
                f"{cert.common_name} was not issued by a Certwright CA; revoke it with its issuer."
            )
        try:
            flags[cert.id] = pki_revocation.check_revocation_reason(
                reason, kind=_kind(cert), revoker=revoker
            )
        except PkiError as exc:
            text = str(exc)
            raise DomainError(text[:1].upper() + text[1:] + ".", field="reason") from exc
    now = utcnow()
    done = []
    for cert in certs:
        flag = flags[cert.id]
        # Read before the UPDATE: the ORM then sets the loaded object to the new values.
        before = {"status": cert.status.value, "reason": cert.revocation_reason}
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
            blocked = flag is x509.ReasonFlags.key_compromise and _block_key_of(cert)
            audit.record(
                action="certificate.revoke",
                actor=actor,
                object_type="Certificate",
                object_id=cert.id,
                label=cert.common_name,
                before=before,
                after={
                    "status": "Revoked",
                    "reason": flag.value,
                    "serial": cert.serial_hex,
                    **({"key_blocked": True} if blocked else {}),
                },
                message=message.strip(),
                organization_id=cert.organization_id,
                department_id=cert.department_id,
            )
    if len(certs) == 1 and not done:
        raise Conflict(f"{certs[0].common_name} is already {certs[0].status.value}.")
    events.emit_many(
        [
            events.certificate_event(
                NotificationType.CERTIFICATE_REVOKED,
                cert,
                cert.request,
                Reason=flag.value,
                **{"Revoked by": actor.login},
            )
            for cert in done
        ],
        actor=actor,
    )
    for ca_id in sorted({c.ca_id for c in done if c.ca_id is not None}):
        crl.publish_crl(ca_id=ca_id, trigger="revocation")
    for cert in done:
        db.session.expire(cert)
    return done


def _block_key_of(cert: Certificate) -> bool:
    """Put a compromised certificate's key on the blocklist; whether it was new there."""
    public_key = x509.load_der_x509_certificate(cert.der).public_key()
    return blocked_keys.block_key(
        public_key=public_key,  # type: ignore[arg-type]
        reason=x509.ReasonFlags.key_compromise.value,
        source=f"certificate #{cert.id} ({cert.common_name}) revoked for keyCompromise",
    )


def supersede(*, old_id: int, new_id: int, revoke: bool) -> None:
    """A renewal (old -> Replaced) or a replacement (old -> Revoked, superseded)."""
    old = db.session.get(Certificate, old_id)
    if old is None or old.status not in REVOCABLE:
        return
    before = {"status": old.status.value, "renewal_state": old.renewal_state}
    if revoke and old.origin == CertOrigin.ISSUED:
        old.status = CertStatus.REVOKED
        old.revoked_at = utcnow()
        old.revocation_reason = x509.ReasonFlags.superseded.value
        if old.ca_id is not None:
            crl.publish_crl(ca_id=old.ca_id, trigger="replacement")
    else:
        old.status = CertStatus.REPLACED
    old.replaced_by_id = new_id
    old.renewal_state = "Renewed" if not revoke else "Replaced"
    audit.record(
        action="certificate.supersede",
        actor=SYSTEM,
        object_type="Certificate",
        object_id=old.id,
        label=old.common_name,
        before={**before, "replaced_by": None},
        after={
            "status": old.status.value,
            "renewal_state": old.renewal_state,
            "replaced_by": new_id,
        },
        organization_id=old.organization_id,
        department_id=old.department_id,
    )
