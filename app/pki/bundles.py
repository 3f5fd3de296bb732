"""Certificates out of the files people have: PEM bundles, DER, PKCS#7 (PEM or DER), each
certificate with the findings that make it odd; no I/O.

A file is read by its content, never by its name (a DER file renamed `.pem` is still read).
Whatever cryptography can load is kept, odd or not, with what is wrong with it as
findings (RFC 5280 rules it breaks); a block that is not a certificate is reported, never
dropped silently, and private keys in a bundle are ignored (Certwright never stores a key
it was not asked to hold).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import warnings
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID


@dataclass(frozen=True)
class Finding:
    """Something wrong with a certificate or its key: a stable code, how bad it is
    ("error": breaks a MUST or is exploitable; "warning": a SHOULD or a weakness) and a
    sentence saying what and why."""

    code: str
    severity: str
    detail: str


@dataclass(frozen=True)
class ParsedCertificate:
    der: bytes
    fingerprint: str  # SHA-256 of the DER, lower-case hex
    certificate: x509.Certificate
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class FileContent:
    """What one file held: its certificates in file order, and notes about what else it
    held (each a sentence). ``error`` is set when nothing in it was a certificate."""

    certificates: tuple[ParsedCertificate, ...]
    notes: tuple[str, ...]
    error: str = ""


_PEM_BLOCK: Final = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]{1,64})-----\r?\n(.*?)-----END \1-----", re.DOTALL
)
_CERTIFICATE_LABELS: Final = frozenset({b"CERTIFICATE", b"X509 CERTIFICATE"})
_PKCS7_LABELS: Final = frozenset({b"PKCS7", b"PKCS #7 SIGNED DATA", b"CMS"})
_KEY_LABEL: Final = re.compile(rb"PRIVATE KEY$")
# RFC 5280 §4.1.2.2: "Certificate users MUST be able to handle serialNumber values up to
# 20 octets. Conforming CAs MUST NOT use serialNumber values longer than 20 octets."
MAX_SERIAL_OCTETS: Final = 20
# The critical extensions RFC 5280 §4.2 defines (and cryptography parses); any other
# critical extension makes a relying party that does not know it reject the certificate.
_KNOWN_EXTENSIONS: Final = frozenset(
    oid
    for name, oid in vars(ExtensionOID).items()
    if not name.startswith("_") and isinstance(oid, x509.ObjectIdentifier)
)


def read_file(data: bytes) -> FileContent:
    """The certificates in ``data``: one or many PEM blocks, a DER certificate, or a
    PKCS#7 bundle (DER or PEM). Never raises on hostile input."""
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        return _read_pem(data)
    one = _load_der(data)
    if isinstance(one, ParsedCertificate):
        return FileContent((one,), ())
    bundle = _load_pkcs7(data, pem=False)
    if bundle is not None:
        return bundle
    if b"-----BEGIN" in data[:4096]:
        return _read_pem(data)
    return FileContent((), (), error=f"not a certificate (PEM, DER or PKCS#7): {one}")


def _read_pem(data: bytes) -> FileContent:
    certificates: list[ParsedCertificate] = []
    notes: list[str] = []
    for number, block in enumerate(_PEM_BLOCK.finditer(data), start=1):
        label = block.group(1)
        shown = label.decode("ascii", "replace")
        if label in _CERTIFICATE_LABELS:
            parsed = _load_der(_pem_body(block.group(2)))
            if isinstance(parsed, ParsedCertificate):
                certificates.append(parsed)
            else:
                notes.append(f"block {number} ({shown}) is not a valid certificate: {parsed}")
        elif label in _PKCS7_LABELS:
            bundle = _load_pkcs7(block.group(0), pem=True)
            if bundle is None:
                notes.append(f"block {number} ({shown}) is not a valid PKCS#7 bundle")
            else:
                certificates.extend(bundle.certificates)
                notes.extend(bundle.notes)
        elif _KEY_LABEL.search(label):
            notes.append(f"block {number} is a private key: ignored, never stored")
        else:
            notes.append(f"block {number} ({shown}) is not a certificate: ignored")
    if not certificates:
        reason = "; ".join(notes) if notes else "no complete PEM block"
        return FileContent((), tuple(notes), error=f"no certificate in this PEM file ({reason})")
    return FileContent(tuple(certificates), tuple(notes))


def _pem_body(body: bytes) -> bytes:
    lines = [line.strip() for line in body.splitlines()]
    # RFC 7468 §2 allows explanatory headers before the base64 in legacy PEM; skip them.
    text = b"".join(line for line in lines if line and b":" not in line)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


def _load_pkcs7(data: bytes, *, pem: bool) -> FileContent | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = (
                pkcs7.load_pem_pkcs7_certificates(data)
                if pem
                else pkcs7.load_der_pkcs7_certificates(data)
            )
    except ValueError:
        return None
    certificates: list[ParsedCertificate] = []
    notes: list[str] = []
    for cert in loaded:
        der = cert.public_bytes(Encoding.DER)
        parsed = _load_der(der)
        if isinstance(parsed, ParsedCertificate):
            certificates.append(parsed)
        else:  # pragma: no cover - cryptography loaded it once already
            notes.append(f"a certificate in the PKCS#7 bundle could not be read: {parsed}")
    if not certificates:
        return FileContent((), tuple(notes), error="a PKCS#7 bundle with no certificate")
    return FileContent(tuple(certificates), tuple(notes))


def _load_der(der: bytes) -> ParsedCertificate | str:
    """A certificate from DER with its findings, or why it is not one."""
    try:
        with warnings.catch_warnings():
            # cryptography warns (and will refuse) on a serial that is not positive; the
            # certificate is kept, with the finding parse_findings() makes of it.
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        return _reason(exc)
    findings: list[Finding] = []
    findings.extend(parse_findings(cert))
    return ParsedCertificate(
        der=der,
        fingerprint=hashlib.sha256(der).hexdigest(),
        certificate=cert,
        findings=tuple(findings),
    )


def parse_findings(cert: x509.Certificate) -> list[Finding]:
    """What RFC 5280 rules a loaded certificate breaks, as far as loading can tell."""
    findings: list[Finding] = []
    serial = serial_number(cert)
    if serial <= 0:
        findings.append(
            Finding(
                "serial_not_positive",
                "error",
                "The serial number is zero or negative (RFC 5280 §4.1.2.2: it MUST be "
                "a positive integer).",
            )
        )
    octets = (serial.bit_length() + 8) // 8 if serial > 0 else 1  # DER INTEGER, sign bit
    if octets > MAX_SERIAL_OCTETS:
        findings.append(
            Finding(
                "serial_too_long",
                "error",
                f"The serial number is {octets} octets long (RFC 5280 §4.1.2.2: at most "
                f"{MAX_SERIAL_OCTETS}); some relying parties cannot handle it.",
            )
        )
    try:
        version = cert.version
    except x509.InvalidVersion:  # pragma: no cover - cryptography refuses these at load
        version = None
    if version == x509.Version.v1:
        findings.append(
            Finding(
                "version_1",
                "warning",
                "A version 1 certificate: it has no extensions, so nothing says whether it "
                "may act as a CA or what its key is for (RFC 5280 §4.1.2.1).",
            )
        )
    try:
        extensions = list(cert.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        findings.append(
            Finding(
                "extensions_unreadable",
                "error",
                f"The extensions cannot be decoded ({_reason(exc)}).",
            )
        )
        extensions = []
    for extension in extensions:
        if extension.critical and extension.oid not in _KNOWN_EXTENSIONS:
            findings.append(
                Finding(
                    "unknown_critical_extension",
                    "error",
                    f"An unknown critical extension {extension.oid.dotted_string}: a relying "
                    "party that does not recognise it MUST reject the certificate "
                    "(RFC 5280 §4.2).",
                )
            )
    for which in ("subject", "issuer"):
        try:
            getattr(cert, which).rfc4514_string()
        except ValueError as exc:
            findings.append(
                Finding(
                    f"{which}_not_decodable",
                    "error",
                    f"The {which} name cannot be decoded ({_reason(exc)}): a string is not "
                    "valid in its declared encoding (RFC 5280 §4.1.2.4 wants UTF8String "
                    "or PrintableString).",
                )
            )
    return findings


def load_certificate(der: bytes) -> x509.Certificate:
    """A stored certificate, without the warning cryptography gives for a serial that is not
    positive (the inventory keeps such certificates, with a finding).

    Raises:
        ValueError: not a certificate cryptography can load.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_der_x509_certificate(der)


def serial_number(cert: x509.Certificate) -> int:
    """The serial number, without the warning cryptography gives for one that is not
    positive (such certificates are kept, with a finding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(cert.serial_number)


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def certificate_type(cert: x509.Certificate) -> str:
    """What kind of certificate this is by its EKU and basic constraints: "ca", "ssl",
    "client", "code_signing" or "" (no telling)."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            return "ca"
    except (x509.ExtensionNotFound, ValueError):
        pass
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (x509.ExtensionNotFound, ValueError):
        return ""
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return "ssl"
    if ExtendedKeyUsageOID.CODE_SIGNING in usages:
        return "code_signing"
    if ExtendedKeyUsageOID.CLIENT_AUTH in usages or ExtendedKeyUsageOID.EMAIL_PROTECTION in usages:
        return "client"
    return ""
