"""Self-service on the portal, with the email address and the passphrase set at
registration: revoke one's certificates, or renew (a one-time renewal code is mailed; the
new key is generated on a worker; the old certificate is revoked as superseded once the
new one is downloaded). Throttled like registration; unknown addresses, wrong passphrases
and persons without a passphrase get the same answer in the same time."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.extensions import db
from app.models import (
    Certificate,
    CertificateRequest,
    CertStatus,
    InvitationKind,
    Person,
    PortalEnrollment,
)
from app.services import audit
from app.services.certificates import revocation
from app.services.errors import DomainError
from app.services.persons import invitations, mailing, passphrases, registration, throttle
from app.services.persons.persons import find_by_email, valid_certificates
from app.services.scope import SYSTEM

WRONG_CREDENTIALS = "The email address or the passphrase is not right."
# What an end user may say about their own certificate (RFC 5280 §5.3.1; S/MIME BR 4.9.1.1
# reasons a subscriber asks for). Other reasons are an administrator's.
SUBSCRIBER_REASONS = (
    ("unspecified", "No particular reason"),
    ("keyCompromise", "My certificate file, its password or my device was lost or exposed"),
    ("affiliationChanged", "I left the organization or changed my role"),
    ("cessationOfOperation", "I no longer need the certificate"),
)


class WrongCredentials(DomainError):
    def __init__(self) -> None:
        super().__init__(WRONG_CREDENTIALS, field="passphrase")


@dataclass(frozen=True)
class Credentials:
    email: str
    passphrase: str
    ip: str = ""


def authenticate(creds: Credentials) -> Person:
    """The person, if the passphrase is theirs; the failure counts against the address
    and the email (in a transaction of its own).

    Raises:
        throttle.Throttled, WrongCredentials.
    """
    keys = throttle.keys_for(ip=creds.ip, email=creds.email)
    throttle.check(keys)
    person = find_by_email(creds.email)
    if person is None or not person.passphrase_hash:
        passphrases.burn_time(creds.passphrase)
        ok = False
    else:
        ok = passphrases.verify_passphrase(person.passphrase_hash, creds.passphrase)
    if not ok or person is None:
        db.session.rollback()
        throttle.record_failure(keys)
        raise WrongCredentials()
    return person


def revoke(*, creds: Credentials, reason: str) -> list[Certificate]:
    """Revoke every valid client certificate of the person (the CRL is re-published, so
    OCSP and the CRL say so at once).

    Raises:
        throttle.Throttled, WrongCredentials; DomainError: an unknown reason, or no valid
            certificate to revoke.
    """
    if reason not in dict(SUBSCRIBER_REASONS):
        raise DomainError("Choose one of the reasons listed.", field="reason")
    person = authenticate(creds)
    certificates = valid_certificates(person.id)
    if not certificates:
        raise DomainError(f"{person.email} has no valid certificate to revoke.")
    with audit.source(ip=creds.ip, label=f"portal: {person.email}"):
        return revocation.revoke(
            actor=SYSTEM,
            certificate_ids=[c.id for c in certificates],
            reason=reason,
            message="revoked by the person on the enrollment portal",
        )


def renewable(person: Person) -> Certificate | None:
    """The certificate a renewal replaces: the newest issued one of the person (expired
    ones too: a lapsed person renews the same way)."""
    return db.session.execute(
        select(Certificate)
        .join(CertificateRequest, CertificateRequest.id == Certificate.request_id)
        .where(
            CertificateRequest.person_id == person.id,
            Certificate.status.in_([CertStatus.ISSUED, CertStatus.EXPIRED]),
        )
        .order_by(Certificate.not_after.desc(), Certificate.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def request_renewal(*, creds: Credentials) -> Certificate:
    """Mail the person a one-time renewal code for their newest certificate, with the
    profile, term and key type of that certificate.

    Raises:
        throttle.Throttled, WrongCredentials; DomainError: nothing to renew, or the
            profile is no longer active (an administrator must send a new invitation).
    """
    person = authenticate(creds)
    old = renewable(person)
    if old is None or old.request is None:
        raise DomainError(f"{person.email} has no certificate to renew.")
    request = old.request
    try:
        profile = invitations.check_choice(request.profile_id, request.term_days, request.key_type)
    except DomainError as exc:
        raise DomainError(
            f"Your certificate cannot be renewed on the portal ({exc.message}); ask your administrator for a new invitation."
        ) from exc
    invitation, code, superseded = invitations.issue_code(
        person=person,
        profile=profile,
        term_days=request.term_days,
        key_type=request.key_type,
        kind=InvitationKind.RENEWAL,
        created_by_id=None,
        renews_certificate_id=old.id,
    )
    mailing.send(
        kind="renewal",
        organization_id=person.organization_id,
        department_id=person.department_id,
        to=person.email,
        context={
            **invitations.person_context(person),
            "serial": old.serial_hex,
            "not_after": old.not_after.strftime("%Y-%m-%d"),
            "link": invitations.portal_url(f"/portal/renew/complete?email={person.email}"),
            "code": code,
            "expires": invitations.show_time(invitation.expires_at),
        },
    )
    with audit.source(ip=creds.ip, label=f"portal: {person.email}"):
        audit.record(
            action="invitation.renewal",
            actor=SYSTEM,
            object_type="Invitation",
            object_id=invitation.id,
            label=person.email,
            after={"renews_certificate_id": old.id, "superseded": superseded},
            organization_id=person.organization_id,
            department_id=person.department_id,
        )
    old.renewal_state = "Renewal requested"
    return old


def complete_renewal(*, data: registration.Registration) -> tuple[PortalEnrollment, str]:
    """Redeem a renewal code: a new key on a worker, the PKCS#12 with the new password.
    Renewals are approved at once: the original was approved and nothing new is asked.

    Raises:
        throttle.Throttled, ValidationFailed, registration.InvalidCode.
    """
    keys = throttle.keys_for(ip=data.ip, email=data.email)
    throttle.check(keys)
    registration.check_secrets(data, with_passphrase=False)
    invitation = registration.redeem(data, keys, InvitationKind.RENEWAL)
    enr, token = registration.start_enrollment(
        invitation=invitation,
        pkcs12_password=data.pkcs12_password,
        approved_by=f"self-service renewal of certificate #{invitation.renews_certificate_id}",
    )
    person = invitation.person
    with audit.source(ip=data.ip, label=f"portal: {person.email}"):
        audit.record(
            action="person.renew",
            actor=SYSTEM,
            object_type="Certificate",
            object_id=invitation.renews_certificate_id,
            label=person.email,
            after={"request_id": enr.request_id, "enrollment_id": enr.id},
            organization_id=person.organization_id,
            department_id=person.department_id,
        )
    return enr, token
