"""Key and signature hygiene of any certificate (ours, discovered or imported): weak sizes,
ROCA and close-prime RSA moduli, SHA-1 and MD5 signatures; no I/O.

The findings say what is wrong and cite the rule; lists of keys (Debian's weak keys of the
2008 OpenSSL RNG bug, keys reported compromised) are looked up by the services through
weak_keys.spki_sha256(), and keys shared by several certificates are found across the
inventory, not here.
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from app.pki import weak_keys
from app.pki.bundles import Finding

# CA/B Forum TLS BR §6.1.5: RSA moduli of at least 2048 bits; ECDSA on P-256, P-384 or
# P-521 only. NIST SP 800-131A Rev. 2 disallows the rest for signatures since 2014.
MIN_RSA_BITS: Final = 2048
MIN_EC_BITS: Final = 256
# BR §7.1.3.2: SHA-1 is no longer allowed for subscriber certificates (since 2016), MD5
# never was (RFC 6151; the 2008 rogue-CA attack).
WEAK_HASHES: Final = frozenset({"md5", "sha1"})


def key_findings(cert: x509.Certificate) -> list[Finding]:
    """What is weak about the certificate's key and signature (empty when nothing is)."""
    findings: list[Finding] = []
    try:
        key = cert.public_key()
    except (ValueError, TypeError, NotImplementedError) as exc:
        return [Finding("key_unreadable", "error", f"The public key cannot be read ({exc}).")]
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            findings.append(
                Finding(
                    "weak_key_size",
                    "error",
                    f"An RSA-{key.key_size} key: below {MIN_RSA_BITS} bits it can be "
                    "factored (CA/B Forum BR §6.1.5; NIST SP 800-131A).",
                )
            )
        modulus = key.public_numbers().n
        if weak_keys.has_roca_fingerprint(modulus):
            findings.append(
                Finding(
                    "roca",
                    "error",
                    "The RSA key has the ROCA fingerprint (CVE-2017-15361, Infineon RSALib): "
                    "its private key can be computed from the public key. Replace it.",
                )
            )
        elif weak_keys.has_close_primes(modulus):
            findings.append(
                Finding(
                    "close_primes",
                    "error",
                    "The RSA key's primes are so close that Fermat's method factors it "
                    "(CA/B Forum BR §6.1.1.3(5.3)). Replace it.",
                )
            )
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        findings.append(
            Finding(
                "weak_key_size",
                "error",
                f"An EC key on {key.curve.name} ({key.curve.key_size} bits): below P-256 "
                "(CA/B Forum BR §6.1.5).",
            )
        )
    elif isinstance(key, dsa.DSAPublicKey):
        findings.append(
            Finding(
                "weak_key_size",
                "error",
                f"A DSA-{key.key_size} key: DSA is no longer accepted (CA/B Forum BR §6.1.5).",
            )
        )
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # an algorithm cryptography does not know: nothing to say here
        algorithm = None
    if algorithm is not None and algorithm.name in WEAK_HASHES:
        shown = {"md5": "MD5", "sha1": "SHA-1"}[algorithm.name]
        findings.append(
            Finding(
                "weak_signature",
                "error",
                f"Signed with {shown}: collisions are practical, so the signature proves "
                "little (CA/B Forum BR §7.1.3.2; RFC 6151).",
            )
        )
    return findings


def spki_of(cert: x509.Certificate) -> str:
    """The key's identity (SHA-256 of its SubjectPublicKeyInfo), or "" when unreadable."""
    try:
        return weak_keys.spki_sha256(cert.public_key())
    except (ValueError, TypeError, NotImplementedError):
        return ""
