"""Bytes at the edges: certificate downloads, PKCS#12 export, import parsing, fingerprints.

Download formats follow Sectigo Certificate Manager's names. ``chain`` is always given
issuer first, ending with the root when it is known:

========  ======================================================  ====================
format    content                                                 bytes
========  ======================================================  ====================
x509      certificate, then intermediates, then root              PEM
x509CO    certificate only                                        PEM
x509IO    intermediates and root only, issuer first               PEM
x509IOR   intermediates and root only, root first (reversed)      PEM
base64    PKCS#7 of certificate + chain                           PEM ("PKCS7" block)
bin       PKCS#7 of certificate + chain                           DER
pem       same as x509 (SCM: "PEM (with chain)")                  PEM
pemco     certificate only (same as x509CO)                       PEM
pemia     certificate + intermediates, no root                    PEM
cer       certificate only                                        DER
========  ======================================================  ====================

Ambiguity: SCM documents "x509" and "pem" separately and has shipped both orders over
time; Certwright defines both as leaf first, the order TLS servers want (RFC 8446
§4.4.2). The root is the last chain element when it is self-issued; pemia drops it.
PKCS#7 keeps its certificates in a DER SET OF, which is sorted by encoding, so base64
and bin carry the same certificates as x509 but in no meaningful order.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, pkcs7, pkcs12

from app.pki.errors import FormatError
from app.pki.keys import PrivateKey

PEM_MIME: Final = "application/x-pem-file"
DER_CERT_MIME: Final = "application/pkix-cert"  # RFC 2585 §4.1
PKCS7_MIME: Final = "application/x-pkcs7-certificates"
PKCS12_MIME: Final = "application/x-pkcs12"
# PBKDF2-HMAC-SHA256 iterations for PKCS#12 bag encryption and the MAC key.
PKCS12_KDF_ROUNDS: Final = 200_000
# The legacy PKCS#12 (3DES, SHA-1 MAC) uses the iteration count of OpenSSL 1.1, which is
# what the old Windows and macOS importers it exists for were built against.
PKCS12_LEGACY_KDF_ROUNDS: Final = 2048
MAX_IMPORT_BYTES: Final = 4 * 1024 * 1024

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


class DownloadFormat(enum.StrEnum):
    X509 = "x509"
    X509CO = "x509CO"
    X509IO = "x509IO"
    X509IOR = "x509IOR"
    BASE64 = "base64"
    BIN = "bin"
    PEM = "pem"
    PEMCO = "pemco"
    PEMIA = "pemia"
    CER = "cer"


# What each format is called where people choose one (console, collection page).
FORMAT_LABELS: Final[list[tuple[str, str]]] = [
    (DownloadFormat.X509.value, "PEM: certificate, intermediates and root"),
    (DownloadFormat.X509CO.value, "PEM: certificate only"),
    (DownloadFormat.X509IO.value, "PEM: intermediates and root only"),
    (DownloadFormat.X509IOR.value, "PEM: root and intermediates only (reversed)"),
    (DownloadFormat.PEMIA.value, "PEM: certificate and intermediates (no root)"),
    (DownloadFormat.BASE64.value, "PKCS#7, base64"),
    (DownloadFormat.BIN.value, "PKCS#7, binary"),
    (DownloadFormat.CER.value, "DER certificate (.cer)"),
]


@dataclass(frozen=True)
class Download:
    """A file to hand to the browser: bytes, MIME type and file extension (no dot)."""

    content: bytes
    mime_type: str
    extension: str


def parse_download_format(value: str) -> DownloadFormat:
    """Read a format name as SCM spells it (case-insensitive: "x509co" works).

    Raises:
        FormatError: not one of the ten formats.
    """
    folded = value.strip().lower()
    for fmt in DownloadFormat:
        if fmt.value.lower() == folded:
            return fmt
    names = ", ".join(fmt.value for fmt in DownloadFormat)
    raise FormatError(f"unknown download format {value!r}; expected one of {names}")


def render_download(
    certificate: x509.Certificate, chain: Sequence[x509.Certificate], fmt: DownloadFormat
) -> Download:
    """Render ``certificate`` (with its issuer-first ``chain``) in download format ``fmt``.

    Raises:
        FormatError: x509IO/x509IOR asked for a certificate that has no chain.
    """
    if fmt in (DownloadFormat.X509CO, DownloadFormat.PEMCO):
        return Download(certificate_to_pem(certificate), PEM_MIME, "pem")
    if fmt is DownloadFormat.CER:
        return Download(certificate.public_bytes(Encoding.DER), DER_CERT_MIME, "cer")
    if fmt in (DownloadFormat.X509, DownloadFormat.PEM):
        return Download(certificates_to_pem([certificate, *chain]), PEM_MIME, "pem")
    if fmt is DownloadFormat.PEMIA:
        return Download(certificates_to_pem([certificate, *intermediates(chain)]), PEM_MIME, "pem")
    if fmt in (DownloadFormat.X509IO, DownloadFormat.X509IOR):
        if not chain:
            raise FormatError("this certificate has no issuer certificates to download")
        ordered = list(chain) if fmt is DownloadFormat.X509IO else list(reversed(chain))
        return Download(certificates_to_pem(ordered), PEM_MIME, "pem")
    encoding = Encoding.PEM if fmt is DownloadFormat.BASE64 else Encoding.DER
    return Download(
        pkcs7.serialize_certificates([certificate, *chain], encoding), PKCS7_MIME, "p7b"
    )


def intermediates(chain: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The chain without a trailing self-issued root."""
    if chain and chain[-1].subject == chain[-1].issuer:
        return list(chain[:-1])
    return list(chain)


def certificate_to_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)


def certificates_to_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in certificates)


def export_pkcs12(
    private_key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    *,
    password: bytes,
    friendly_name: str,
    legacy: bool = False,
) -> Download:
    """A password-protected PKCS#12 (RFC 7292) with key, certificate and chain.

    Bags are encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and the MAC uses
    HMAC-SHA256, which OpenSSL 3 reads with its default provider. ``legacy`` chooses
    pbeWithSHAAnd3-KeyTripleDES-CBC and an HMAC-SHA1 MAC (RFC 7292 Appendix B/C) for
    importers that know nothing newer (Windows before Server 2019, older macOS).

    Raises:
        FormatError: empty password.
    """
    if not password:
        raise FormatError("a PKCS#12 export needs a non-empty password")
    if legacy:
        encryption = (
            PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(PKCS12_LEGACY_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - the legacy format's MAC, chosen on purpose
            .build(password)
        )
    else:
        encryption = (
            PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(PKCS12_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
    content = pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8") or None, private_key, certificate, list(chain), encryption
    )
    return Download(content, PKCS12_MIME, "p12")


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in PEM (one or many blocks), DER, or PKCS#7 (PEM or DER).

    Raises:
        FormatError: too large, empty, or no certificate could be read.
    """
    if len(data) > MAX_IMPORT_BYTES:
        raise FormatError("certificate file is larger than 4 MB")
    if not data.strip():
        raise FormatError("certificate file is empty")
    if b"-----BEGIN" in data:
        return _load_pem(data)
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    try:
        return pkcs7.load_der_pkcs7_certificates(data)
    except ValueError:
        raise FormatError("not a certificate: neither PEM, DER nor PKCS#7") from None


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate (64 characters, no separators)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def _load_pem(data: bytes) -> list[x509.Certificate]:
    labels = set(_PEM_LABEL.findall(data))
    try:
        if b"PKCS7" in labels:
            return pkcs7.load_pem_pkcs7_certificates(data)
        if b"CERTIFICATE" in labels:
            return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise FormatError(f"PEM certificate data could not be decoded: {exc}") from None
    shown = ", ".join(sorted(label.decode("ascii") for label in labels)) or "none"
    raise FormatError(f"no certificate in this PEM file (found blocks: {shown})")
