"""Displayable fields, for our certificates and for odd third-party ones."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ed25519
from cryptography.x509.oid import ExtensionOID, NameOID

from app.pki import formats, info, issue, names
from app.pki.keys import PrivateKey
from app.pki.profiles import LEAF_PROFILES, CertKind

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache, Openssl

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _self_signed(
    key: PrivateKey | dsa.DSAPrivateKey | ed25519.Ed25519PrivateKey,
    algorithm: hashes.HashAlgorithm | None,
    *extensions: x509.ExtensionType,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    name = subject if subject is not None else x509.Name([])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0xABC)
        .not_valid_before(START)
        .not_valid_after(START + dt.timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, algorithm)


def test_issued_leaf(rsa_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    leaf = issue.issue_leaf(
        rsa_hierarchy.issuing,
        public_key=key_cache.get("RSA-2048").public_key(),
        subject=names.build_subject(
            common_name="inv.certwright.test", organization="Acme", country="US", state="Texas"
        ),
        alt_names=names.build_alt_names(ip_addresses=["10.9.8.7"]),
        profile=LEAF_PROFILES[CertKind.SSL],
        serial=0x0123ABCD,
        term_days=30,
    )
    shown = info.describe_certificate(leaf)
    assert shown.subject_cn == "inv.certwright.test"
    assert shown.subject_o == "Acme"
    assert shown.subject_ou is None
    assert shown.subject == "CN=inv.certwright.test,O=Acme,ST=Texas,C=US"
    assert shown.issuer_cn == "Certwright RSA Issuing CA"
    assert shown.dns_names == ("inv.certwright.test",)
    assert shown.ip_addresses == ("10.9.8.7",)
    assert shown.sans == ("DNS:inv.certwright.test", "IP:10.9.8.7")
    assert shown.serial_hex == "123abcd"
    assert shown.not_before == leaf.not_valid_before_utc
    assert shown.not_after.tzinfo is dt.UTC
    assert (shown.key_algorithm, shown.key_size, shown.key_type) == ("RSA", 2048, "RSA-2048")
    assert shown.signature_algorithm == "SHA256-RSA"
    assert shown.signature_hash == "SHA-256"
    assert not shown.is_self_signed and not shown.is_ca
    assert shown.aki_hex == rsa_hierarchy.issuing.subject_key_identifier.hex()
    assert shown.ski_hex is not None and len(shown.ski_hex) == 40
    assert shown.fingerprint_sha256 == formats.fingerprint_sha256(leaf)


def test_our_cas(hierarchy: Hierarchy) -> None:
    root = info.describe_certificate(hierarchy.root.certificate)
    issuing = info.describe_certificate(hierarchy.issuing.certificate)
    assert root.is_self_signed and root.is_ca
    assert issuing.is_ca and not issuing.is_self_signed
    if hierarchy.name == "EC":
        assert (root.key_algorithm, root.key_size, root.key_type) == ("EC", 384, "EC-P384")
        assert root.signature_algorithm == "ECDSA-SHA384"


def test_sha1_rsa1024_without_cn_made_by_openssl(openssl: Openssl, tmp_path: Path) -> None:
    cert_path = tmp_path / "old.pem"
    made = openssl(
        "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", str(tmp_path / "old.key"),
        "-subj", "/O=Legacy Corp/OU=Basement", "-sha1", "-days", "30", "-out", str(cert_path),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (cert,) = formats.load_certificates(cert_path.read_bytes())
    shown = info.describe_certificate(cert)
    assert shown.subject_cn is None and shown.issuer_cn is None
    assert (shown.subject_o, shown.subject_ou) == ("Legacy Corp", "Basement")
    assert shown.key_type == "RSA-1024"
    assert shown.signature_algorithm == "SHA1-RSA"
    assert shown.signature_hash == "SHA-1"
    assert shown.is_self_signed
    assert shown.sans == ()


def test_dsa_and_ed25519() -> None:
    dsa_cert = _self_signed(dsa.generate_private_key(key_size=1024), hashes.SHA256())
    shown = info.describe_certificate(dsa_cert)
    assert (shown.key_algorithm, shown.key_size, shown.key_type) == ("DSA", 1024, "DSA-1024")
    assert shown.signature_algorithm == "DSA-SHA256"
    assert shown.is_self_signed
    ed_cert = _self_signed(ed25519.Ed25519PrivateKey.generate(), None)
    shown = info.describe_certificate(ed_cert)
    assert (shown.key_algorithm, shown.key_size, shown.key_type) == ("Ed25519", 256, "Ed25519")
    assert shown.signature_algorithm == "Ed25519"
    assert shown.signature_hash is None
    assert shown.subject == "" and shown.subject_cn is None
    assert shown.is_self_signed and not shown.is_ca
    assert shown.ski_hex is None and shown.aki_hex is None


def test_unsupported_and_malformed_extensions(key_cache: KeyCache) -> None:
    key = key_cache.get("EC-P256")
    odd = _self_signed(
        key,
        hashes.SHA256(),
        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
        x509.SubjectAlternativeName(
            [
                x509.UniformResourceIdentifier("spiffe://certwright.test/agent"),
                x509.RFC822Name("agent@certwright.test"),
                x509.IPAddress(ipaddress.ip_address("2001:db8::9")),
            ]
        ),
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]),
    )
    shown = info.describe_certificate(odd)
    assert shown.uris == ("spiffe://certwright.test/agent",)
    assert shown.emails == ("agent@certwright.test",)
    assert shown.sans[-1] == "URI:spiffe://certwright.test/agent"
    assert shown.ip_addresses == ("2001:db8::9",)
    broken = _self_signed(
        key,
        hashes.SHA256(),
        # A SAN whose value is not a GeneralNames SEQUENCE: cryptography refuses to parse it.
        x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x01\x02"),
        x509.BasicConstraints(ca=True, path_length=None),
    )
    with pytest.raises(ValueError, match="error parsing asn1 value"):
        _ = broken.extensions
    shown = info.describe_certificate(broken)
    assert shown.sans == () and not shown.is_ca and shown.ski_hex is None
    assert shown.is_self_signed
    assert shown.serial_hex == "abc"


def test_self_issued_but_signed_by_another_key(key_cache: KeyCache) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Imposter Root")])
    imposter = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key_cache.get("EC-P256").public_key())
        .serial_number(1)
        .not_valid_before(START)
        .not_valid_after(START + dt.timedelta(days=1))
        .sign(key_cache.get("EC-P256", 5), hashes.SHA256())
    )
    assert not info.describe_certificate(imposter).is_self_signed
