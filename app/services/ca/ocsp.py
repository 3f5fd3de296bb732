"""The OCSP responder (RFC 6960): answers from the inventory, signs with the CA itself.

Requests without a nonce get a pre-produced response from a per-process cache; requests
with a nonce are signed fresh and echo it. An answer changes only when
  * a certificate is revoked: every revocation publishes the CA's next CRL in the same
    transaction (app/services/certificates/revocation.py), so the CA's crl_number changes. Each process
    compares the crl_numbers at most CW_OCSP_CACHE_SECONDS apart and forgets the answers
    of a CA whose number moved: a revocation is visible within that time;
  * an unknown serial gets issued: "unknown" answers are kept CW_OCSP_CACHE_SECONDS only.
"good" and "revoked" answers are otherwise reused for half their validity (RFC 5019 §6:
pre-produced responses), so a client is always given at least half an hour of nextUpdate
and a hot responder signs almost nothing, however many certificates its clients ask about.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, CertificateAuthority, CertStatus
from app.pki import ocsp, revocation
from app.pki.errors import PkiError
from app.pki.issuer import Issuer
from app.services.ca import signing

log = logging.getLogger(__name__)

RESPONSE_VALIDITY = timedelta(hours=1)
_ISSUER_TTL = 30.0


REUSE_FOR = RESPONSE_VALIDITY.total_seconds() / 2


@dataclass(frozen=True)
class _Answer:
    produced: float  # time.monotonic()
    der: bytes
    is_known: bool  # good or revoked (not unknown)
    crl_number: int | None  # the CA's crl_number when the status was read


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checking = threading.Lock()  # one thread a process re-reads the crl_numbers
        self.issuers: tuple[float, list[tuple[int, Issuer]]] = (0.0, [])
        self.checked_at = float("-inf")
        self.crl_numbers: dict[int, int] = {}
        self.responses: dict[int, dict[tuple[int, str], _Answer]] = {}  # CA id -> answers
        self.size = 0


_CACHE = _Cache()


def _issuers() -> list[tuple[int, Issuer]]:
    now = time.monotonic()
    with _CACHE.lock:
        stamp, items = _CACHE.issuers
        if now - stamp < _ISSUER_TTL and items:
            return items
    items = [
        (authority.id, signing.ISSUERS.get(authority))
        for authority in db.session.execute(select(CertificateAuthority)).scalars()
    ]
    with _CACHE.lock:
        _CACHE.issuers = (now, items)
    return items


def _ca_id(issuer: Issuer) -> int:
    return next(ca_id for ca_id, known in _issuers() if known is issuer)


def lookup(issuer: Issuer, serial: int) -> ocsp.StatusLookup:
    """What the database says about one serial of this CA: a leaf it issued, else an
    issuing CA it signed (RFC 6960 answers for every certificate the CA issued)."""
    ca_id, serial_hex = _ca_id(issuer), f"{serial:x}"
    row = db.session.execute(
        select(Certificate.status, Certificate.revoked_at, Certificate.revocation_reason).where(
            Certificate.ca_id == ca_id, Certificate.serial_hex == serial_hex
        )
    ).first()
    if row is not None:
        status, revoked_at, reason = row
        if status == CertStatus.REVOKED and revoked_at is not None:
            flag = revocation.parse_reason(reason) if reason else x509.ReasonFlags.unspecified
            return ocsp.StatusLookup(ocsp.CertStatus.REVOKED, revoked_at=revoked_at, reason=flag)
        return ocsp.GOOD
    child = db.session.execute(
        select(CertificateAuthority.revoked_at, CertificateAuthority.revocation_reason).where(
            CertificateAuthority.parent_id == ca_id, CertificateAuthority.serial_hex == serial_hex
        )
    ).first()
    if child is None:
        return ocsp.UNKNOWN
    revoked_at, reason = child
    if revoked_at is None:
        return _GOOD_CA
    return ocsp.StatusLookup(
        ocsp.CertStatus.REVOKED,
        revoked_at=revoked_at,
        reason=revocation.parse_reason(reason or "unspecified"),
        is_ca=True,
    )


_GOOD_CA = ocsp.StatusLookup(ocsp.CertStatus.GOOD, is_ca=True)


def _follow_revocations(now: float, every: float) -> None:
    """Forget the answers of every CA whose crl_number moved (at most every ``every`` s)."""
    if now - _CACHE.checked_at < every or not _CACHE.checking.acquire(blocking=False):
        return
    try:
        rows = db.session.execute(select(CertificateAuthority.id, CertificateAuthority.crl_number))
        numbers = {ca_id: number for ca_id, number in rows}
        with _CACHE.lock:
            for ca_id, number in numbers.items():
                if _CACHE.crl_numbers.get(ca_id) != number:
                    _CACHE.size -= len(_CACHE.responses.pop(ca_id, {}))
            _CACHE.crl_numbers = numbers
            _CACHE.checked_at = now
    finally:
        _CACHE.checking.release()


def _cached(issuer: Issuer, serial: int, hash_name: str) -> bytes:
    ttl = float(current_app.config["CW_OCSP_CACHE_SECONDS"])
    ca_id = _ca_id(issuer)
    now = time.monotonic()
    _follow_revocations(now, ttl)
    crl_number = _CACHE.crl_numbers.get(ca_id)
    hit = _CACHE.responses.get(ca_id, {}).get((serial, hash_name))
    if (
        hit is not None
        and hit.crl_number == crl_number
        and now - hit.produced < (REUSE_FOR if hit.is_known else ttl)
    ):
        return hit.der
    status = lookup(issuer, serial)
    der = ocsp.build_response(
        issuer,
        serial=serial,
        lookup=status,
        valid_for=RESPONSE_VALIDITY,
        hash_name=hash_name,
    )
    # Tagged with the crl_number read BEFORE the lookup: should a revocation commit in
    # between, the next check moves the number and this answer is not used again.
    answer = _Answer(now, der, status.status is not ocsp.CertStatus.UNKNOWN, crl_number)
    with _CACHE.lock:
        if _CACHE.size >= 100_000:
            _CACHE.responses.clear()
            _CACHE.size = 0
        answers = _CACHE.responses.setdefault(ca_id, {})
        _CACHE.size += (serial, hash_name) not in answers
        answers[(serial, hash_name)] = answer
    return der


def answer(request_der: bytes) -> bytes:
    """The DER OCSPResponse for a DER OCSPRequest (malformed/unauthorized when due).

    A response the rules refuse to sign (a stored revocation reason no response may carry,
    a lint finding) is answered internalError (RFC 6960 §2.3) and logged: a relying party
    must not get a response that breaks the profile, nor an HTTP error page.
    """
    issuers = [issuer for _, issuer in _issuers()]
    try:
        return ocsp.respond(
            request_der, issuers, lookup, valid_for=RESPONSE_VALIDITY, cached=_cached
        )
    except PkiError as exc:
        log.error("OCSP response refused: %s", exc)
        return ocsp.internal_error_response()


def forget() -> None:
    """Drop the per-process caches (tests; after a CA is added the TTL does it anyway)."""
    with _CACHE.lock:
        _CACHE.issuers = (0.0, [])
        _CACHE.checked_at = float("-inf")
        _CACHE.crl_numbers = {}
        _CACHE.responses.clear()
        _CACHE.size = 0
