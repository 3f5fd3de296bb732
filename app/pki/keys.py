"""Key types, key generation, key policy and private-key (de)serialisation; no I/O.

Key types are the strings Certwright stores and shows: "RSA-2048", "RSA-3072", "RSA-4096",
"EC-P256", "EC-P384". The minimums follow the CA/Browser Forum TLS Baseline Requirements
§6.1.5 (RSA modulus >= 2048 bits, ECDSA on P-256/P-384/P-521) and §6.1.6 (RSA exponent);
known-weak keys are refused per §6.1.1.3 (weak_keys.py).
"""

from __future__ import annotations

from collections.abc import Collection, Container
from typing import Final, Literal, get_args

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from app.pki import algorithms
from app.pki.errors import FormatError, KeyPolicyError
from app.pki.weak_keys import debian_fingerprint, spki_sha256, weak_key_reason

KeyType = Literal["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384"]
KEY_TYPES: Final[tuple[KeyType, ...]] = get_args(KeyType)

# Keys Certwright generates, holds for CAs and accepts in requests.
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MIN_RSA_BITS: Final = 2048
# BR §6.1.6 requires an odd exponent >= 3 and recommends >= 2^16 + 1; we enforce the latter.
MIN_RSA_EXPONENT: Final = 65537

_RSA_BITS: Final[dict[KeyType, int]] = {"RSA-2048": 2048, "RSA-3072": 3072, "RSA-4096": 4096}
_EC_CURVES: Final[dict[KeyType, type[ec.EllipticCurve]]] = {
    "EC-P256": ec.SECP256R1,
    "EC-P384": ec.SECP384R1,
}
_WEAK_CURVES: Final = frozenset({"EC-P192", "EC-P224"})


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """Generate a fresh private key of ``key_type`` (RSA with exponent 65537)."""
    if key_type in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])
    if key_type in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[key_type]())
    raise KeyPolicyError(f"unknown key type {key_type!r}; expected one of {_joined(KEY_TYPES)}")


def parse_key_type(value: str) -> KeyType:
    """Read a key type written loosely ("rsa2048", "EC-P256", "p-384") as a KeyType.

    Raises:
        KeyPolicyError: the text names no supported key type.
    """
    folded = value.strip().upper().replace("_", "-").replace(" ", "")
    folded = folded.replace("ECDSA", "EC")
    for key_type in KEY_TYPES:
        if folded in {key_type, key_type.replace("-", ""), key_type.replace("EC-", "")}:
            return key_type
    if folded in {"P-256", "EC-P-256"}:
        return "EC-P256"
    if folded in {"P-384", "EC-P-384"}:
        return "EC-P384"
    raise KeyPolicyError(f"unknown key type {value!r}; expected one of {_joined(KEY_TYPES)}")


def describe_public_key(public_key: PublicKeyTypes) -> str:
    """Name any public key the way lists show it: "RSA-1024", "EC-P521", "Ed25519", "DSA-2048"
    (the vocabulary of app.pki.algorithms)."""
    return algorithms.key_type(public_key)


def check_key_policy(
    public_key: PublicKeyTypes,
    allowed: Collection[KeyType] = KEY_TYPES,
    *,
    blocked_spki_sha256: Container[str] = frozenset(),
    debian_weak: Container[str] = frozenset(),
) -> KeyType:
    """Return the key's KeyType if it meets the minimums, is not a known-weak key (ROCA,
    close primes: BR §6.1.1.3(5)), is not blocked and is in ``allowed``.

    ``blocked_spki_sha256``: weak_keys.spki_sha256() values of keys reported compromised
    (BR §6.1.1.3(4)) or on a list of weak keys. ``debian_weak``: fingerprints of Debian
    weak keys (weak_keys.debian_fingerprint(), BR §6.1.1.3(5.1)).

    Raises:
        KeyPolicyError: weak, blocked, unsupported or not-allowed key, e.g.
            "RSA-1024 is below the minimum RSA-2048".
    """
    label = describe_public_key(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise KeyPolicyError(f"{label} is below the minimum RSA-{MIN_RSA_BITS}")
        exponent = public_key.public_numbers().e
        if exponent < MIN_RSA_EXPONENT or exponent % 2 == 0:
            raise KeyPolicyError(
                f"RSA public exponent {exponent} is not allowed; "
                f"it must be odd and at least {MIN_RSA_EXPONENT}"
            )
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if label in _WEAK_CURVES:
            raise KeyPolicyError(f"{label} is below the minimum EC-P256")
    else:
        raise KeyPolicyError(f"{label} keys are not supported; use one of {_joined(KEY_TYPES)}")
    weakness = weak_key_reason(public_key)
    if weakness is not None:
        raise KeyPolicyError(weakness)
    if blocked_spki_sha256:
        fingerprint = spki_sha256(public_key)
        if fingerprint in blocked_spki_sha256:
            raise KeyPolicyError(
                f"the key is on the list of compromised or weak keys (SPKI SHA-256 "
                f"{fingerprint}) and cannot be certified (CA/B Forum BR 6.1.1.3); "
                "generate a new key"
            )
    if (
        debian_weak
        and isinstance(public_key, rsa.RSAPublicKey)
        and debian_fingerprint(public_key.public_numbers().n) in debian_weak
    ):
        raise KeyPolicyError(
            "the key is a Debian weak key (CVE-2008-0166: made by Debian's OpenSSL of "
            "2006-2008, its private key is published) and cannot be certified (CA/B "
            "Forum BR 6.1.1.3); generate a new key"
        )
    key_type = next((kt for kt in KEY_TYPES if kt == label), None)
    if key_type is None:
        raise KeyPolicyError(
            f"{label} is not a supported key type; use one of {_joined(KEY_TYPES)}"
        )
    if key_type not in allowed:
        raise KeyPolicyError(f"{key_type} is not allowed here; allowed: {_joined(allowed)}")
    return key_type


def key_type_of(private_key: PrivateKey) -> KeyType:
    """The KeyType of a private key we hold (a CA key or a server-generated key)."""
    return check_key_policy(private_key.public_key())


def private_key_to_der(private_key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER, the plaintext that keystore.seal() encrypts at rest."""
    return private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_to_pem(private_key: PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM; encrypted with the best available scheme when ``password`` is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """Load an RSA or EC private key from PEM or DER (PKCS#8, PKCS#1 or SEC 1).

    Raises:
        FormatError: not a key, wrong password, or a key type we do not hold.
    """
    stripped = data.lstrip()
    try:
        if stripped.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(stripped, password=password)
        else:
            key = serialization.load_der_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise FormatError(f"private key could not be read: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise FormatError(f"{type(key).__name__} private keys are not supported; use RSA or EC")
    return key


def _joined(values: Collection[str]) -> str:
    return ", ".join(values)
