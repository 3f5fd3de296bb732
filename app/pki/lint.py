"""Certificate linting with DigiCert's pkilint, and the reviewed allow-list; no I/O.

SSL certificates are linted against the CA/Browser Forum TLS Baseline Requirements
(pkilint's serverauth validators: OV type when the subject names an organisation, DV
otherwise); Client certificates against the S/MIME Baseline Requirements (pkilint's
lint_cabf_smime_cert validators: Multipurpose generation, mailbox- or individual-validated
by the subject, app/pki/smime.py); CodeSigning and Device certificates against the RFC 5280
validators. CA certificates are linted against the TLS BR CA profiles, as pkilint's
lint_cabf_serverauth_cert would type them: a root as ROOT_CA (BR §7.1.2.1), an issuing CA
with serverAuth as INTERNAL_UNCONSTRAINED_TLS_CA (§7.1.2.6), any other issuing CA as
NON_TLS_CA (§7.1.2.3; pkilint has no S/MIME or code-signing CA validators). Validators are
built once per type (a few hundred milliseconds each) and reused; linting one certificate
takes a few milliseconds.

Certwright is a PRIVATE CA, so some findings that matter for publicly-trusted TLS are
expected; LINT_ALLOW_LIST names each one with the reason it is accepted. Every other
finding (any severity from INFO up) refuses issuance.

pkilint ships no type information (no py.typed); its objects are handled as Any here. It
is imported where a certificate is first linted, not with this module: importing it takes
about half a second, which every command-line call paid whether or not it signed anything
(docs/benchmarks.md, command-line start-up).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.pki.errors import LintError
from app.pki.names import URN
from app.pki.profiles import CertKind
from app.pki.smime import ValidationLevel, validation_level_of

# Finding code -> why a private CA accepts it. Reviewed entries only; keep one line each.
LINT_ALLOW_LIST: Final[Mapping[str, str]] = {
    "cabf.internal_domain_name": (
        "private PKI: internal names (.corp, .internal, .lan) are what a private CA is for"
    ),
    "cabf.internal_ip_address": (
        "private PKI: RFC 1918 / unique-local addresses are expected on internal servers"
    ),
    "cabf.serverauth.subscriber.certificate_policies_extension_absent": (
        "private CA: no CA/B Forum reserved policy OID may be asserted, and there is no CP"
    ),
    "cabf.serverauth.dv.common_name_attribute_present": (
        "CN is NOT RECOMMENDED but permitted (BR 7.1.4.3); internal clients read it, and it "
        "is always repeated in the SAN"
    ),
    "cabf.serverauth.ov.common_name_attribute_present": (
        "as the DV entry: CN permitted by BR 7.1.4.3, always repeated in the SAN"
    ),
    "cabf.serverauth.subscriber.subject_key_identifier_extension_present": (
        "RFC 5280 §4.2.1.2 says end-entity certificates SHOULD carry an SKI (inventory, "
        "path building); BR only calls it NOT RECOMMENDED"
    ),
    "cabf.serverauth.subscriber_rsa_digitalsignature_and_keyencipherment_present": (
        "RSA server keys keep keyEncipherment for TLS 1.2 RSA key transport by legacy "
        "internal clients (BR 7.1.2.7.11 MAY)"
    ),
    "cabf.smime.certificate_policies_extension_missing": (
        "private CA: asserting a CA/B Forum S/MIME policy OID would claim audited public "
        "trust; the certificates follow the Multipurpose profile otherwise (docs/pki.md)"
    ),
    "pkix.subject_key_identifier_method_1_identified": (
        "informational: the SKI is the RFC 5280 §4.2.1.2 method 1 SHA-1 key hash"
    ),
    # The one-day SHOULD-NOT margin below each BR §6.3.2 MUST-NOT ceiling: our validity is
    # exact to the second (RFC 5280 §4.1.2.5 inclusive notAfter), so a full-length term
    # never crosses the MUST-NOT line that is enforced without exception.
    "cabf.serverauth.certificate_validity_period_exceeds_397_days": (
        "one-day SHOULD-NOT margin under 398 days; exact inclusive validity arithmetic"
    ),
    "cabf.serverauth.certificate_validity_period_exceeds_199_days": (
        "one-day SHOULD-NOT margin under 200 days; exact inclusive validity arithmetic"
    ),
    "cabf.serverauth.certificate_validity_period_exceeds_99_days": (
        "one-day SHOULD-NOT margin under 100 days; exact inclusive validity arithmetic"
    ),
    "cabf.serverauth.certificate_validity_period_exceeds_46_days": (
        "one-day SHOULD-NOT margin under 47 days; exact inclusive validity arithmetic"
    ),
}

DECODE_FAILED: Final = "certwright.lint.decode_failed"
_URI_FINDING = re.compile(r'Invalid URI syntax: "(.*)"')


def _is_urn_san(finding: LintFinding) -> bool:
    """pkilint judges URIs with a URL validator, which knows no URNs; RFC 5280 §4.2.1.6
    accepts any RFC 3986 URI with a scheme in a SAN, and a device's URN (RFC 8141) is
    one. Only that finding, only in the subjectAltName, only for a well-formed URN."""
    if finding.code != "pkix.invalid_uri_syntax" or "subjectAltName" not in finding.path:
        return False
    found = _URI_FINDING.fullmatch(finding.message or "")
    return found is not None and URN.fullmatch(found.group(1)) is not None


@dataclass(frozen=True)
class LintFinding:
    """One pkilint finding: its code, severity name, optional message and ASN.1 path."""

    code: str
    severity: str
    message: str | None = None
    path: str = ""

    @property
    def is_allowed(self) -> bool:
        """On the certificate allow-list, or a device's URN SAN (CRLs and OCSP responses
        have their own lists)."""
        return self.code in LINT_ALLOW_LIST or _is_urn_san(self)

    def __str__(self) -> str:
        detail = f": {self.message}" if self.message else ""
        return f"{self.code} ({self.severity}){detail}"


class LintTarget(enum.StrEnum):
    """Which pkilint validator set a certificate is judged by."""

    SERVERAUTH_DV = "cabf-serverauth-dv"
    SERVERAUTH_OV = "cabf-serverauth-ov"
    SMIME_MAILBOX = "cabf-smime-mailbox-multipurpose"
    SMIME_INDIVIDUAL = "cabf-smime-individual-multipurpose"
    RFC5280 = "rfc5280"
    SERVERAUTH_ROOT_CA = "cabf-serverauth-root-ca"
    SERVERAUTH_TLS_CA = "cabf-serverauth-tls-ca"
    SERVERAUTH_NON_TLS_CA = "cabf-serverauth-non-tls-ca"


# What leaf issuance uses; warm_up() builds these unless told otherwise.
LEAF_TARGETS: Final = (
    LintTarget.SERVERAUTH_DV,
    LintTarget.SERVERAUTH_OV,
    LintTarget.SMIME_MAILBOX,
    LintTarget.SMIME_INDIVIDUAL,
    LintTarget.RFC5280,
)

# pkilint's certificate type per CA target (names of serverauth_constants.CertificateType).
# Certwright's issuing CAs are operated by the operator of their root: "internal".
_CA_TYPES: Final = {
    LintTarget.SERVERAUTH_ROOT_CA: "ROOT_CA",
    LintTarget.SERVERAUTH_TLS_CA: "INTERNAL_UNCONSTRAINED_TLS_CA",
    LintTarget.SERVERAUTH_NON_TLS_CA: "NON_TLS_CA",
}


def lint_target(cert: x509.Certificate, kind: CertKind | None) -> LintTarget:
    """SSL leaves by BR subscriber type (OV when the subject has O); Client leaves by
    S/MIME validation level (individual when the subject names a person); other leaves by
    RFC 5280; CA certificates (``kind`` None) by BR CA profile: a self-issued root, an
    issuing CA with serverAuth (TLS) or another extendedKeyUsage (non-TLS). A CA
    certificate without extendedKeyUsage (built before CA purposes) is judged by RFC 5280
    only."""
    if kind is None:
        return _ca_lint_target(cert)
    if kind is CertKind.CLIENT:
        if validation_level_of(cert.subject) is ValidationLevel.INDIVIDUAL:
            return LintTarget.SMIME_INDIVIDUAL
        return LintTarget.SMIME_MAILBOX
    if kind is not CertKind.SSL:
        return LintTarget.RFC5280
    if cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        return LintTarget.SERVERAUTH_OV
    return LintTarget.SERVERAUTH_DV


def _ca_lint_target(cert: x509.Certificate) -> LintTarget:
    if cert.issuer == cert.subject:
        return LintTarget.SERVERAUTH_ROOT_CA
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return LintTarget.RFC5280
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return LintTarget.SERVERAUTH_TLS_CA
    return LintTarget.SERVERAUTH_NON_TLS_CA


def lint_certificate(cert: x509.Certificate, kind: CertKind | None) -> tuple[LintFinding, ...]:
    """All findings (INFO and above) for ``cert``; ``kind`` None means a CA certificate."""
    linter = _linter(lint_target(cert, kind))
    return linter.lint(cert.public_bytes(serialization.Encoding.DER))


def refused_findings(
    findings: Iterable[LintFinding], allow_list: Mapping[str, str] = LINT_ALLOW_LIST
) -> tuple[LintFinding, ...]:
    """The findings not on ``allow_list`` (LINT_ALLOW_LIST for certificates), i.e. those
    that refuse issuance or publication."""
    return tuple(finding for finding in findings if finding.code not in allow_list)


def findings_of(results: Iterable[Any]) -> tuple[LintFinding, ...]:
    """pkilint validation results as LintFindings, INFO and above."""
    from pkilint import validation  # type: ignore[import-untyped]

    return tuple(
        LintFinding(
            code=description.finding.code,
            severity=description.finding.severity.name,
            message=description.message,
            path=str(result.node.path),
        )
        for result in results
        for description in result.finding_descriptions
        if description.finding.severity <= validation.ValidationFindingSeverity.INFO
    )


def check_certificate(cert: x509.Certificate, kind: CertKind | None) -> tuple[LintFinding, ...]:
    """Lint ``cert`` and return its allow-listed findings.

    Raises:
        LintError: at least one finding is not allowed (LintFinding.is_allowed; all such
            are listed).
    """
    findings = lint_certificate(cert, kind)
    refused = tuple(finding for finding in findings if not finding.is_allowed)
    if refused:
        raise LintError(refused)
    return findings


class _Linter:
    """A built pkilint validator (expensive) plus the finding filters that go with it."""

    def __init__(self, validator: Any, filters: list[Any]) -> None:
        from pkilint import finding_filter, loader, validation

        self._validator = validator
        self._filters = filters
        self._loader = loader.RFC5280CertificateDocumentLoader()
        self._filter_results = finding_filter.filter_results
        self._info = validation.ValidationFindingSeverity.INFO

    def lint(self, der: bytes) -> tuple[LintFinding, ...]:
        try:
            document = self._loader.load_der_document(der, "certificate")
        except Exception as exc:  # pkilint raises pyasn1 and ValueError types alike
            return (LintFinding(DECODE_FAILED, "FATAL", f"pkilint could not decode it: {exc}"),)
        results = self._validator.validate(document.root)
        if self._filters:
            # Drops PKIX findings the CA/B Forum requirements supersede (pkilint's own list).
            results, _excluded = self._filter_results(self._filters, results)
        return findings_of(results)


@functools.cache
def _linter(target: LintTarget) -> _Linter:
    from pkilint.cabf import serverauth  # type: ignore[import-untyped]
    from pkilint.cabf.serverauth import serverauth_constants  # type: ignore[import-untyped]
    from pkilint.pkix import certificate, extension, name  # type: ignore[import-untyped]

    if target is LintTarget.RFC5280:
        validator = certificate.create_pkix_certificate_validator_container(
            certificate.create_decoding_validators(
                name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
            ),
            [
                certificate.create_issuer_validator_container([]),
                certificate.create_validity_validator_container(),
                certificate.create_subject_validator_container([]),
                certificate.create_extensions_validator_container([]),
                certificate.create_spki_validator_container([]),
            ],
        )
        return _Linter(validator, [])
    if target in (LintTarget.SMIME_MAILBOX, LintTarget.SMIME_INDIVIDUAL):
        from pkilint.cabf import smime
        from pkilint.cabf.smime import smime_constants  # type: ignore[import-untyped]

        level = (
            smime_constants.ValidationLevel.INDIVIDUAL
            if target is LintTarget.SMIME_INDIVIDUAL
            else smime_constants.ValidationLevel.MAILBOX
        )
        validator = certificate.create_pkix_certificate_validator_container(
            smime.create_decoding_validators(),
            smime.create_subscriber_validators(level, smime_constants.Generation.MULTIPURPOSE),
        )
        return _Linter(validator, [])
    if target in _CA_TYPES:
        cert_type = serverauth_constants.CertificateType[_CA_TYPES[target]]
    elif target is LintTarget.SERVERAUTH_OV:
        cert_type = serverauth_constants.CertificateType.OV_FINAL_CERTIFICATE
    else:
        cert_type = serverauth_constants.CertificateType.DV_FINAL_CERTIFICATE
    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(cert_type)
    )
    return _Linter(validator, serverauth.create_serverauth_finding_filters(cert_type))


def warm_up(targets: Iterable[LintTarget] = LEAF_TARGETS) -> None:
    """Build the validators and lint one sample certificate with each now (e.g. at worker
    start), so that the first issuance pays neither (pkilint loads the public suffix list
    on its first DNS name: a third of a second)."""
    sample = _sample_certificate()
    for target in targets:
        _linter(target).lint(sample)


def _sample_certificate() -> bytes:
    """A self-signed TLS server certificate (DER), only ever linted."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Certwright"),
            x509.NameAttribute(NameOID.COMMON_NAME, "warm-up.example"),
        ]
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("warm-up.example")]), False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
