"""CRLs, judged by cryptography and the openssl command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki import crl, issue, names, status_lint
from app.pki.errors import LintError, ProfileError, RevocationPolicyError
from app.pki.profiles import LEAF_PROFILES, CertKind

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache, Openssl, Pkilint, WritePem

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


# -- reasons a CRL may carry, and pkilint as the judge (TLS BR 7.2.2) ------------------------


def test_certificate_hold_crl_is_refused(hierarchy: Hierarchy) -> None:
    # A certificateHold entry made a CRL pkilint rejects (cabf.crl_prohibited_reason_code):
    # it is refused before anything is signed.
    with pytest.raises(RevocationPolicyError, match=r"certificateHold cannot be published"):
        _build(hierarchy, [crl.RevokedEntry(0x55, NOW, R.certificate_hold)])
    with pytest.raises(RevocationPolicyError, match="cACompromise cannot be published for an end"):
        _build(hierarchy, [crl.RevokedEntry(0x56, NOW, R.ca_compromise)])


def test_crls_pass_pkilint(public_hierarchy: Hierarchy, pkilint: Pkilint, tmp_path: Path) -> None:
    hierarchy = public_hierarchy
    revoked_at = NOW - dt.timedelta(hours=1)
    leaves = _build(
        hierarchy,
        [
            crl.RevokedEntry(0x10, revoked_at),
            crl.RevokedEntry(0x11, revoked_at, R.key_compromise),
            crl.RevokedEntry(0x12, revoked_at, R.affiliation_changed),
            crl.RevokedEntry(0x13, revoked_at, R.superseded),
            crl.RevokedEntry(0x14, revoked_at, R.cessation_of_operation),
            crl.RevokedEntry(0x15, revoked_at, R.privilege_withdrawn),
        ],
    )
    issuing_serial = hierarchy.issuing.certificate.serial_number
    authorities = crl.build_crl(
        hierarchy.root,
        revoked=[crl.RevokedEntry(issuing_serial, revoked_at, R.ca_compromise, is_ca=True)],
        crl_number=3,
        next_update_in=dt.timedelta(days=7),
        now=NOW,
    )
    empty = crl.build_crl(
        hierarchy.root, revoked=[], crl_number=4, next_update_in=dt.timedelta(days=7), now=NOW
    )
    runs = []
    for label, built, crl_type in (
        ("leaves", leaves, "CRL"),
        ("authorities", authorities, "ARL"),
        ("empty", empty, "CRL"),
    ):
        path = tmp_path / f"{label}.crl"
        path.write_bytes(built.public_bytes(Encoding.DER))
        runs.append(["lint", "-t", crl_type, "-p", "BR", "-s", "INFO", str(path)])
    results = pkilint("lint_crl", *runs)
    for label, result in zip(("leaves", "authorities", "empty"), results, strict=True):
        assert result.returncode == 0, f"{label}: {result.stdout}"


def test_crl_outside_the_brs_is_refused_by_lint(hierarchy: Hierarchy) -> None:
    # BR 4.9.7: nextUpdate at most ten days after thisUpdate for a CRL of subscriber
    # certificates (pkilint: cabf.crl_invalid_validity_period); a year for CA certificates.
    with pytest.raises(LintError, match=r"CRL refused by lint: cabf.crl_invalid_validity_period"):
        crl.build_crl(
            hierarchy.issuing, revoked=[], crl_number=1, next_update_in=dt.timedelta(days=11)
        )
    crl.build_crl(
        hierarchy.root,
        revoked=[crl.RevokedEntry(0x99, NOW, R.superseded, is_ca=True)],
        crl_number=1,
        next_update_in=dt.timedelta(days=30),
        now=NOW,
    )


def test_lint_sees_what_the_builder_would_refuse(hierarchy: Hierarchy) -> None:
    # A CRL made around build_crl (straight from cryptography) with a certificateHold entry:
    # the linter itself finds it, whatever made the CRL.
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(0x66)
        .revocation_date(NOW)
        .add_extension(x509.CRLReason(R.certificate_hold), critical=False)
        .build()
    )
    raw = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(hierarchy.issuing.name)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .add_extension(hierarchy.issuing.authority_key_identifier, critical=False)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_revoked_certificate(entry)
        .sign(hierarchy.issuing.private_key, hierarchy.issuing.hash_algorithm)
    )
    codes = {finding.code for finding in status_lint.lint_crl(raw)}
    assert codes == {"cabf.crl_prohibited_reason_code"}
    with pytest.raises(LintError, match=r"^CRL refused by lint: cabf.crl_prohibited_reason_code"):
        status_lint.check_crl(raw)


# -- CA certificates on their parent's CRL (RFC 5280 §5.3.1, BR 7.2.2) -----------------------


def test_root_crl_lists_a_revoked_issuing_ca(
    hierarchy: Hierarchy, key_cache: KeyCache, openssl: Openssl, write_pem: WritePem, tmp_path: Path
) -> None:
    issuing = hierarchy.issuing
    revoked_at = issue.utc_now()
    root_crl = crl.build_crl(
        hierarchy.root,
        revoked=[
            crl.RevokedEntry(issuing.certificate.serial_number, revoked_at, R.ca_compromise, True)
        ],
        crl_number=2,
        next_update_in=dt.timedelta(days=7),
    )
    issuing_crl = crl.build_crl(
        issuing, revoked=[], crl_number=1, next_update_in=dt.timedelta(days=7)
    )
    crls = tmp_path / "crls.pem"
    crls.write_bytes(root_crl.public_bytes(Encoding.PEM) + issuing_crl.public_bytes(Encoding.PEM))
    shown = openssl("crl", "-in", str(crls), "-noout", "-text")
    assert "X509v3 CRL Reason Code: \n                CA Compromise" in shown.stdout
    leaf = issue.issue_leaf(
        issuing,
        public_key=key_cache.get("EC-P256").public_key(),
        subject=names.build_subject(common_name="app.certwright.test"),
        alt_names=names.build_alt_names(dns_names=["app.certwright.test"]),
        profile=LEAF_PROFILES[CertKind.SSL],
        serial=issue.new_serial(),
        term_days=30,
    )
    result = openssl(
        "verify", "-crl_check_all", "-CRLfile", str(crls),
        "-CAfile", str(write_pem("root.pem", [hierarchy.root.certificate])),
        "-untrusted", str(write_pem("issuing.pem", [issuing.certificate])),
        str(write_pem("leaf.pem", [leaf])),
    )  # fmt: skip
    assert "certificate revoked" in result.stdout + result.stderr
    assert result.returncode != 0


def test_a_ca_certificate_is_listed_with_its_reason(hierarchy: Hierarchy) -> None:
    # BR 7.2.2: reasonCode MUST be present for a certificate capable of causing issuance.
    with pytest.raises(RevocationPolicyError, match="must be published with its reason"):
        crl.build_crl(
            hierarchy.root,
            revoked=[crl.RevokedEntry(0x77, NOW, R.unspecified, is_ca=True)],
            crl_number=1,
            next_update_in=dt.timedelta(days=7),
            now=NOW,
        )


# -- thisUpdate and CRL numbers keep their order whatever the clock does -----------------------


def test_this_update_never_goes_back(hierarchy: Hierarchy) -> None:
    previous = NOW + dt.timedelta(minutes=5)  # the clock has since stepped back 5 minutes
    built = crl.build_crl(
        hierarchy.issuing,
        revoked=[],
        crl_number=8,
        next_update_in=dt.timedelta(days=7),
        now=NOW,
        previous_this_update=previous,
        previous_crl_number=7,
    )
    assert built.last_update_utc == previous + dt.timedelta(seconds=1)
    assert built.next_update_utc == built.last_update_utc + dt.timedelta(days=7)
    # Two CRLs in the same second still get distinct, increasing thisUpdates.
    assert crl.next_this_update(NOW, NOW) == NOW + dt.timedelta(seconds=1)
    assert crl.next_this_update(NOW, NOW - dt.timedelta(hours=1)) == NOW
    assert crl.next_this_update(NOW, None) == NOW
    with pytest.raises(ProfileError, match=r"CRL number 7 does not follow 7: .*strictly increase"):
        crl.build_crl(
            hierarchy.issuing,
            revoked=[],
            crl_number=7,
            next_update_in=dt.timedelta(days=7),
            previous_crl_number=7,
        )


def test_a_long_crl_is_linted_through_its_representatives(
    public_hierarchy: Hierarchy, pkilint: Pkilint, tmp_path: Path
) -> None:
    # pkilint takes about a millisecond per entry; past FULL_LINT_MAX_ENTRIES the rehearsal
    # holds, per reason, the entries with the extreme serials and dates.
    count = crl.FULL_LINT_MAX_ENTRIES * 3
    reasons = (R.unspecified, R.key_compromise, R.superseded)
    entries = [
        crl.RevokedEntry(1000 + i, NOW - dt.timedelta(minutes=i), reasons[i % 3])
        for i in range(count)
    ]
    picked = crl._representatives([(entry, entry) for entry in entries])  # type: ignore[misc]
    assert len(picked) <= 4 * len(reasons)
    assert {pair[0].serial for pair in picked} >= {1000, 1000 + count - 1}
    built = _build(public_hierarchy, entries)
    assert len(built) == count
    path = tmp_path / "long.crl"
    path.write_bytes(built.public_bytes(Encoding.DER))
    # The whole CRL, judged by pkilint's own command line.
    (result,) = pkilint("lint_crl", ["lint", "-t", "CRL", "-p", "BR", "-s", "INFO", str(path)])
    assert result.returncode == 0, result.stdout
