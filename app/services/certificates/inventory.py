"""The certificate inventory as admins see it: scoped lookups, downloads, collection links."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy import and_, false, or_, select, update
from sqlalchemy.orm import selectinload
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import Admin, Certificate, CertificateAuthority, CertStatus, CertType
from app.models.types import utcnow
from app.pki import formats, keystore
from app.pki.bundles import load_certificate
from app.pki.errors import PkiError
from app.services import audit
from app.services.ca import signing
from app.services.errors import DomainError, Forbidden, NotFound
from app.services.scope import Actor, Scope, scope_of
from app.services.structure import orgs


def visible_clause(scope: Scope, cert_type: CertType | None = None) -> ColumnElement[bool] | None:
    """Certificates the admin may see: placed in scope (and of a type they hold there).

    Unassigned certificates (discovered, no organization yet) are visible to MRAOs only."""
    if cert_type is None:
        return scope.row_filter(Certificate.organization_id, Certificate.department_id)
    return scope.type_filter(Certificate.organization_id, Certificate.department_id, cert_type)


def held_types_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Certificates the admin may see in lists: of a type they hold where the certificate is
    placed (as get_certificate decides for one), or untyped ones placed in their scope."""
    if scope.is_master:
        return None
    parts = []
    for cert_type in CertType:
        clause = scope.type_filter(
            Certificate.organization_id, Certificate.department_id, cert_type
        )
        assert clause is not None
        parts.append(and_(Certificate.cert_type == cert_type, clause))
    untyped = scope.row_filter(Certificate.organization_id, Certificate.department_id)
    assert untyped is not None
    parts.append(and_(Certificate.cert_type.is_(None), untyped))
    return or_(*parts)


STATUSES = ("Issued", "Revoked", "Expired", "Replaced", "External")


def effective_status(cert: Certificate) -> str:
    """The status a person should see: an issued certificate past its notAfter is Expired
    even before the daily sweep marks it."""
    if cert.status == CertStatus.ISSUED and cert.not_after < utcnow():
        return CertStatus.EXPIRED.value
    return cert.status.value


def display_status_clause(status: str, *, now: datetime) -> ColumnElement[bool]:
    """Certificates whose effective_status is ``status`` (nothing for an unknown one)."""
    if status == CertStatus.ISSUED.value:
        return (Certificate.status == CertStatus.ISSUED) & (Certificate.not_after >= now)
    if status == CertStatus.EXPIRED.value:
        return or_(
            Certificate.status == CertStatus.EXPIRED,
            and_(Certificate.status == CertStatus.ISSUED, Certificate.not_after < now),
        )
    if status not in STATUSES:
        return false()
    return Certificate.status == CertStatus(status)


@dataclass(frozen=True)
class CertificateFilter:
    organization_id: int | None = None
    department_id: int | None = None
    status: str | None = None  # one of STATUSES, as effective_status names it
    cert_type: CertType | None = None
    expiring_within_days: int | None = None  # issued, valid now, notAfter within N days
    limit: int | None = 1000


def list_certificates(*, actor: Actor, where: CertificateFilter) -> list[Certificate]:
    """The certificates the actor may see that match, soonest to expire first.

    Raises:
        DomainError: an unknown status or a negative number of days.
    """
    now = utcnow()
    query = select(Certificate).options(
        selectinload(Certificate.organization), selectinload(Certificate.department)
    )
    clause = held_types_clause(scope_of(actor))
    if clause is not None:
        query = query.where(clause)
    if where.organization_id is not None:
        query = query.where(Certificate.organization_id == where.organization_id)
    if where.department_id is not None:
        query = query.where(Certificate.department_id == where.department_id)
    if where.cert_type is not None:
        query = query.where(Certificate.cert_type == where.cert_type)
    if where.status is not None:
        status = where.status.strip().capitalize()
        if status not in STATUSES:
            raise DomainError(
                f"'{where.status}' is not a certificate status ({', '.join(STATUSES)}).",
                field="status",
            )
        query = query.where(display_status_clause(status, now=now))
    if where.expiring_within_days is not None:
        if where.expiring_within_days < 0:
            raise DomainError("The number of days must be 0 or more.", field="expiring_days")
        query = query.where(
            Certificate.status == CertStatus.ISSUED,
            Certificate.not_after >= now,
            Certificate.not_after <= now + timedelta(days=where.expiring_within_days),
        )
    query = query.order_by(Certificate.not_after, Certificate.id)
    if where.limit:
        query = query.limit(where.limit)
    return list(db.session.execute(query).scalars())


def get_certificate(*, actor: Actor, certificate_id: int, action: str = "") -> Certificate:
    """The certificate, if this actor may see it, or act on it when ``action`` names the act.

    Raises:
        NotFound: no such certificate, or one outside the actor's scope (nothing is learnt).
        Forbidden: the actor sees it but lacks its type's privilege there and asked to act
            ("You may not revoke www.example.com: ..."); merely looking is NotFound then.
    """
    cert = db.session.get(Certificate, certificate_id)
    scope = scope_of(actor)
    if cert is None or not scope.covers(cert.organization_id, cert.department_id):
        raise audit.not_found(
            actor=actor, what="certificate", model=Certificate, object_id=certificate_id
        )
    if cert.cert_type is not None and not scope.may(
        cert.cert_type, cert.organization_id, cert.department_id
    ):
        if not action:
            raise NotFound("No such certificate.")
        raise Forbidden(
            f"You may not {action} {cert.common_name}: you lack the privilege for its type here."
        )
    return cert


def chain_for(cert: Certificate) -> list[x509.Certificate]:
    """Issuer-first chain: our CA hierarchy, or what the endpoint presented."""
    if cert.ca_id is not None:
        authority = db.session.get(CertificateAuthority, cert.ca_id)
        assert authority is not None
        return signing.cached_chain_of(authority)
    return [x509.load_der_x509_certificate(bytes.fromhex(d)) for d in (cert.chain_der or [])]


def render(cert: Certificate, fmt: str) -> formats.Download:
    try:
        chosen = formats.parse_download_format(fmt)
        return formats.render_download(load_certificate(cert.der), chain_for(cert), chosen)
    except PkiError as exc:
        raise DomainError(str(exc), field="format") from exc


def download(*, actor: Admin, certificate_id: int, fmt: str) -> formats.Download:
    return render(get_certificate(actor=actor, certificate_id=certificate_id), fmt)


def collect(*, certificate_id: int, token: str, fmt: str) -> formats.Download:
    """The requester's collection link: the certificate (never a key) for the right token."""
    cert = db.session.get(Certificate, certificate_id)
    expected = cert.collect_token_hash if cert is not None else ""
    given = hashlib.sha256(token.encode()).hexdigest()
    if cert is None or not expected or not hmac.compare_digest(expected, given):
        raise NotFound("This collection link is not valid.")
    return render(cert, fmt)


def pkcs12(*, actor: Admin, certificate_id: int, password: str) -> formats.Download:
    """A server-generated key with its certificate and chain, as a password-protected PKCS#12."""
    cert = get_certificate(actor=actor, certificate_id=certificate_id)
    if cert.sealed_key is None:
        if cert.request is not None and cert.request.person_id is not None:
            raise DomainError(
                "Certwright did not keep the key of this certificate: its profile does not "
                "escrow keys, so the key exists only in the PKCS#12 the person downloaded."
            )
        raise DomainError(
            "Certwright does not hold the key of this certificate (it came from a CSR)."
        )
    if cert.cert_type is None or not scope_of(actor).may(
        cert.cert_type, cert.organization_id, cert.department_id
    ):
        raise Forbidden("You may not export this certificate's key.")
    if cert.request is not None and cert.request.person_id is not None and not actor.is_master:
        # A person's key is escrowed only when the profile says so, and only an MRAO
        # releases it (docs/pki.md).
        raise Forbidden("Only an MRAO may export a person's escrowed key.")
    if len(password) < 8:
        raise DomainError("Choose a PKCS#12 password of at least 8 characters.", field="password")
    key = keystore.unseal_private_key(cert.sealed_key, signing.keks())
    result = formats.export_pkcs12(
        key,
        x509.load_der_x509_certificate(cert.der),
        chain_for(cert),
        password=password.encode(),
        friendly_name=cert.common_name,
    )
    audit.record(
        action="certificate.key_export",
        actor=actor,
        object_type="Certificate",
        object_id=cert.id,
        label=cert.common_name,
        message="PKCS#12 with the server-generated key downloaded",
        organization_id=cert.organization_id,
        department_id=cert.department_id,
    )
    return result


# Discovery registers how many endpoints present each of a batch of certificates
# ({certificate id: endpoints}; ids it never saw may be left out).
InstallProbe = Callable[[Sequence[int]], dict[int, int]]
_INSTALL_PROBES: list[InstallProbe] = []


def register_install_probe(probe: InstallProbe) -> None:
    _INSTALL_PROBES.append(probe)


def install_counts(certificate_ids: Sequence[int]) -> dict[int, int] | None:
    """How many endpoints present each certificate, in one query per probe (lists and
    exports ask for a page or a chunk at once); None when nothing probes."""
    if not _INSTALL_PROBES:
        return None
    counts = dict.fromkeys(certificate_ids, 0)
    for probe in _INSTALL_PROBES:
        for cert_id, seen in probe(certificate_ids).items():
            counts[cert_id] = counts.get(cert_id, 0) + seen
    return counts


def install_label(seen: int | None) -> str:
    if seen is None:
        return "Unknown"
    return (
        f"Installed ({seen} endpoint{'s' if seen != 1 else ''})"
        if seen
        else "Not found on the network"
    )


def install_state(cert: Certificate) -> str:
    counts = install_counts([cert.id])
    return install_label(None if counts is None else counts[cert.id])


orgs.register_reference("certificates", Certificate, "organization_id", "department_id")


def expire_sweep() -> int:
    """Issued certificates whose notAfter has passed become Expired."""
    result = db.session.execute(
        update(Certificate)
        .where(Certificate.status == CertStatus.ISSUED, Certificate.not_after < utcnow())
        .values(status=CertStatus.EXPIRED)
    )
    return int(result.rowcount or 0)
