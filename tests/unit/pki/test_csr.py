"""Parsing and building CSRs, with every refusal's message."""

from __future__ import annotations

import base64
import ipaddress
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from app.pki import csr as csr_module
from app.pki import keys, names
from app.pki.errors import CsrError, KeyPolicyError

if TYPE_CHECKING:
    from conftest import KeyCache, Openssl


@pytest.fixture(scope="module")
def sample(key_cache: KeyCache) -> x509.CertificateSigningRequest:
    return csr_module.build_csr(
        key_cache.get("RSA-2048"),
        subject=names.build_subject(
            common_name="tamper.example.com", organization="Acme", country="US"
        ),
        alt_names=names.build_alt_names(
            dns_names=["tamper.example.com", "www.example.com"],
            ip_addresses=["10.0.0.1"],
            emails=["ops@example.com"],
        ),
    )


def _fails(data: bytes, message: str) -> None:
    with pytest.raises(CsrError) as caught:
        csr_module.parse_csr(data)
    assert str(caught.value).startswith(message), str(caught.value)


def test_parse_pem_extracts_everything(sample: x509.CertificateSigningRequest) -> None:
    parsed = csr_module.parse_csr(sample.public_bytes(Encoding.PEM))
    assert parsed.common_name == "tamper.example.com"
    assert parsed.subject.organization == "Acme"
    assert parsed.subject.country == "US"
    assert parsed.dns_names == ("tamper.example.com", "www.example.com")
    assert parsed.ip_addresses == (ipaddress.ip_address("10.0.0.1"),)
    assert parsed.emails == ("ops@example.com",)
    assert parsed.key_type == "RSA-2048"
    assert keys.check_key_policy(parsed.public_key) == "RSA-2048"
    assert parsed.other_names == ()


def test_names_certwright_does_not_issue_are_reported(key_cache: KeyCache) -> None:
    """URIs, directory names, other names and registered IDs are listed, so that the
    request is refused instead of silently losing them (issue 9 A5)."""
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("www.example.com"),
            x509.UniformResourceIdentifier("spiffe://example.com/web"),
            x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])),
            x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x01a"),
            x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
        ]
    )
    built = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")]))
        .add_extension(san, critical=False)
        .sign(key_cache.get("EC-P256"), hashes.SHA256())
    )
    parsed = csr_module.parse_csr(built.public_bytes(Encoding.PEM))
    assert parsed.dns_names == ("www.example.com",)
    assert parsed.other_names == (
        "URI spiffe://example.com/web",
        "directory name CN=x",
        "other name 1.3.6.1.4.1.311.20.2.3",
        "registered ID 1.2.3.4",
    )


def test_parse_der_base64_and_legacy_pem_label(sample: x509.CertificateSigningRequest) -> None:
    der = sample.public_bytes(Encoding.DER)
    assert csr_module.parse_csr(der).common_name == "tamper.example.com"
    wrapped = base64.encodebytes(der)  # bare base64 with line breaks, as some UIs paste
    assert csr_module.parse_csr(wrapped).common_name == "tamper.example.com"
    legacy = sample.public_bytes(Encoding.PEM).replace(
        b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"
    )
    assert csr_module.parse_csr(b"pasted text\n" + legacy).dns_names[0] == "tamper.example.com"


def test_size_limit_is_32_kb(sample: x509.CertificateSigningRequest) -> None:
    pem = sample.public_bytes(Encoding.PEM)
    exactly = pem + b"\n" * (32768 - len(pem))
    assert csr_module.parse_csr(exactly).common_name == "tamper.example.com"
    with pytest.raises(CsrError) as caught:
        csr_module.parse_csr(exactly + b"\n")
    assert str(caught.value) == "CSR is larger than 32 KB"


def test_refusals() -> None:
    _fails(b"", "CSR is empty")
    _fails(b" \n\t", "CSR is empty")
    _fails(b"hello, world!", "CSR is neither PEM nor DER")
    _fails(b"abcde", "CSR is neither PEM nor DER (bad base64)")
    _fails(b"\x30\x03abc", "CSR is not a valid DER certificate request")
    _fails(
        b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
        "CSR PEM could not be decoded",
    )
    _fails(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "PEM block is a CERTIFICATE, not a CERTIFICATE REQUEST",
    )


def test_bad_signature_is_refused(sample: x509.CertificateSigningRequest) -> None:
    der = sample.public_bytes(Encoding.DER)
    tampered = der.replace(b"tamper.example.com", b"tampex.example.com")
    assert tampered != der
    _fails(tampered, "CSR signature does not verify")


def test_unsupported_public_keys_are_refused() -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    ed = builder.sign(ed25519.Ed25519PrivateKey.generate(), None)
    _fails(ed.public_bytes(Encoding.PEM), "CSR public key Ed25519 is not supported")
    dsa_csr = builder.sign(dsa.generate_private_key(key_size=2048), hashes.SHA256())
    _fails(dsa_csr.public_bytes(Encoding.DER), "CSR public key DSA-2048 is not supported")


def test_weak_key_parses_but_fails_policy() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    built = csr_module.build_csr(weak, subject=names.build_subject(common_name="old.example"))
    parsed = csr_module.parse_csr(built.public_bytes(Encoding.PEM))
    assert parsed.key_type == "RSA-1024"
    assert parsed.dns_names == ()
    with pytest.raises(KeyPolicyError, match="RSA-1024 is below the minimum RSA-2048"):
        keys.check_key_policy(parsed.public_key)


def test_two_common_names_are_refused(key_cache: KeyCache) -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "a.example.com"),
            x509.NameAttribute(NameOID.COMMON_NAME, "b.example.com"),
        ]
    )
    built = csr_module.build_csr(key_cache.get("EC-P256"), subject=subject)
    _fails(built.public_bytes(Encoding.PEM), "CSR subject has more than one common name (CN)")


def _tlv(tag: int, body: bytes) -> bytes:
    if len(body) < 128:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _resigned(tbs: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A CSR around an edited CertificationRequestInfo, validly signed (ecdsa-with-SHA256)."""
    algorithm = bytes.fromhex("300a06082a8648ce3d040302")
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))


def test_malformed_parts_are_refused(key_cache: KeyCache) -> None:
    key = key_cache.get("EC-P256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    good = csr_module.build_csr(key, subject=names.build_subject(common_name="zzzz.example.com"))
    assert csr_module.parse_csr(_resigned(good.tbs_certrequest_bytes, key)).common_name
    bad_utf8 = good.tbs_certrequest_bytes.replace(b"zzzz", b"\xff\xfe\xfd\xfc")
    _fails(_resigned(bad_utf8, key), "CSR subject could not be read")
    bad_san = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x01\x02")
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(names.build_subject(common_name="a.example.com"))
        .add_extension(bad_san, critical=False)
        .sign(key, hashes.SHA256())
    )
    _fails(request.public_bytes(Encoding.DER), "CSR extensions could not be parsed")
    der = good.public_bytes(Encoding.DER)
    ec_public_key_oid = bytes.fromhex("06072a8648ce3d0201")
    unknown_key = der.replace(ec_public_key_oid, bytes.fromhex("06072a8648ce3d0209"))
    _fails(unknown_key, "CSR public key uses an algorithm Certwright does not support")


def test_unknown_signature_algorithm_is_refused(key_cache: KeyCache) -> None:
    request = csr_module.build_csr(
        key_cache.get("RSA-2048"), subject=names.build_subject(common_name="a.example.com")
    )
    sha256_with_rsa = bytes.fromhex("06092a864886f70d01010b")
    unknown = request.public_bytes(Encoding.DER).replace(
        sha256_with_rsa, bytes.fromhex("06092a864886f70d01017f")
    )
    _fails(unknown, "CSR signature algorithm 1.2.840.113549.1.1.127 is not supported")


def test_openssl_made_csr_parses(openssl: Openssl) -> None:
    made = openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        "/C=DE/O=Beispiel GmbH/CN=www.beispiel.example",
        "-addext",
        "subjectAltName=DNS:www.beispiel.example,IP:192.0.2.1",
    )
    assert made.returncode == 0, made.stderr
    parsed = csr_module.parse_csr(made.stdout.encode())
    assert parsed.key_type == "EC-P384"
    assert parsed.subject.organization == "Beispiel GmbH"
    assert parsed.dns_names == ("www.beispiel.example",)
    assert parsed.ip_addresses == (ipaddress.ip_address("192.0.2.1"),)
