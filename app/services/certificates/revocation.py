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
from app.pki import crl as pki_crl
from app.pki.errors import PkiError
from app.services import audit
from app.services.ca import crl
from app.services.certificates import inventory
from app.services.errors import Conflict, DomainError
from app.services.notifications import events
from app.services.scope import SYSTEM

REVOCABLE = (CertStatus.ISSUED, CertStatus.EXPIRED, CertStatus.REPLACED)


def reason_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in pki_crl.REASON_NAMES if name != "removeFromCRL"]


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
    certs = [
        inventory.get_certificate(actor=actor, certificate_id=i, action="revoke")
        for i in certificate_ids
    ]
    for cert in certs:
        if cert.origin != CertOrigin.ISSUED or cert.ca_id is None:
            raise DomainError(
                f"{cert.common_name} was not issued by a Certwright CA; revoke it with its issuer."
            )
    now = utcnow()
    done = []
    for cert in certs:
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
            audit.record(
                action="certificate.revoke",
                actor=actor,
                object_type="Certificate",
                object_id=cert.id,
                label=cert.common_name,
                before=before,
                after={"status": "Revoked", "reason": flag.value, "serial": cert.serial_hex},
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
