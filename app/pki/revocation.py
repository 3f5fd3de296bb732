"""Revocation reasons: the RFC 5280 vocabulary, which reason may be chosen for which
certificate and by whom, and which may be published in a CRL or OCSP response; no I/O.

Two rules, kept apart because they answer different questions:

* allowed_reasons() / check_revocation_reason(): what a person may CHOOSE when revoking,
  by certificate kind (SSL, Client, CodeSigning, Device, or None for a CA certificate)
  and by who revokes (the subscriber, or an administrator acting for the CA).
* check_publishable_reason(): what a CRL entry or OCSP response may CARRY (TLS BR §7.2.2,
  §7.3), whatever was chosen; crl.build_crl() and ocsp.build_response() enforce it, so a
  row stored before the rules (a certificateHold, say) cannot reach a relying party.

Certwright does not suspend: a revocation is final, and no flow ever releases a hold. So
certificateHold is never offered, although S/MIME BR §4.9.13 would allow suspension of
some generations; the TLS BR (§4.9.13, §7.2.2) and Code Signing BR (§4.9.13) forbid it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from cryptography import x509

from app.pki.errors import ProfileError, RevocationPolicyError
from app.pki.profiles import CertKind

R = x509.ReasonFlags

# RFC 5280 §5.3.1 CRLReason, in code order (7 is not used).
REASON_CODES: Final[Mapping[x509.ReasonFlags, int]] = MappingProxyType(
    {
        R.unspecified: 0,
        R.key_compromise: 1,
        R.ca_compromise: 2,
        R.affiliation_changed: 3,
        R.superseded: 4,
        R.cessation_of_operation: 5,
        R.certificate_hold: 6,
        R.remove_from_crl: 8,
        R.privilege_withdrawn: 9,
        R.aa_compromise: 10,
    }
)
REASON_NAMES: Final[tuple[str, ...]] = tuple(reason.value for reason in REASON_CODES)

# When to choose each reason: TLS BR §7.2.2 "CRLReasons" (which the Subscriber Agreement
# must explain) and RFC 5280 §5.3.1 for the CA-certificate reason.
REASON_DESCRIPTIONS: Final[Mapping[x509.ReasonFlags, str]] = MappingProxyType(
    {
        R.unspecified: "no reason given (no reasonCode is published)",
        R.key_compromise: "the private key is known or suspected to be compromised",
        R.ca_compromise: "the CA's private key is known or suspected to be compromised",
        R.affiliation_changed: (
            "the subject's name or other identity information changed; the key is not suspected"
        ),
        R.superseded: (
            "the certificate is replaced, or its validation or issuance cannot be relied on"
        ),
        R.cessation_of_operation: (
            "the service is shut down, or its names are no longer owned or controlled"
        ),
        R.privilege_withdrawn: (
            "the CA withdraws it: misleading request data or broken obligations"
        ),
        R.certificate_hold: "suspended (not offered: Certwright does not suspend)",
        R.remove_from_crl: "delta CRLs only (not offered)",
        R.aa_compromise: "an attribute authority was compromised (not offered)",
    }
)


class Revoker(enum.StrEnum):
    """Who asks for a revocation: the certificate's subscriber (its holder or requester),
    or an administrator (an RA officer acting for the CA)."""

    SUBSCRIBER = "subscriber"
    ADMINISTRATOR = "administrator"


# Leaf certificates, all four kinds: the TLS BR §7.2.2 CRLReasons (unspecified is published
# as no reasonCode). S/MIME BR §7.2.2 and the Code Signing BR name no narrower list, and
# Device certificates answer to RFC 5280 §5.3.1 alone; the same set serves them, because
# the reasons left out mean nothing for an end entity here: cACompromise and aACompromise
# are about authorities, certificateHold is suspension, removeFromCRL is for delta CRLs.
_LEAF: Final = (
    R.unspecified,
    R.key_compromise,
    R.affiliation_changed,
    R.superseded,
    R.cessation_of_operation,
    R.privilege_withdrawn,
)
# TLS BR §7.2.2: "The privilegeWithdrawn reasonCode SHOULD NOT be made available to the
# Subscriber ... the use of this reasonCode is determined by the CA"; BR §4.9.1.1 lists the
# subscriber's own reasons (unspecified, keyCompromise, affiliationChanged, superseded,
# cessationOfOperation). Applied to every kind alike.
_LEAF_BY_SUBSCRIBER: Final = tuple(r for r in _LEAF if r is not R.privilege_withdrawn)
# CA certificates (BR §4.9.1.2): only the CA's administrators revoke them, always with a
# reason (TLS BR §7.2.2: reasonCode MUST be present for a certificate capable of causing
# issuance; §7.3 likewise for OCSP; S/MIME BR §7.2.2). A compromised CA key is
# cACompromise (RFC 5280 §5.3.1), not keyCompromise.
_CA: Final = (
    R.ca_compromise,
    R.affiliation_changed,
    R.superseded,
    R.cessation_of_operation,
    R.privilege_withdrawn,
)

ALLOWED_REASONS: Final[Mapping[tuple[CertKind | None, Revoker], tuple[x509.ReasonFlags, ...]]] = (
    MappingProxyType(
        {
            **{(kind, Revoker.SUBSCRIBER): _LEAF_BY_SUBSCRIBER for kind in CertKind},
            **{(kind, Revoker.ADMINISTRATOR): _LEAF for kind in CertKind},
            (None, Revoker.SUBSCRIBER): (),
            (None, Revoker.ADMINISTRATOR): _CA,
        }
    )
)

# What a CRL entry or OCSP response may carry: TLS BR §7.2.2 (pkilint's
# cabf.crl_prohibited_reason_code allow-list: the five reasons below, plus cACompromise in
# a CRL of CA certificates) and §7.3 (OCSP: "a value permitted for CRLs"). unspecified is
# published as no reasonCode, which BR §7.2.2 allows only for certificates not capable of
# causing issuance, i.e. not for CA certificates.
_PUBLISHABLE_LEAF: Final = frozenset(_LEAF)
_PUBLISHABLE_CA: Final = frozenset(
    {
        R.key_compromise,
        R.ca_compromise,
        R.affiliation_changed,
        R.superseded,
        R.cessation_of_operation,
        R.privilege_withdrawn,
    }
)

_FOLDED: Final = {re.sub(r"[^a-z]", "", reason.value.lower()): reason for reason in REASON_CODES}
_BY_CODE: Final = {code: reason for reason, code in REASON_CODES.items()}


def parse_reason(value: str | int) -> x509.ReasonFlags:
    """Read a CRLReason from its RFC name ("keyCompromise"), a loose spelling
    ("key compromise", "KEY_COMPROMISE") or its code (1 or "1").

    Raises:
        ProfileError: not one of the RFC 5280 §5.3.1 reasons.
    """
    if isinstance(value, int) or value.strip().isdigit():
        code = int(value)
        if code in _BY_CODE:
            return _BY_CODE[code]
    else:
        folded = re.sub(r"[^a-z]", "", value.lower())
        if folded in _FOLDED:
            return _FOLDED[folded]
    raise ProfileError(
        f"unknown revocation reason {value!r}; expected one of {', '.join(REASON_NAMES)}"
    )


def allowed_reasons(kind: CertKind | None, revoker: Revoker) -> tuple[x509.ReasonFlags, ...]:
    """The reasons ``revoker`` may choose for a certificate of ``kind`` (None: a CA
    certificate), in code order; the first is the default to offer (TLS BR §7.2.2: the
    subscriber's default is "no reason", i.e. unspecified)."""
    return ALLOWED_REASONS[kind, revoker]


def check_revocation_reason(
    reason: x509.ReasonFlags | str | int, *, kind: CertKind | None, revoker: Revoker
) -> x509.ReasonFlags:
    """The reason, when ``revoker`` may choose it for a certificate of ``kind``.

    Raises:
        ProfileError: not an RFC 5280 reason at all.
        RevocationPolicyError: a reason refused for this kind or revoker, with why and what
            may be chosen instead, e.g. "certificateHold is not allowed: ...".
    """
    flag = reason if isinstance(reason, x509.ReasonFlags) else parse_reason(reason)
    allowed = allowed_reasons(kind, revoker)
    if flag in allowed:
        return flag
    if not allowed:
        raise RevocationPolicyError(
            "only an administrator of the CA can revoke a CA certificate (CA/B Forum BR 4.9.1.2)"
        )
    raise RevocationPolicyError(
        f"{flag.value} is not allowed {_whom(kind, revoker)}: {_why(flag, kind, revoker)}; "
        f"choose one of {', '.join(r.value for r in allowed)}"
    )


def is_publishable_reason(reason: x509.ReasonFlags, *, is_ca: bool) -> bool:
    """Whether a CRL entry or OCSP response may carry ``reason`` (TLS BR §7.2.2, §7.3)."""
    return reason in (_PUBLISHABLE_CA if is_ca else _PUBLISHABLE_LEAF)


def check_publishable_reason(reason: x509.ReasonFlags, *, is_ca: bool) -> None:
    """Refuse a reason no CRL entry or OCSP response may carry for this certificate.

    Raises:
        RevocationPolicyError: e.g. certificateHold, or a CA certificate without a reason.
    """
    if is_publishable_reason(reason, is_ca=is_ca):
        return
    if reason is R.remove_from_crl:
        detail = "removeFromCRL is only valid in delta CRLs (RFC 5280 §5.3.1)"
    elif is_ca and reason is R.unspecified:
        detail = (
            "a revoked CA certificate must be published with its reason (CA/B Forum BR "
            "7.2.2 and 7.3): unspecified cannot be published for it"
        )
    else:
        target = "a CA certificate" if is_ca else "an end-entity certificate"
        detail = (
            f"{reason.value} cannot be published for {target} (CA/B Forum BR 7.2.2"
            f"{', 4.9.13' if reason is R.certificate_hold else ''})"
        )
    raise RevocationPolicyError(detail)


def _whom(kind: CertKind | None, revoker: Revoker) -> str:
    target = "a CA certificate" if kind is None else f"{kind} certificates"
    return f"for {target}" if revoker is Revoker.ADMINISTRATOR else f"to the subscriber of {target}"


def _why(flag: x509.ReasonFlags, kind: CertKind | None, revoker: Revoker) -> str:
    if flag is R.certificate_hold:
        return (
            "Certwright does not suspend certificates, and the CA/B Forum requirements "
            "forbid suspension (TLS BR 4.9.13 and 7.2.2, Code Signing BR 4.9.13)"
        )
    if flag is R.remove_from_crl:
        return "it is only valid in delta CRLs (RFC 5280 §5.3.1)"
    if kind is None:
        if flag is R.key_compromise:
            return "a CA certificate whose key is compromised is revoked with cACompromise"
        return "a CA certificate is revoked with a stated reason (CA/B Forum BR 7.2.2, 7.3)"
    if flag in (R.ca_compromise, R.aa_compromise):
        return (
            f"{flag.value} is for authority certificates (RFC 5280 §5.3.1); a compromised "
            "key of this certificate is keyCompromise"
        )
    if flag is R.privilege_withdrawn and revoker is Revoker.SUBSCRIBER:
        return "privilegeWithdrawn is the CA's to choose, not the subscriber's (TLS BR 7.2.2)"
    return "not among the reasons the CA/B Forum requirements allow (TLS BR 7.2.2)"
