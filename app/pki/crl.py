"""Full CRLs (RFC 5280 §5), built, checked and linted before they are published; no I/O.

The caller supplies the revoked entries, the next CRL number (monotonic, kept in the
database), the update interval and, to keep thisUpdate monotonic whatever the clock
does, the previous CRL's thisUpdate; build_crl() returns the signed, linted CRL. The
CRLReason vocabulary lives in revocation.py and is re-exported here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509

from app.pki.errors import PkiError, ProfileError
from app.pki.issue import MAX_SERIAL, rehearsal_key
from app.pki.issuer import Issuer
from app.pki.revocation import REASON_CODES as REASON_CODES
from app.pki.revocation import REASON_NAMES as REASON_NAMES
from app.pki.revocation import check_publishable_reason
from app.pki.revocation import parse_reason as parse_reason
from app.pki.validity import ONE_SECOND, to_utc, utc_now

# A CRL with at most this many entries is linted whole (pkilint: ~1 ms an entry).
FULL_LINT_MAX_ENTRIES: Final = 200


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked certificate as a CRL lists it; ``is_ca`` for a CA certificate (its
    reason must be stated, and may be cACompromise: RFC 5280 §5.3.1, BR §7.2.2)."""

    serial: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified
    is_ca: bool = False


def next_this_update(now: dt.datetime, previous: dt.datetime | None) -> dt.datetime:
    """thisUpdate for the next CRL: ``now``, but at least one second after the previous
    CRL's thisUpdate, so that CRLs stay in order (RFC 5280 §5.1.2.4, §5.2.3: a later CRL
    number is a later CRL) even when the clock steps back or two CRLs fall in one second.
    """
    moment = to_utc(now)
    if previous is not None:
        moment = max(moment, to_utc(previous) + ONE_SECOND)
    return moment


def build_crl(
    issuer: Issuer,
    *,
    revoked: Iterable[RevokedEntry],
    crl_number: int,
    next_update_in: dt.timedelta,
    now: dt.datetime | None = None,
    previous_this_update: dt.datetime | None = None,
    previous_crl_number: int | None = None,
    lint: bool = True,
) -> x509.CertificateRevocationList:
    """Build, lint and sign a full CRL with AKI and CRL number; thisUpdate is
    next_this_update(now, previous_this_update), nextUpdate thisUpdate + ``next_update_in``.

    Every entry's reason must be publishable (revocation.check_publishable_reason). Unless
    ``lint`` is false, the CRL is linted before the CA key signs it (status_lint.check_crl)
    as a CRL of CA certificates when an entry ``is_ca``, else as one of subscriber
    certificates. pkilint takes about a millisecond per entry, so a CRL of more than
    FULL_LINT_MAX_ENTRIES entries is linted through a rehearsal with the same header and,
    for each reason, the entries with the extreme serials and dates (_representatives).

    Raises:
        ProfileError: CRL number out of range or not above ``previous_crl_number``,
            non-positive interval, or an entry with a serial out of range.
        RevocationPolicyError: an entry whose reason no CRL may carry (certificateHold,
            removeFromCRL, cACompromise for an end entity, none for a CA certificate).
        LintError: pkilint findings outside the CRL allow-list; the CA key signed nothing.
    """
    # RFC 5280 §5.2.3 / BR §7.2.2: a non-negative integer below 2**159, strictly increasing.
    if not 0 <= crl_number <= MAX_SERIAL:
        raise ProfileError("CRL number must be a non-negative integer of at most 20 octets")
    if previous_crl_number is not None and crl_number <= previous_crl_number:
        raise ProfileError(
            f"CRL number {crl_number} does not follow {previous_crl_number}: CRL numbers "
            "strictly increase (RFC 5280 §5.2.3, CA/B Forum BR 7.2.2)"
        )
    if next_update_in <= dt.timedelta(0):
        raise ProfileError("the CRL update interval must be positive")
    this_update = next_this_update(now if now is not None else utc_now(), previous_this_update)
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
    entries = [(entry, _revoked_certificate(entry)) for entry in revoked]
    if not lint:
        return _with_entries(builder, entries).sign(issuer.private_key, issuer.hash_algorithm)
    # Lint-before-sign, as for certificates: a rehearsal signed by a throwaway key of the
    # CA's algorithm is linted, and only then does the CA key sign.
    whole = len(entries) <= FULL_LINT_MAX_ENTRIES
    rehearsal = _with_entries(builder, entries if whole else _representatives(entries)).sign(
        rehearsal_key(issuer.private_key), issuer.hash_algorithm
    )
    from app.pki.status_lint import check_crl  # pkilint: imported when first used

    check_crl(rehearsal, lists_ca_certificates=any(entry.is_ca for entry, _ in entries))
    signed = _with_entries(builder, entries).sign(issuer.private_key, issuer.hash_algorithm)
    if whole and signed.tbs_certlist_bytes != rehearsal.tbs_certlist_bytes:
        raise PkiError("the signed CRL differs from the linted one; it was not published")
    return signed


def _with_entries(
    builder: x509.CertificateRevocationListBuilder,
    entries: Iterable[tuple[RevokedEntry, x509.RevokedCertificate]],
) -> x509.CertificateRevocationListBuilder:
    for _entry, revoked_certificate in entries:
        builder = builder.add_revoked_certificate(revoked_certificate)
    return builder


def _representatives(
    entries: list[tuple[RevokedEntry, x509.RevokedCertificate]],
) -> list[tuple[RevokedEntry, x509.RevokedCertificate]]:
    # Every entry is made by _revoked_certificate(); two entries differ only in serial,
    # revocation date and reason (with is_ca). pkilint's entry checks look at exactly
    # those: the serial's range and encoding, the date's encoding, the reason and its
    # extension. So for each (reason, is_ca), the entries with the smallest and largest
    # serial and the earliest and latest date stand for the others.
    groups: dict[tuple[x509.ReasonFlags, bool], list[tuple[RevokedEntry, x509.RevokedCertificate]]]
    groups = {}
    for pair in entries:
        groups.setdefault((pair[0].reason, pair[0].is_ca), []).append(pair)
    chosen: dict[int, tuple[RevokedEntry, x509.RevokedCertificate]] = {}
    for group in groups.values():
        for pick in (
            min(group, key=lambda pair: pair[0].serial),
            max(group, key=lambda pair: pair[0].serial),
            min(group, key=lambda pair: to_utc(pair[0].revoked_at)),
            max(group, key=lambda pair: to_utc(pair[0].revoked_at)),
        ):
            chosen[id(pick)] = pick
    return list(chosen.values())


def _revoked_certificate(entry: RevokedEntry) -> x509.RevokedCertificate:
    if not 0 < entry.serial <= MAX_SERIAL:
        raise ProfileError(f"revoked serial {entry.serial} is not a valid serial number")
    check_publishable_reason(entry.reason, is_ca=entry.is_ca)
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(entry.serial)
        .revocation_date(to_utc(entry.revoked_at))
    )
    # RFC 5280 §5.3.1 (SHOULD) and BR §7.2.2 (MUST): unspecified is published as no
    # reasonCode; check_publishable_reason() has refused it for CA certificates.
    if entry.reason is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(entry.reason), critical=False)
    return builder.build()
