"""Reading and building PKCS#10 certificate signing requests (RFC 2986); no I/O.

parse_csr() takes the bytes a user uploaded or pasted and returns what issuance needs,
with a specific CsrError for each way a request can be unusable. Names come back as
written in the CSR; validate them with names.build_alt_names() and key policy with
keys.check_key_policy().
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from app.pki.errors import CsrError
from app.pki.keys import PrivateKey, PublicKey, describe_public_key
from app.pki.names import AltNames, IPAddress, SubjectFields, subject_fields
from app.pki.profiles import SignatureHash, hash_algorithm

MAX_CSR_BYTES: Final = 32 * 1024

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")
_CSR_LABELS: Final = frozenset({b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"})
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\s]+")


@dataclass(frozen=True)
class ParsedCsr:
    """A CSR whose self-signature verified, with the fields issuance uses.

    ``key_type`` is descriptive ("RSA-1024" is possible); enforce policy separately.
    """

    csr: x509.CertificateSigningRequest
    public_key: PublicKey
    key_type: str
    subject: SubjectFields
    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...]
    emails: tuple[str, ...]
    # Requested subjectAltName entries of other types, described ("URI https://x.test/",
    # "directory name CN=x", "other name 1.3.6.1.4.1.311.20.2.3", "registered ID ...", "IP
    # network 10.0.0.0/8"): Certwright certifies none of them, and the caller refuses them
    # rather than drop them silently. Device certificates do carry URIs: those are also in
    # ``uris`` (as values), and a device request takes them from there.
    other_names: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()

    @property
    def common_name(self) -> str | None:
        return self.subject.common_name


def parse_csr(data: bytes) -> ParsedCsr:
    """Parse a PEM, DER or bare-base64 CSR of at most 32 KB and verify its self-signature.

    Raises:
        CsrError: too large, empty, not a CSR, undecodable, bad signature, unsupported
            key or signature algorithm, malformed extensions or several common names.
    """
    if len(data) > MAX_CSR_BYTES:
        raise CsrError("CSR is larger than 32 KB")
    if not data.strip():
        raise CsrError("CSR is empty")
    csr = _load(data)
    public_key = _public_key(csr)
    _verify_signature(csr)
    try:
        subject = csr.subject
        common_names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        fields = subject_fields(subject)
    except ValueError as exc:
        raise CsrError(f"CSR subject could not be read: {exc}") from None
    if len(common_names) > 1:
        raise CsrError("CSR subject has more than one common name (CN)")
    dns, ips, emails = _requested_alt_names(csr)
    others = _other_alt_names(csr)
    return ParsedCsr(
        csr=csr,
        public_key=public_key,
        key_type=describe_public_key(public_key),
        subject=fields,
        dns_names=dns,
        ip_addresses=ips,
        emails=emails,
        other_names=others,
        uris=_requested_uris(csr),
    )


def build_csr(
    private_key: PrivateKey,
    *,
    subject: x509.Name,
    alt_names: AltNames | None = None,
    signature_hash: SignatureHash = SignatureHash.SHA256,
) -> x509.CertificateSigningRequest:
    """Build and sign a CSR (server-side key generation, tests, CA bootstrap)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if alt_names is not None and not alt_names.is_empty:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alt_names.general_names()), critical=False
        )
    return builder.sign(private_key, hash_algorithm(signature_hash))


def _load(data: bytes) -> x509.CertificateSigningRequest:
    if b"-----BEGIN" in data:
        match = _PEM_LABEL.search(data)
        label = match.group(1) if match else b""
        if label not in _CSR_LABELS:
            shown = label.decode("ascii") or "unlabelled block"
            raise CsrError(f"PEM block is a {shown}, not a CERTIFICATE REQUEST")
        try:
            return x509.load_pem_x509_csr(data)
        except ValueError as exc:
            raise CsrError(f"CSR PEM could not be decoded: {exc}") from None
    der = data
    if not data.startswith(b"\x30"):
        if _BASE64_TEXT.fullmatch(data) is None:
            raise CsrError("CSR is neither PEM nor DER")
        try:
            der = base64.b64decode(b"".join(data.split()), validate=True)
        except binascii.Error:
            raise CsrError("CSR is neither PEM nor DER (bad base64)") from None
    try:
        return x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise CsrError(f"CSR is not a valid DER certificate request: {exc}") from None


def _public_key(csr: x509.CertificateSigningRequest) -> PublicKey:
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CsrError("CSR public key uses an algorithm Certwright does not support") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CsrError(
            f"CSR public key {describe_public_key(key)} is not supported; "
            "use RSA or EC (P-256, P-384)"
        )
    return key


def _verify_signature(csr: x509.CertificateSigningRequest) -> None:
    # RFC 2986 §3: the signature proves possession of the private key.
    try:
        _hash = csr.signature_hash_algorithm  # raises for an unknown algorithm OID
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        oid = csr.signature_algorithm_oid.dotted_string
        raise CsrError(f"CSR signature algorithm {oid} is not supported") from None
    if not valid:
        raise CsrError(
            "CSR signature does not verify (the request was altered or signed with another key)"
        )


def _requested_alt_names(
    csr: x509.CertificateSigningRequest,
) -> tuple[tuple[str, ...], tuple[IPAddress, ...], tuple[str, ...]]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), (), ()
    except ValueError as exc:  # includes x509.DuplicateExtension
        raise CsrError(f"CSR extensions could not be parsed: {exc}") from None
    ips = tuple(
        value
        for value in san.get_values_for_type(x509.IPAddress)
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)
    )
    return (
        tuple(san.get_values_for_type(x509.DNSName)),
        ips,
        tuple(san.get_values_for_type(x509.RFC822Name)),
    )


def _other_alt_names(csr: x509.CertificateSigningRequest) -> tuple[str, ...]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    found: list[str] = []
    for name in san:
        if isinstance(name, x509.UniformResourceIdentifier):
            found.append(f"URI {name.value}")
        elif isinstance(name, x509.DirectoryName):
            found.append(f"directory name {name.value.rfc4514_string()}")
        elif isinstance(name, x509.OtherName):
            found.append(f"other name {name.type_id.dotted_string}")
        elif isinstance(name, x509.RegisteredID):
            found.append(f"registered ID {name.value.dotted_string}")
        elif isinstance(name, x509.IPAddress) and not isinstance(
            name.value, ipaddress.IPv4Address | ipaddress.IPv6Address
        ):
            found.append(f"IP network {name.value}")
    return tuple(found)


def _requested_uris(csr: x509.CertificateSigningRequest) -> tuple[str, ...]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
