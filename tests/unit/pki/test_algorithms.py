"""The one vocabulary for key and signature algorithms (app/pki/algorithms.py), on real keys
and certificates signed every way we meet them; older spellings read into it."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from app.pki import algorithms, info, keys


def self_signed(key, algorithm, **sign_options) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vocabulary.test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, algorithm, **sign_options)
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P384_KEY = ec.generate_private_key(ec.SECP384R1())


@pytest.mark.parametrize(
    ("key", "family", "bits", "name"),
    [
        (RSA_KEY, "RSA", 2048, "RSA-2048"),
        (ec.generate_private_key(ec.SECP256R1()), "EC", 256, "EC-P256"),
        (P384_KEY, "EC", 384, "EC-P384"),
        (ec.generate_private_key(ec.SECP521R1()), "EC", 521, "EC-P521"),
        (ec.generate_private_key(ec.BrainpoolP256R1()), "EC", 256, "EC-brainpoolP256r1"),
        (dsa.generate_private_key(key_size=1024), "DSA", 1024, "DSA-1024"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519", 256, "Ed25519"),
        (ed448.Ed448PrivateKey.generate(), "Ed448", 456, "Ed448"),
    ],
)
def test_keys_are_named_by_family_size_and_type(key, family, bits, name):
    public = key.public_key()
    assert algorithms.key_family(public) == family
    assert algorithms.key_bits(public) == bits
    assert algorithms.key_type(public) == name
    assert keys.describe_public_key(public) == name  # what CSRs and key policy say
    if not name.startswith("EC-brainpool"):
        assert algorithms.key_type_of(family, bits) == name  # from the stored columns


def test_profile_key_types_are_in_the_vocabulary():
    for key_type in keys.KEY_TYPES:
        assert algorithms.key_type(keys.generate_private_key(key_type).public_key()) == key_type


@pytest.mark.parametrize(
    ("key", "algorithm", "options", "name"),
    [
        (RSA_KEY, hashes.SHA256(), {}, "SHA256-RSA"),
        (RSA_KEY, hashes.SHA512(), {}, "SHA512-RSA"),
        (
            RSA_KEY,
            hashes.SHA256(),
            {"rsa_padding": padding.PSS(padding.MGF1(hashes.SHA256()), 32)},
            "SHA256-RSAPSS",
        ),
        (P384_KEY, hashes.SHA384(), {}, "ECDSA-SHA384"),
        (P384_KEY, hashes.SHA256(), {}, "ECDSA-SHA256"),
        (dsa.generate_private_key(key_size=2048), hashes.SHA256(), {}, "DSA-SHA256"),
        (ed25519.Ed25519PrivateKey.generate(), None, {}, "Ed25519"),
        (ed448.Ed448PrivateKey.generate(), None, {}, "Ed448"),
    ],
)
def test_signatures_are_named_as_go_names_them(key, algorithm, options, name):
    cert = self_signed(key, algorithm, **options)
    assert algorithms.signature_name(cert) == name
    assert info.describe_certificate(cert).signature_algorithm == name


@pytest.mark.parametrize(
    ("family", "hash_name", "name"),
    [
        ("EC", "SHA-256", "ECDSA-SHA256"),
        ("RSA", "SHA-384", "SHA384-RSA"),
        ("EC", "SHA-512", "ECDSA-SHA512"),
    ],
)
def test_what_our_cas_sign_with_has_the_same_names(family, hash_name, name):
    assert algorithms.signature_name_of(family, hash_name) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("ECDSA-256", "EC-P256"),
        ("EC 256", "EC-P256"),
        ("ecdsa p-256", "EC-P256"),
        ("EC-P384", "EC-P384"),
        ("secp521r1", "EC-P521"),
        ("prime256v1", "EC-P256"),
        ("rsa2048", "RSA-2048"),
        ("RSA_4096", "RSA-4096"),
        ("ECDSA", "EC"),
        ("rsa", "RSA"),
        ("ed25519", "Ed25519"),
        ("DSA-1024", "DSA-1024"),
        ("hello", None),
        ("Ed25519-256", None),
    ],
)
def test_loose_key_spellings_are_read_into_the_vocabulary(text, name):
    assert algorithms.canonical_key_type(text) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("ecdsa-with-SHA256", "ECDSA-SHA256"),  # what discovery stored (OpenSSL)
        ("SHA-256 with ECDSA", "ECDSA-SHA256"),  # what issuance stored
        ("sha256WithRSAEncryption", "SHA256-RSA"),
        ("SHA-384 with RSA", "SHA384-RSA"),
        ("sha1WithRSAEncryption", "SHA1-RSA"),
        ("dsa_with_SHA256", "DSA-SHA256"),
        ("ED25519", "Ed25519"),
        ("rsassaPss", "RSAPSS"),
        ("ECDSA-SHA384", "ECDSA-SHA384"),
        ("SHA512-RSAPSS", "SHA512-RSAPSS"),
        ("1.2.3.4", None),
    ],
)
def test_older_signature_names_are_read_into_the_vocabulary(text, name):
    assert algorithms.canonical_signature(text) == name
