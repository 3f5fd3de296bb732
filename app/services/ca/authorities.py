"""Private CAs: create (root or issuing), retire, KEK rotation (signing with one: signing.py)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Admin,
    CaStatus,
    Certificate,
    CertificateAuthority,
    CertificateProfile,
)
from app.pki import formats, issue, keys, keystore
from app.pki.errors import PkiError
from app.pki.issuer import make_issuer
from app.pki.profiles import SignatureHash, hash_algorithm
from app.services import audit
from app.services.ca import crl, signing
from app.services.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from app.services.scope import Actor, require_actor

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


def create_ca(*, actor: Actor, spec: CaSpec) -> CertificateAuthority:
    """Create a self-signed root (no parent) or an issuing CA signed by its parent.

    Raises:
        Forbidden: not an MRAO.
        ValidationFailed / DomainError: bad name, key type, hash, subject or parent.
    """
    if not require_actor(actor).is_master:
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
            parent_issuer = signing.load_issuer(parent)
            if chosen is None:
                chosen = SignatureHash(
                    parent.signature_hash
                )  # an issuing CA defaults to its parent's hash
            serial = signing.reserve_serials(parent, 1, purpose="ca")[0]
            signer = (
                parent_issuer
                if chosen == parent_issuer.signature_hash
                else make_issuer(
                    parent_issuer.certificate,
                    parent_issuer.private_key,
                    signature_hash=chosen,
                    **signing.urls(parent.id),
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
        sealed_key=keystore.seal_private_key(private_key, signing.keks()),
        created_by_id=actor.id,
    )
    db.session.add(ca)
    db.session.flush()
    crl.publish_crl(ca_id=ca.id, trigger="created")
    audit.record(
        action="ca.create",
        actor=actor,
        object_type="CertificateAuthority",
        object_id=ca.id,
        label=ca.name,
        after=audit.snapshot(ca, CA_FIELDS),
    )
    return ca


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
    if ca.status == CaStatus.RETIRED:
        raise Conflict(f"'{ca.name}' is already retired.")
    before = {"status": ca.status.value}
    ca.status = CaStatus.RETIRED
    audit.record(
        action="ca.retire",
        actor=actor,
        object_type="CertificateAuthority",
        object_id=ca.id,
        label=ca.name,
        before=before,
        after={"status": ca.status.value},
    )
    return ca


def rotate_kek(*, actor: Actor) -> int:
    """Re-seal every CA key and stored server-generated key under the first (newest) KEK."""
    current = signing.keks()
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
