"""OCSP responder logic (RFC 6960), pure: request bytes in, signed response bytes out.

The CA signs its own responses (RFC 6960 §4.2.2.2, responder ID by key hash). Two ways
to answer:

* respond(): the whole flow for one request, including malformedRequest for garbage,
  unauthorized for a CA we do not serve (§2.3) and the nonce echo (RFC 8954).
* build_response(): a response for (issuer, serial, status) with no request, so a
  service can cache pre-produced responses per serial (and CertID hash) and re-sign only
  when the status changes or nextUpdate nears; respond() uses a cache hit only for
  requests without a nonce.

cryptography stamps producedAt with the real clock; thisUpdate/nextUpdate use ``now``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from app.pki.errors import OcspRequestError
from app.pki.issuer import CERT_ID_HASHES, Issuer
from app.pki.revocation import check_publishable_reason
from app.pki.validity import to_utc, utc_now

MAX_NONCE_LENGTH: Final = 32  # RFC 8954 §2.1
MAX_REQUEST_BYTES: Final = 64 * 1024


class CertStatus(enum.StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class StatusLookup:
    """What the database says about one serial of one CA. ``is_ca``: the serial is a CA
    certificate the CA signed (an issuing CA under a root), whose revocation must state
    its reason (BR §7.3) and may be cACompromise (RFC 5280 §5.3.1)."""

    status: CertStatus
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None
    is_ca: bool = False

    def __post_init__(self) -> None:
        if (self.status is CertStatus.REVOKED) != (self.revoked_at is not None):
            raise ValueError("revoked_at is required for, and only for, a revoked status")


GOOD: Final = StatusLookup(CertStatus.GOOD)
UNKNOWN: Final = StatusLookup(CertStatus.UNKNOWN)

# A pre-produced response for (issuer, serial, CertID hash name), or None; lets respond()
# use the service's cache without knowing how it is stored.
CachedResponse = Callable[[Issuer, int, str], bytes | None]


@dataclass(frozen=True)
class OcspQuery:
    """The single CertID of a request (RFC 6960 §4.1.1) and its nonce, if any."""

    serial: int
    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    nonce: bytes | None


def decode_get_path(segment: str) -> bytes:
    """The DER request from a GET URL's last path segment (RFC 6960 Appendix A.1:
    base64 of the DER, then URL-encoded).

    Raises:
        OcspRequestError: not URL-encoded base64.
    """
    text = urllib.parse.unquote(segment).strip()
    text = text.replace("-", "+").replace("_", "/")  # tolerate the base64url alphabet
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise OcspRequestError("OCSP GET path is not base64-encoded DER") from None


def parse_request(der: bytes) -> OcspQuery:
    """Parse a DER OCSPRequest with a single request (all cryptography supports).

    Raises:
        OcspRequestError: not DER, several requests, unsupported CertID hash, bad nonce.
    """
    if not der or len(der) > MAX_REQUEST_BYTES:
        raise OcspRequestError("OCSP request is empty or too large")
    try:
        request = ocsp.load_der_ocsp_request(der)
    # A request listing several certificates is refused (RFC 5019 profiles one; see
    # docs/pki.md): cryptography reports it as an unsupported feature, NotImplementedError.
    except (ValueError, NotImplementedError) as exc:
        raise OcspRequestError(f"OCSP request could not be parsed: {exc}") from None
    try:
        hash_name = request.hash_algorithm.name
    except UnsupportedAlgorithm:
        raise OcspRequestError("OCSP CertID uses an unknown hash algorithm") from None
    if hash_name not in CERT_ID_HASHES:
        raise OcspRequestError(f"OCSP CertID hash {hash_name} is not supported (SHA-1, SHA-256)")
    try:
        nonce_ext = request.extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        nonce = None
    except ValueError as exc:
        raise OcspRequestError(f"OCSP request extensions could not be parsed: {exc}") from None
    else:
        nonce = nonce_ext.value.nonce
        if not 1 <= len(nonce) <= MAX_NONCE_LENGTH:
            raise OcspRequestError(f"OCSP nonce must be 1 to {MAX_NONCE_LENGTH} octets")
    return OcspQuery(
        serial=request.serial_number,
        hash_name=hash_name,
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        nonce=nonce,
    )


def is_for_issuer(query: OcspQuery, issuer: Issuer) -> bool:
    """Whether the CertID's issuerNameHash and issuerKeyHash are this CA's."""
    expected = issuer.cert_id_hashes.get(query.hash_name)
    return expected == (query.issuer_name_hash, query.issuer_key_hash)


def find_issuer(query: OcspQuery, issuers: Iterable[Issuer]) -> Issuer | None:
    """The CA a query is about, among those this responder serves."""
    return next((issuer for issuer in issuers if is_for_issuer(query, issuer)), None)


def build_response(
    issuer: Issuer,
    *,
    serial: int,
    lookup: StatusLookup,
    valid_for: dt.timedelta,
    hash_name: str = "sha1",
    nonce: bytes | None = None,
    now: dt.datetime | None = None,
    lint: bool = True,
) -> bytes:
    """A signed, successful BasicOCSPResponse (DER) for one serial of ``issuer``, linted
    before it is returned (status_lint.check_ocsp_response) unless ``lint`` is false.

    thisUpdate = ``now``, nextUpdate = ``now + valid_for``. The CertID uses ``hash_name``
    ("sha1" or "sha256"); a client matches it against its request's CertID. The serial
    may be a leaf's or, for a CA that signs CA certificates, an issuing CA's
    (``lookup.is_ca``): RFC 6960 answers for any certificate the CA issued.

    Raises:
        OcspRequestError: an unsupported CertID hash.
        RevocationPolicyError: a revocation reason no response may carry (BR §7.3).
        LintError: findings outside the OCSP allow-list; do not send it.
    """
    if hash_name not in CERT_ID_HASHES:
        raise OcspRequestError(f"OCSP CertID hash {hash_name} is not supported (SHA-1, SHA-256)")
    this_update = to_utc(now) if now is not None else utc_now()
    name_hash, key_hash = issuer.cert_id_hashes[hash_name]
    reason = lookup.reason
    if lookup.status is CertStatus.REVOKED:
        # BR §7.3: the reason must be one a CRL may carry (BR §7.2.2), and present for a
        # CA certificate.
        check_publishable_reason(reason or x509.ReasonFlags.unspecified, is_ca=lookup.is_ca)
    if reason is x509.ReasonFlags.unspecified:
        reason = None  # as in CRLs (RFC 5280 §5.3.1): omit rather than say unspecified
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=CERT_ID_HASHES[hash_name],
            cert_status=_STATUS[lookup.status],
            this_update=this_update,
            next_update=this_update + valid_for,
            revocation_time=to_utc(lookup.revoked_at) if lookup.revoked_at else None,
            revocation_reason=reason if lookup.status is CertStatus.REVOKED else None,
        )
        # RFC 6960 §4.2.2.3: ResponderID byKey = SHA-1 of the signer's public key.
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    der = builder.sign(issuer.private_key, issuer.hash_algorithm).public_bytes(_DER)
    if lint:
        from app.pki.status_lint import check_ocsp_response  # pkilint: imported when first used

        check_ocsp_response(der, for_ca_certificate=lookup.is_ca)
    return der


def respond(
    request_der: bytes,
    issuers: Iterable[Issuer],
    lookup: Callable[[Issuer, int], StatusLookup],
    *,
    valid_for: dt.timedelta,
    cached: CachedResponse | None = None,
    now: dt.datetime | None = None,
) -> bytes:
    """Answer one OCSP request: malformedRequest, unauthorized, or a signed status.

    ``lookup(issuer, serial)`` reads the database; ``cached(issuer, serial, hash_name)``
    may return a pre-produced response, used only when the request carries no nonce.
    """
    try:
        query = parse_request(request_der)
    except OcspRequestError:
        return malformed_response()
    issuer = find_issuer(query, issuers)
    if issuer is None:
        # RFC 6960 §2.3: we are not authoritative for that CA.
        return unauthorized_response()
    if query.nonce is None and cached is not None:
        hit = cached(issuer, query.serial, query.hash_name)
        if hit is not None:
            return hit
    return build_response(
        issuer,
        serial=query.serial,
        lookup=lookup(issuer, query.serial),
        valid_for=valid_for,
        hash_name=query.hash_name,
        nonce=query.nonce,
        now=now,
    )


def malformed_response() -> bytes:
    """The unsigned malformedRequest response (RFC 6960 §2.3)."""
    return _MALFORMED


def unauthorized_response() -> bytes:
    """The unsigned unauthorized response (RFC 6960 §2.3)."""
    return _UNAUTHORIZED


def internal_error_response() -> bytes:
    """The unsigned internalError response, for a database that cannot answer."""
    return _INTERNAL_ERROR


_DER: Final = Encoding.DER
_STATUS: Final = {
    CertStatus.GOOD: ocsp.OCSPCertStatus.GOOD,
    CertStatus.REVOKED: ocsp.OCSPCertStatus.REVOKED,
    CertStatus.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
}
_MALFORMED: Final = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST
).public_bytes(_DER)
_UNAUTHORIZED: Final = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.UNAUTHORIZED
).public_bytes(_DER)
_INTERNAL_ERROR: Final = ocsp.OCSPResponseBuilder.build_unsuccessful(
    ocsp.OCSPResponseStatus.INTERNAL_ERROR
).public_bytes(_DER)
