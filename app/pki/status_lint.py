"""Linting CRLs and OCSP responses before they are published, and their allow-lists; no I/O.

Like certificates (lint.py), every CRL and every signed OCSP response is judged before it
leaves the CA, and refused on any finding outside a reviewed allow-list:

* CRLs by pkilint's RFC 5280 CRL validators plus its CA/B Forum ones (what `lint_crl -p
  BR` runs): the BR §7.2.2 reason-code allow-list and the validity ceiling (10 days for a
  CRL of subscriber certificates, BR §4.9.7; a year for a CRL that lists CA certificates,
  pkilint's "ARL").
* OCSP responses by pkilint's RFC 6960 validators (what `lint_ocsp_response` runs; pkilint
  has no CA/B Forum OCSP-response rules) plus Certwright's own checks of the BR rules
  pkilint lacks, each with a "certwright." code: the reason a response may carry (BR
  §7.3: a value permitted for CRLs; a revoked CA certificate's reason must be present)
  and the validity interval of a subscriber certificate's response (BR §4.9.9: at least 8
  hours and at most 10 days, thisUpdate..nextUpdate inclusive).

Linting a CRL or OCSP response takes about a millisecond (more for a CRL with many
entries); the validators are built once per process.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

# pkilint ships no type information (no py.typed); its objects are handled as Any here.
from pkilint import loader, pkix  # type: ignore[import-untyped]
from pkilint.cabf import cabf_crl  # type: ignore[import-untyped]
from pkilint.pkix import crl, extension, name  # type: ignore[import-untyped]
from pkilint.pkix import ocsp as pkix_ocsp

from app.pki.errors import LintError
from app.pki.lint import DECODE_FAILED, LintFinding, findings_of, refused_findings
from app.pki.revocation import is_publishable_reason

# Finding code -> why Certwright accepts it in a CRL. Reviewed entries only.
CRL_LINT_ALLOW_LIST: Final[Mapping[str, str]] = MappingProxyType({})

# Finding code -> why Certwright accepts it in an OCSP response. Reviewed entries only.
OCSP_LINT_ALLOW_LIST: Final[Mapping[str, str]] = MappingProxyType(
    {
        "certwright.ocsp_validity_interval_below_8_hours": (
            "private CA: responses are valid one hour, so a client that caches one sees a "
            "revocation within the hour; BR 4.9.9's 8-hour floor serves public responders' "
            "load and stapling. Remove this entry when the responder's validity is raised."
        ),
    }
)

OCSP_MIN_VALIDITY: Final = dt.timedelta(hours=8)  # BR §4.9.9
OCSP_MAX_VALIDITY: Final = dt.timedelta(days=10)  # BR §4.9.9
_ONE_SECOND: Final = dt.timedelta(seconds=1)


def lint_crl(
    revocation_list: x509.CertificateRevocationList, *, lists_ca_certificates: bool = False
) -> tuple[LintFinding, ...]:
    """All findings (INFO and above) for a CRL. ``lists_ca_certificates``: a CRL of CA
    certificates (pkilint's "ARL": cACompromise allowed, validity up to a year)."""
    der = revocation_list.public_bytes(Encoding.DER)
    try:
        document = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    except Exception as exc:  # pkilint raises pyasn1 and ValueError types alike
        return (LintFinding(DECODE_FAILED, "FATAL", f"pkilint could not decode it: {exc}"),)
    return findings_of(_crl_validator(lists_ca_certificates).validate(document.root))


def check_crl(
    revocation_list: x509.CertificateRevocationList, *, lists_ca_certificates: bool = False
) -> tuple[LintFinding, ...]:
    """Lint a CRL and return its allow-listed findings.

    Raises:
        LintError: a finding not on CRL_LINT_ALLOW_LIST (the CRL must not be published).
    """
    findings = lint_crl(revocation_list, lists_ca_certificates=lists_ca_certificates)
    refused = refused_findings(findings, CRL_LINT_ALLOW_LIST)
    if refused:
        raise LintError(refused, "CRL")
    return findings


def lint_ocsp_response(der: bytes, *, for_ca_certificate: bool = False) -> tuple[LintFinding, ...]:
    """All findings (INFO and above) for a DER OCSPResponse: pkilint's, then Certwright's
    checks of BR §4.9.9 and §7.3 (``for_ca_certificate``: it answers for a CA
    certificate, whose revocation must state a reason and whose response may live
    longer than ten days)."""
    try:
        document = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(der, "ocsp")
        response = ocsp.load_der_ocsp_response(der)
    except Exception as exc:  # pkilint raises pyasn1 and ValueError types alike
        return (LintFinding(DECODE_FAILED, "FATAL", f"could not decode it: {exc}"),)
    findings = findings_of(_ocsp_validator().validate(document.root))
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return findings
    return findings + tuple(_ocsp_rules(response, for_ca_certificate))


def check_ocsp_response(der: bytes, *, for_ca_certificate: bool = False) -> tuple[LintFinding, ...]:
    """Lint a DER OCSPResponse and return its allow-listed findings.

    Raises:
        LintError: a finding not on OCSP_LINT_ALLOW_LIST (the response must not be sent).
    """
    findings = lint_ocsp_response(der, for_ca_certificate=for_ca_certificate)
    refused = refused_findings(findings, OCSP_LINT_ALLOW_LIST)
    if refused:
        raise LintError(refused, "OCSP response")
    return findings


def warm_up() -> None:
    """Build the CRL and OCSP validators now (e.g. at process start)."""
    _crl_validator(False)
    _crl_validator(True)
    _ocsp_validator()


def _ocsp_rules(response: ocsp.OCSPResponse, for_ca_certificate: bool) -> list[LintFinding]:
    found: list[LintFinding] = []
    for single in response.responses:
        path = f"serial {single.serial_number:x}"
        if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason
            if reason is None:
                if for_ca_certificate:
                    found.append(
                        _finding(
                            "certwright.ocsp_ca_revocation_reason_absent",
                            "a revoked CA certificate's response must carry its "
                            "revocationReason (BR 7.3)",
                            path,
                        )
                    )
            elif not is_publishable_reason(reason, is_ca=for_ca_certificate):
                found.append(
                    _finding(
                        "certwright.ocsp_prohibited_reason_code",
                        f'Prohibited reason code "{reason.value}" (BR 7.3: a value permitted '
                        "for CRLs, BR 7.2.2)",
                        path,
                    )
                )
        if for_ca_certificate:
            continue
        next_update = single.next_update_utc
        if next_update is None:
            found.append(
                _finding(
                    "certwright.ocsp_next_update_absent",
                    "nextUpdate is needed for the BR 4.9.9 validity interval",
                    path,
                )
            )
            continue
        # BR §4.9.9: the validity interval counts thisUpdate..nextUpdate inclusive.
        interval = next_update - single.this_update_utc + _ONE_SECOND
        if interval < OCSP_MIN_VALIDITY:
            found.append(
                _finding(
                    "certwright.ocsp_validity_interval_below_8_hours",
                    f"validity interval {interval} is below 8 hours (BR 4.9.9)",
                    path,
                )
            )
        elif interval > OCSP_MAX_VALIDITY:
            found.append(
                _finding(
                    "certwright.ocsp_validity_interval_exceeds_10_days",
                    f"validity interval {interval} exceeds 10 days (BR 4.9.9)",
                    path,
                )
            )
    return found


def _finding(code: str, message: str, path: str) -> LintFinding:
    return LintFinding(code=code, severity="ERROR", message=message, path=path)


@functools.cache
def _crl_validator(lists_ca_certificates: bool) -> Any:
    # pkilint's bin/lint_crl.py with "-p BR", as a reusable validator.
    crl_type = (
        crl.CertificateRevocationListType.ARL
        if lists_ca_certificates
        else crl.CertificateRevocationListType.CRL
    )
    return crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container(
                [cabf_crl.create_validity_period_validator(crl_type)]
            ),
            crl.create_extensions_validator_container([]),
            cabf_crl.CabfCrlReasonCodeAllowlistValidator(crl_type),
        ],
    )


@functools.cache
def _ocsp_validator() -> Any:
    # pkilint's bin/lint_ocsp_response.py, as a reusable validator.
    return pkix_ocsp.create_pkix_ocsp_response_validator_container(
        [
            pkix_ocsp.create_response_decoder(),
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [],
    )
