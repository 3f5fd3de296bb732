"""Known-weak keys: the ROCA fingerprint, close primes, and the SPKI hash for blocklists."""

from __future__ import annotations

import math
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.pki import csr, issue, keys, names, weak_keys
from app.pki.errors import KeyPolicyError
from app.pki.profiles import LEAF_PROFILES, CertKind

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache, Openssl

E = 65537
# The primorial of the primes 2..167: a divisor of the M Infineon's RSALib used at every
# key size (the paper's M for 2048-bit keys is the product of the first 126 primes).
PRIMORIAL = math.prod(p for p in range(2, 168) if all(p % d for d in range(2, math.isqrt(p) + 1)))


def _is_probable_prime(n: int, rounds: int = 24) -> bool:
    if n < 2:
        return False
    for small in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % small == 0:
            return n == small
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _roca_prime(bits: int) -> int:
    """A prime of RSALib's form k*M + (65537^a mod M) (Nemec et al., CCS 2017, §2), at
    least sqrt(2) * 2^(bits-1), so that two of them make a modulus of 2*bits bits."""
    low = math.isqrt(2 ** (2 * bits - 1)) + 1
    while True:
        k = low // PRIMORIAL + 1 + secrets.randbelow(2 ** (bits - PRIMORIAL.bit_length() - 2))
        p = k * PRIMORIAL + pow(E, secrets.randbelow(2**64), PRIMORIAL)
        if p.bit_length() == bits and math.gcd(p - 1, E) == 1 and _is_probable_prime(p):
            return p


def _next_prime(n: int) -> int:
    n |= 1
    while not (math.gcd(n - 1, E) == 1 and _is_probable_prime(n)):
        n += 2
    return n


def _private_key(p: int, q: int) -> rsa.RSAPrivateKey:
    d = pow(E, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(E, p * q),
    )
    return numbers.private_key()


@pytest.fixture(scope="module")
def roca_key() -> rsa.RSAPrivateKey:
    return _private_key(_roca_prime(1024), _roca_prime(1024))


@pytest.fixture(scope="module")
def close_primes_key() -> rsa.RSAPrivateKey:
    p = _next_prime(secrets.randbits(1024) | 3 << 1022)  # top two bits: a 2048-bit modulus
    return _private_key(p, _next_prime(p + 2**20))


def test_roca_key_is_detected(roca_key: rsa.RSAPrivateKey, key_cache: KeyCache) -> None:
    modulus = roca_key.public_key().public_numbers().n
    assert modulus.bit_length() == 2048
    assert weak_keys.has_roca_fingerprint(modulus)
    # Keys from an ordinary generator do not have it.
    for slot in range(4):
        ordinary = key_cache.get("RSA-2048", slot).public_key().public_numbers().n
        assert not weak_keys.has_roca_fingerprint(ordinary)
    # Moving the residue mod 11 out of 65537's subgroup ({1, 10}), the others unchanged,
    # breaks the fingerprint.
    step = PRIMORIAL // 11
    moved = next(
        modulus + j * step for j in range(1, 11) if (modulus + j * step) % 11 not in (1, 10)
    )
    assert not weak_keys.has_roca_fingerprint(moved)


def test_roca_subgroups_follow_the_published_description() -> None:
    # For each prime r of the list, the residues a ROCA modulus may have mod r are the
    # powers of 65537 mod r; their number divides r - 1 (the order of 65537 mod r).
    for r in weak_keys.ROCA_PRIMES:
        powers = {pow(E, k, r) for k in range(r)}
        assert (r - 1) % len(powers) == 0
    assert weak_keys.ROCA_PRIMES[0] == 3 and weak_keys.ROCA_PRIMES[-1] == 167
    assert len(weak_keys.ROCA_PRIMES) == 38
    # Any number of RSALib's form k*M + (65537^a mod M) has the fingerprint.
    for a in (0, 1, 12345, 2**70 + 3):
        assert weak_keys.has_roca_fingerprint(PRIMORIAL * 7 + pow(E, a, PRIMORIAL))


def test_roca_key_is_refused_everywhere(roca_key: rsa.RSAPrivateKey, hierarchy: Hierarchy) -> None:
    with pytest.raises(KeyPolicyError, match=r"ROCA fingerprint \(CVE-2017-15361"):
        keys.check_key_policy(roca_key.public_key())
    request = csr.build_csr(
        roca_key,
        subject=names.build_subject(common_name="smartcard.certwright.test"),
        alt_names=names.build_alt_names(dns_names=["smartcard.certwright.test"]),
    )
    parsed = csr.parse_csr(request.public_bytes(Encoding.PEM))
    with pytest.raises(KeyPolicyError, match="ROCA"):
        keys.check_key_policy(parsed.public_key)
    with pytest.raises(KeyPolicyError, match="ROCA"):
        issue.issue_leaf(
            hierarchy.issuing,
            public_key=roca_key.public_key(),
            subject=names.build_subject(common_name="smartcard.certwright.test"),
            alt_names=names.build_alt_names(dns_names=["smartcard.certwright.test"]),
            profile=LEAF_PROFILES[CertKind.SSL],
            serial=issue.new_serial(),
            term_days=30,
        )


def test_close_primes_are_refused(close_primes_key: rsa.RSAPrivateKey) -> None:
    # BR 6.1.1.3(5.3): Fermat's method factors it in its first rounds.
    modulus = close_primes_key.public_key().public_numbers().n
    assert weak_keys.has_close_primes(modulus)
    with pytest.raises(KeyPolicyError, match="Fermat's method factors it"):
        keys.check_key_policy(close_primes_key.public_key())
    p = _next_prime(secrets.randbits(1024) | 1 << 1023)
    assert not weak_keys.has_close_primes(p * _next_prime(p + 2**600))


def test_spki_sha256_matches_openssl(key_cache: KeyCache, openssl: Openssl, tmp_path: Path) -> None:
    for key_type in ("RSA-2048", "EC-P256"):
        public_key = key_cache.get(key_type).public_key()
        pem = tmp_path / "key.pem"
        pem.write_bytes(public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        der = tmp_path / "spki.der"
        converted = openssl("pkey", "-pubin", "-in", str(pem), "-outform", "DER", "-out", str(der))
        assert converted.returncode == 0, converted.stderr
        digest = openssl("dgst", "-sha256", "-r", str(der))
        assert digest.stdout.split()[0] == weak_keys.spki_sha256(public_key)


def test_blocked_keys_are_refused(key_cache: KeyCache) -> None:
    public_key = key_cache.get("EC-P256").public_key()
    blocked = {weak_keys.spki_sha256(public_key)}
    with pytest.raises(KeyPolicyError, match=r"on the list of compromised or weak keys"):
        keys.check_key_policy(public_key, blocked_spki_sha256=blocked)
    other = key_cache.get("EC-P256", 1).public_key()
    assert keys.check_key_policy(other, blocked_spki_sha256=blocked) == "EC-P256"
