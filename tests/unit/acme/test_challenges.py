"""tls-alpn-01 validation certificates (RFC 8737 §3): the right one passes, each way of
getting it wrong is named."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from app.acme import challenges

NAME = "www.acme.example"
KEY_AUTH = "token-value.thumbprint-value"
DIGEST = hashlib.sha256(KEY_AUTH.encode()).digest()


def validation_cert(
    *,
    sans: list[x509.GeneralName] | None = None,
    value: bytes | None = b"\x04\x20" + DIGEST,
    critical: bool = True,
) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "acme")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if sans is None:
        sans = [x509.DNSName(NAME)]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if value is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(challenges.ACME_IDENTIFIER_OID, value), critical=critical
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_the_right_certificate_passes_whatever_the_name_case():
    assert challenges.tls_alpn01_problem(validation_cert(), NAME, KEY_AUTH) is None
    assert challenges.tls_alpn01_problem(validation_cert(), NAME.upper(), KEY_AUTH) is None
    assert challenges.tls_alpn01_digest(KEY_AUTH) == DIGEST


@pytest.mark.parametrize(
    ("cert", "said"),
    [
        (lambda: validation_cert(value=None), "no acmeIdentifier extension"),
        (lambda: validation_cert(critical=False), "must be marked critical"),
        (
            lambda: validation_cert(value=b"\x04\x20" + hashlib.sha256(b"other").digest()),
            "does not hold the key authorization's digest",
        ),
        # The digest itself without its OCTET STRING wrapping (a known client mistake).
        (lambda: validation_cert(value=DIGEST), "32-byte DER OCTET STRING"),
        (lambda: validation_cert(value=b"\x04\x10" + DIGEST[:16]), "32-byte DER OCTET STRING"),
        (lambda: validation_cert(value=b"\x04\x21" + DIGEST + b"\x00"), "32-byte DER OCTET"),
        (lambda: validation_cert(sans=[]), "no subjectAltName"),
        (
            lambda: validation_cert(sans=[x509.DNSName("other.acme.example")]),
            "exactly the dNSName www.acme.example, not other.acme.example",
        ),
        (
            lambda: validation_cert(sans=[x509.DNSName(NAME), x509.DNSName("api.acme.example")]),
            "exactly the dNSName",
        ),
        (
            lambda: validation_cert(sans=[x509.DNSName(NAME), x509.RFC822Name("ops@acme.example")]),
            "exactly the dNSName",
        ),
    ],
)
def test_each_malformed_certificate_is_refused_with_its_reason(cert, said):
    problem = challenges.tls_alpn01_problem(cert(), NAME, KEY_AUTH)
    assert problem is not None and said in problem


def test_garbage_is_not_a_certificate():
    problem = challenges.tls_alpn01_problem(b"\x30\x03\x02\x01\x00", NAME, KEY_AUTH)
    assert problem is not None and problem.startswith("the certificate is not readable")
