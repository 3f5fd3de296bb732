"""Private CAs: create (root or issuing), load for signing, chains, KEK rotation.

CA private keys are sealed with the key-encryption keys from configuration (CW_KEK) and
unsealed only in memory, once per process, to sign. They are never shown, logged or exported.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import current_app
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Admin,
    CaStatus,
    Certificate,
    CertificateAuthority,
    CertificateProfile,
    SerialNumber,
)
from app.pki import formats, issue, keys, keystore
from app.pki.errors import PkiError
from app.pki.issuer import Issuer, make_issuer
from app.pki.profiles import SignatureHash, hash_algorithm
from app.services import audit, bulk
from app.services.errors import DomainError, Forbidden, NotFound, ValidationFailed

CA_FIELDS = (
    "name",
    "parent_id",
    "key_type",
    "signature_hash",
    "customer_name",
    "locality",
    "state",
    "country",
    "subject_dn",
    "serial_hex",
    "fingerprint",
    "not_before",
    "not_after",
)


def keks() -> keystore.KeyEncryptionKeys:
    return keystore.parse_keks(str(current_app.config["CW_KEK"]))


def urls(ca_id: int) -> dict[str, str]:
    """Where relying parties find this CA's CRL, OCSP responder and certificate."""
    base = str(current_app.config["CW_BASE_URL"])
    return {
        "crl_url": f"{base}/pki/crl/{ca_id}.crl",
        "ocsp_url": f"{base}/pki/ocsp/{ca_id}",
        "ca_issuers_url": f"{base}/pki/ca/{ca_id}.cer",
    }


@dataclass(frozen=True)
class CaSpec:
    name: str
    key_type: str
    customer_name: str
    parent_id: int | None = None
    signature_hash: str | None = None  # default: parent's (issuing CA) or by key type
    locality: str = ""
    state: str = ""
    country: str = ""
    lifetime_years: int | None = None


def _validate(
    spec: CaSpec,
) -> tuple[keys.KeyType, SignatureHash | None, CertificateAuthority | None]:
    errors: dict[str, list[str]] = {}
    name = spec.name.strip()
    if not name:
        errors["name"] = ["The CA name is required."]
    elif len(name) > 128:
        errors["name"] = ["At most 128 characters."]
    elif db.session.execute(
        select(CertificateAuthority.id).where(func.lower(CertificateAuthority.name) == name.lower())
    ).first():
        errors["name"] = [f"A CA named '{name}' already exists."]
    key_type: keys.KeyType | None = None
    try:
        key_type = keys.parse_key_type(spec.key_type)
    except PkiError as exc:
        errors["key_type"] = [str(exc)]
    chosen: SignatureHash | None = None
    if spec.signature_hash:
        try:
            chosen = SignatureHash(spec.signature_hash)
            hash_algorithm(chosen)  # SHA-1 is listed as legacy and refused with its reason
        except ValueError:
            errors["signature_hash"] = [
                f"'{spec.signature_hash}' is not one of SHA-256, SHA-384, SHA-512."
            ]
        except PkiError as exc:
            errors["signature_hash"] = [str(exc)]
    customer = spec.customer_name.strip()
    if not customer:
        errors["customer_name"] = ["The customer name is required (it becomes the O and the CN)."]
    elif len(customer) + len(" Issuing CA") > 64:
        errors["customer_name"] = [
            f"At most {64 - len(' Issuing CA')} characters (the CN adds ' Root CA' / ' Issuing CA' and is limited to 64)."
        ]
    if spec.country and len(spec.country.strip()) != 2:
        errors["country"] = ["Use the two-letter ISO 3166 country code."]
    if spec.lifetime_years is not None and not 1 <= spec.lifetime_years <= 30:
        errors["lifetime_years"] = ["Between 1 and 30 years."]
    parent = None
    if spec.parent_id is not None:
        parent = db.session.get(CertificateAuthority, spec.parent_id)
        if parent is None:
            errors["parent_id"] = ["No such parent CA."]
        elif parent.status != CaStatus.ACTIVE:
            errors["parent_id"] = [f"The parent CA '{parent.name}' is retired."]
    if errors:
        raise ValidationFailed(errors)
    assert key_type is not None
    return key_type, chosen, parent


def create_ca(*, actor: Admin | None, spec: CaSpec) -> CertificateAuthority:
    """Create a self-signed root (no parent) or an issuing CA signed by its parent.

    Raises:
        Forbidden: not an MRAO.
        ValidationFailed / DomainError: bad name, key type, hash, subject or parent.
    """
    if actor is not None and not actor.is_master:
        raise Forbidden("Only an MRAO can create certificate authorities.")
    key_type, chosen, parent = _validate(spec)
    private_key = keys.generate_private_key(key_type)
    subject = {
        "customer_name": spec.customer_name.strip(),
        "locality": spec.locality.strip() or None,
        "state": spec.state.strip() or None,
        "country": spec.country.strip().upper() or None,
    }
    try:
        if parent is None:
            cert = issue.create_root_ca(
                private_key,
                signature_hash=chosen,
                lifetime_years=spec.lifetime_years,
                serial=issue.new_serial(),
                **subject,
            )  # type: ignore[arg-type]
        else:
            parent_issuer = load_issuer(parent)
            if chosen is None:
                chosen = SignatureHash(
                    parent.signature_hash
                )  # an issuing CA defaults to its parent's hash
            serial = reserve_serials(parent, 1, purpose="ca")[0]
            signer = (
                parent_issuer
                if chosen == parent_issuer.signature_hash
                else make_issuer(
                    parent_issuer.certificate,
                    parent_issuer.private_key,
                    signature_hash=chosen,
                    **urls(parent.id),
                )
            )
            cert = issue.create_issuing_ca(
                private_key.public_key(),
                signer,
                lifetime_years=spec.lifetime_years,
                serial=serial,
                **subject,
            )  # type: ignore[arg-type]
    except PkiError as exc:
        raise DomainError(str(exc)) from exc
    ca = CertificateAuthority(
        name=spec.name.strip(),
        parent_id=parent.id if parent else None,
        key_type=key_type,
        signature_hash=(chosen or make_issuer(cert, private_key).signature_hash).value,
        customer_name=subject["customer_name"],
        locality=subject["locality"] or "",
        state=subject["state"] or "",
        country=subject["country"] or "",
        subject_dn=cert.subject.rfc4514_string(),
        serial_hex=f"{cert.serial_number:x}",
        fingerprint=formats.fingerprint_sha256(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        cert_der=cert.public_bytes(Encoding.DER),
        sealed_key=keystore.seal_private_key(private_key, keks()),
        created_by_id=actor.id if actor else None,
    )
    db.session.add(ca)
    db.session.flush()
    from app.services.revocation import publish_crl  # the CRL module builds on this one

    publish_crl(ca_id=ca.id, trigger="created")
    audit.record(
        action="ca.create",
        actor=actor,
        object_type="CertificateAuthority",
        object_id=ca.id,
        label=ca.name,
        after=audit.snapshot(ca, CA_FIELDS),
    )
    return ca


def reserve_serials(ca: CertificateAuthority, count: int, *, purpose: str = "leaf") -> list[int]:
    """Reserve `count` fresh serials for `ca` in this transaction (unique per CA).

    The unique constraint makes a collision fail the transaction before anything that
    uses the serial is stored; with 159 random bits it does not happen in practice.
    """
    serials = [issue.new_serial() for _ in range(count)]
    now = audit.utcnow()
    bulk.insert_rows(
        SerialNumber.__table__,
        [
            {"ca_id": ca.id, "serial_hex": f"{s:x}", "purpose": purpose, "reserved_at": now}
            for s in serials
        ],
    )
    return serials


class _IssuerCache:
    """Unsealed CAs ready to sign, per process, keyed by CA id and certificate fingerprint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[int, str, str], Issuer] = {}

    def get(self, ca: CertificateAuthority) -> Issuer:
        key = (ca.id, ca.fingerprint, ca.signature_hash)
        with self._lock:
            found = self._items.get(key)
        if found is not None:
            return found
        cert = x509.load_der_x509_certificate(ca.cert_der)
        try:
            private_key = keystore.unseal_private_key(ca.sealed_key, keks())
        except PkiError as exc:
            raise DomainError(f"The key of CA '{ca.name}' cannot be unsealed: {exc}") from exc
        issuer = make_issuer(
            cert, private_key, signature_hash=SignatureHash(ca.signature_hash), **urls(ca.id)
        )
        with self._lock:
            self._items[key] = issuer
        return issuer

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


ISSUERS = _IssuerCache()


def load_issuer(ca: CertificateAuthority) -> Issuer:
    if ca.status != CaStatus.ACTIVE:
        raise DomainError(f"The CA '{ca.name}' is retired and signs nothing.")
    return ISSUERS.get(ca)


def certificate_of(ca: CertificateAuthority) -> x509.Certificate:
    return x509.load_der_x509_certificate(ca.cert_der)


def chain_of(ca: CertificateAuthority) -> list[x509.Certificate]:
    """Issuer-first chain for certificates this CA issues: [ca, its parent, ..., root]."""
    chain, seen = [], set()
    node: CertificateAuthority | None = ca
    while node is not None and node.id not in seen:
        seen.add(node.id)
        chain.append(certificate_of(node))
        node = node.parent
    return chain


def get_ca(ca_id: int) -> CertificateAuthority:
    ca = db.session.get(CertificateAuthority, ca_id)
    if ca is None:
        raise NotFound("No such certificate authority.")
    return ca


def retire_ca(*, actor: Admin, ca_id: int) -> CertificateAuthority:
    """A retired CA signs nothing more; its CRL and OCSP keep answering."""
    if not actor.is_master:
        raise Forbidden("Only an MRAO can retire certificate authorities.")
    ca = get_ca(ca_id)
    in_use = db.session.execute(
        select(func.count())
        .select_from(CertificateProfile)
        .where(CertificateProfile.ca_id == ca.id, CertificateProfile.active.is_(True))
    ).scalar_one()
    if in_use:
        raise DomainError(
            f"{in_use} active certificate profiles still enroll through '{ca.name}'; point them at another CA first."
        )
    ca.status = CaStatus.RETIRED
    audit.record(
        action="ca.retire",
        actor=actor,
        object_type="CertificateAuthority",
        object_id=ca.id,
        label=ca.name,
        before={"status": "Active"},
        after={"status": "Retired"},
    )
    return ca


def rotate_kek(*, actor: Admin | None) -> int:
    """Re-seal every CA key and stored server-generated key under the first (newest) KEK."""
    current = keks()
    count = 0
    for ca in db.session.execute(select(CertificateAuthority)).scalars():
        ca.sealed_key = keystore.reseal(ca.sealed_key, current)
        count += 1
    for cert in db.session.execute(
        select(Certificate).where(Certificate.sealed_key.is_not(None))
    ).scalars():
        cert.sealed_key = keystore.reseal(cert.sealed_key, current)  # type: ignore[arg-type]
        count += 1
    audit.record(
        action="kek.rotate",
        actor=actor,
        message=f"{count} keys re-sealed under the primary key-encryption key",
    )
    return count
