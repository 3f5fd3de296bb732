"""Key and signature findings on certificates made by openssl (small RSA, SHA-1) and by
cryptography (a ROCA modulus, close primes, a P-224 key)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.pki.hygiene import key_findings, spki_of
from tests.unit.pki.importfiles import OpensslFiles
from tests.unit.pki.test_weak_keys import _next_prime, _private_key, _roca_prime


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> OpensslFiles:
    return OpensslFiles(tmp_path_factory.mktemp("hygiene"))


def codes(cert: x509.Certificate) -> list[str]:
    return [f.code for f in key_findings(cert)]


def self_signed(key, algorithm=None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak.test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, algorithm if algorithm is not None else hashes.SHA256())
    )


def test_an_ordinary_certificate_has_no_findings(files):
    assert codes(x509.load_pem_x509_certificate(files.pem("leaf"))) == []


def test_openssl_rsa_1024_is_a_weak_key_size(files):
    pem = files.sign("rsa1024", "/CN=small.test", issuer="root", key="rsa:1024")
    [finding] = key_findings(x509.load_pem_x509_certificate(pem))
    assert (finding.code, finding.severity) == ("weak_key_size", "error")
    assert finding.detail.startswith("An RSA-1024 key")


@pytest.mark.parametrize("digest", ["sha1"])  # OpenSSL 3 no longer signs ECDSA with MD5
def test_openssl_weak_signature_hashes_are_found(files, digest):
    from tests.unit.pki.importfiles import run

    run("x509", "-req", "-in", "leaf.csr", "-CA", "inter.pem", "-CAkey", "inter.key",
        f"-{digest}", "-days", "30", "-out", f"{digest}.pem", cwd=files.root)  # fmt: skip
    cert = x509.load_pem_x509_certificate(files.pem(digest))
    assert codes(cert) == ["weak_signature"]


def test_a_roca_modulus_is_flagged():
    key = _private_key(_roca_prime(1024), _roca_prime(1024))
    assert codes(self_signed(key)) == ["roca"]


def test_close_primes_are_flagged():
    import secrets

    p = _next_prime(secrets.randbits(1024) | 3 << 1022)
    key = _private_key(p, _next_prime(p + 2**20))
    assert codes(self_signed(key)) == ["close_primes"]


def test_an_ec_key_below_p256_is_weak():
    key = ec.generate_private_key(ec.SECP224R1())
    [finding] = key_findings(self_signed(key))
    assert finding.code == "weak_key_size"
    assert "secp224r1" in finding.detail


def test_the_key_identity_is_the_same_for_two_certificates_of_one_key(files):
    files.sign("k1", "/CN=one.test", issuer="root")
    # A second certificate for the same key (the CSR of k1 signed again).
    from tests.unit.pki.importfiles import run

    run("x509", "-req", "-in", "k1.csr", "-CA", "root.pem", "-CAkey", "root.key",
        "-days", "30", "-out", "k1b.pem", cwd=files.root)  # fmt: skip
    one = x509.load_pem_x509_certificate(files.pem("k1"))
    two = x509.load_pem_x509_certificate(files.pem("k1b"))
    assert one != two and spki_of(one) == spki_of(two) != ""
