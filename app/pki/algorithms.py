"""The one vocabulary for key and signature algorithms: what every certificate (issued,
discovered, imported), profile, rule, list, chart and report calls them. Pure.

Keys are named by type, as profiles and requests name them:
  "RSA-2048", "RSA-4096", "EC-P256", "EC-P384", "EC-P521", "Ed25519", "Ed448", "DSA-1024",
  and by family ("RSA", "EC", "DSA", "Ed25519", "Ed448") with a size in bits (an EC key's
  curve size, so EC-P256 is 256; Ed25519 256, Ed448 456). Elliptic curves other than the
  NIST ones keep the curve's name ("EC-brainpoolP256r1").
Signature algorithms take the names Go's crypto/x509 and the tools built on it (cfssl,
certigo, zlint) print: hash then "RSA" for PKCS #1 v1.5 ("SHA256-RSA"), "RSAPSS" for
RSASSA-PSS ("SHA256-RSAPSS", RFC 4055), "ECDSA-" or "DSA-" then the hash ("ECDSA-SHA384",
RFC 5758), "Ed25519" and "Ed448" (RFC 8410). An algorithm outside the list keeps its dotted
OID, so nothing is ever mislabelled.

``canonical_*`` read the spellings found in older data and elsewhere ("ecdsa-with-SHA256",
"SHA-256 with ECDSA", "ECDSA-256", "EC 256", "ECDSA P-256", "rsa2048") into these names.
"""

from __future__ import annotations

import re
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import SignatureAlgorithmOID

UNKNOWN: Final = "unknown"

# NIST curves by their size (FIPS 186-4 D.1.2), the only ones a size alone names.
_NIST_BY_BITS: Final[dict[int, str]] = {
    192: "P192",
    224: "P224",
    256: "P256",
    384: "P384",
    521: "P521",
}
_NIST_BY_CURVE: Final[dict[str, str]] = {
    "secp192r1": "P192",
    "secp224r1": "P224",
    "secp256r1": "P256",
    "secp384r1": "P384",
    "secp521r1": "P521",
}
_ED_BITS: Final[dict[str, int]] = {"Ed25519": 256, "Ed448": 456}


def key_family(public_key: PublicKeyTypes | None) -> str:
    """ "RSA", "EC", "DSA", "Ed25519", "Ed448", "X25519", "X448" or "unknown"."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA"
    for kind, name in (
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
        (x25519.X25519PublicKey, "X25519"),
        (x448.X448PublicKey, "X448"),
    ):
        if isinstance(public_key, kind):
            return name
    return UNKNOWN


def key_bits(public_key: PublicKeyTypes | None) -> int | None:
    """The key's size: RSA/DSA modulus bits, an EC key's curve size, 256/456 for Ed25519/Ed448."""
    if isinstance(public_key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        return int(public_key.key_size)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return int(public_key.curve.key_size)
    return _ED_BITS.get(key_family(public_key))


def key_type(public_key: PublicKeyTypes | None) -> str:
    """The key's type name: "RSA-2048", "EC-P256", "EC-brainpoolP256r1", "Ed25519", ..."""
    family = key_family(public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        return f"EC-{_NIST_BY_CURVE.get(curve, curve)}"
    return key_type_of(family, key_bits(public_key))


def key_type_of(family: str, bits: int | None) -> str:
    """The type name from a family and size as stored: ("EC", 384) -> "EC-P384". An EC size
    that is no NIST curve's gives "EC-<bits>" (the curve is not known from its size)."""
    if family == "EC":
        return f"EC-{_NIST_BY_BITS[bits]}" if bits in _NIST_BY_BITS else f"EC-{bits or '?'}"
    if family in ("RSA", "DSA") and bits:
        return f"{family}-{bits}"
    return family or UNKNOWN


_HASH_NAMES: Final[dict[str, str]] = {
    "md5": "MD5",
    "sha1": "SHA1",
    "sha224": "SHA224",
    "sha256": "SHA256",
    "sha384": "SHA384",
    "sha512": "SHA512",
}
_SIGNATURES: Final[dict[x509.ObjectIdentifier, str]] = {
    SignatureAlgorithmOID.RSA_WITH_MD5: "MD5-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "SHA1-RSA",
    SignatureAlgorithmOID._RSA_WITH_SHA1: "SHA1-RSA",  # the obsolete OIW OID 1.3.14.3.2.29
    SignatureAlgorithmOID.RSA_WITH_SHA224: "SHA224-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "SHA256-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "SHA384-RSA",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "SHA512-RSA",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "ECDSA-SHA1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: "ECDSA-SHA224",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ECDSA-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ECDSA-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ECDSA-SHA512",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "DSA-SHA1",
    SignatureAlgorithmOID.DSA_WITH_SHA224: "DSA-SHA224",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "DSA-SHA256",
    SignatureAlgorithmOID.ED25519: "Ed25519",
    SignatureAlgorithmOID.ED448: "Ed448",
}


def signature_name(cert: x509.Certificate) -> str:
    """The name of the algorithm that signed ``cert`` ("ECDSA-SHA256"); its dotted OID when
    the algorithm is not in the vocabulary. Never raises for a loaded certificate."""
    oid = cert.signature_algorithm_oid
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        try:
            algorithm = cert.signature_hash_algorithm
        except Exception:  # unreadable PSS parameters: the family is still known
            algorithm = None
        hash_part = _HASH_NAMES.get(algorithm.name, "") if algorithm is not None else ""
        return f"{hash_part}-RSAPSS" if hash_part else "RSAPSS"
    return _SIGNATURES.get(oid, oid.dotted_string)


def signature_name_of(key_family_name: str, hash_name: str) -> str:
    """The name for a signer's key family and hash: ("EC", "SHA-384") -> "ECDSA-SHA384",
    ("RSA", "SHA-256") -> "SHA256-RSA" (what the CAs here sign with: PKCS #1 v1.5 or ECDSA)."""
    digest = hash_name.replace("-", "").upper()
    if key_family_name == "RSA":
        return f"{digest}-RSA"
    if key_family_name == "EC":
        return f"ECDSA-{digest}"
    if key_family_name == "DSA":
        return f"DSA-{digest}"
    return key_family_name


# --- reading other spellings -------------------------------------------------------------

_KEY_SPELLING = re.compile(
    r"^(?P<family>RSA|DSA|ECDSA|EC|ED25519|ED448)[-_ ]?(?:P-?|SECP)?(?P<bits>\d+)?(?:R1)?$"
)


def canonical_key_type(text: str) -> str | None:
    """A key type or family written loosely, in the vocabulary: "ECDSA-256", "EC 256",
    "ecdsa p-256", "secp256r1" -> "EC-P256"; "rsa2048" -> "RSA-2048"; "ECDSA" -> "EC";
    "ed25519" -> "Ed25519". None when the text names no key type."""
    folded = text.strip().upper().replace("PRIME256V1", "EC-P256")
    if folded.startswith("SECP") and folded.endswith("R1"):
        folded = "EC-P" + folded[4:-2]
    match = _KEY_SPELLING.match(folded)
    if match is None:
        return None
    family = {"ECDSA": "EC", "ED25519": "Ed25519", "ED448": "Ed448"}.get(
        match["family"], match["family"]
    )
    bits = match["bits"]
    if family in ("Ed25519", "Ed448"):
        return family if bits is None else None
    if bits is None:
        return family
    return key_type_of(family, int(bits))


_SIGNATURE_SPELLINGS: Final[dict[str, str]] = {
    # OpenSSL's long names (what was stored for discovered and imported certificates).
    "md5withrsaencryption": "MD5-RSA",
    "sha1withrsaencryption": "SHA1-RSA",
    "sha224withrsaencryption": "SHA224-RSA",
    "sha256withrsaencryption": "SHA256-RSA",
    "sha384withrsaencryption": "SHA384-RSA",
    "sha512withrsaencryption": "SHA512-RSA",
    "ecdsa-with-sha1": "ECDSA-SHA1",
    "ecdsa-with-sha224": "ECDSA-SHA224",
    "ecdsa-with-sha256": "ECDSA-SHA256",
    "ecdsa-with-sha384": "ECDSA-SHA384",
    "ecdsa-with-sha512": "ECDSA-SHA512",
    "dsa_with_sha1": "DSA-SHA1",
    "dsa_with_sha224": "DSA-SHA224",
    "dsa_with_sha256": "DSA-SHA256",
    "ed25519": "Ed25519",
    "ed448": "Ed448",
    "rsassapss": "RSAPSS",
}
_HASH_WITH_FAMILY = re.compile(r"^(SHA-?(?:1|224|256|384|512)|MD5) WITH (RSA|ECDSA|DSA)$")


def canonical_signature(text: str) -> str | None:
    """A signature algorithm name from older data in the vocabulary: "ecdsa-with-SHA256" and
    "SHA-256 with ECDSA" -> "ECDSA-SHA256", "sha256WithRSAEncryption" -> "SHA256-RSA"; a
    name already in it is returned as is. None when the text is none of these."""
    stripped = text.strip()
    if stripped in _SIGNATURES.values() or re.fullmatch(r"SHA\d+-RSAPSS", stripped):
        return stripped
    known = _SIGNATURE_SPELLINGS.get(stripped.lower())
    if known is not None:
        return known
    match = _HASH_WITH_FAMILY.match(stripped.upper())
    if match is None:
        return None
    family = {"RSA": "RSA", "ECDSA": "EC", "DSA": "DSA"}[match[2]]
    return signature_name_of(family, match[1])
