"""Renewal (same key for CSR requests unless the profile forbids reuse; a fresh key for
server-generated ones), replacement with a new CSR, and the auto-renew sweep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from app.extensions import db
from app.models import (
    Admin,
    Certificate,
    CertificateRequest,
    CertOrigin,
    CertStatus,
    CertType,
    RequestMode,
    RequestStatus,
)
from app.models.types import utcnow
from app.pki import keys
from app.pki.errors import PkiError
from app.pki.profiles import check_term
from app.services import audit
from app.services.ca import blocked_keys
from app.services.ca.profiles import KIND_OF
from app.services.certificates import approvals, enrollment, inventory
from app.services.errors import DomainError
from app.services.scope import SYSTEM, Actor
from app.services.structure import domains

RENEWABLE = (CertStatus.ISSUED, CertStatus.EXPIRED)


def _ours(actor: Actor, certificate_id: int, action: str) -> Certificate:
    cert = inventory.get_certificate(actor=actor, certificate_id=certificate_id, action=action)
    if cert.origin != CertOrigin.ISSUED or cert.request is None:
        raise DomainError(
            f"{cert.common_name} was not issued by Certwright; request a new certificate instead."
        )
    if cert.request.person_id is not None and cert.request.mode == RequestMode.KEYGEN:
        # The key lives in the person's PKCS#12 only (docs/portal.md); a person's
        # certificate for a CSR (the REST API's S/MIME enroll) is renewed like any other.
        raise DomainError(
            f"{cert.common_name} belongs to a person: they renew it on the enrollment portal, or you send them a new invitation."
        )
    return cert


def _check_reused_key(old: CertificateRequest) -> None:
    """A renewal that reuses the key is refused when the key is now known weak (ROCA, close
    primes) or blocked as compromised (CA/B Forum BR 6.1.1.3)."""
    try:
        public_key = serialization.load_der_public_key(old.public_key_der or b"")
        keys.check_key_policy(
            public_key,  # type: ignore[arg-type]
            old.profile.key_types,
            blocked_spki_sha256=blocked_keys.BLOCKED,
            debian_weak=blocked_keys.DEBIAN_WEAK,
        )
    except (PkiError, ValueError) as exc:
        raise DomainError(
            f"The certificate's key cannot be certified again: {exc}. Replace the "
            "certificate with a CSR for a new key instead."
        ) from exc


def _term(old: CertificateRequest) -> int:
    profile = old.profile
    if old.term_days in profile.terms:
        term = old.term_days
    else:
        term = (
            max(t for t in profile.terms if t <= old.term_days)
            if any(t <= old.term_days for t in profile.terms)
            else min(profile.terms)
        )
    try:
        check_term(KIND_OF[profile.cert_type], term, utcnow())
    except PkiError as exc:
        raise DomainError(f"The profile's term of {term} days is no longer allowed: {exc}") from exc
    return term


def _renewal_window(old: CertificateRequest, term: int) -> tuple[bool, int]:
    """The successor's auto-renew setting for its term: the old window, shortened to the
    longest the term allows (requests made before that rule, or a term the profile cut);
    auto-renew stays off for a term too short to renew automatically."""
    if not old.auto_renew:
        return False, old.renew_days_before
    most = enrollment.max_renewal_window(term)
    if most < 1:
        return False, old.renew_days_before
    return True, min(old.renew_days_before, most)


def effective_window_days(term_days: int | None, renew_days_before: int) -> int:
    """The days before expiry the sweep renews a certificate: its window, never more than
    its term allows (certificates stored before the rule may have a longer one)."""
    if term_days is None:
        return renew_days_before
    return max(1, min(renew_days_before, enrollment.max_renewal_window(term_days)))


def renew(
    *, actor: Actor, certificate_id: int, auto: bool = False, csr: bytes | None = None
) -> CertificateRequest:
    """Create the renewal request of an issued certificate, linked to it.

    Auto-renewals (actor SYSTEM) are approved at once: the original was approved and the
    renewal asks for nothing new. A manual renewal follows the profile's approval rule.
    With ``csr`` (the REST API's renewById) the renewal is for that CSR's key, checked like
    a new request.
    """
    cert = _ours(actor, certificate_id, "renew")
    if csr is not None:
        return _renew_with_csr(actor, cert, csr)
    if cert.status not in RENEWABLE:
        raise DomainError(
            f"{cert.common_name} is {cert.status.value}; only issued or expired certificates are renewed."
        )
    old = cert.request
    assert old is not None
    profile = old.profile
    if not profile.active:
        raise DomainError(
            f"The profile '{profile.name}' is no longer active; request a new certificate with another profile."
        )
    if old.mode == RequestMode.CSR and not profile.allow_key_reuse:
        raise DomainError(
            f"The profile '{profile.name}' forbids reusing a key: replace the certificate with a new CSR instead."
        )
    domains.check_names_delegated(old.sans, old.organization, old.department, old.cert_type)
    if old.mode == RequestMode.CSR:
        _check_reused_key(old)
    term = _term(old)
    auto_renew, window = _renewal_window(old, term)
    req = CertificateRequest(
        cert_type=old.cert_type,
        profile_id=old.profile_id,
        organization_id=old.organization_id,
        department_id=old.department_id,
        status=RequestStatus.REQUESTED,
        mode=old.mode,
        csr_der=old.csr_der,
        public_key_der=old.public_key_der,
        key_type=old.key_type,
        common_name=old.common_name,
        sans=list(old.sans),
        subject=dict(old.subject),
        term_days=term,
        requester_id=old.requester_id if actor is SYSTEM else actor.id,
        requester_email=old.requester_email,
        external_requesters=list(old.external_requesters),
        auto_renew=auto_renew,
        renew_days_before=window,
        eula_accepted_at=old.eula_accepted_at,
        renewal_of_id=cert.id,
        comments=f"renewal of certificate #{cert.id}",
        person_id=old.person_id,
    )
    db.session.add(req)
    db.session.flush()
    before = {"renewal_state": cert.renewal_state}
    cert.renewal_state = "Renewal requested"
    audit.record(
        action="certificate.renew",
        actor=actor,
        object_type="Certificate",
        object_id=cert.id,
        label=cert.common_name,
        before=before,
        after={
            "renewal_state": cert.renewal_state,
            "renewal_request": req.id,
            "auto": auto,
            "auto_renew": auto_renew,
            "renew_days_before": window,
        },
        organization_id=cert.organization_id,
        department_id=cert.department_id,
    )
    # Code signing renewals, like code signing requests, always wait for an approval.
    if (auto or not profile.requires_approval) and old.cert_type != CertType.CODE_SIGNING:
        why = (
            "auto-renewal of an approved certificate"
            if auto
            else f"approved automatically by profile '{profile.name}'"
        )
        approvals.mark_approved([req.id], actor=SYSTEM, message=why)
        approvals.queue_issuance([req.id])
    return req


def _person_fields(old: CertificateRequest) -> dict[str, Any]:
    """A person's certificate stays theirs, with the subject their validation gave it."""
    if old.person_id is None:
        return {}
    return {"person_id": old.person_id, "smime_subject": dict(old.subject)}


def _renew_with_csr(actor: Actor, cert: Certificate, csr: bytes) -> CertificateRequest:
    if cert.status not in RENEWABLE:
        raise DomainError(
            f"{cert.common_name} is {cert.status.value}; only issued or expired certificates are renewed."
        )
    if not isinstance(actor, Admin):
        raise DomainError("A renewal for a new CSR is made by an administrator.")
    old = cert.request
    assert old is not None
    term = _term(old)
    auto_renew, window = _renewal_window(old, term)
    data = enrollment.RequestData(
        organization_id=old.organization_id,
        department_id=old.department_id,
        profile_id=old.profile_id,
        term_days=term,
        mode=RequestMode.CSR,
        csr=csr,
        common_name=old.common_name,
        sans=[s for s in old.sans if s != old.common_name],
        requester_email=old.requester_email,
        external_requesters=old.external_requesters,
        auto_renew=auto_renew,
        renew_days_before=window,
        eula_accepted=True,
        cert_type=old.cert_type,
        renewal_of_id=cert.id,
        comments=f"renewal of certificate #{cert.id}",
        **_person_fields(old),
    )
    req = enrollment.submit_request(actor=actor, data=data)
    before = {"renewal_state": cert.renewal_state}
    cert.renewal_state = "Renewal requested"
    audit.record(
        action="certificate.renew",
        actor=actor,
        object_type="Certificate",
        object_id=cert.id,
        label=cert.common_name,
        before=before,
        after={"renewal_state": cert.renewal_state, "renewal_request": req.id, "auto": False},
        organization_id=cert.organization_id,
        department_id=cert.department_id,
    )
    return req


def replace(
    *,
    actor: Admin,
    certificate_id: int,
    csr: bytes,
    common_name: str | None = None,
    sans: Sequence[str] | None = None,
    message: str = "",
) -> CertificateRequest:
    """Request a replacement with a new CSR; when issued, the old one is revoked (superseded).

    ``common_name`` and ``sans`` (None: keep the certificate's) change the names; the CSR's
    own names are added as for a new request. ``message`` goes to the audit log."""
    cert = _ours(actor, certificate_id, "replace")
    if cert.status not in RENEWABLE:
        raise DomainError(
            f"{cert.common_name} is {cert.status.value}; only issued or expired certificates are replaced."
        )
    old = cert.request
    assert old is not None
    term = _term(old)
    auto_renew, window = _renewal_window(old, term)
    data = enrollment.RequestData(
        organization_id=old.organization_id,
        department_id=old.department_id,
        profile_id=old.profile_id,
        term_days=term,
        mode=RequestMode.CSR,
        csr=csr,
        common_name=old.common_name if common_name is None else common_name,
        sans=[s for s in old.sans if s != old.common_name] if sans is None else list(sans),
        requester_email=old.requester_email,
        external_requesters=old.external_requesters,
        auto_renew=auto_renew,
        renew_days_before=window,
        eula_accepted=True,
        cert_type=old.cert_type,
        replaces_id=cert.id,
        comments=f"replacement of certificate #{cert.id}"
        + (f": {message.strip()}" if message.strip() else ""),
        **_person_fields(old),
    )
    req = enrollment.submit_request(actor=actor, data=data)
    cert.renewal_state = "Replacement requested"
    return req


def auto_renew_sweep() -> list[int]:
    """Renew every auto-renew certificate that is within its renewal window.

    A renewal (or replacement) issued less than a window ago is never renewed, whatever
    its dates say: a successor born inside its own window must not start a chain of
    renewals, one per sweep.
    """
    now = utcnow()
    candidates = db.session.execute(
        select(
            Certificate.id,
            Certificate.not_after,
            Certificate.renew_days_before,
            Certificate.created_at,
            CertificateRequest.term_days,
            CertificateRequest.renewal_of_id,
            CertificateRequest.replaces_id,
        )
        .outerjoin(CertificateRequest, CertificateRequest.id == Certificate.request_id)
        .where(
            Certificate.auto_renew.is_(True),
            Certificate.status == CertStatus.ISSUED,
            Certificate.origin == CertOrigin.ISSUED,
            Certificate.not_after <= now + timedelta(days=366),
            Certificate.renewal_state.not_in(["Renewal requested", "Renewal failed"]),
        )
        .order_by(Certificate.id)
    ).all()
    created = []
    for row in candidates:
        window = timedelta(days=effective_window_days(row.term_days, row.renew_days_before))
        if row.not_after - window > now:
            continue
        if (row.renewal_of_id or row.replaces_id) and row.created_at > now - window:
            continue  # a successor issued less than a window ago
        try:  # renew() checks everything before it writes, so a refusal leaves no trace
            created.append(renew(actor=SYSTEM, certificate_id=row.id, auto=True).id)
        except DomainError as exc:
            cert = db.session.get_one(Certificate, row.id)
            before = {"renewal_state": cert.renewal_state}
            cert.renewal_state = "Renewal failed"
            audit.record(
                action="certificate.renew_failed",
                actor=SYSTEM,
                object_type="Certificate",
                object_id=cert.id,
                label=cert.common_name,
                before=before,
                after={"renewal_state": cert.renewal_state},
                message=exc.message,
                organization_id=cert.organization_id,
                department_id=cert.department_id,
            )
    return created
