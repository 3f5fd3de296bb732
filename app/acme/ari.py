"""ACME Renewal Information (RFC 9773): certificate identifiers and suggested windows.

A certificate is named by ``base64url(AKI keyIdentifier) "." base64url(serial)`` (§4.1),
the serial as the value octets of its DER INTEGER. The suggested renewal window (§4.2)
sits in the last third of the certificate's life, earlier when a shorter validity cap now
applies to its profile, and in the past (renew at once) when it must be replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from app.acme import jose
from app.acme.problems import AcmeProblem

# What a client is told to wait before asking again (§4.3: Retry-After).
RETRY_AFTER = timedelta(hours=6)
RETRY_AFTER_URGENT = timedelta(hours=1)
MAX_SERIAL_OCTETS = 20  # RFC 5280 §4.1.2.2


def serial_octets(serial: int) -> bytes:
    """The value octets of the DER INTEGER ``serial`` (a leading 0x00 when the top bit is
    set, so that it stays positive)."""
    if serial < 0:
        raise ValueError("a certificate serial is positive")
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def cert_id(authority_key_id: bytes, serial: int) -> str:
    """§4.1: the ARI certificate identifier."""
    return f"{jose.b64encode(authority_key_id)}.{jose.b64encode(serial_octets(serial))}"


def cert_id_of(cert: x509.Certificate) -> str:
    """§4.1 for a certificate (it must carry an AKI with a keyIdentifier)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    if aki.key_identifier is None:
        raise ValueError("the certificate's AKI has no keyIdentifier")
    return cert_id(aki.key_identifier, cert.serial_number)


@dataclass(frozen=True)
class CertId:
    authority_key_id: bytes
    serial: int

    @property
    def serial_hex(self) -> str:
        return f"{self.serial:x}"


def parse_cert_id(text: object) -> CertId:
    """§4.1 read back; every deviation (padding, a negative or non-minimal serial, a missing
    part) is malformed, so that one certificate has one identifier.

    Raises:
        AcmeProblem: malformed.
    """
    if not isinstance(text, str) or text.count(".") != 1:
        raise AcmeProblem(
            "malformed",
            "a certificate identifier is base64url(AKI keyIdentifier).base64url(serial)",
        )
    aki_text, serial_text = text.split(".")
    aki = jose.b64decode(aki_text, what="the identifier's keyIdentifier")
    octets = jose.b64decode(serial_text, what="the identifier's serial")
    if not aki:
        raise AcmeProblem("malformed", "the certificate identifier's keyIdentifier is empty")
    if not octets or len(octets) > MAX_SERIAL_OCTETS + 1:
        raise AcmeProblem("malformed", "the certificate identifier's serial has a wrong length")
    if octets[0] & 0x80:
        raise AcmeProblem("malformed", "the certificate identifier's serial is negative")
    if len(octets) > 1 and octets[0] == 0 and not octets[1] & 0x80:
        raise AcmeProblem("malformed", "the certificate identifier's serial is not minimal DER")
    return CertId(aki, int.from_bytes(octets, "big"))


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    retry_after: timedelta
    urgent: bool


def suggested_window(
    *,
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    must_replace: bool = False,
    term_cap: timedelta | None = None,
) -> Window:
    """§4.2: where in the certificate's life a client should renew.

    Normally from two thirds to five sixths of its life (a 90-day certificate: days 60 to
    75); clients pick a random moment inside, which spreads renewals. ``term_cap``: the
    profile's shortest term now, when it shortened: the life is counted as if the
    certificate had been issued with it, so the window moves earlier. ``must_replace``
    (revoked, its CA revoked or retired): a window that has begun already and ends now,
    so the client renews at once.
    """
    if must_replace:
        return Window(now - timedelta(hours=1), now, RETRY_AFTER_URGENT, True)
    life = not_after - not_before
    if term_cap is not None and term_cap < life:
        life = term_cap
    start = not_before + life * 2 / 3
    end = not_before + life * 5 / 6
    if end <= now:
        # Past its (capped) window already: renew now, but not all at the same second.
        return Window(now - timedelta(hours=1), now, RETRY_AFTER_URGENT, True)
    return Window(start, end, RETRY_AFTER, False)
