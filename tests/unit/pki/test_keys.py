"""Key types, generation, policy messages and serialisation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa, x25519

from app.pki import keys
from app.pki.errors import FormatError, KeyPolicyError

if TYPE_CHECKING:
    from conftest import KeyCache


@pytest.fixture(scope="module")
def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def test_key_types_are_the_five_supported() -> None:
    assert keys.KEY_TYPES == ("RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384")


@pytest.mark.parametrize("key_type", ["RSA-2048", "EC-P256", "EC-P384"])
def test_generated_key_describes_as_its_type(key_type: keys.KeyType) -> None:
    key = keys.generate_private_key(key_type)
    assert keys.describe_public_key(key.public_key()) == key_type
    assert keys.check_key_policy(key.public_key()) == key_type
    assert keys.key_type_of(key) == key_type


def test_generate_unknown_type_is_refused() -> None:
    with pytest.raises(KeyPolicyError, match="unknown key type 'RSA-1024'"):
        keys.generate_private_key("RSA-1024")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("RSA-2048", "RSA-2048"),
        ("rsa2048", "RSA-2048"),
        (" rsa_4096 ", "RSA-4096"),
        ("EC-P256", "EC-P256"),
        ("p-256", "EC-P256"),
        ("ECDSA-P384", "EC-P384"),
        ("P384", "EC-P384"),
    ],
)
def test_parse_key_type_accepts_loose_spellings(text: str, expected: str) -> None:
    assert keys.parse_key_type(text) == expected


def test_parse_key_type_refuses_unknown() -> None:
    with pytest.raises(KeyPolicyError, match=r"unknown key type 'DSA-2048'; expected one of"):
        keys.parse_key_type("DSA-2048")


def test_weak_rsa_is_below_minimum(rsa_1024: rsa.RSAPrivateKey) -> None:
    assert keys.describe_public_key(rsa_1024.public_key()) == "RSA-1024"
    with pytest.raises(KeyPolicyError, match=r"^RSA-1024 is below the minimum RSA-2048$"):
        keys.check_key_policy(rsa_1024.public_key())


def test_small_rsa_exponent_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(KeyPolicyError, match="RSA public exponent 3 is not allowed"):
        keys.check_key_policy(key.public_key())


def test_weak_curve_is_below_minimum() -> None:
    key = ec.generate_private_key(ec.SECP224R1())
    with pytest.raises(KeyPolicyError, match=r"^EC-P224 is below the minimum EC-P256$"):
        keys.check_key_policy(key.public_key())


def test_unsupported_curve_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    assert keys.describe_public_key(key.public_key()) == "EC-P521"
    with pytest.raises(KeyPolicyError, match="EC-P521 is not a supported key type"):
        keys.check_key_policy(key.public_key())


def test_other_algorithms_are_described_and_refused() -> None:
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    assert keys.describe_public_key(ed) == "Ed25519"
    assert keys.describe_public_key(x25519.X25519PrivateKey.generate().public_key()) == "X25519"
    with pytest.raises(KeyPolicyError, match="Ed25519 keys are not supported"):
        keys.check_key_policy(ed)
    dsa_key = dsa.generate_private_key(key_size=1024).public_key()
    assert keys.describe_public_key(dsa_key) == "DSA-1024"


def test_allowed_set_is_enforced(key_cache: KeyCache) -> None:
    key = key_cache.get("EC-P384")
    with pytest.raises(
        KeyPolicyError, match=r"^EC-P384 is not allowed here; allowed: RSA-2048, EC-P256$"
    ):
        keys.check_key_policy(key.public_key(), ("RSA-2048", "EC-P256"))


def test_der_round_trip(key_cache: KeyCache) -> None:
    key = key_cache.get("RSA-2048")
    der = keys.private_key_to_der(key)
    assert der.startswith(b"\x30")
    loaded = keys.load_private_key(der)
    assert loaded.public_key() == key.public_key()


def test_encrypted_pem_round_trip(key_cache: KeyCache) -> None:
    key = key_cache.get("EC-P256")
    pem = keys.private_key_to_pem(key, b"secret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert keys.load_private_key(pem, b"secret").public_key() == key.public_key()
    with pytest.raises(FormatError, match="private key could not be read"):
        keys.load_private_key(pem, b"wrong")


def test_plain_pem_and_garbage() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = keys.private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(FormatError, match="private key could not be read"):
        keys.load_private_key(b"not a key")


def test_unsupported_private_key_type_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization

    ed = ed25519.Ed25519PrivateKey.generate()
    der = ed.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(FormatError, match="Ed25519PrivateKey private keys are not supported"):
        keys.load_private_key(der)
