"""Health flags for a scanned endpoint, computed from its presented chain. Pure, no fetching.

Rules (each decided without fetching anything the certificate points to):

- ``self_signed_leaf``: the leaf's own key verifies its signature.
- ``incomplete_chain``: the leaf is not self-signed and no presented certificate (nor a
  caller-supplied trust anchor, e.g. our own CAs) verifies it. A server normally omits the
  root, so a presented intermediate whose issuer is missing is assumed to hang off a root;
  only a leaf without its issuer is flagged.
- ``misordered_chain``: the issuing path built from the leaf through the presented
  certificates is not positions 0, 1, 2, ... (RFC 8446 4.4.2 / RFC 5246 7.4.2 want each
  certificate to certify the one before it). Extra certificates after the path are tolerated.
- ``hostname_mismatch``: host-name targets only. SAN dNSNames per RFC 6125 6.4: case
  insensitive, a wildcard only as the whole left-most label, matching exactly one label, and
  never ``*.tld``. The subject CN is used only when the certificate has no dNSName SAN
  (RFC 6125 6.4.4).
- ``expired`` / ``not_yet_valid``: the leaf's validity period against ``now``.
- ``weak_key``: any presented certificate with RSA/DSA < 2048 bits or EC < 256 bits.
- ``sha1_signature``: any presented certificate, except a self-issued one (a root's own
  signature is not checked by clients), signed with SHA-1 or weaker (MD5).
- ``legacy_tls``: the session used TLS 1.0/1.1 (or SSL).
- ``unparseable_certificate``: the leaf is not a valid X.509 certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from app.scan.certinfo import (
    common_names,
    is_issued_by,
    is_self_issued,
    key_description,
    load_chain,
    subject_alt_names,
)
from app.scan.probe import ProbeResult

LEGACY_TLS_VERSIONS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"})
_MIN_BITS = {"RSA": 2048, "DSA": 2048, "EC": 256}
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)


class HealthFlag(StrEnum):
    SELF_SIGNED_LEAF = "self_signed_leaf"
    INCOMPLETE_CHAIN = "incomplete_chain"
    MISORDERED_CHAIN = "misordered_chain"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WEAK_KEY = "weak_key"
    SHA1_SIGNATURE = "sha1_signature"
    LEGACY_TLS = "legacy_tls"
    UNPARSEABLE_CERTIFICATE = "unparseable_certificate"


def match_dns_pattern(pattern: str, host_name: str) -> bool:
    """RFC 6125 6.4.3 matching of one presented dNSName against a reference host name."""
    pattern = pattern.strip().lower().rstrip(".")
    host = host_name.strip().lower().rstrip(".")
    if not pattern or not host:
        return False
    if pattern == host:
        return "*" not in pattern
    if not pattern.startswith("*."):
        return False
    suffix = pattern[2:]
    if "*" in suffix or "." not in suffix:
        return False
    label, dot, rest = host.partition(".")
    return bool(dot) and bool(label) and rest == suffix


def matches_host_name(cert: x509.Certificate, host_name: str) -> bool:
    """Whether ``cert`` is valid for ``host_name`` (an IP literal matches iPAddress SANs)."""
    san = subject_alt_names(cert)
    try:
        address = ipaddress.ip_address(host_name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return san is not None and address in san.get_values_for_type(x509.IPAddress)
    dns_names = san.get_values_for_type(x509.DNSName) if san is not None else []
    presented = dns_names or list(common_names(cert.subject))
    return any(match_dns_pattern(name, host_name) for name in presented)


def issuing_path(chain: Sequence[x509.Certificate | None]) -> list[int]:
    """Positions of the path leaf -> issuer -> ... through the presented certificates."""
    if not chain or chain[0] is None:
        return []
    path = [0]
    current = chain[0]
    while not is_self_issued(current):
        step = next(
            (
                index
                for index, candidate in enumerate(chain)
                if candidate is not None and index not in path and is_issued_by(current, candidate)
            ),
            None,
        )
        if step is None:
            break
        path.append(step)
        current = chain[step]  # type: ignore[assignment]  # None excluded above
    return path


def _is_weak_key(cert: x509.Certificate) -> bool:
    algorithm, bits = key_description(cert)
    minimum = _MIN_BITS.get(algorithm)
    return minimum is not None and bits is not None and bits < minimum


def _has_weak_signature(cert: x509.Certificate) -> bool:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return False
    return isinstance(algorithm, _WEAK_HASHES)


def assess_chain(
    chain: Sequence[bytes],
    *,
    host_name: str | None,
    tls_version: str | None,
    now: dt.datetime,
    anchors: Iterable[x509.Certificate] = (),
) -> frozenset[HealthFlag]:
    """Health flags for one endpoint; ``now`` must be timezone-aware.

    ``anchors`` are certificates that complete a chain without being presented (our own CAs,
    optionally a trust store): a leaf they issued is not flagged incomplete.
    """
    flags: set[HealthFlag] = set()
    if tls_version in LEGACY_TLS_VERSIONS:
        flags.add(HealthFlag.LEGACY_TLS)
    certs = load_chain(chain)
    if not certs:
        return frozenset(flags)
    leaf = certs[0]
    if leaf is None:
        flags.add(HealthFlag.UNPARSEABLE_CERTIFICATE)
        return frozenset(flags)
    self_signed = is_issued_by(leaf, leaf)
    if self_signed:
        flags.add(HealthFlag.SELF_SIGNED_LEAF)
    path = issuing_path(certs)
    if path != list(range(len(path))):
        flags.add(HealthFlag.MISORDERED_CHAIN)
    if (
        not self_signed
        and len(path) == 1
        and not any(is_issued_by(leaf, anchor) for anchor in anchors)
    ):
        flags.add(HealthFlag.INCOMPLETE_CHAIN)
    if host_name and not matches_host_name(leaf, host_name):
        flags.add(HealthFlag.HOSTNAME_MISMATCH)
    if now < leaf.not_valid_before_utc:
        flags.add(HealthFlag.NOT_YET_VALID)
    if now > leaf.not_valid_after_utc:
        flags.add(HealthFlag.EXPIRED)
    presented = [cert for cert in certs if cert is not None]
    if any(_is_weak_key(cert) for cert in presented):
        flags.add(HealthFlag.WEAK_KEY)
    if any(_has_weak_signature(c) and not is_self_issued(c) for c in presented):
        flags.add(HealthFlag.SHA1_SIGNATURE)
    return frozenset(flags)


def assess_result(
    result: ProbeResult, *, now: dt.datetime, anchors: Iterable[x509.Certificate] = ()
) -> frozenset[HealthFlag]:
    """assess_chain for a ProbeResult (hostname checked only for host-name targets)."""
    return assess_chain(
        result.chain,
        host_name=result.host_name,
        tls_version=result.tls_version,
        now=now,
        anchors=anchors,
    )
