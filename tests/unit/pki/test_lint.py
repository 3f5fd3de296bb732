"""pkilint wrapper, allow-list and lint-before-sign."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from app.pki import issue, lint, names
from app.pki.errors import LintError
from app.pki.profiles import LEAF_PROFILES, CaPurpose, CertKind, max_tls_validity_days

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache


def _ssl_builder(
    hierarchy: Hierarchy, key_cache: KeyCache, *, term_days: int = 90, **subject: str
) -> x509.CertificateBuilder:
    return issue.build_leaf(
        hierarchy.issuing,
        public_key=key_cache.get("EC-P256").public_key(),
        subject=names.build_subject(**(subject or {"common_name": "app.corp.internal"})),
        alt_names=names.build_alt_names(dns_names=["app.corp.internal"], ip_addresses=["10.1.2.3"]),
        profile=LEAF_PROFILES[CertKind.SSL],
        serial=issue.new_serial(),
        term_days=term_days,
    )


def _codes(findings: tuple[lint.LintFinding, ...]) -> set[str]:
    return {finding.code for finding in findings}


def test_every_allow_list_entry_has_a_reason() -> None:
    assert lint.LINT_ALLOW_LIST
    for code, reason in lint.LINT_ALLOW_LIST.items():
        assert code.startswith(("cabf.", "pkix."))
        assert len(reason) > 20


def test_conforming_private_ssl_certificate_passes_with_allowed_findings(
    hierarchy: Hierarchy, key_cache: KeyCache
) -> None:
    cert = issue.sign_linted(_ssl_builder(hierarchy, key_cache), hierarchy.issuing, CertKind.SSL)
    findings = lint.lint_certificate(cert, CertKind.SSL)
    assert lint.refused_findings(findings) == ()
    # The private-CA findings we expect, and accept, on an internal-name certificate.
    assert {
        "cabf.internal_domain_name",
        "cabf.internal_ip_address",
        "cabf.serverauth.subscriber.certificate_policies_extension_absent",
        "cabf.serverauth.dv.common_name_attribute_present",
    } <= _codes(findings)
    assert lint.check_certificate(cert, CertKind.SSL) == findings


def test_ov_subject_is_linted_as_ov(ec_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    builder = _ssl_builder(
        ec_hierarchy,
        key_cache,
        common_name="app.corp.internal",
        organization="Acme",
        locality="Austin",
        state="Texas",
        country="US",
    )
    cert = issue.sign_linted(builder, ec_hierarchy.issuing, CertKind.SSL)
    assert lint.lint_target(cert, CertKind.SSL) is lint.LintTarget.SERVERAUTH_OV
    assert "cabf.serverauth.ov.common_name_attribute_present" in _codes(
        lint.lint_certificate(cert, CertKind.SSL)
    )


def test_full_length_term_is_accepted(ec_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    # Exactly the CA/B Forum ceiling (inclusive end second) must lint clean.
    ceiling = max_tls_validity_days(issue.utc_now())
    builder = _ssl_builder(ec_hierarchy, key_cache, term_days=ceiling)
    issue.sign_linted(builder, ec_hierarchy.issuing, CertKind.SSL)
    too_long = _ssl_builder(ec_hierarchy, key_cache, term_days=ceiling + 1)
    with pytest.raises(LintError) as caught:
        issue.sign_linted(too_long, ec_hierarchy.issuing, CertKind.SSL)
    assert _codes(caught.value.findings) == {
        f"cabf.serverauth.certificate_validity_period_exceeds_{ceiling}_days"
    }


def test_five_year_ssl_certificate_is_refused(hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    builder = _ssl_builder(hierarchy, key_cache, term_days=5 * 365)
    with pytest.raises(LintError) as caught:
        issue.sign_linted(builder, hierarchy.issuing, CertKind.SSL)
    codes = _codes(caught.value.findings)
    assert any(
        code.startswith("cabf.serverauth.certificate_validity_period_exceeds_") for code in codes
    )
    assert str(caught.value).startswith("certificate refused by lint: cabf.serverauth.")


def test_missing_san_is_refused(ec_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    # build_leaf always adds a SAN, so assemble this bad certificate by hand.
    issuer = ec_hierarchy.issuing
    now = issue.utc_now()
    key = key_cache.get("EC-P256").public_key()
    builder = (
        x509.CertificateBuilder()
        .serial_number(issue.new_serial())
        .issuer_name(issuer.name)
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.example.com")]))
        .public_key(key)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(LEAF_PROFILES[CertKind.SSL].key_usage(key), critical=True)
        .add_extension(LEAF_PROFILES[CertKind.SSL].extended_key_usage, critical=False)
        .add_extension(issuer.authority_key_identifier, critical=False)
    )
    with pytest.raises(LintError) as caught:
        issue.sign_linted(builder, issuer, CertKind.SSL)
    assert "cabf.serverauth.subscriber.subject_altname_extension_absent" in _codes(
        caught.value.findings
    )


def test_organizational_unit_is_refused_for_ssl(
    ec_hierarchy: Hierarchy, key_cache: KeyCache
) -> None:
    builder = _ssl_builder(
        ec_hierarchy,
        key_cache,
        common_name="app.corp.internal",
        organization="Acme",
        organizational_unit="IT",
        state="Texas",
        country="US",
    )
    with pytest.raises(LintError) as caught:
        issue.sign_linted(builder, ec_hierarchy.issuing, CertKind.SSL)
    assert _codes(caught.value.findings) == {
        "cabf.serverauth.ov.organizational_unit_name_attribute_present"
    }


def test_other_kinds_use_rfc5280_validators(rsa_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    # Client certificates are judged by the S/MIME validators (tests/unit/pki/test_smime.py).
    for kind in (CertKind.CODE_SIGNING, CertKind.DEVICE):
        cert = issue.issue_leaf(
            rsa_hierarchy.issuing_for(kind),
            public_key=key_cache.get("RSA-2048").public_key(),
            subject=names.build_subject(common_name="Jane Doe", organization="Acme"),
            alt_names=names.build_alt_names(emails=["jane@example.com"]),
            profile=LEAF_PROFILES[kind],
            serial=issue.new_serial(),
            term_days=3 * 365,
        )
        assert lint.lint_target(cert, kind) is lint.LintTarget.RFC5280
        assert lint.refused_findings(lint.lint_certificate(cert, kind)) == ()


def test_ca_certificates_are_linted_to_their_br_ca_profile(hierarchy: Hierarchy) -> None:
    root = hierarchy.root.certificate
    assert lint.lint_target(root, None) is lint.LintTarget.SERVERAUTH_ROOT_CA
    expected = {
        CaPurpose.TLS: lint.LintTarget.SERVERAUTH_TLS_CA,
        CaPurpose.SMIME: lint.LintTarget.SERVERAUTH_NON_TLS_CA,
        CaPurpose.CODE_SIGNING: lint.LintTarget.SERVERAUTH_NON_TLS_CA,
        CaPurpose.DEVICE: lint.LintTarget.SERVERAUTH_NON_TLS_CA,
    }
    for purpose, issuer in hierarchy.by_purpose.items():
        assert lint.lint_target(issuer.certificate, None) is expected[purpose]
    for ca in (root, *(issuer.certificate for issuer in hierarchy.by_purpose.values())):
        findings = lint.lint_certificate(ca, None)
        assert lint.refused_findings(findings) == ()
        # Only the informational SKI method, the .test host of the CRL/AIA URLs.
        assert _codes(findings) <= {
            "pkix.subject_key_identifier_method_1_identified",
            "cabf.internal_domain_name",
        }


def test_undecodable_input_is_a_fatal_finding() -> None:
    # Not reachable with a certificate cryptography produced; pkilint's decoder is stricter.
    (finding,) = lint._linter(lint.LintTarget.RFC5280).lint(b"\x30\x03\x02\x01\x01")
    assert finding.code == "certwright.lint.decode_failed"
    assert finding.severity == "FATAL"
    assert finding.message is not None
    assert finding.message.startswith("pkilint could not decode it")


def test_lint_error_carries_findings() -> None:
    finding = lint.LintFinding("x.y", "ERROR", "broken", "certificate")
    error = LintError([finding])
    assert error.findings == (finding,)
    assert str(error) == "certificate refused by lint: x.y (ERROR): broken"
    assert str(lint.LintFinding("a.b", "WARNING")) == "a.b (WARNING)"
    assert not finding.is_allowed


def test_signed_certificate_is_the_linted_one(ec_hierarchy: Hierarchy, key_cache: KeyCache) -> None:
    builder = _ssl_builder(ec_hierarchy, key_cache)
    cert = issue.sign_linted(builder, ec_hierarchy.issuing, CertKind.SSL)
    cert.verify_directly_issued_by(ec_hierarchy.issuing.certificate)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ec_hierarchy.issuing.subject_key_identifier
    # Same builder signed again (CA key) has the same TBS: nothing random outside the signature.
    again = issue.sign(builder, ec_hierarchy.issuing)
    assert again.tbs_certificate_bytes == cert.tbs_certificate_bytes
