"""Displayable facts about any certificate, for the inventory, lists and reports; no I/O.

Used for certificates we issued and for discovered or imported third-party ones, so
describe_certificate() never raises on a certificate cryptography could load: a field
it cannot work out (missing CN, unparseable extension, unknown algorithm) is None or
empty instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from app.pki import algorithms
from app.pki.bundles import serial_number

_T = TypeVar("_T")

_HASH_NAMES: Final = {
    "md5": "MD5",
    "sha1": "SHA-1",
    "sha224": "SHA-224",
    "sha256": "SHA-256",
    "sha384": "SHA-384",
    "sha512": "SHA-512",
}


@dataclass(frozen=True)
class CertificateInfo:
    """What lists and reports show about a certificate. Hex strings are lower case."""

    subject: str
    subject_cn: str | None
    subject_o: str | None
    subject_ou: str | None
    issuer: str
    issuer_cn: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    emails: tuple[str, ...]
    uris: tuple[str, ...]
    serial_hex: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_algorithm: str  # the family: "RSA", "EC", "Ed25519" (app.pki.algorithms)
    key_size: int | None
    key_type: str  # "RSA-2048", "EC-P256", "Ed25519"
    signature_algorithm: str  # "SHA256-RSA", "ECDSA-SHA384"
    signature_hash: str | None
    is_self_signed: bool
    is_ca: bool
    ski_hex: str | None
    aki_hex: str | None
    fingerprint_sha256: str

    @property
    def sans(self) -> tuple[str, ...]:
        """All SAN entries with OpenSSL-style prefixes: "DNS:a.example", "IP:10.0.0.1"."""
        return (
            *(f"DNS:{name}" for name in self.dns_names),
            *(f"IP:{ip}" for ip in self.ip_addresses),
            *(f"email:{email}" for email in self.emails),
            *(f"URI:{uri}" for uri in self.uris),
        )


def describe_certificate(cert: x509.Certificate) -> CertificateInfo:
    """Extract the displayable fields of ``cert``; never raises for a loaded certificate."""
    key = _safe(cert.public_key, None)
    extensions = _safe(lambda: cert.extensions, x509.Extensions([]))
    san = _extension(extensions, x509.SubjectAlternativeName)
    ski = _extension(extensions, x509.SubjectKeyIdentifier)
    aki = _extension(extensions, x509.AuthorityKeyIdentifier)
    constraints = _extension(extensions, x509.BasicConstraints)
    # A name whose strings are not valid in their encoding cannot even be loaded.
    subject = _safe(lambda: cert.subject, x509.Name([]))
    issuer = _safe(lambda: cert.issuer, x509.Name([]))
    return CertificateInfo(
        subject=_safe(subject.rfc4514_string, ""),
        subject_cn=_attribute(subject, NameOID.COMMON_NAME),
        subject_o=_attribute(subject, NameOID.ORGANIZATION_NAME),
        subject_ou=_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        issuer=_safe(issuer.rfc4514_string, ""),
        issuer_cn=_attribute(issuer, NameOID.COMMON_NAME),
        dns_names=_san_values(san, x509.DNSName),
        ip_addresses=_san_values(san, x509.IPAddress),
        emails=_san_values(san, x509.RFC822Name),
        uris=_san_values(san, x509.UniformResourceIdentifier),
        serial_hex=format(serial_number(cert), "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_algorithm=algorithms.key_family(key),
        key_size=algorithms.key_bits(key),
        key_type=algorithms.key_type(key),
        signature_algorithm=algorithms.signature_name(cert),
        signature_hash=_signature_hash(cert),
        is_self_signed=_safe(lambda: _is_self_signed(cert, ski, aki), False),
        is_ca=constraints.ca if constraints is not None else False,
        ski_hex=ski.digest.hex() if ski is not None else None,
        aki_hex=aki.key_identifier.hex() if aki is not None and aki.key_identifier else None,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _safe(compute: Callable[[], _T], default: _T) -> _T:
    # Third-party certificates fail in many ways (bad string encodings, duplicate or
    # malformed extensions, unknown algorithms); a list must still show the rest.
    try:
        return compute()
    except Exception:  # deliberately broad, see above
        return default


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    empty: list[x509.NameAttribute[str | bytes]] = []
    values = _safe(lambda: name.get_attributes_for_oid(oid), empty)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.hex()


def _extension(extensions: x509.Extensions, kind: type[_T]) -> _T | None:
    for extension in extensions:
        if isinstance(extension.value, kind):
            return extension.value
    return None


def _san_values(
    san: x509.SubjectAlternativeName | None, kind: type[x509.GeneralName]
) -> tuple[str, ...]:
    if san is None:
        return ()
    return tuple(str(name.value) for name in san if isinstance(name, kind))


def _signature_hash(cert: x509.Certificate) -> str | None:
    algorithm = _safe(lambda: cert.signature_hash_algorithm, None)
    if algorithm is None:
        return None
    return _HASH_NAMES.get(algorithm.name, algorithm.name.upper())


def _is_self_signed(
    cert: x509.Certificate,
    ski: x509.SubjectKeyIdentifier | None,
    aki: x509.AuthorityKeyIdentifier | None,
) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False
    except Exception:  # unverifiable here, e.g. a key type or hash cryptography refuses
        # Signature unverifiable here (e.g. an algorithm cryptography will not verify):
        # fall back to the key identifiers (RFC 5280 §4.2.1.1: AKI = SKI when self-signed).
        if ski is not None and aki is not None and aki.key_identifier is not None:
            return aki.key_identifier == ski.digest
        return False
    return True
