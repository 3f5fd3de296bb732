"""Read-only facts from scanned certificates (names, SANs, key type), tolerant of junk input.

Everything a server presents is untrusted: parsing failures give empty answers, not
exceptions. Pure (cryptography only).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from app.pki import algorithms


@functools.lru_cache(maxsize=4096)
def load_certificate(der: bytes) -> x509.Certificate | None:
    """The parsed certificate, or None when the DER does not parse (cached by DER)."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def load_chain(chain: Sequence[bytes]) -> list[x509.Certificate | None]:
    return [load_certificate(der) for der in chain]


def name_values(name: x509.Name, oid: x509.ObjectIdentifier) -> tuple[str, ...]:
    """Text values of one attribute type in a distinguished name, in order."""
    values: list[str] = []
    for attribute in name.get_attributes_for_oid(oid):
        value = attribute.value
        values.append(value if isinstance(value, str) else value.decode("latin-1"))
    return tuple(values)


def common_names(name: x509.Name) -> tuple[str, ...]:
    return name_values(name, NameOID.COMMON_NAME)


def distinguished_name(name: x509.Name) -> str:
    """RFC 4514 text of a name; a placeholder when an attribute cannot be rendered."""
    try:
        return name.rfc4514_string()
    except ValueError:
        return "<unrenderable name>"


def subject_alt_names(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    """The SAN extension, or None when absent or malformed."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return None


def san_values(cert: x509.Certificate) -> tuple[str, ...]:
    """DNS names, IP addresses, e-mail addresses and URIs of the SAN, as text."""
    san = subject_alt_names(cert)
    if san is None:
        return ()
    values: list[str] = list(san.get_values_for_type(x509.DNSName))
    values += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    values += san.get_values_for_type(x509.RFC822Name)
    values += san.get_values_for_type(x509.UniformResourceIdentifier)
    return tuple(values)


def key_description(cert: x509.Certificate) -> tuple[str, int | None]:
    """``(family, bits)`` in the vocabulary of app.pki.algorithms: ("RSA", 2048), ("EC", 256),
    ("Ed25519", 256), ("unknown", None). EC bits are the curve size (P-256 -> 256)."""
    key = _public_key(cert)
    return algorithms.key_family(key), algorithms.key_bits(key)


def key_type_labels(cert: x509.Certificate) -> tuple[str, ...]:
    """Values a ``key_type`` rule condition sees: the family and the type, e.g.
    ("RSA", "RSA-2048"), ("EC", "EC-P256"); just ("Ed25519",) where they are one."""
    key = _public_key(cert)
    family, name = algorithms.key_family(key), algorithms.key_type(key)
    return (family,) if name == family else (family, name)


def _public_key(cert: x509.Certificate) -> PublicKeyTypes | None:
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None


def is_self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


@functools.lru_cache(maxsize=4096)
def is_issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when ``parent`` names and signed ``child``. No trust is implied.

    Signatures this cryptography cannot verify (SHA-1, exotic algorithms) fall back to the
    key identifiers (RFC 5280 4.2.1.1/4.2.1.2), so legacy chains still link up and get
    flagged for what they are instead of looking incomplete. Cached: a sweep sees the same
    chain on many endpoints.
    """
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return _key_identifiers_match(child, parent)
    return True


def _key_identifiers_match(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        authority = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return True  # nothing to contradict the name match
    except ValueError:
        return False
    key_id = authority.value.key_identifier
    if key_id is None:
        return True
    try:
        subject_id = parent.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return key_id == subject_id.value.digest
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        return False
    try:
        return key_id == x509.SubjectKeyIdentifier.from_public_key(parent.public_key()).digest
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
