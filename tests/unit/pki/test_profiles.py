"""Leaf and CA profiles, hashes, lifetimes and the CA/B Forum TLS validity ceiling."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU

from app.pki import profiles
from app.pki.errors import ProfileError
from app.pki.profiles import CertKind, LeafProfile

if TYPE_CHECKING:
    from conftest import KeyCache

UTC = dt.UTC


@pytest.mark.parametrize(
    ("at", "days"),
    [
        (dt.datetime(2025, 1, 1, tzinfo=UTC), 398),
        (dt.datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC), 398),
        (dt.datetime(2026, 3, 15, tzinfo=UTC), 200),
        (dt.datetime(2027, 3, 14, 23, 59, 59, tzinfo=UTC), 200),
        (dt.datetime(2027, 3, 15, tzinfo=UTC), 100),
        (dt.datetime(2029, 3, 14, 23, 59, 59, tzinfo=UTC), 100),
        (dt.datetime(2029, 3, 15, tzinfo=UTC), 47),
        (dt.datetime(2040, 1, 1, tzinfo=UTC), 47),
        (dt.datetime(2026, 3, 15), 200),  # naive is UTC
        # 2026-03-14 20:00 in New York is already 2026-03-15 00:00 UTC.
        (dt.datetime(2026, 3, 14, 20, tzinfo=dt.timezone(dt.timedelta(hours=-4))), 200),
    ],
)
def test_max_tls_validity_days(at: dt.datetime, days: int) -> None:
    assert profiles.max_tls_validity_days(at) == days


def test_check_term() -> None:
    at = dt.datetime(2026, 11, 27, tzinfo=UTC)
    profiles.check_term(CertKind.SSL, 200, at)
    profiles.check_term(CertKind.CLIENT, 3 * 365, at)
    with pytest.raises(
        ProfileError,
        match=r"^SSL term of 201 days exceeds the CA/Browser Forum maximum of 200 days "
        r"for certificates issued on 2026-11-27$",
    ):
        profiles.check_term(CertKind.SSL, 201, at)
    with pytest.raises(ProfileError, match="certificate term must be at least 1 day, not 0"):
        profiles.check_term(CertKind.DEVICE, 0, at)


def test_extended_key_usage_by_kind() -> None:
    def ekus(profile: LeafProfile) -> list[x509.ObjectIdentifier]:
        return list(profile.extended_key_usage)

    assert ekus(LeafProfile(CertKind.SSL)) == [EKU.SERVER_AUTH]
    assert ekus(LeafProfile(CertKind.SSL, include_client_auth=True)) == [
        EKU.SERVER_AUTH,
        EKU.CLIENT_AUTH,
    ]
    assert ekus(LeafProfile(CertKind.CLIENT)) == [EKU.CLIENT_AUTH, EKU.EMAIL_PROTECTION]
    assert ekus(LeafProfile(CertKind.CODE_SIGNING)) == [EKU.CODE_SIGNING]
    assert ekus(LeafProfile(CertKind.DEVICE)) == [EKU.CLIENT_AUTH]
    with pytest.raises(ProfileError, match="include_client_auth applies to SSL certificates only"):
        LeafProfile(CertKind.DEVICE, include_client_auth=True)


def _usages(ku: x509.KeyUsage) -> set[str]:
    names = ["digital_signature", "key_encipherment", "key_agreement", "key_cert_sign"]
    return {name for name in names if getattr(ku, name)}


def test_key_usage_by_key_type(key_cache: KeyCache) -> None:
    rsa_key = key_cache.get("RSA-2048").public_key()
    ec_key = key_cache.get("EC-P256").public_key()
    ssl = LeafProfile(CertKind.SSL)
    assert _usages(ssl.key_usage(rsa_key)) == {"digital_signature", "key_encipherment"}
    assert _usages(ssl.key_usage(ec_key)) == {"digital_signature"}
    agree = LeafProfile(CertKind.SSL, ec_key_agreement=True)
    assert _usages(agree.key_usage(ec_key)) == {"digital_signature", "key_agreement"}
    assert _usages(agree.key_usage(rsa_key)) == {"digital_signature", "key_encipherment"}
    client = LeafProfile(CertKind.CLIENT)
    assert _usages(client.key_usage(rsa_key)) == {"digital_signature", "key_encipherment"}
    code = LeafProfile(CertKind.CODE_SIGNING, ec_key_agreement=True)
    assert _usages(code.key_usage(rsa_key)) == {"digital_signature"}
    assert _usages(code.key_usage(ec_key)) == {"digital_signature"}
    assert _usages(LeafProfile(CertKind.DEVICE).key_usage(rsa_key)) == {"digital_signature"}


def test_ca_profiles() -> None:
    root, issuing = profiles.ROOT_CA_PROFILE, profiles.ISSUING_CA_PROFILE
    assert root.basic_constraints == x509.BasicConstraints(ca=True, path_length=None)
    assert issuing.basic_constraints == x509.BasicConstraints(ca=True, path_length=0)
    ku = issuing.key_usage
    assert ku.key_cert_sign and ku.crl_sign and ku.digital_signature
    assert not (ku.key_encipherment or ku.key_agreement or ku.content_commitment)


@pytest.mark.parametrize(
    ("key_type", "is_root", "years"),
    [
        ("RSA-2048", True, 20),
        ("EC-P384", True, 20),
        ("RSA-2048", False, 5),
        ("RSA-3072", False, 10),
        ("RSA-4096", False, 10),
        ("EC-P256", False, 10),
        ("EC-P384", False, 10),
    ],
)
def test_default_ca_lifetimes(key_type: profiles.KeyType, is_root: bool, years: int) -> None:
    assert profiles.default_ca_lifetime_years(key_type, is_root=is_root) == years


def test_signature_hashes() -> None:
    assert isinstance(profiles.hash_algorithm(profiles.SignatureHash.SHA256), hashes.SHA256)
    assert isinstance(profiles.hash_algorithm(profiles.SignatureHash.SHA512), hashes.SHA512)
    assert profiles.default_signature_hash("EC-P384") is profiles.SignatureHash.SHA384
    assert profiles.default_signature_hash("RSA-4096") is profiles.SignatureHash.SHA256
    assert profiles.SignatureHash.SHA1.is_legacy
    assert not profiles.SignatureHash.SHA256.is_legacy
    with pytest.raises(ProfileError, match="SHA-1 is a legacy signature hash and cannot be used"):
        profiles.hash_algorithm(profiles.SignatureHash.SHA1)


def test_device_server_auth_is_a_device_option() -> None:
    device = LeafProfile(CertKind.DEVICE, include_server_auth=True)
    assert list(device.extended_key_usage) == [EKU.CLIENT_AUTH, EKU.SERVER_AUTH]
    with pytest.raises(
        ProfileError, match="include_server_auth applies to Device certificates only"
    ):
        LeafProfile(CertKind.SSL, include_server_auth=True)


@pytest.mark.parametrize(
    ("key_type", "preferred", "expected"),
    [
        # BR 7.1.3.2.2: the curve fixes the hash, whatever is preferred.
        ("EC-P256", None, "SHA-256"),
        ("EC-P256", "SHA-384", "SHA-256"),
        ("EC-P384", "SHA-256", "SHA-384"),
        ("EC-P384", "SHA-512", "SHA-384"),
        ("EC-P521", None, "SHA-512"),
        # BR 7.1.3.2.1: RSA keeps the chosen hash, SHA-256 by default.
        ("RSA-2048", None, "SHA-256"),
        ("RSA-3072", "SHA-384", "SHA-384"),
        ("RSA-4096", "SHA-512", "SHA-512"),
    ],
)
def test_signature_hash_is_fixed_by_the_signing_key(
    key_type: str, preferred: str | None, expected: str
) -> None:
    chosen = profiles.SignatureHash(preferred) if preferred else None
    assert profiles.signature_hash_for(key_type, chosen) is profiles.SignatureHash(expected)


def test_signature_hash_refusals() -> None:
    with pytest.raises(ProfileError, match="SHA-1 is a legacy signature hash"):
        profiles.signature_hash_for("RSA-2048", profiles.SignatureHash.SHA1)
    with pytest.raises(ProfileError, match="SHA-1 is a legacy signature hash"):
        profiles.signature_hash_for("EC-P256", profiles.SignatureHash.SHA1)
    with pytest.raises(ProfileError, match="Ed25519 keys cannot sign certificates"):
        profiles.signature_hash_for("Ed25519")
    assert (
        profiles.check_signature_hash("RSA-2048", profiles.SignatureHash.SHA512)
        is profiles.SignatureHash.SHA512
    )
    with pytest.raises(
        ProfileError,
        match=r"an EC-P256 key signs with SHA-256 \(CA/B Forum BR 7.1.3.2.2\); "
        "SHA-384 cannot be chosen for it",
    ):
        profiles.check_signature_hash("EC-P256", profiles.SignatureHash.SHA384)
