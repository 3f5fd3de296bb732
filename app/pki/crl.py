"""Full CRLs (RFC 5280 §5) and the CRLReason vocabulary; no I/O.

The caller supplies the revoked entries, the next CRL number (monotonic, kept in the
database) and the update interval; build_crl() returns the signed CRL.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from cryptography import x509

from app.pki.errors import ProfileError
from app.pki.issue import MAX_SERIAL
from app.pki.issuer import Issuer
from app.pki.validity import to_utc, utc_now

# RFC 5280 §5.3.1 CRLReason, in code order (7 is not used).
REASON_CODES: Final[Mapping[x509.ReasonFlags, int]] = MappingProxyType(
    {
        x509.ReasonFlags.unspecified: 0,
        x509.ReasonFlags.key_compromise: 1,
        x509.ReasonFlags.ca_compromise: 2,
        x509.ReasonFlags.affiliation_changed: 3,
        x509.ReasonFlags.superseded: 4,
        x509.ReasonFlags.cessation_of_operation: 5,
        x509.ReasonFlags.certificate_hold: 6,
        x509.ReasonFlags.remove_from_crl: 8,
        x509.ReasonFlags.privilege_withdrawn: 9,
        x509.ReasonFlags.aa_compromise: 10,
    }
)
REASON_NAMES: Final[tuple[str, ...]] = tuple(reason.value for reason in REASON_CODES)

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


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked certificate as a CRL lists it."""

    serial: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


def build_crl(
    issuer: Issuer,
    *,
    revoked: Iterable[RevokedEntry],
    crl_number: int,
    next_update_in: dt.timedelta,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """Build and sign a full CRL with AKI and CRL number, thisUpdate = ``now`` and
    nextUpdate = ``now + next_update_in``.

    Raises:
        ProfileError: CRL number out of range, non-positive interval, or an entry with
            removeFromCRL (delta CRLs only) or a serial out of range.
    """
    # RFC 5280 §5.2.3: a non-negative integer of at most 20 octets.
    if not 0 <= crl_number <= MAX_SERIAL:
        raise ProfileError("CRL number must be a non-negative integer of at most 20 octets")
    if next_update_in <= dt.timedelta(0):
        raise ProfileError("the CRL update interval must be positive")
    this_update = to_utc(now) if now is not None else utc_now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(this_update)
        # RFC 5280 §5.1.2.5: conforming CAs MUST include nextUpdate.
        .next_update(this_update + next_update_in)
        # RFC 5280 §5.2.1 (AKI, MUST) and §5.2.3 (CRL number, MUST), both non-critical.
        .add_extension(issuer.authority_key_identifier, critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(_revoked_certificate(entry))
    return builder.sign(issuer.private_key, issuer.hash_algorithm)


def _revoked_certificate(entry: RevokedEntry) -> x509.RevokedCertificate:
    if not 0 < entry.serial <= MAX_SERIAL:
        raise ProfileError(f"revoked serial {entry.serial} is not a valid serial number")
    if entry.reason is x509.ReasonFlags.remove_from_crl:
        raise ProfileError("removeFromCRL is only valid in delta CRLs (RFC 5280 §5.3.1)")
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(entry.serial)
        .revocation_date(to_utc(entry.revoked_at))
    )
    # RFC 5280 §5.3.1: the reasonCode extension SHOULD be absent rather than unspecified.
    if entry.reason is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(entry.reason), critical=False)
    return builder.build()
