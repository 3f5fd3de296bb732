"""Downloads, PKCS#12 export, import parsing and fingerprints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7, pkcs12

from app.pki import formats, issue, keys, names
from app.pki.errors import FormatError
from app.pki.formats import DownloadFormat as F
from app.pki.profiles import LEAF_PROFILES, CertKind

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache, Openssl


@pytest.fixture(scope="module")
def leaf(rsa_hierarchy: Hierarchy, key_cache: KeyCache) -> x509.Certificate:
    return issue.issue_leaf(
        rsa_hierarchy.issuing,
        public_key=key_cache.get("RSA-2048").public_key(),
        subject=names.build_subject(common_name="files.certwright.test"),
        alt_names=names.AltNames(),
        profile=LEAF_PROFILES[CertKind.SSL],
        serial=issue.new_serial(),
        term_days=30,
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("fmt", "order", "mime", "extension"),
    [
        (F.X509, "LIR", "application/x-pem-file", "pem"),
        (F.PEM, "LIR", "application/x-pem-file", "pem"),
        (F.X509CO, "L", "application/x-pem-file", "pem"),
        (F.PEMCO, "L", "application/x-pem-file", "pem"),
        (F.X509IO, "IR", "application/x-pem-file", "pem"),
        (F.X509IOR, "RI", "application/x-pem-file", "pem"),
        (F.PEMIA, "LI", "application/x-pem-file", "pem"),
        (F.BASE64, "LIR", "application/x-pkcs7-certificates", "p7b"),
        (F.BIN, "LIR", "application/x-pkcs7-certificates", "p7b"),
        (F.CER, "L", "application/pkix-cert", "cer"),
    ],
)
def test_download_formats(
    rsa_hierarchy: Hierarchy,
    leaf: x509.Certificate,
    fmt: F,
    order: str,
    mime: str,
    extension: str,
) -> None:
    download = formats.render_download(leaf, rsa_hierarchy.chain, fmt)
    by_letter = {
        "L": leaf,
        "I": rsa_hierarchy.issuing.certificate,
        "R": rsa_hierarchy.root.certificate,
    }
    loaded = formats.load_certificates(download.content)
    expected = [by_letter[c] for c in order]
    if fmt in (F.BASE64, F.BIN):
        # PKCS#7 holds certificates in a DER SET OF: sorted by encoding, order not kept.
        assert sorted(loaded, key=_der) == sorted(expected, key=_der)
    else:
        assert loaded == expected
    assert (download.mime_type, download.extension) == (mime, extension)
    if fmt is F.BASE64:
        assert download.content.startswith(b"-----BEGIN PKCS7-----")
    if fmt in (F.BIN, F.CER):
        assert download.content.startswith(b"\x30")


def test_openssl_reads_pkcs7_and_der(
    rsa_hierarchy: Hierarchy, leaf: x509.Certificate, openssl: Openssl, tmp_path: Path
) -> None:
    p7b = tmp_path / "chain.p7b"
    p7b.write_bytes(formats.render_download(leaf, rsa_hierarchy.chain, F.BIN).content)
    printed = openssl("pkcs7", "-inform", "DER", "-in", str(p7b), "-print_certs", "-noout")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.count("subject=") == 3
    cer = tmp_path / "leaf.cer"
    cer.write_bytes(formats.render_download(leaf, rsa_hierarchy.chain, F.CER).content)
    shown = openssl("x509", "-inform", "DER", "-in", str(cer), "-noout", "-subject")
    assert shown.stdout.strip() == "subject=CN = files.certwright.test"


def test_chain_edge_cases(rsa_hierarchy: Hierarchy, leaf: x509.Certificate) -> None:
    with pytest.raises(FormatError, match="has no issuer certificates to download"):
        formats.render_download(leaf, [], F.X509IO)
    issuing_only = [rsa_hierarchy.issuing.certificate]
    assert formats.intermediates(issuing_only) == issuing_only
    assert formats.intermediates(rsa_hierarchy.chain) == issuing_only
    root = rsa_hierarchy.root.certificate
    assert formats.load_certificates(formats.render_download(root, [], F.PEMIA).content) == [root]


def test_parse_download_format() -> None:
    assert formats.parse_download_format("x509co") is F.X509CO
    assert formats.parse_download_format(" X509IOR ") is F.X509IOR
    assert formats.parse_download_format("pemia") is F.PEMIA
    with pytest.raises(FormatError, match="unknown download format 'p12'; expected one of x509,"):
        formats.parse_download_format("p12")


def test_pkcs12_export_read_by_openssl(
    rsa_hierarchy: Hierarchy,
    leaf: x509.Certificate,
    key_cache: KeyCache,
    openssl: Openssl,
    tmp_path: Path,
) -> None:
    key = key_cache.get("RSA-2048")
    bundle = formats.export_pkcs12(
        key, leaf, rsa_hierarchy.chain, password=b"s3cret pass", friendly_name="Files server"
    )
    assert (bundle.mime_type, bundle.extension) == ("application/x-pkcs12", "p12")
    path = tmp_path / "bundle.p12"
    path.write_bytes(bundle.content)
    read = openssl("pkcs12", "-in", str(path), "-passin", "pass:s3cret pass", "-nodes", "-info")
    assert read.returncode == 0, read.stderr
    assert read.stdout.count("-----BEGIN CERTIFICATE-----") == 3
    assert "-----BEGIN PRIVATE KEY-----" in read.stdout
    assert "friendlyName: Files server" in read.stdout
    assert "PBES2, PBKDF2, AES-256-CBC" in read.stderr
    assert "PRF hmacWithSHA256" in read.stderr
    assert "MAC: sha256" in read.stderr
    wrong = openssl("pkcs12", "-in", str(path), "-passin", "pass:nope", "-nodes")
    assert wrong.returncode != 0
    loaded = pkcs12.load_pkcs12(bundle.content, b"s3cret pass")
    assert loaded.cert is not None and loaded.cert.certificate == leaf
    assert loaded.key is not None and loaded.key.public_key() == key.public_key()
    assert [c.certificate for c in loaded.additional_certs] == rsa_hierarchy.chain


def test_legacy_pkcs12_is_3des_sha1_and_read_by_openssl(
    rsa_hierarchy: Hierarchy,
    leaf: x509.Certificate,
    key_cache: KeyCache,
    openssl: Openssl,
    tmp_path: Path,
) -> None:
    key = key_cache.get("RSA-2048")
    bundle = formats.export_pkcs12(
        key, leaf, rsa_hierarchy.chain, password=b"old windows", friendly_name="x", legacy=True
    )
    path = tmp_path / "legacy.p12"
    path.write_bytes(bundle.content)
    read = openssl("pkcs12", "-in", str(path), "-passin", "pass:old windows", "-nodes", "-info")
    assert read.returncode == 0, read.stderr
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in read.stderr
    assert "MAC: sha1" in read.stderr
    assert "AES" not in read.stderr
    assert openssl("pkcs12", "-in", str(path), "-passin", "pass:nope", "-nodes").returncode != 0


def test_pkcs12_needs_a_password(leaf: x509.Certificate, key_cache: KeyCache) -> None:
    with pytest.raises(FormatError, match="a PKCS#12 export needs a non-empty password"):
        formats.export_pkcs12(key_cache.get("RSA-2048"), leaf, [], password=b"", friendly_name="x")


def test_load_certificates_from_every_encoding(
    rsa_hierarchy: Hierarchy, leaf: x509.Certificate
) -> None:
    chain = [leaf, *rsa_hierarchy.chain]
    pem = b"text before\n" + b"".join(c.public_bytes(Encoding.PEM) for c in chain)
    assert formats.load_certificates(pem) == chain
    assert formats.load_certificates(leaf.public_bytes(Encoding.DER)) == [leaf]
    for encoding in (Encoding.PEM, Encoding.DER):
        loaded = formats.load_certificates(pkcs7.serialize_certificates(chain, encoding))
        assert sorted(loaded, key=_der) == sorted(chain, key=_der)


def test_load_certificates_refusals(key_cache: KeyCache) -> None:
    cases = [
        (b"", "certificate file is empty"),
        (b"garbage bytes", "not a certificate: neither PEM, DER nor PKCS#7"),
        (b"\x30\x03\x02\x01\x01", "not a certificate: neither PEM, DER nor PKCS#7"),
        (
            keys.private_key_to_pem(key_cache.get("EC-P256")),
            "no certificate in this PEM file (found blocks: PRIVATE KEY)",
        ),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "PEM certificate data could not be decoded",
        ),
        (b"0" * (4 * 1024 * 1024 + 1), "certificate file is larger than 4 MB"),
    ]
    for data, message in cases:
        with pytest.raises(FormatError) as caught:
            formats.load_certificates(data)
        assert str(caught.value).startswith(message), str(caught.value)


def test_fingerprint_matches_openssl(
    leaf: x509.Certificate, openssl: Openssl, tmp_path: Path
) -> None:
    path = tmp_path / "leaf.pem"
    path.write_bytes(formats.certificate_to_pem(leaf))
    shown = openssl("x509", "-in", str(path), "-noout", "-fingerprint", "-sha256").stdout
    expected = shown.strip().split("=", 1)[1].replace(":", "").lower()
    assert formats.fingerprint_sha256(leaf) == expected
    assert len(expected) == 64
