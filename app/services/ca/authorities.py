"""Private CAs: create (root or issuing), retire, KEK rotation (signing with one: signing.py)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (
    Admin,
    CaStatus,
    Certificate,
    CertificateAuthority,
    CertificateProfile,
)
from app.models.types import utcnow
from app.pki import formats, issue, keys, keystore, revocation
from app.pki.errors import PkiError
from app.pki.issuer import make_issuer
from app.pki.profiles import (
    CaPurpose,
    SignatureHash,
    ca_purpose_of,
    check_signature_hash,
    signature_hash_for,
)
from app.services import audit
from app.services.ca import blocked_keys, crl, signing
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
    # Chosen for RSA keys; an ECDSA key signs with its curve's hash (BR 7.1.3.2.2).
    signature_hash: str | None = None
    locality: str = ""
    state: str = ""
    country: str = ""  # required for a root; an issuing CA defaults to its parent's
    lifetime_years: int | None = None
    purpose: str = CaPurpose.TLS.value  # an issuing CA's (profiles.CaPurpose); roots have none


@dataclass(frozen=True)
class _Checked:
    key_type: keys.KeyType
    signature_hash: SignatureHash  # what the new CA will sign with
    parent: CertificateAuthority | None
    purpose: CaPurpose


def _validate(spec: CaSpec) -> _Checked:
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
            if key_type is not None:
                check_signature_hash(key_type, chosen)  # refuses SHA-1 and curve mismatches
        except ValueError:
            errors["signature_hash"] = [
                f"'{spec.signature_hash}' is not one of SHA-256, SHA-384, SHA-512."
            ]
        except PkiError as exc:
            errors["signature_hash"] = [_sentence(str(exc))]
    try:
        purpose = CaPurpose(spec.purpose)
    except ValueError:
        purpose = CaPurpose.TLS
        errors["purpose"] = [
            f"'{spec.purpose}' is not one of {', '.join(p.value for p in CaPurpose)}."
        ]
    customer = spec.customer_name.strip()
    if not customer:
        errors["customer_name"] = ["The customer name is required (it becomes the O and the CN)."]
    elif len(customer) + len(" Issuing CA") > 64:
        errors["customer_name"] = [
            f"At most {64 - len(' Issuing CA')} characters (the CN adds ' Root CA' / ' Issuing CA' and is limited to 64)."
        ]
    if spec.country and len(spec.country.strip()) != 2:
        errors["country"] = ["Use the two-letter ISO 3166 country code."]
    elif spec.parent_id is None and not spec.country.strip():
        errors["country"] = [
            "A root CA certificate names the country of the CA's place of business "
            "(CA/B Forum BR 7.1.2.10.2)."
        ]
    if spec.lifetime_years is not None:
        low, high = (
            (issue.ROOT_CA_MIN_YEARS, issue.ROOT_CA_MAX_YEARS)
            if spec.parent_id is None
            else (1, issue.ROOT_CA_MAX_YEARS)
        )
        if not low <= spec.lifetime_years <= high:
            errors["lifetime_years"] = [
                f"Between {low} and {high} years"
                + (
                    " (CA/B Forum BR 7.1.2.1.1: a root is valid 2922 to 9132 days)."
                    if spec.parent_id is None
                    else "."
                )
            ]
    parent = None
    if spec.parent_id is not None:
        parent = db.session.get(CertificateAuthority, spec.parent_id)
        if parent is None:
            errors["parent_id"] = ["No such parent CA."]
        elif parent.status != CaStatus.ACTIVE:
            errors["parent_id"] = [
                f"The parent CA '{parent.name}' is {parent.status.value.lower()} and signs nothing."
            ]
    if errors:
        raise ValidationFailed(errors)
    assert key_type is not None
    return _Checked(key_type, signature_hash_for(key_type, chosen), parent, purpose)


def check_spec(spec: CaSpec) -> SignatureHash:
    """Every check of create_ca() short of generating the key (the wizard's first step);
    the hash the new CA will sign with.

    Raises:
        ValidationFailed: per field.
    """
    return _validate(spec).signature_hash


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def create_ca(*, actor: Actor, spec: CaSpec) -> CertificateAuthority:
    """Create a self-signed root (no parent) or an issuing CA signed by its parent.

    The new CA's own signatures (its certificates, CRLs, OCSP responses) use the hash its
    key fixes (profiles.signature_hash_for); the parent signs the issuing CA's certificate
    with the parent's hash. An issuing CA is built to the CA/B Forum subordinate profile
    of its purpose, linted before the parent signs it.

    Raises:
        Forbidden: not an MRAO.
        ValidationFailed / DomainError: bad name, key type, hash, subject, lifetime or parent.
    """
    if not require_actor(actor).is_master:
        raise Forbidden("Only an MRAO can create certificate authorities.")
    checked = _validate(spec)
    parent = checked.parent
    private_key = keys.generate_private_key(checked.key_type)
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
                signature_hash=checked.signature_hash,
                lifetime_years=spec.lifetime_years,
                serial=issue.new_serial(),
                **subject,
            )  # type: ignore[arg-type]
        else:
            serial = signing.reserve_serials(parent, 1, purpose="ca")[0]
            cert = issue.create_issuing_ca(
                private_key.public_key(),
                signing.load_issuer(parent),  # signs with the parent's own hash
                lifetime_years=spec.lifetime_years,
                serial=serial,
                purpose=checked.purpose,
                **subject,
            )  # type: ignore[arg-type]
    except PkiError as exc:
        raise DomainError(_sentence(str(exc))) from exc
    ca = CertificateAuthority(
        name=spec.name.strip(),
        parent_id=parent.id if parent else None,
        key_type=checked.key_type,
        signature_hash=make_issuer(
            cert, private_key, signature_hash=checked.signature_hash
        ).signature_hash.value,
        customer_name=subject["customer_name"],
        locality=subject["locality"] or "",
        state=subject["state"] or "",
        country=_country_of(cert),
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
    after = audit.snapshot(ca, CA_FIELDS)
    after["purpose"] = purpose_label(ca)
    audit.record(
        action="ca.create",
        actor=actor,
        object_type="CertificateAuthority",
        object_id=ca.id,
        label=ca.name,
        after=after,
    )
    return ca


def _country_of(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    return str(values[0].value) if values else ""


def purpose_of(ca: CertificateAuthority) -> CaPurpose | None:
    """What an issuing CA issues, read from its certificate's extendedKeyUsage; None for a
    root, or an issuing CA made before purposes (it issues every kind)."""
    return ca_purpose_of(signing.certificate_of(ca))


def purpose_label(ca: CertificateAuthority) -> str:
    """ "TLS", "S/MIME", ...; "root" for a root; "any" for an issuing CA without purpose."""
    if ca.is_root:
        return "root"
    purpose = purpose_of(ca)
    return purpose.label if purpose is not None else "any"


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


def revoke_ca(*, actor: Admin, ca_id: int, reason: str, message: str = "") -> CertificateAuthority:
    """Revoke an issuing CA's certificate: its parent's CRL lists it at once (published in
    this transaction) and the parent's OCSP responder answers "revoked". The CA signs
    nothing more; its own CRL and OCSP keep answering for what it issued. A compromised
    CA key (cACompromise) goes on the blocklist.

    Raises:
        Forbidden: not an MRAO.
        DomainError: a root (distrust it by removing it from trust stores), a reason the
            rules refuse for CA certificates (field "reason"), or already revoked.
    """
    if not actor.is_master:
        raise Forbidden("Only an MRAO can revoke certificate authorities.")
    ca = get_ca(ca_id)
    if ca.parent_id is None:
        raise DomainError(
            f"'{ca.name}' is a root CA: nothing above it can revoke its certificate. "
            "Retire it and remove it from the trust stores that hold it."
        )
    try:
        flag = revocation.check_revocation_reason(
            reason, kind=None, revoker=revocation.Revoker.ADMINISTRATOR
        )
    except PkiError as exc:
        raise DomainError(_sentence(str(exc)), field="reason") from exc
    before = {"status": ca.status.value, "revoked_at": None, "reason": ca.revocation_reason}
    moved = db.session.execute(
        update(CertificateAuthority)
        .where(CertificateAuthority.id == ca.id, CertificateAuthority.revoked_at.is_(None))
        .values(status=CaStatus.REVOKED, revoked_at=utcnow(), revocation_reason=flag.value)
    ).rowcount
    if moved != 1:
        db.session.refresh(ca)
        raise Conflict(f"'{ca.name}' was already revoked ({ca.revocation_reason}).")
    db.session.refresh(ca)
    if flag is x509.ReasonFlags.ca_compromise:
        blocked_keys.block_key(
            public_key=signing.certificate_of(ca).public_key(),  # type: ignore[arg-type]
            reason=flag.value,
            source=f"CA '{ca.name}' revoked for cACompromise",
        )
    assert ca.parent_id is not None
    crl.publish_crl(ca_id=ca.parent_id, trigger="ca revocation")
    audit.record(
        action="ca.revoke",
        actor=actor,
        object_type="CertificateAuthority",
        object_id=ca.id,
        label=ca.name,
        before=before,
        after={
            "status": ca.status.value,
            "revoked_at": ca.revoked_at,
            "reason": flag.value,
            "serial": ca.serial_hex,
        },
        message=message.strip(),
    )
    return ca


def revocation_reason_choices() -> list[tuple[str, str]]:
    """(value, label) of the reasons an administrator may give for a CA certificate."""
    return [
        (flag.value, f"{flag.value}: {revocation.REASON_DESCRIPTIONS[flag]}")
        for flag in revocation.allowed_reasons(None, revocation.Revoker.ADMINISTRATOR)
    ]


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
