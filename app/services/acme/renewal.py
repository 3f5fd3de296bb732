"""ACME renewal information (RFC 9773) over the inventory: the certificate an ARI
identifier names, its suggested renewal window, and the checks of ``replaces`` in newOrder.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from sqlalchemy import select

from app.acme import ari
from app.acme.problems import AcmeProblem
from app.extensions import db
from app.models import (
    AcmeAccount,
    AcmeOrder,
    CaStatus,
    Certificate,
    CertificateAuthority,
    CertificateProfile,
    CertificateRequest,
    CertStatus,
)
from app.models.types import utcnow


def certificate_named(cert_id: ari.CertId) -> Certificate | None:
    """The certificate one of our CAs issued with this AKI keyIdentifier and serial."""
    rows = db.session.execute(
        select(Certificate).where(
            Certificate.serial_hex == cert_id.serial_hex, Certificate.ca_id.is_not(None)
        )
    ).scalars()
    for cert in rows:
        try:
            named = ari.cert_id_of(x509.load_der_x509_certificate(cert.der))
        except (ValueError, x509.ExtensionNotFound):
            continue
        if ari.parse_cert_id(named) == cert_id:
            return cert
    return None


def _found(text: str, *, status: int = 404) -> Certificate:
    cert = certificate_named(ari.parse_cert_id(text))
    if cert is None:
        raise AcmeProblem(
            "malformed", f"no certificate of this server is named {text}", status=status
        )
    return cert


def must_replace(cert: Certificate) -> bool:
    """Revoked, or its issuing CA revoked or retired (a CA rotation)."""
    if cert.status == CertStatus.REVOKED:
        return True
    ca = db.session.get(CertificateAuthority, cert.ca_id) if cert.ca_id else None
    return ca is not None and ca.status != CaStatus.ACTIVE


def renewal_info(text: str) -> ari.Window:
    """§4.2: the suggested window of the certificate ``text`` names; earlier when its
    profile's shortest term is now shorter than its life (a validity-cap change).

    Raises:
        AcmeProblem: malformed (400 unreadable, 404 not ours).
    """
    cert = _found(text)
    profile = db.session.get(CertificateProfile, cert.profile_id) if cert.profile_id else None
    cap = timedelta(days=min(profile.terms)) if profile is not None and profile.terms else None
    return ari.suggested_window(
        not_before=cert.not_before,
        not_after=cert.not_after,
        now=utcnow(),
        must_replace=must_replace(cert),
        term_cap=cap,
    )


def check_replaces(*, account: AcmeAccount, text: str, names: set[str]) -> Certificate:
    """§5: ``replaces`` must name a certificate this account ordered, sharing a name with
    the new order, that no other live order replaces already.

    Raises:
        AcmeProblem: malformed (unreadable or unknown), unauthorized (another account's),
            rejectedIdentifier (no name in common), alreadyReplaced.
    """
    cert = _found(text, status=400)
    ordered = db.session.execute(
        select(AcmeOrder.id)
        .join(CertificateRequest, CertificateRequest.id == AcmeOrder.request_id)
        .where(AcmeOrder.account_id == account.id, CertificateRequest.certificate_id == cert.id)
    ).first()
    if ordered is None:
        raise AcmeProblem("unauthorized", f"this account did not order the certificate {text}")
    leaf = x509.load_der_x509_certificate(cert.der)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        had = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        had = set()
    if not had & names:
        raise AcmeProblem(
            "rejectedIdentifier", f"the new order shares no identifier with the certificate {text}"
        )
    other = db.session.execute(
        select(AcmeOrder.id).where(
            AcmeOrder.replaces_certificate_id == cert.id, AcmeOrder.status != "invalid"
        )
    ).first()
    if other is not None:
        raise AcmeProblem(
            "alreadyReplaced", f"order #{other[0]} replaces the certificate {text} already"
        )
    return cert
