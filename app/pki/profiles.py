"""Certificate profiles: what each kind of certificate contains, as frozen data; no I/O.

Leaf kinds (SSL, Client, CodeSigning, Device) decide keyUsage and extKeyUsage; CA profiles
decide basicConstraints and keyUsage for roots and issuing CAs, and an issuing CA's purpose
(TLS, S/MIME, code signing, device) its extKeyUsage and certificatePolicies. Also the signature hashes,
default CA lifetimes and the CA/Browser Forum TLS validity ceiling by issuance date.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from app.pki.errors import ProfileError
from app.pki.keys import KeyType


class CertKind(enum.StrEnum):
    """The four kinds of end-entity certificate Certwright issues (SCM's cert types)."""

    SSL = "SSL"
    CLIENT = "Client"
    CODE_SIGNING = "CodeSigning"
    DEVICE = "Device"


class SignatureHash(enum.StrEnum):
    """Hashes a CA may sign with; SHA-1 is recognised only to be refused (legacy)."""

    SHA256 = "SHA-256"
    SHA384 = "SHA-384"
    SHA512 = "SHA-512"
    SHA1 = "SHA-1"

    @property
    def is_legacy(self) -> bool:
        return self is SignatureHash.SHA1


_HASHES: Final[dict[SignatureHash, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]]] = {
    SignatureHash.SHA256: hashes.SHA256,
    SignatureHash.SHA384: hashes.SHA384,
    SignatureHash.SHA512: hashes.SHA512,
}


def hash_algorithm(choice: SignatureHash) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The cryptography hash object for a signing choice.

    Raises:
        ProfileError: SHA-1, which BR §7.1.3.2 forbids and cryptography refuses to sign.
    """
    if choice.is_legacy:
        raise ProfileError(
            "SHA-1 is a legacy signature hash and cannot be used to sign; "
            "choose SHA-256, SHA-384 or SHA-512"
        )
    return _HASHES[choice]()


# BR §7.1.3.2.2: the curve of an ECDSA signing key fixes the hash. P-521 is not a key type
# Certwright generates, but a key of that curve would sign with SHA-512.
_CURVE_HASHES: Final[dict[str, SignatureHash]] = {
    "EC-P256": SignatureHash.SHA256,
    "EC-P384": SignatureHash.SHA384,
    "EC-P521": SignatureHash.SHA512,
}


def signature_hash_for(key_type: str, preferred: SignatureHash | None = None) -> SignatureHash:
    """The hash a CA key of ``key_type`` signs with: the curve's own for ECDSA keys (P-256
    SHA-256, P-384 SHA-384, P-521 SHA-512; BR §7.1.3.2.2), whatever ``preferred`` says;
    ``preferred`` (default SHA-256) for RSA keys (BR §7.1.3.2.1 allows all three).

    The SIGNING key decides: a P-384 root signs its P-256 issuing CA with SHA-384, and that
    issuing CA signs its own certificates, CRLs and OCSP responses with SHA-256.

    Raises:
        ProfileError: SHA-1 preferred, or a key type that cannot sign certificates.
    """
    if preferred is not None:
        hash_algorithm(preferred)  # refuses SHA-1 with its reason
    if key_type in _CURVE_HASHES:
        return _CURVE_HASHES[key_type]
    if key_type.startswith("RSA-"):
        return preferred or SignatureHash.SHA256
    raise ProfileError(f"{key_type} keys cannot sign certificates; use RSA or ECDSA")


def check_signature_hash(key_type: str, chosen: SignatureHash) -> SignatureHash:
    """``chosen`` when a key of ``key_type`` may sign with it (for a form that offers the
    choice); signature_hash_for() instead silently takes the curve's hash.

    Raises:
        ProfileError: e.g. "an EC-P256 key signs with SHA-256 (CA/B Forum BR 7.1.3.2.2);
            SHA-384 cannot be chosen for it", or SHA-1.
    """
    fixed = signature_hash_for(key_type, chosen)
    if fixed is not chosen:
        raise ProfileError(
            f"an {key_type} key signs with {fixed} (CA/B Forum BR 7.1.3.2.2); "
            f"{chosen} cannot be chosen for it"
        )
    return fixed


def default_signature_hash(key_type: KeyType) -> SignatureHash:
    """The hash a key of ``key_type`` signs with when nothing is chosen: SHA-384 for P-384
    keys, SHA-256 otherwise (see signature_hash_for)."""
    return signature_hash_for(key_type)


def _key_usage(*, key_encipherment: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_KU_SIGN: Final = _key_usage()
_KU_SIGN_ENCIPHER: Final = _key_usage(key_encipherment=True)
_KU_SIGN_AGREE: Final = _key_usage(key_agreement=True)

_EKUS: Final[dict[CertKind, tuple[x509.ObjectIdentifier, ...]]] = {
    CertKind.SSL: (ExtendedKeyUsageOID.SERVER_AUTH,),
    CertKind.CLIENT: (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
    CertKind.CODE_SIGNING: (ExtendedKeyUsageOID.CODE_SIGNING,),
    CertKind.DEVICE: (ExtendedKeyUsageOID.CLIENT_AUTH,),
}


@dataclass(frozen=True)
class LeafProfile:
    """What an end-entity certificate of one kind asserts about its key (RFC 5280 §4.2.1.3,
    §4.2.1.12).

    ``include_client_auth`` adds clientAuth to an SSL certificate (off by default; BR
    §7.1.2.7.10 permits it). ``include_server_auth`` adds serverAuth to a Device
    certificate (a device that also serves TLS). ``ec_key_agreement`` adds keyAgreement
    for EC keys (static ECDH); it is ignored for RSA keys and for code signing.
    """

    kind: CertKind
    include_client_auth: bool = False
    ec_key_agreement: bool = False
    include_server_auth: bool = False

    def __post_init__(self) -> None:
        if self.include_client_auth and self.kind is not CertKind.SSL:
            raise ProfileError("include_client_auth applies to SSL certificates only")
        if self.include_server_auth and self.kind is not CertKind.DEVICE:
            raise ProfileError("include_server_auth applies to Device certificates only")

    @property
    def extended_key_usage(self) -> x509.ExtendedKeyUsage:
        usages = _EKUS[self.kind]
        if self.include_client_auth:
            usages = (*usages, ExtendedKeyUsageOID.CLIENT_AUTH)
        if self.include_server_auth:
            usages = (*usages, ExtendedKeyUsageOID.SERVER_AUTH)
        return x509.ExtendedKeyUsage(usages)

    def key_usage(self, public_key: PublicKeyTypes) -> x509.KeyUsage:
        """digitalSignature always; keyEncipherment for RSA keys that may receive key
        transport (TLS server, S/MIME); keyAgreement for EC keys when asked."""
        if self.kind is CertKind.CODE_SIGNING:
            return _KU_SIGN
        if isinstance(public_key, rsa.RSAPublicKey):
            if self.kind in (CertKind.SSL, CertKind.CLIENT) or self.include_server_auth:
                return _KU_SIGN_ENCIPHER
            return _KU_SIGN
        return _KU_SIGN_AGREE if self.ec_key_agreement else _KU_SIGN


LEAF_PROFILES: Final[dict[CertKind, LeafProfile]] = {kind: LeafProfile(kind) for kind in CertKind}


class CaPurpose(enum.StrEnum):
    """What an issuing CA issues, which decides its extendedKeyUsage and the profile it is
    built and linted to. Stored as its value."""

    TLS = "TLS"
    SMIME = "SMIME"
    CODE_SIGNING = "CodeSigning"
    DEVICE = "Device"

    @property
    def label(self) -> str:
        return _PURPOSE_LABELS[self]


_PURPOSE_LABELS: Final = {
    CaPurpose.TLS: "TLS",
    CaPurpose.SMIME: "S/MIME",
    CaPurpose.CODE_SIGNING: "code signing",
    CaPurpose.DEVICE: "device",
}

# The extendedKeyUsage of an issuing CA, by purpose. Relying parties chain EKUs (Windows
# CryptoAPI, and OpenSSL when it checks a purpose): a CA must list every usage of the
# certificates it issues, and by the CA/B Forum rules nothing else.
_CA_EKUS: Final[dict[CaPurpose, tuple[x509.ObjectIdentifier, ...]]] = {
    # TLS BR §7.1.2.10.6: serverAuth MUST, clientAuth MAY (SSL profiles may add it to
    # leaves); codeSigning, emailProtection, timeStamping, OCSPSigning, any MUST NOT.
    CaPurpose.TLS: (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    # S/MIME BR §7.1.2.2(g): emailProtection SHALL; serverAuth, codeSigning, timeStamping
    # and any SHALL NOT; others MAY: clientAuth, which every Client certificate carries.
    CaPurpose.SMIME: (ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH),
    # Code Signing BR §7.1.2.2(g): codeSigning MUST; timeStamping, any, serverAuth and
    # emailProtection MUST NOT; others SHOULD NOT.
    CaPurpose.CODE_SIGNING: (ExtendedKeyUsageOID.CODE_SIGNING,),
    # No CA/B Forum document covers device certificates: RFC 5280 §4.2.1.12 only, and
    # TLS BR §7.1.2.3.3 for a non-TLS CA under a root that also serves TLS (no serverAuth).
    CaPurpose.DEVICE: (ExtendedKeyUsageOID.CLIENT_AUTH,),
}

# The one leaf kind each purpose issues.
CA_PURPOSE_KINDS: Final[dict[CaPurpose, CertKind]] = {
    CaPurpose.TLS: CertKind.SSL,
    CaPurpose.SMIME: CertKind.CLIENT,
    CaPurpose.CODE_SIGNING: CertKind.CODE_SIGNING,
    CaPurpose.DEVICE: CertKind.DEVICE,
}

ANY_POLICY: Final = x509.ObjectIdentifier("2.5.29.32.0")  # RFC 5280 §4.2.1.4


@dataclass(frozen=True)
class CaProfile:
    """The CA-specific extensions of a CA certificate: basicConstraints and keyUsage (RFC
    5280 §4.2.1.9, §4.2.1.3), and for an issuing CA its purpose's extendedKeyUsage and
    certificatePolicies.

    basicConstraints and keyUsage are marked critical: §4.2.1.9 says basicConstraints MUST
    be critical in CA certificates and §4.2.1.3 says keyUsage SHOULD be (TLS BR
    §7.1.2.10.7 and S/MIME BR §7.1.2.2(e): MUST). digitalSignature is included because the
    CA signs its own OCSP responses (RFC 6960 §4.2.2.2; BR §7.1.2.10.7 footnote).

    A root carries neither extendedKeyUsage (TLS BR §7.1.2.1.2, S/MIME BR §7.1.2.1(d), Code
    Signing BR §7.1.2.1(d): MUST NOT) nor certificatePolicies (NOT RECOMMENDED). An issuing
    CA carries both; its certificatePolicies is the single anyPolicy of TLS BR §7.1.2.10.5
    and §7.1.2.3.2 "No Policy Restrictions (Affiliated CA)", which S/MIME BR §7.1.6.3 also
    allows an affiliated subordinate CA: Certwright's issuing CAs belong to the same
    operator as their root, and a private CA must not assert the CA/B Forum reserved
    policy identifiers, which claim compliance with the publicly-trusted requirements.
    """

    is_root: bool
    path_length: int | None
    purpose: CaPurpose | None = None

    def __post_init__(self) -> None:
        if self.is_root and self.purpose is not None:
            raise ProfileError("a root CA has no purpose: it carries no extendedKeyUsage")

    @property
    def basic_constraints(self) -> x509.BasicConstraints:
        return x509.BasicConstraints(ca=True, path_length=self.path_length)

    @property
    def extended_key_usage(self) -> x509.ExtendedKeyUsage | None:
        if self.purpose is None:
            return None
        return x509.ExtendedKeyUsage(_CA_EKUS[self.purpose])

    @property
    def certificate_policies(self) -> x509.CertificatePolicies | None:
        if self.purpose is None:
            return None
        return x509.CertificatePolicies([x509.PolicyInformation(ANY_POLICY, None)])

    @property
    def key_usage(self) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )


ROOT_CA_PROFILE: Final = CaProfile(is_root=True, path_length=None)
ISSUING_CA_PROFILES: Final[dict[CaPurpose, CaProfile]] = {
    purpose: CaProfile(is_root=False, path_length=0, purpose=purpose) for purpose in CaPurpose
}
# The TLS issuing CA, what create_issuing_ca() builds unless told another purpose.
ISSUING_CA_PROFILE: Final = ISSUING_CA_PROFILES[CaPurpose.TLS]


def ca_purpose_of(certificate: x509.Certificate) -> CaPurpose | None:
    """The purpose an issuing CA certificate was built for, read from its
    extendedKeyUsage; None for a root or a CA certificate without (or with another)
    extendedKeyUsage, which constrains nothing."""
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    found = frozenset(usages)
    return next((p for p, ekus in _CA_EKUS.items() if frozenset(ekus) == found), None)


def check_issuer_purpose(purpose: CaPurpose | None, kind: CertKind) -> None:
    """Refuse a leaf ``kind`` that an issuing CA of ``purpose`` does not issue (None, a CA
    built before purposes, issues every kind).

    Raises:
        ProfileError: e.g. "this S/MIME issuing CA issues Client certificates only, not
            SSL certificates (its extendedKeyUsage does not cover them)".
    """
    if purpose is not None and CA_PURPOSE_KINDS[purpose] is not kind:
        raise ProfileError(
            f"this {purpose.label} issuing CA issues {CA_PURPOSE_KINDS[purpose]} certificates "
            f"only, not {kind} certificates (its extendedKeyUsage does not cover them)"
        )


def default_ca_lifetime_years(key_type: KeyType, *, is_root: bool) -> int:
    """Root CAs 20 years; issuing CAs 5 years on RSA-2048 (weakest allowed), else 10."""
    if is_root:
        return 20
    return 5 if key_type == "RSA-2048" else 10


# SC-081 (BR §6.3.2): maximum validity of TLS subscriber certificates by issuance date.
_TLS_VALIDITY_STEPS: Final[tuple[tuple[dt.datetime, int], ...]] = (
    (dt.datetime(2029, 3, 15, tzinfo=dt.UTC), 47),
    (dt.datetime(2027, 3, 15, tzinfo=dt.UTC), 100),
    (dt.datetime(2026, 3, 15, tzinfo=dt.UTC), 200),
)
_TLS_VALIDITY_BEFORE_2026: Final = 398


def max_tls_validity_days(at: dt.datetime) -> int:
    """Longest TLS server certificate term, in days, for a certificate issued at ``at``.

    398 days before 2026-03-15, 200 from then, 100 from 2027-03-15, 47 from 2029-03-15
    (all midnight UTC). A naive ``at`` is taken as UTC.
    """
    moment = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    for start, days in _TLS_VALIDITY_STEPS:
        if moment >= start:
            return days
    return _TLS_VALIDITY_BEFORE_2026


def check_term(kind: CertKind, term_days: int, at: dt.datetime) -> None:
    """Refuse a term that is not positive or, for SSL, longer than the BR ceiling at ``at``.

    Raises:
        ProfileError: e.g. "SSL term of 397 days exceeds the CA/Browser Forum maximum
            of 200 days for certificates issued on 2026-11-27".
    """
    if term_days < 1:
        raise ProfileError(f"certificate term must be at least 1 day, not {term_days}")
    if kind is CertKind.SSL:
        ceiling = max_tls_validity_days(at)
        if term_days > ceiling:
            raise ProfileError(
                f"SSL term of {term_days} days exceeds the CA/Browser Forum maximum of "
                f"{ceiling} days for certificates issued on {at.date().isoformat()}"
            )
