"""Registration on the enrollment portal: redeem a one-time code, generate the key on a
worker (never on a request thread), build the PKCS#12 with the person's password and hand
it out once.

The PKCS#12 password exists only sealed under the KEK from the registration until the job
has built the file; the file is sealed too and deleted when it is downloaded (or after
KEEP_READY uncollected). The private key is kept only when the profile says "escrow",
sealed like CA keys (an MRAO may export it, audited).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography import x509
from flask import current_app
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models import (
    Certificate,
    CertificateRequest,
    CertType,
    EnrollmentStatus,
    Invitation,
    InvitationKind,
    InvitationStatus,
    Person,
    PortalEnrollment,
    RequestMode,
    RequestStatus,
    ValidationType,
)
from app.models.types import utcnow
from app.pki import formats, keystore, smime
from app.pki.errors import PkiError
from app.pki.keys import PrivateKey
from app.services import audit
from app.services.ca import signing
from app.services.certificates import enrollment, inventory, issuance, revocation
from app.services.errors import Conflict, DomainError, NotFound, ValidationFailed
from app.services.persons import invitations, mailing, passphrases, throttle
from app.services.platform import jobs
from app.services.scope import SYSTEM

MIN_SECRET = 12
MAX_SECRET = 128
KEEP_READY = timedelta(days=7)
NEUTRAL = (
    "This code is not valid for this email address. Check both, or ask your administrator "
    "for a new invitation."
)
PASSWORD_POLICY = (
    f"At least {MIN_SECRET} characters of plain ASCII (letters, digits, punctuation and "
    "spaces; Windows and macOS read other characters in PKCS#12 passwords differently), "
    "at least 5 of them different."
)
PASSPHRASE_POLICY = (
    f"At least {MIN_SECRET} characters, at least 5 different, and not your certificate "
    "password: you will need it to revoke or renew the certificate yourself."
)


SUBSCRIBER_AGREEMENT = (
    "I asked for this certificate for my own mailbox(es). I keep the certificate file, its "
    "password and my passphrase to myself, use the certificate only for my organization's "
    "purposes and only for the addresses it names, and revoke it at once (on this portal, "
    "or through my administrator) if I lose control of the file or of a mailbox, or leave "
    "the organization."
)


class InvalidCode(DomainError):
    """A wrong, used, expired, revoked or other person's code: one neutral message."""

    def __init__(self) -> None:
        super().__init__(NEUTRAL, field="code")


@dataclass(frozen=True)
class Registration:
    email: str
    code: str
    pkcs12_password: str
    pkcs12_password_again: str
    passphrase: str = ""
    passphrase_again: str = ""
    eula_accepted: bool = False
    secret_id: str = ""
    ip: str = ""


def _secret_errors(
    value: str, again: str, field: str, *, ascii_only: bool, errors: dict[str, list[str]]
) -> None:
    problems = []
    if len(value) < MIN_SECRET:
        problems.append(f"At least {MIN_SECRET} characters.")
    elif len(value) > MAX_SECRET:
        problems.append(f"At most {MAX_SECRET} characters.")
    elif ascii_only and not all(" " <= ch <= "~" for ch in value):
        problems.append("Plain ASCII only (letters, digits, punctuation, spaces).")
    elif len(set(value)) < 5:
        problems.append("At least 5 different characters.")
    if not problems and value != again:
        errors.setdefault(f"{field}_again", []).append("The two entries differ.")
    if problems:
        errors.setdefault(field, []).extend(problems)


def check_secrets(data: Registration, *, with_passphrase: bool) -> None:
    """The PKCS#12 password (and passphrase) policies, the agreement: all errors at once."""
    errors: dict[str, list[str]] = {}
    if not data.email.strip():
        errors["email"] = ["Enter your email address."]
    if not data.code.strip():
        errors["code"] = ["Enter the code from your invitation."]
    _secret_errors(
        data.pkcs12_password,
        data.pkcs12_password_again,
        "pkcs12_password",
        ascii_only=True,
        errors=errors,
    )
    if with_passphrase:
        _secret_errors(
            data.passphrase, data.passphrase_again, "passphrase", ascii_only=False, errors=errors
        )
        if data.passphrase and data.passphrase == data.pkcs12_password:
            errors.setdefault("passphrase", []).append(
                "Choose a passphrase different from the certificate password."
            )
    if not data.eula_accepted:
        errors["eula"] = ["Accept the subscriber agreement to register."]
    if errors:
        raise ValidationFailed(errors)


def redeem(data: Registration, keys: list[str], kind: InvitationKind) -> Invitation:
    """The invitation the code belongs to, if it is of ``kind``, pending, unexpired and
    the person's; marked Used by a conditional update (two submissions redeem it once).
    A failure is counted against the address and the email in a transaction of its own.

    Raises:
        InvalidCode: for every kind of failure alike.
    """
    invitation = db.session.execute(
        _REDEEM, {"code_hash": invitations.code_hash(data.code)}
    ).scalar_one_or_none()
    email = data.email.strip().lower()
    person = invitation.person if invitation is not None else None
    ok = (
        invitation is not None
        and person is not None
        and invitation.kind == kind
        and invitations.is_live(invitation)
        and hmac.compare_digest(person.email.encode(), email.encode())
    )
    if ok and person is not None and person.secret_id_hash:
        ok = passphrases.verify_passphrase(person.secret_id_hash, data.secret_id.strip())
    if ok and invitation is not None:
        moved = db.session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation.id,
                Invitation.status == InvitationStatus.PENDING,
                Invitation.expires_at > utcnow(),
            )
            .values(status=InvitationStatus.USED, used_at=utcnow())
        )
        ok = moved.rowcount == 1
    if not ok or invitation is None:
        # Nothing of this attempt is kept, and on SQLite the session's write lock must go
        # before the failure is written on a connection of its own.
        db.session.rollback()
        throttle.record_failure(keys)
        raise InvalidCode()
    return invitation


# The code's invitation with everything a registration then reads (its person, their
# organization and department, the profile, the inviter's login) in one statement instead
# of five lazy loads, built once.
_REDEEM = (
    select(Invitation)
    .options(
        joinedload(Invitation.person).joinedload(Person.organization),
        joinedload(Invitation.person).joinedload(Person.department),
        joinedload(Invitation.profile),
        joinedload(Invitation.created_by),
    )
    .where(Invitation.code_hash == bindparam("code_hash"))
)


def smime_subject(person: Person) -> dict[str, str]:
    """Standard validation: mailbox-validated; High: individual-validated (docs/pki.md)."""
    try:
        if person.validation_type == ValidationType.HIGH:
            return smime.subject_values(
                smime.ValidationLevel.INDIVIDUAL,
                email=person.email,
                given_name=" ".join(p for p in (person.first_name, person.middle_name) if p),
                surname=person.last_name,
                full_name=person.full_name,
            )
        return smime.subject_values(smime.ValidationLevel.MAILBOX, email=person.email)
    except PkiError as exc:
        raise DomainError(f"The person's name cannot go into a certificate: {exc}") from exc


def start_enrollment(
    *, invitation: Invitation, pkcs12_password: str, approved_by: str
) -> tuple[PortalEnrollment, str]:
    """Create the person's request (approved by the invitation), the enrollment row with
    the sealed password, and the key generation job (sent after commit)."""
    person = invitation.person
    profile = invitation.profile
    data = enrollment.RequestData(
        organization_id=person.organization_id,
        department_id=person.department_id,
        profile_id=profile.id,
        term_days=invitation.term_days,
        mode=RequestMode.KEYGEN,
        key_type=invitation.key_type,
        sans=person.emails,
        requester_email=person.email,
        eula_accepted=True,
        cert_type=CertType.CLIENT,
        person_id=person.id,
        smime_subject=smime_subject(person),
        comments=f"{invitation.kind.value} on the enrollment portal (invitation #{invitation.id})",
    )
    req = enrollment.submit_request(actor=SYSTEM, data=data, approved_by=approved_by)
    enr = PortalEnrollment(
        person_id=person.id,
        invitation_id=invitation.id,
        request_id=req.id,
        token_nonce=secrets.token_hex(32),
        status=EnrollmentStatus.PENDING,
        legacy_pkcs12=profile.pkcs12_legacy,
        sealed_password=keystore.seal(pkcs12_password.encode(), signing.keks()),
    )
    db.session.add(enr)
    db.session.flush()
    job = jobs.create_job(
        kind="portal_enrollment",
        payload={"enrollment_ids": [enr.id]},
        organization_id=person.organization_id,
        max_attempts=3,
    )
    enr.job_id = job.id
    return enr, page_token(enr)


def page_token(enr: PortalEnrollment) -> str:
    """The token in the progress page's URL: HMAC-SHA256(SECRET_KEY, nonce)."""
    return _token_of(enr.token_nonce)


def _token_of(nonce: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(key, f"cw-enrollment:{nonce}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def progress_path(enr: PortalEnrollment) -> str:
    return f"/enroll/progress/{enr.id}/{page_token(enr)}"


def register(*, data: Registration) -> tuple[PortalEnrollment, str]:
    """Redeem an invitation code: set the passphrase and start the key generation job.

    Returns the enrollment and the token of its progress page.

    Raises:
        throttle.Throttled: too many failures from this address or for this email.
        ValidationFailed: a password or passphrase breaks its policy, no agreement.
        InvalidCode: a wrong, used, expired, revoked or other person's code (counted).
    """
    keys = throttle.keys_for(ip=data.ip, email=data.email)
    throttle.check(keys)
    check_secrets(data, with_passphrase=True)
    invitation = redeem(data, keys, InvitationKind.REGISTRATION)
    person = invitation.person
    person.passphrase_hash = passphrases.hash_passphrase(data.passphrase)
    inviter = invitation.created_by
    enr, token = start_enrollment(
        invitation=invitation,
        pkcs12_password=data.pkcs12_password,
        approved_by=f"invitation #{invitation.id} sent by {inviter.login if inviter else 'an administrator'}",
    )
    with audit.source(ip=data.ip, label=f"portal: {person.email}"):
        audit.record(
            action="person.register",
            actor=SYSTEM,
            object_type="Person",
            object_id=person.id,
            label=person.email,
            after={
                "invitation_id": invitation.id,
                "request_id": enr.request_id,
                "passphrase_set": True,
            },
            organization_id=person.organization_id,
            department_id=person.department_id,
        )
    return enr, token


# Registrations one job run takes on: the job's fixed cost (claim, heartbeat, finish) and
# the issuance batch's (the CA key, serials, the audit chain) are paid once for all of
# them, while a person at the front of a batch waits for at most this many key pairs.
BATCH_SIZE = 10


def enrollment_ids(payload: dict[str, Any]) -> list[int]:
    """The registrations a portal_enrollment job carries (its own and those it adopted);
    jobs queued before batching carry one under ``enrollment_id``."""
    if "enrollment_ids" in payload:
        return [int(i) for i in payload["enrollment_ids"]]
    return [int(payload["enrollment_id"])] if "enrollment_id" in payload else []


@dataclass
class PackagingResult:
    ready: list[int]  # enrollment ids whose PKCS#12 is now ready
    failed: dict[int, str]  # enrollment id -> reason (the person sees it)

    def summary(self) -> str:
        return f"{len(self.ready)} PKCS#12 files ready, {len(self.failed)} failed"


def build_pkcs12s(ids: Sequence[int]) -> PackagingResult:
    """The job: issue the requests of every still-pending enrollment of ``ids`` in one
    issuance batch (keys generated here, on the worker) and seal the PKCS#12 built with
    each person's password. The caller commits. Safe to run twice: an enrollment no
    longer pending is skipped, and a request someone else issued meanwhile makes the
    whole batch roll back (IssuanceRaced).

    A freshly generated key goes straight from issuance into the PKCS#12: it is sealed
    under the KEK only when the profile escrows keys, as before, never sealed and unsealed
    again just to be dropped.

    Raises:
        issuance.IssuanceRaced: another attempt issued some request meanwhile.
        RuntimeError: a request is in a state no attempt can package (retry).
    """
    wanted = [int(i) for i in dict.fromkeys(ids)]
    # The batch's rows in a statement each (enrollments with their people; requests with
    # their profiles), not two or three loads per registration.
    loaded = {
        enr.id: enr
        for enr in db.session.execute(
            _BATCH_ENROLLMENTS.where(PortalEnrollment.id.in_(wanted)),
            execution_options={"populate_existing": True},
        ).scalars()
    }
    enrs = [
        loaded[i] for i in wanted if i in loaded and loaded[i].status == EnrollmentStatus.PENDING
    ]
    result = PackagingResult(ready=[], failed={})
    if not enrs:
        return result
    reqs = _requests_of(enrs)
    approved = [req.id for req in reqs.values() if req.status == RequestStatus.APPROVED]
    fresh_keys: dict[int, PrivateKey] = {}
    if approved:
        issuance.issue_requests(approved, hand_over_keys=fresh_keys)
        # Issued by statements on the table: read the requests (and certificates) again.
        reqs = _requests_of(enrs)
    keks = signing.keks()
    batch = _Batch(keks)
    for enr in enrs:
        req = reqs[enr.id]
        reason = _package(enr, req, fresh_keys.get(req.id), batch)
        if reason is None:
            result.ready.append(enr.id)
        else:
            result.failed[enr.id] = reason
    return result


_BATCH_ENROLLMENTS = select(PortalEnrollment).options(
    joinedload(PortalEnrollment.person).joinedload(Person.organization),
    joinedload(PortalEnrollment.person).joinedload(Person.department),
)


def _requests_of(enrs: Sequence[PortalEnrollment]) -> dict[int, CertificateRequest]:
    """Enrollment id -> its request (with profile and certificate), read afresh."""
    rows = db.session.execute(
        select(CertificateRequest)
        .options(joinedload(CertificateRequest.profile), joinedload(CertificateRequest.certificate))
        .where(CertificateRequest.id.in_([enr.request_id for enr in enrs])),
        execution_options={"populate_existing": True},
    ).scalars()
    by_id = {req.id: req for req in rows}
    return {enr.id: by_id[enr.request_id] for enr in enrs}


class _Batch:
    """What the registrations of one batch share: the KEKs, each CA's chain, each
    organization's mail template (looked up once, not once per person)."""

    def __init__(self, keks: keystore.KeyEncryptionKeys) -> None:
        self.keks = keks
        self._chains: dict[int, list[x509.Certificate]] = {}
        self._templates: dict[int, tuple[str, str, bool]] = {}

    def chain(self, cert: Certificate) -> list[x509.Certificate]:
        if cert.ca_id is None:  # not ours: its own chain (never the case of a portal key)
            return inventory.chain_for(cert)
        if cert.ca_id not in self._chains:
            self._chains[cert.ca_id] = inventory.chain_for(cert)
        return list(self._chains[cert.ca_id])

    def template(self, organization_id: int) -> tuple[str, str, bool]:
        if organization_id not in self._templates:
            self._templates[organization_id] = mailing.template_of(
                organization_id, "registration_complete"
            )
        return self._templates[organization_id]


def _package(
    enr: PortalEnrollment,
    req: CertificateRequest,
    key: PrivateKey | None,
    batch: _Batch,
) -> str | None:
    """Build and seal one person's PKCS#12 from their issued request; the failure reason
    (the enrollment then shows it) or None."""
    if req.status == RequestStatus.FAILED:
        fail(enr, req.failure_reason or "issuance failed")
        return enr.failure_reason
    if req.status != RequestStatus.ISSUED or req.certificate is None:
        raise RuntimeError(f"request #{req.id} is {req.status.value}, not issued")
    cert = req.certificate
    keks = batch.keks
    if key is None and cert.sealed_key is not None:  # issued earlier, or escrowed
        key = keystore.unseal_private_key(cert.sealed_key, keks)
    if key is None or enr.sealed_password is None:
        fail(enr, "the key or the password is no longer available")
        return enr.failure_reason
    password = keystore.unseal(enr.sealed_password, keks)
    person = enr.person
    bundle = formats.export_pkcs12(
        key,
        x509.load_der_x509_certificate(cert.der),
        batch.chain(cert),
        password=password,
        friendly_name=f"{person.full_name} ({person.email})",
        legacy=enr.legacy_pkcs12,
    )
    enr.sealed_pkcs12 = keystore.seal(bundle.content, keks)
    enr.sealed_password = None
    enr.certificate_id = cert.id
    enr.status = EnrollmentStatus.READY
    enr.ready_at = utcnow()
    escrow = bool(req.profile.key_escrow)
    if not escrow:
        cert.sealed_key = None  # from now on the key exists only inside the PKCS#12
    mailing.send(
        kind="registration_complete",
        template=batch.template(person.organization_id),
        organization_id=person.organization_id,
        department_id=person.department_id,
        to=person.email,
        context={
            **invitations.person_context(person),
            "serial": cert.serial_hex,
            "not_after": cert.not_after.strftime("%Y-%m-%d"),
            "link": invitations.portal_url(progress_path(enr)),
            "portal": invitations.portal_url("/portal/"),
        },
    )
    audit.record(
        action="enrollment.ready",
        actor=SYSTEM,
        object_type="Certificate",
        object_id=cert.id,
        label=person.email,
        after={"enrollment_id": enr.id, "key_escrowed": escrow},
        organization_id=person.organization_id,
        department_id=person.department_id,
    )
    return None


def fail(enr: PortalEnrollment, reason: str) -> None:
    enr.status = EnrollmentStatus.FAILED
    enr.failure_reason = reason[:2000]
    enr.sealed_password = None


def failed_for_good(ids: Sequence[int], reason: str) -> None:
    """The job ran out of attempts: its people still waiting see the failure instead."""
    for enrollment_id in ids:
        enr = db.session.get(PortalEnrollment, enrollment_id)
        if enr is not None and enr.status == EnrollmentStatus.PENDING:
            fail(enr, reason)


def _check_id(enrollment_id: int) -> None:
    if not 0 < enrollment_id < 2**63:  # beyond a database integer: no such page
        raise NotFound("This page is not valid.")


# The progress page reloads itself after 2 s, plus 1 s for every 5 registrations queued
# ahead of this one (at most 10 s): with a wave of registrations, a page at the back of
# the queue is not re-rendered a dozen times before its turn comes.
REFRESH_SECONDS = 2
REFRESH_MAX_SECONDS = 10
_QUEUE_PER_SECOND = 5
_QUEUE_LOOK_BACK = (REFRESH_MAX_SECONDS - REFRESH_SECONDS) * _QUEUE_PER_SECOND


@dataclass(frozen=True)
class Progress:
    """What the progress page shows."""

    enrollment_id: int
    email: str
    status: EnrollmentStatus
    message: str
    refresh_seconds: int  # while pending: when the page reloads itself


def progress_of(*, enrollment_id: int, token: str) -> Progress:
    """The progress page's state in two small queries (the page is reloaded every few
    seconds by every person waiting: neither the sealed password or file nor the person
    row is loaded for it).

    Raises:
        NotFound: no such enrollment or a wrong token (indistinguishable).
    """
    _check_id(enrollment_id)
    row = db.session.execute(_PROGRESS, {"id": enrollment_id}).one_or_none()
    if row is None or not hmac.compare_digest(_token_of(row.token_nonce).encode(), token.encode()):
        raise NotFound("This page is not valid.")
    refresh = 0
    if row.status == EnrollmentStatus.PENDING:
        ahead = db.session.execute(
            _AHEAD, {"id": enrollment_id, "from": enrollment_id - _QUEUE_LOOK_BACK}
        ).scalar_one()
        refresh = min(REFRESH_MAX_SECONDS, REFRESH_SECONDS + int(ahead) // _QUEUE_PER_SECOND)
    return Progress(
        enrollment_id=enrollment_id,
        email=row.email,
        status=row.status,
        message=_not_ready(row.status, row.failure_reason),
        refresh_seconds=refresh,
    )


# The progress page's statements, built once (building one costs about what running it
# does, and every person waiting reloads the page).
_PROGRESS = (
    select(
        PortalEnrollment.token_nonce,
        PortalEnrollment.status,
        PortalEnrollment.failure_reason,
        Person.email,
    )
    .join(Person, Person.id == PortalEnrollment.person_id)
    .where(PortalEnrollment.id == bindparam("id"))
)
# Registrations queued just before one (by id, through the primary key, so the count
# never reads more than the look-back's rows).
_AHEAD = (
    select(func.count())
    .select_from(PortalEnrollment)
    .where(
        PortalEnrollment.id < bindparam("id"),
        PortalEnrollment.id >= bindparam("from"),
        PortalEnrollment.status == EnrollmentStatus.PENDING,
    )
)


@dataclass(frozen=True)
class Collected:
    """The PKCS#12 handed out, and the name to save it under (the person's email)."""

    download: formats.Download
    filename: str


def collect(*, enrollment_id: int, token: str, ip: str = "") -> Collected:
    """The PKCS#12, once: it is deleted as it is handed out. A renewal's old certificate
    is revoked (superseded) now that the new one is in the person's hands.

    Raises:
        NotFound: wrong link. Conflict: not ready yet, already downloaded, failed, expired.
    """
    _check_id(enrollment_id)
    # The enrollment, its person and its invitation in one statement (not three loads).
    row = db.session.execute(_COLLECT, {"id": enrollment_id}).one_or_none()
    if row is None or not hmac.compare_digest(_token_of(row.token_nonce).encode(), token.encode()):
        raise NotFound("This page is not valid.")
    if row.status != EnrollmentStatus.READY or row.sealed_pkcs12 is None:
        raise Conflict(_not_ready(row.status, row.failure_reason))
    # Conditional: of two downloads at once, one moves the row and gets the file.
    moved = db.session.execute(
        update(PortalEnrollment)
        .where(
            PortalEnrollment.id == enrollment_id, PortalEnrollment.status == EnrollmentStatus.READY
        )
        .values(status=EnrollmentStatus.COLLECTED, collected_at=utcnow(), sealed_pkcs12=None)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        raise Conflict("The certificate file was already downloaded.")
    content = keystore.unseal(row.sealed_pkcs12, signing.keks())
    with audit.source(ip=ip, label=f"portal: {row.email}"):
        audit.record(
            action="enrollment.collect",
            actor=SYSTEM,
            object_type="Certificate",
            object_id=row.certificate_id,
            label=row.email,
            after={"enrollment_id": enrollment_id},
            organization_id=row.organization_id,
            department_id=row.department_id,
        )
        old_id = row.renews_certificate_id
        if row.kind == InvitationKind.RENEWAL and old_id is not None:
            _supersede(old_id, row.certificate_id)
    enr = db.session.identity_map.get(db.session.identity_key(PortalEnrollment, enrollment_id))
    if enr is not None:  # a copy loaded earlier in this session no longer holds
        db.session.expire(enr)
    return Collected(formats.Download(content, formats.PKCS12_MIME, "p12"), f"{row.email}.p12")


_COLLECT = (
    select(
        PortalEnrollment.token_nonce,
        PortalEnrollment.status,
        PortalEnrollment.failure_reason,
        PortalEnrollment.sealed_pkcs12,
        PortalEnrollment.certificate_id,
        Person.email,
        Person.organization_id,
        Person.department_id,
        Invitation.kind,
        Invitation.renews_certificate_id,
    )
    .join(Person, Person.id == PortalEnrollment.person_id)
    .join(Invitation, Invitation.id == PortalEnrollment.invitation_id)
    .where(PortalEnrollment.id == bindparam("id"))
)


def _supersede(old_id: int, new_id: int | None) -> None:
    old = db.session.get(Certificate, old_id)
    if old is None:
        return
    # Already revoked (by an administrator meanwhile): nothing left to supersede.
    with contextlib.suppress(Conflict):
        revocation.revoke(
            actor=SYSTEM,
            certificate_ids=[old_id],
            reason="superseded",
            message="renewed by the person on the enrollment portal",
        )
    old.replaced_by_id = new_id
    old.renewal_state = "Renewed"


def _not_ready(status: EnrollmentStatus, failure_reason: str) -> str:
    return {
        EnrollmentStatus.PENDING: "Your certificate is still being generated.",
        EnrollmentStatus.COLLECTED: "The certificate file was already downloaded; it is handed out once.",
        EnrollmentStatus.FAILED: f"The certificate could not be issued: {failure_reason}",
        EnrollmentStatus.EXPIRED: "The certificate file was not downloaded in time and was deleted; ask your administrator for a new invitation.",
    }.get(status, "The certificate file is not available.")


def expire_uncollected() -> int:
    """Delete PKCS#12 files not downloaded within KEEP_READY (housekeeping)."""
    result = db.session.execute(
        update(PortalEnrollment)
        .where(
            PortalEnrollment.status == EnrollmentStatus.READY,
            PortalEnrollment.ready_at < utcnow() - KEEP_READY,
        )
        .values(status=EnrollmentStatus.EXPIRED, sealed_pkcs12=None)
    )
    return int(result.rowcount or 0)
