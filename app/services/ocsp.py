"""The OCSP responder (RFC 6960): answers from the inventory, signs with the CA itself.

Requests without a nonce get a pre-produced response cached per process for a few
seconds (CW_OCSP_CACHE_SECONDS), so a revocation is visible within that time while a hot
responder signs almost nothing. Requests with a nonce are signed fresh and echo it.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from cryptography import x509
from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, CertificateAuthority, CertStatus
from app.pki import crl as pki_crl
from app.pki import ocsp
from app.pki.issuer import Issuer
from app.services import ca

RESPONSE_VALIDITY = timedelta(hours=1)
_ISSUER_TTL = 30.0


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.issuers: tuple[float, list[tuple[int, Issuer]]] = (0.0, [])
        self.responses: dict[tuple[int, int, str], tuple[float, bytes]] = {}


_CACHE = _Cache()


def _issuers() -> list[tuple[int, Issuer]]:
    now = time.monotonic()
    with _CACHE.lock:
        stamp, items = _CACHE.issuers
        if now - stamp < _ISSUER_TTL and items:
            return items
    items = [
        (authority.id, ca.ISSUERS.get(authority))
        for authority in db.session.execute(select(CertificateAuthority)).scalars()
    ]
    with _CACHE.lock:
        _CACHE.issuers = (now, items)
    return items


def _ca_id(issuer: Issuer) -> int:
    return next(ca_id for ca_id, known in _issuers() if known is issuer)


def lookup(issuer: Issuer, serial: int) -> ocsp.StatusLookup:
    row = db.session.execute(
        select(Certificate.status, Certificate.revoked_at, Certificate.revocation_reason).where(
            Certificate.ca_id == _ca_id(issuer), Certificate.serial_hex == f"{serial:x}"
        )
    ).first()
    if row is None:
        return ocsp.UNKNOWN
    status, revoked_at, reason = row
    if status == CertStatus.REVOKED and revoked_at is not None:
        flag = pki_crl.parse_reason(reason) if reason else x509.ReasonFlags.unspecified
        return ocsp.StatusLookup(ocsp.CertStatus.REVOKED, revoked_at=revoked_at, reason=flag)
    return ocsp.GOOD


def _cached(issuer: Issuer, serial: int, hash_name: str) -> bytes:
    ttl = float(current_app.config.get("CW_OCSP_CACHE_SECONDS", 5))
    key = (_ca_id(issuer), serial, hash_name)
    now = time.monotonic()
    with _CACHE.lock:
        hit = _CACHE.responses.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    der = ocsp.build_response(
        issuer,
        serial=serial,
        lookup=lookup(issuer, serial),
        valid_for=RESPONSE_VALIDITY,
        hash_name=hash_name,
    )
    with _CACHE.lock:
        if len(_CACHE.responses) > 100_000:
            _CACHE.responses.clear()
        _CACHE.responses[key] = (now, der)
    return der


def answer(request_der: bytes) -> bytes:
    """The DER OCSPResponse for a DER OCSPRequest (malformed/unauthorized when due)."""
    issuers = [issuer for _, issuer in _issuers()]
    return ocsp.respond(request_der, issuers, lookup, valid_for=RESPONSE_VALIDITY, cached=_cached)


def forget() -> None:
    """Drop the per-process caches (tests; after a CA is added the TTL does it anyway)."""
    with _CACHE.lock:
        _CACHE.issuers = (0.0, [])
        _CACHE.responses.clear()
