"""Certificates out of PEM bundles, DER and PKCS#7 files made by openssl, and the findings
odd certificates (openssl-made too) are kept with."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki.bundles import certificate_type, read_file
from app.pki.info import describe_certificate
from tests.unit.pki.importfiles import OpensslFiles, run


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> OpensslFiles:
    return OpensslFiles(tmp_path_factory.mktemp("bundles"))


def subjects(content) -> list[str]:
    return [p.certificate.subject.rfc4514_string() for p in content.certificates]


def codes(content) -> list[str]:
    return [f.code for p in content.certificates for f in p.findings]


def test_a_pem_bundle_gives_every_certificate_in_order_and_ignores_a_private_key(files):
    key = (files.root / "leaf.key").read_bytes()
    content = read_file(files.pem("leaf") + b"\n" + key + files.pem("inter") + files.pem("root"))
    assert subjects(content) == [
        "CN=www.import.test",
        "CN=Import Test Intermediate",
        "CN=Import Test Root",
    ]
    assert content.notes == ("block 2 is a private key: ignored, never stored",)
    assert content.error == ""
    leaf = content.certificates[0]
    assert leaf.fingerprint == hashlib.sha256(files.der("leaf")).hexdigest()
    assert leaf.der == files.der("leaf")
    assert leaf.findings == ()


def test_a_der_file_is_read_by_its_content(files):
    content = read_file(files.der("self"))
    assert subjects(content) == ["CN=self-signed.test"]


@pytest.mark.parametrize("der", [True, False], ids=["der", "pem"])
def test_a_pkcs7_bundle_gives_its_certificates(files, der):
    content = read_file(files.pkcs7("leaf", "inter", der=der))
    assert sorted(subjects(content)) == ["CN=Import Test Intermediate", "CN=www.import.test"]


def test_a_pem_wrapped_pkcs7_inside_a_bundle_is_unpacked(files):
    content = read_file(files.pem("root") + files.pkcs7("leaf", der=False))
    assert sorted(subjects(content)) == ["CN=Import Test Root", "CN=www.import.test"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"hello, I am a README\n", "not a certificate (PEM, DER or PKCS#7)"),
        (b"", "not a certificate (PEM, DER or PKCS#7)"),
        (b"\x30\x82\xff\xff" + b"\x00" * 40, "not a certificate (PEM, DER or PKCS#7)"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "no certificate in this PEM file (block 1 (CERTIFICATE) is not a valid certificate",
        ),
        (b"-----BEGIN CERTIFICATE-----\nMIIB", "no certificate in this PEM file (no complete"),
    ],
    ids=["text", "empty", "bad-der", "bad-pem", "truncated-pem"],
)
def test_what_is_not_a_certificate_says_so(data, error):
    content = read_file(data)
    assert content.certificates == ()
    assert content.error.startswith(error)


def test_a_bad_block_in_a_bundle_is_a_note_and_the_rest_is_kept(files):
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    content = read_file(
        files.pem("root") + broken + b"-----BEGIN X509 CRL-----\nAA\n-----END X509 CRL-----\n"
    )
    assert subjects(content) == ["CN=Import Test Root"]
    assert content.notes[0].startswith("block 2 (CERTIFICATE) is not a valid certificate")
    assert content.notes[1] == "block 3 (X509 CRL) is not a certificate: ignored"


@pytest.mark.parametrize(
    ("serial", "code"),
    [("-5", "serial_not_positive"), ("0", "serial_not_positive"),
     ("0x" + "01" * 21, "serial_too_long"), ("0x" + "7f" + "01" * 19, None)],
    ids=["negative", "zero", "21-octets", "20-octets"],
)  # fmt: skip
def test_odd_serials_are_kept_with_a_finding(files, serial, code):
    pem = files.sign(f"serial{serial[:6]}", "/CN=odd.test", issuer="root", serial=serial)
    content = read_file(pem)
    assert len(content.certificates) == 1
    assert codes(content) == ([code] if code else [])


def test_a_version_1_certificate_is_kept_with_a_finding(files):
    pem = files.sign("v1", "/CN=v1.test", issuer="root", extensions=())
    assert b"Version: 1" in run("x509", "-noout", "-text", cwd=files.root, stdin=pem)
    content = read_file(pem)
    assert codes(content) == ["version_1"]


def test_an_unknown_critical_extension_is_a_finding(files):
    pem = files.sign(
        "crit", "/CN=crit.test", issuer="root",
        extensions=("basicConstraints=CA:FALSE", "1.3.6.1.4.1.55555.1=critical,ASN1:UTF8String:x"),
    )  # fmt: skip
    content = read_file(pem)
    assert codes(content) == ["unknown_critical_extension"]
    assert "1.3.6.1.4.1.55555.1" in content.certificates[0].findings[0].detail


def test_a_subject_that_is_not_utf8_is_kept_with_a_finding(files):
    files.sign("latin", "/CN=cafXX.test", issuer="root")
    der = files.der("latin")
    # The UTF8String "cafXX.test" becomes invalid UTF-8 (XX -> 0xff 0xfe); the
    # signature no longer verifies, as with many certificates found in the wild.
    mangled = der.replace(b"cafXX", b"caf\xff\xfe")
    assert mangled != der
    content = read_file(mangled)
    assert codes(content) == ["subject_not_decodable"]
    assert content.certificates[0].fingerprint == hashlib.sha256(mangled).hexdigest()
    # The inventory can still describe it: the rest of its fields, an empty subject.
    info = describe_certificate(content.certificates[0].certificate)
    assert (info.subject, info.subject_cn, info.issuer) == ("", None, "CN=Import Test Root")


def test_certificate_types_come_from_eku_and_basic_constraints(files):
    def kind(name: str) -> str:
        return certificate_type(x509.load_pem_x509_certificate(files.pem(name)))

    # openssl req -x509 marks a self-signed certificate CA:TRUE by default.
    assert (kind("root"), kind("inter"), kind("leaf"), kind("self")) == ("ca", "ca", "ssl", "ca")
    client = files.sign(
        "client", "/CN=alice", issuer="root",
        extensions=("basicConstraints=CA:FALSE", "extendedKeyUsage=clientAuth"),
    )  # fmt: skip
    assert certificate_type(x509.load_pem_x509_certificate(client)) == "client"
    assert x509.load_pem_x509_certificate(client).public_bytes(Encoding.DER) == files.der("client")
