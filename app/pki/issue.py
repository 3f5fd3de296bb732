"""Building and signing certificates: root and issuing CAs, and leaves; no I/O.

The hot path is build_leaf() + sign(): everything derived from the CA comes precomputed
in an Issuer, so per certificate we only assemble extensions and sign. sign_linted()
implements lint-before-sign: the to-be-signed certificate is first signed with a
throwaway key of the CA's algorithm, linted, and only then signed with the CA key.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Container
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from app.pki.errors import NamePolicyError, PkiError, ProfileError
from app.pki.issuer import Issuer, encoded_extension
from app.pki.keys import KEY_TYPES, KeyType, PrivateKey, PublicKey, check_key_policy, key_type_of
from app.pki.lint import check_certificate
from app.pki.names import AltNames, build_subject, common_name_host
from app.pki.profiles import (
    ISSUING_CA_PROFILES,
    ROOT_CA_PROFILE,
    CaProfile,
    CaPurpose,
    CertKind,
    LeafProfile,
    SignatureHash,
    check_issuer_purpose,
    check_term,
    default_ca_lifetime_years,
    hash_algorithm,
    signature_hash_for,
)
from app.pki.validity import ONE_SECOND, add_years, backdated

# Re-exported: callers have always found the clock and the validity window here.
from app.pki.validity import to_utc as to_utc
from app.pki.validity import utc_now as utc_now
from app.pki.validity import validity_window as validity_window

# RFC 5280 §4.1.2.2: a positive INTEGER of at most 20 octets, so below 2**159.
MAX_SERIAL: Final = 2**159 - 1
# BR §7.1.2.1.1: a root CA certificate is valid at least 2922 and at most 9132 days.
ROOT_CA_MIN_YEARS: Final = 8
ROOT_CA_MAX_YEARS: Final = 25
_COUNTRY_REQUIRED: Final = (
    "a CA certificate must name the country (C) of the CA's place of business "
    "(CA/B Forum BR 7.1.2.10.2)"
)
_PUBLIC_KEY_TYPES: Final = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)
_LEAF_BASIC_CONSTRAINTS: Final = encoded_extension(
    x509.BasicConstraints(ca=False, path_length=None), critical=True
)


def new_serial() -> int:
    """A fresh serial: 159 CSPRNG bits, positive, at most 20 octets (BR §7.1 asks >= 64)."""
    serial = 0
    while serial == 0:
        serial = x509.random_serial_number()
    return serial


def build_leaf(
    issuer: Issuer,
    *,
    public_key: PublicKey,
    subject: x509.Name,
    alt_names: AltNames,
    profile: LeafProfile,
    serial: int,
    term_days: int,
    now: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """Assemble an end-entity certificate without checking key policy, term or lint.

    The subject CN is added to the SAN when it is a DNS name or IP address. Use
    issue_leaf() unless you mean to bypass the policy checks (tests, lint experiments).

    Raises:
        NamePolicyError: no SAN entry at all, or email addresses in an SSL certificate.
        ProfileError: serial out of range, or the issuing CA is expired or not yet valid.
    """
    common_names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = common_names[0].value if common_names else None
    host = common_name_host(
        cn if isinstance(cn, str) else None, single_label=profile.kind is CertKind.SSL
    )
    names = alt_names.with_host(host)
    if host is not None and str(host) != cn:
        # BR §7.1.4.3: the CN must be a copy of a SAN value, so it takes the normalised
        # form ("WWW.Example.com." -> "www.example.com", U-label -> A-label).
        subject = _with_common_name(subject, str(host))
    # RFC 5280 §4.2.1.6 needs a SAN only when the subject is empty; TLS (BR §7.1.2.7.12)
    # and S/MIME (S/MIME BR 7.1.2.3(h)) certificates always name their hosts or mailboxes
    # there, while a code signing publisher or a device serial may live in the subject only.
    if names.is_empty and (profile.kind in (CertKind.SSL, CertKind.CLIENT) or len(subject) == 0):
        raise NamePolicyError(
            "a certificate needs at least one subject alternative name "
            "(DNS name, IP address or email address)"
        )
    if profile.kind is CertKind.SSL and names.emails:
        raise NamePolicyError("SSL certificates carry DNS names and IP addresses, not emails")
    moment = to_utc(now) if now is not None else utc_now()
    if moment < issuer.not_before:
        raise ProfileError(f"the issuing CA is not valid before {issuer.not_before.isoformat()}")
    not_before, not_after = _naive_window(term_days, moment, issuer.not_before, issuer.not_after)
    extensions = [
        # RFC 5280 §4.2.1.9 / BR §7.1.2.7.8: cA FALSE; we mark it critical.
        _LEAF_BASIC_CONSTRAINTS,
        # RFC 5280 §4.2.1.3: keyUsage SHOULD be critical.
        _encoded(profile.key_usage(public_key), critical=True),
        # RFC 5280 §4.2.1.12 / BR §7.1.2.7.10: extKeyUsage non-critical.
        _encoded(profile.extended_key_usage, critical=False),
        # RFC 5280 §4.2.1.6: critical only when the subject is empty.
        *(
            [_extension(x509.SubjectAlternativeName(names.general_names()), len(subject) == 0)]
            if not names.is_empty
            else []
        ),
        # RFC 5280 §4.2.1.2: SKI is never critical.
        _extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        # AKI, CRL distribution point and AIA, pre-encoded in the Issuer.
        *issuer.issued_extensions,
    ]
    # Everything goes to the constructor, checked here: the extension list is built
    # without duplicates, the times are naive UTC (as the setters make them), and
    # the setters' six builder copies would cost more than the rest of this function.
    if not isinstance(public_key, _PUBLIC_KEY_TYPES):
        raise TypeError(f"unsupported public key type {type(public_key).__name__}")
    return x509.CertificateBuilder(
        issuer_name=issuer.name,
        subject_name=subject,
        public_key=public_key,
        serial_number=_checked_serial(serial),
        not_valid_before=not_before,
        not_valid_after=not_after,
        extensions=extensions,
    )


def issue_leaf(
    issuer: Issuer,
    *,
    public_key: PublicKey,
    subject: x509.Name,
    alt_names: AltNames,
    profile: LeafProfile,
    serial: int,
    term_days: int,
    now: dt.datetime | None = None,
    allowed_key_types: Collection[KeyType] = KEY_TYPES,
    lint: bool = True,
    blocked_spki_sha256: Container[str] = frozenset(),
) -> x509.Certificate:
    """Check key policy (``blocked_spki_sha256``: see keys.check_key_policy), the issuing
    CA's purpose and the term, build, lint (unless ``lint`` is false) and sign a leaf.

    Raises:
        KeyPolicyError, NamePolicyError, ProfileError: the request breaks a policy, or
            the issuing CA was built for another kind of certificate.
        LintError: pkilint findings outside the allow-list; nothing was signed by the CA.
    """
    check_key_policy(public_key, allowed_key_types, blocked_spki_sha256=blocked_spki_sha256)
    check_issuer_purpose(issuer.purpose, profile.kind)
    moment = to_utc(now) if now is not None else utc_now()
    check_term(profile.kind, term_days, moment)
    builder = build_leaf(
        issuer,
        public_key=public_key,
        subject=subject,
        alt_names=alt_names,
        profile=profile,
        serial=serial,
        term_days=term_days,
        now=moment,
    )
    return sign_linted(builder, issuer, profile.kind) if lint else sign(builder, issuer)


def sign(builder: x509.CertificateBuilder, issuer: Issuer) -> x509.Certificate:
    """Sign with the CA key and hash (PKCS#1 v1.5 for RSA, ECDSA for EC)."""
    return builder.sign(issuer.private_key, issuer.hash_algorithm)


def sign_linted(
    builder: x509.CertificateBuilder, issuer: Issuer, kind: CertKind | None
) -> x509.Certificate:
    """Lint-before-sign, then sign with the CA key; ``kind`` None for CA certificates.

    Raises:
        LintError: findings outside the allow-list (the CA key never signed it).
        PkiError: the signed certificate differs from the linted one.
    """
    return _sign_linted(builder, issuer.private_key, issuer.hash_algorithm, kind)


def create_root_ca(
    private_key: PrivateKey,
    *,
    customer_name: str,
    locality: str | None = None,
    state: str | None = None,
    country: str | None = None,
    serial: int | None = None,
    lifetime_years: int | None = None,
    signature_hash: SignatureHash | None = None,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Create a self-signed root "<customer_name> Root CA" (default 20 years) to the CA/B
    Forum root profile (TLS BR §7.1.2.1), linted with pkilint's root CA validator.

    ``signature_hash`` applies to RSA keys; an ECDSA key signs with its curve's hash.

    Raises:
        KeyPolicyError, NamePolicyError: e.g. no country; ProfileError: e.g. a lifetime
            outside 8 to 25 years; LintError.
    """
    key_type = key_type_of(private_key)
    subject = _ca_subject(customer_name, "Root CA", locality, state, country)
    if not (country or "").strip():
        raise NamePolicyError(_COUNTRY_REQUIRED)
    years = lifetime_years or default_ca_lifetime_years(key_type, is_root=True)
    if not ROOT_CA_MIN_YEARS <= years <= ROOT_CA_MAX_YEARS:
        # BR §7.1.2.1.1: a root's validity is 2922 to 9132 days (8 to 25 years).
        raise ProfileError(
            f"a root CA certificate is valid {ROOT_CA_MIN_YEARS} to {ROOT_CA_MAX_YEARS} years "
            f"(CA/B Forum BR 7.1.2.1.1: 2922 to 9132 days), not {years}"
        )
    # BR §7.1.2.1.1: notBefore no earlier than a day before signing; we backdate an hour.
    not_before = backdated(to_utc(now) if now is not None else utc_now())
    not_after = add_years(not_before, years) - ONE_SECOND
    ski = x509.SubjectKeyIdentifier.from_public_key(private_key.public_key())
    builder = _ca_builder(
        ROOT_CA_PROFILE, subject, subject, private_key.public_key(), serial, not_before, not_after
    ).add_extension(
        # RFC 5280 §4.2.1.1 allows omitting AKI in a self-signed root; it equals the SKI.
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
        critical=False,
    )
    # The root signs itself with the hash its own key fixes (BR §7.1.3.2).
    algo = hash_algorithm(signature_hash_for(key_type, signature_hash))
    return _sign_linted(builder, private_key, algo, None)


def create_issuing_ca(
    public_key: PublicKey,
    parent: Issuer,
    *,
    customer_name: str,
    locality: str | None = None,
    state: str | None = None,
    country: str | None = None,
    serial: int | None = None,
    lifetime_years: int | None = None,
    now: dt.datetime | None = None,
    purpose: CaPurpose = CaPurpose.TLS,
) -> x509.Certificate:
    """Create "<customer_name> Issuing CA" signed by ``parent`` (pathLen 0) for ``purpose``,
    linted before the parent signs it.

    The purpose decides extendedKeyUsage (profiles.CaProfile): TLS (the default) is the
    TLS BR §7.1.2.6 subordinate CA, linted as such; S/MIME (S/MIME BR §7.1.2.2), code
    signing (Code Signing BR §7.1.2.2) and device CAs are linted as TLS BR §7.1.2.3
    non-TLS subordinate CAs (pkilint has no S/MIME or code-signing CA validators). A
    missing ``country`` is the parent's (BR §7.1.2.10.2: countryName MUST be present).
    Default lifetime 5 years for RSA-2048, 10 otherwise, clamped to the parent's notAfter.

    Raises:
        KeyPolicyError, NamePolicyError, ProfileError, LintError.
    """
    key_type = check_key_policy(public_key)
    if not (country or "").strip():
        inherited = parent.name.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        if not inherited:
            raise NamePolicyError(_COUNTRY_REQUIRED)
        country = str(inherited[0].value)
    subject = _ca_subject(customer_name, "Issuing CA", locality, state, country)
    years = lifetime_years or default_ca_lifetime_years(key_type, is_root=False)
    moment = to_utc(now) if now is not None else utc_now()
    if moment < parent.not_before:
        raise ProfileError(f"the parent CA is not valid before {parent.not_before.isoformat()}")
    if moment >= parent.not_after:
        raise ProfileError(f"the parent CA expired on {parent.not_after.isoformat()}")
    # BR §7.1.2.10.1: notBefore no earlier than a day before signing; we backdate an hour.
    not_before = backdated(moment, not_before_limit=parent.not_before)
    # An issuing CA never outlives its parent (RFC 5280 §6.1.3 checks every link's validity).
    not_after = min(add_years(not_before, years) - ONE_SECOND, parent.not_after)
    builder = _ca_builder(
        ISSUING_CA_PROFILES[purpose],
        subject,
        parent.name,
        public_key,
        serial,
        not_before,
        not_after,
    )
    for extension in parent.issued_extensions:  # AKI, CDP, AIA of the parent
        builder = builder.add_extension(extension.value, extension.critical)
    return sign_linted(builder, parent, None)


def _ca_builder(
    profile: CaProfile,
    subject: x509.Name,
    issuer_name: x509.Name,
    public_key: PublicKey,
    serial: int | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .serial_number(_checked_serial(serial if serial is not None else new_serial()))
        .issuer_name(issuer_name)
        .subject_name(subject)
        .public_key(public_key)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # RFC 5280 §4.2.1.9: basicConstraints MUST be critical in CA certificates.
        .add_extension(profile.basic_constraints, critical=True)
        # RFC 5280 §4.2.1.3: keyUsage SHOULD be critical.
        .add_extension(profile.key_usage, critical=True)
        # RFC 5280 §4.2.1.2: CA certificates MUST carry a (non-critical) SKI.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    # Issuing CAs: BR §7.1.2.6.1 (and S/MIME BR §7.1.2.2, Code Signing BR §7.1.2.2): both
    # MUST be present and not critical.
    if profile.extended_key_usage is not None:
        builder = builder.add_extension(profile.extended_key_usage, critical=False)
    if profile.certificate_policies is not None:
        builder = builder.add_extension(profile.certificate_policies, critical=False)
    return builder


def _ca_subject(
    customer_name: str, suffix: str, locality: str | None, state: str | None, country: str | None
) -> x509.Name:
    name = customer_name.strip()
    if not name:
        raise NamePolicyError("customer name is empty")
    return build_subject(
        common_name=f"{name} {suffix}",
        organization=name,
        locality=locality,
        state=state,
        country=country,
    )


def _with_common_name(subject: x509.Name, value: str) -> x509.Name:
    return x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, value)
                    if attribute.oid == NameOID.COMMON_NAME
                    else attribute
                    for attribute in rdn
                ]
            )
            for rdn in subject.rdns
        ]
    )


@functools.lru_cache(maxsize=64)
def _encoded(value: x509.ExtensionType, *, critical: bool) -> x509.Extension[x509.ExtensionType]:
    # Profiles yield a handful of distinct keyUsage / extKeyUsage values: encode each once.
    return encoded_extension(value, critical=critical)


def _extension(value: x509.ExtensionType, critical: bool) -> x509.Extension[x509.ExtensionType]:
    return x509.Extension(value.oid, critical, value)


def _sign_linted(
    builder: x509.CertificateBuilder,
    private_key: PrivateKey,
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512,
    kind: CertKind | None,
) -> x509.Certificate:
    # The throwaway signature gives pkilint a complete certificate whose TBS (including
    # the signature AlgorithmIdentifier, RFC 5280 §4.1.2.3) is what the CA will sign.
    rehearsal = builder.sign(rehearsal_key(private_key), algorithm)
    check_certificate(rehearsal, kind)
    certificate = builder.sign(private_key, algorithm)
    if certificate.tbs_certificate_bytes != rehearsal.tbs_certificate_bytes:
        raise PkiError("the signed certificate differs from the linted one; it was not issued")
    return certificate


def rehearsal_key(private_key: PrivateKey) -> PrivateKey:
    """A throwaway key of ``private_key``'s algorithm (and curve), to sign a rehearsal of
    a document for linting: its AlgorithmIdentifier, hence its to-be-signed bytes, are
    those the CA key will sign. Never trusted, stored or published."""
    return _throwaway_key(_algorithm_family(private_key))


def _algorithm_family(private_key: PrivateKey) -> str:
    # Every RSA modulus yields the same AlgorithmIdentifier for a given hash, so one RSA
    # throwaway key serves all RSA CAs; ECDSA keys stay on the CA's own curve.
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RSA"
    return key_type_of(private_key)


@functools.cache
def _throwaway_key(family: str) -> PrivateKey:
    # Cached: generating RSA keys takes tens of milliseconds. Never trusted or stored.
    if family == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curves: dict[str, ec.EllipticCurve] = {"EC-P256": ec.SECP256R1(), "EC-P384": ec.SECP384R1()}
    return ec.generate_private_key(curves[family])


@functools.lru_cache(maxsize=256)
def _naive_window(
    term_days: int, moment: dt.datetime, not_before_limit: dt.datetime, not_after_limit: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    # validity_window() as naive UTC, as the builder's setters would make it; a batch
    # signs its certificates with one `now`, so this runs once per batch and term.
    not_before, not_after = validity_window(
        term_days, now=moment, not_before_limit=not_before_limit, not_after_limit=not_after_limit
    )
    return not_before.replace(tzinfo=None), not_after.replace(tzinfo=None)


def _checked_serial(serial: int) -> int:
    if not 0 < serial <= MAX_SERIAL:
        raise ProfileError(
            "serial number must be a positive integer of at most 20 octets (RFC 5280 §4.1.2.2)"
        )
    return serial
