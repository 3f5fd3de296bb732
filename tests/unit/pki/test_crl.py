"""CRLs, judged by cryptography and the openssl command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki import crl, issue, names
from app.pki.errors import ProfileError
from app.pki.profiles import LEAF_PROFILES, CertKind

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache, Openssl, WritePem

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
R = x509.ReasonFlags


def _build(hierarchy: Hierarchy, entries: list[crl.RevokedEntry]) -> x509.CertificateRevocationList:
    return crl.build_crl(
        hierarchy.issuing,
        revoked=entries,
        crl_number=7,
        next_update_in=dt.timedelta(days=7),
        now=max(NOW, hierarchy.issuing.not_before),
    )


def test_crl_contents(hierarchy: Hierarchy) -> None:
    revoked_at = NOW - dt.timedelta(hours=1)
    built = _build(
        hierarchy,
        [
            crl.RevokedEntry(0x1234ABCD, revoked_at, R.key_compromise),
            crl.RevokedEntry(0x42, revoked_at),
            crl.RevokedEntry(0x43, revoked_at, R.superseded),
        ],
    )
    assert built.is_signature_valid(hierarchy.issuing.certificate.public_key())  # type: ignore[arg-type]
    assert built.issuer == hierarchy.issuing.name
    assert built.next_update_utc is not None
    assert built.next_update_utc - built.last_update_utc == dt.timedelta(days=7)
    assert built.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = built.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == hierarchy.issuing.subject_key_identifier
    entry = built.get_revoked_certificate_by_serial_number(0x1234ABCD)
    assert entry is not None
    assert entry.revocation_date_utc == revoked_at
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is R.key_compromise
    unspecified = built.get_revoked_certificate_by_serial_number(0x42)
    assert unspecified is not None
    assert len(unspecified.extensions) == 0  # RFC 5280 §5.3.1: no reasonCode for unspecified


def test_openssl_reads_the_crl(
    hierarchy: Hierarchy, openssl: Openssl, tmp_path: Path, write_pem: WritePem
) -> None:
    built = _build(hierarchy, [crl.RevokedEntry(0x1234ABCD, NOW, R.key_compromise)])
    path = tmp_path / "issuing.crl"
    path.write_bytes(built.public_bytes(Encoding.DER))
    shown = openssl("crl", "-inform", "DER", "-in", str(path), "-noout", "-text")
    assert shown.returncode == 0, shown.stderr
    assert "Serial Number: 1234ABCD" in shown.stdout
    assert "X509v3 CRL Reason Code: \n                Key Compromise" in shown.stdout
    assert "X509v3 CRL Number: \n                7" in shown.stdout
    assert "X509v3 Authority Key Identifier:" in shown.stdout
    chain = write_pem("chain.pem", hierarchy.chain)
    checked = openssl("crl", "-inform", "DER", "-in", str(path), "-noout", "-CAfile", str(chain))
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stderr + checked.stdout


def test_openssl_crl_check_rejects_revoked_leaf(
    hierarchy: Hierarchy, key_cache: KeyCache, openssl: Openssl, write_pem: WritePem, tmp_path: Path
) -> None:
    device_ca = hierarchy.issuing_for(CertKind.DEVICE)

    def leaf() -> x509.Certificate:
        return issue.issue_leaf(
            device_ca,
            public_key=key_cache.get("EC-P256").public_key(),
            subject=names.build_subject(common_name="Device 9"),
            alt_names=names.build_alt_names(emails=["device9@certwright.test"]),
            profile=LEAF_PROFILES[CertKind.DEVICE],
            serial=issue.new_serial(),
            term_days=365,
        )

    good, bad = leaf(), leaf()
    now = issue.utc_now()
    built = crl.build_crl(
        device_ca,
        revoked=[crl.RevokedEntry(bad.serial_number, now, R.cessation_of_operation)],
        crl_number=1,
        next_update_in=dt.timedelta(days=1),
        now=now,
    )
    crl_path = tmp_path / "issuing.crl.pem"
    crl_path.write_bytes(built.public_bytes(Encoding.PEM))
    root = str(write_pem("root.pem", [hierarchy.root.certificate]))
    untrusted = str(write_pem("issuing.pem", [device_ca.certificate]))

    def verify(cert: x509.Certificate) -> str:
        result = openssl(
            "verify", "-crl_check", "-CRLfile", str(crl_path), "-CAfile", root,
            "-untrusted", untrusted, str(write_pem("leaf.pem", [cert])),
        )  # fmt: skip
        return result.stdout + result.stderr

    assert verify(good).strip().endswith(": OK")
    assert "certificate revoked" in verify(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("keyCompromise", R.key_compromise),
        ("key compromise", R.key_compromise),
        ("KEY_COMPROMISE", R.key_compromise),
        ("cACompromise", R.ca_compromise),
        ("affiliationChanged", R.affiliation_changed),
        ("superseded", R.superseded),
        ("cessationOfOperation", R.cessation_of_operation),
        ("certificateHold", R.certificate_hold),
        ("removeFromCRL", R.remove_from_crl),
        ("privilegeWithdrawn", R.privilege_withdrawn),
        ("aACompromise", R.aa_compromise),
        ("unspecified", R.unspecified),
        ("1", R.key_compromise),
        (10, R.aa_compromise),
    ],
)
def test_parse_reason(text: str | int, expected: x509.ReasonFlags) -> None:
    assert crl.parse_reason(text) is expected


def test_reason_vocabulary() -> None:
    assert crl.REASON_NAMES == (
        "unspecified",
        "keyCompromise",
        "cACompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "certificateHold",
        "removeFromCRL",
        "privilegeWithdrawn",
        "aACompromise",
    )
    assert sorted(crl.REASON_CODES.values()) == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]


@pytest.mark.parametrize("text", ["stolen", "7", 11, ""])
def test_parse_reason_refuses_unknown(text: str | int) -> None:
    with pytest.raises(ProfileError, match=r"unknown revocation reason .*; expected one of unspec"):
        crl.parse_reason(text)


def test_crl_refusals(ec_hierarchy: Hierarchy) -> None:
    def build(**overrides: object) -> None:
        arguments: dict[str, object] = {
            "revoked": [],
            "crl_number": 1,
            "next_update_in": dt.timedelta(days=1),
        }
        arguments.update(overrides)
        crl.build_crl(ec_hierarchy.issuing, **arguments)  # type: ignore[arg-type]

    with pytest.raises(ProfileError, match="CRL number must be a non-negative integer"):
        build(crl_number=-1)
    with pytest.raises(ProfileError, match="the CRL update interval must be positive"):
        build(next_update_in=dt.timedelta(0))
    with pytest.raises(ProfileError, match=r"removeFromCRL is only valid in delta CRLs"):
        build(revoked=[crl.RevokedEntry(5, NOW, R.remove_from_crl)])
    with pytest.raises(ProfileError, match="revoked serial 0 is not a valid serial number"):
        build(revoked=[crl.RevokedEntry(0, NOW)])


def test_empty_crl_is_valid(ec_hierarchy: Hierarchy) -> None:
    built = crl.build_crl(
        ec_hierarchy.issuing, revoked=[], crl_number=0, next_update_in=dt.timedelta(hours=12)
    )
    assert len(built) == 0
    assert built.signature_hash_algorithm is not None
    assert built.signature_hash_algorithm.name == "sha256"
