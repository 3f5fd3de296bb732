"""Issuer: everything derived from a CA certificate and key, computed once; no I/O.

Signing certificates, CRLs and OCSP responses is the hot path, so the issuer name, AKI,
CRL distribution point, AIA, hash algorithm and OCSP CertID hashes are prepared here
once per CA (make_issuer) and reused for every signature.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from app.pki.errors import ProfileError
from app.pki.keys import KeyType, PrivateKey, key_type_of
from app.pki.profiles import (
    CaPurpose,
    SignatureHash,
    ca_purpose_of,
    hash_algorithm,
    signature_hash_for,
)

# RFC 6960 §4.1.1 CertID hash algorithms we answer for: SHA-1 (what most clients send)
# and SHA-256.
CERT_ID_HASHES: Final[Mapping[str, hashes.HashAlgorithm]] = MappingProxyType(
    {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}  # noqa: S303 - OCSP CertID, not a signature
)


@dataclass(frozen=True, eq=False)
class Issuer:
    """A CA ready to sign. Build it with make_issuer(); the private key is never shown
    in repr()."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)
    key_type: KeyType
    signature_hash: SignatureHash
    hash_algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 = field(repr=False)
    name: x509.Name
    not_before: dt.datetime
    not_after: dt.datetime
    subject_key_identifier: bytes = field(repr=False)
    authority_key_identifier: x509.AuthorityKeyIdentifier = field(repr=False)
    crl_distribution_points: x509.CRLDistributionPoints | None = field(repr=False)
    authority_information_access: x509.AuthorityInformationAccess | None = field(repr=False)
    # CertID hash name ("sha1", "sha256") -> (issuerNameHash, issuerKeyHash), RFC 6960 §4.1.1.
    cert_id_hashes: Mapping[str, tuple[bytes, bytes]] = field(repr=False)
    # AKI, CDP and AIA, DER-encoded once, appended to every certificate this CA issues.
    issued_extensions: tuple[x509.Extension[x509.ExtensionType], ...] = field(repr=False)
    # What the CA issues, from its extendedKeyUsage (None: a root, or a CA built before
    # purposes, which issues every kind).
    purpose: CaPurpose | None = None


def make_issuer(
    certificate: x509.Certificate,
    private_key: PrivateKey,
    *,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    ca_issuers_url: str | None = None,
    signature_hash: SignatureHash | None = None,
) -> Issuer:
    """Prepare a CA for signing; the URLs go into every certificate it issues.

    The CA signs with the hash its own key fixes (signature_hash_for): ``signature_hash``
    is honoured for RSA keys and ignored for ECDSA keys, whose curve decides (BR
    §7.1.3.2.2), so a stored choice that does not fit the key never reaches a signature.

    Raises:
        ProfileError: not a CA certificate, key does not match it, or SHA-1 chosen.
        KeyPolicyError: the CA key is not one of the supported key types.
    """
    if not _is_ca(certificate):
        raise ProfileError("certificate is not a CA certificate (basicConstraints cA is not true)")
    if private_key.public_key() != certificate.public_key():
        raise ProfileError("CA private key does not match the CA certificate")
    key_type = key_type_of(private_key)
    chosen = signature_hash_for(key_type, signature_hash)
    ski = _subject_key_identifier(certificate)
    # RFC 5280 §4.2.1.1: keyIdentifier of issued certificates = the CA's own SKI.
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    cdp = crl_distribution_points(crl_url) if crl_url else None
    aia = authority_information_access(ocsp_url, ca_issuers_url)
    return Issuer(
        certificate=certificate,
        private_key=private_key,
        key_type=key_type,
        signature_hash=chosen,
        hash_algorithm=hash_algorithm(chosen),
        name=certificate.subject,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        subject_key_identifier=ski.digest,
        authority_key_identifier=aki,
        crl_distribution_points=cdp,
        authority_information_access=aia,
        cert_id_hashes=MappingProxyType(
            {name: _cert_id_hashes(certificate, algo) for name, algo in CERT_ID_HASHES.items()}
        ),
        # RFC 5280 §4.2.1.1 (AKI), §4.2.1.13 (CDP), §4.2.2.1 (AIA): all non-critical.
        issued_extensions=tuple(
            encoded_extension(value, critical=False) for value in (aki, cdp, aia) if value
        ),
        purpose=ca_purpose_of(certificate),
    )


def encoded_extension(
    value: x509.ExtensionType, *, critical: bool
) -> x509.Extension[x509.ExtensionType]:
    """``value`` as an extension carrying its DER bytes: the certificate comes out
    byte-identical, and signing skips re-encoding it for every certificate."""
    raw = x509.UnrecognizedExtension(value.oid, value.public_bytes())
    return x509.Extension(value.oid, critical, raw)


def crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    """One distribution point with a full-name URI (RFC 5280 §4.2.1.13, BR §7.1.2.11.2)."""
    point = x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        reasons=None,
        crl_issuer=None,
    )
    return x509.CRLDistributionPoints([point])


def authority_information_access(
    ocsp_url: str | None, ca_issuers_url: str | None
) -> x509.AuthorityInformationAccess | None:
    """id-ad-ocsp then id-ad-caIssuers access descriptions (RFC 5280 §4.2.2.1)."""
    descriptions = []
    if ocsp_url:
        descriptions.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
        )
    if ca_issuers_url:
        descriptions.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(ca_issuers_url),
            )
        )
    return x509.AuthorityInformationAccess(descriptions) if descriptions else None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def _subject_key_identifier(certificate: x509.Certificate) -> x509.SubjectKeyIdentifier:
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        # RFC 5280 §4.2.1.2 method 1, what a conforming CA certificate would have carried.
        return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key())


def _cert_id_hashes(
    certificate: x509.Certificate, algo: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    # RFC 6960 §4.1.1: issuerNameHash is the hash of the CA's DER subject, issuerKeyHash
    # the hash of the subjectPublicKey BIT STRING value (without tag, length and the
    # unused-bits octet) of the CA's certificate.
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _digest(algo, certificate.subject.public_bytes()), _digest(algo, _spki_key_bits(spki))


def _digest(algo: hashes.HashAlgorithm, data: bytes) -> bytes:
    hasher = hashes.Hash(algo)
    hasher.update(data)
    return hasher.finalize()


def _spki_key_bits(spki: bytes) -> bytes:
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier,
    #                                     subjectPublicKey BIT STRING }   (RFC 5280 §4.1)
    _tag, body, _rest = _der_tlv(spki, 0)
    _tag, _algorithm, offset = _der_tlv(spki, body)
    tag, content, end = _der_tlv(spki, offset)
    if tag != 0x03:
        raise ValueError("SubjectPublicKeyInfo does not end in a BIT STRING")
    return spki[content + 1 : end]  # skip the unused-bits octet (always 0 for keys)


def _der_tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``offset``."""
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return tag, start, start + length
