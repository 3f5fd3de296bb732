"""Signing with a CA: unseal its key once per process, reserve serials, build chains and the
URLs relying parties use (CRL, OCSP, CA certificate).

CA private keys are sealed with the key-encryption keys from configuration (CW_KEK) and
unsealed only in memory, once per process, to sign. They are never shown, logged or exported.
"""

from __future__ import annotations

import threading

from cryptography import x509
from flask import current_app

from app.models import (
    CaStatus,
    CertificateAuthority,
    SerialNumber,
)
from app.pki import issue, keystore
from app.pki.errors import PkiError
from app.pki.issuer import Issuer, make_issuer
from app.pki.profiles import SignatureHash
from app.services import audit, bulk
from app.services.errors import DomainError


def keks() -> keystore.KeyEncryptionKeys:
    return keystore.parse_keks(str(current_app.config["CW_KEK"]))


def pki_url() -> str:
    """The URL certificates name for CRLs, OCSP and CA certificates: CW_PKI_URL, else
    CW_BASE_URL (app/config.py checked_pki_url)."""
    return str(current_app.config.get("CW_PKI_URL") or current_app.config["CW_BASE_URL"])


def urls(ca_id: int | str) -> dict[str, str]:
    """Where relying parties find this CA's CRL, OCSP responder and certificate (a text
    ca_id such as "<id>" shows the pattern before the CA exists)."""
    base = pki_url()
    return {
        "crl_url": f"{base}/pki/crl/{ca_id}.crl",
        "ocsp_url": f"{base}/pki/ocsp/{ca_id}",
        "ca_issuers_url": f"{base}/pki/ca/{ca_id}.cer",
    }


def reserve_serials(ca: CertificateAuthority, count: int, *, purpose: str = "leaf") -> list[int]:
    """Reserve `count` fresh serials for `ca` in this transaction (unique per CA).

    The unique constraint makes a collision fail the transaction before anything that
    uses the serial is stored; with 159 random bits it does not happen in practice.
    """
    serials = [issue.new_serial() for _ in range(count)]
    now = audit.utcnow()
    bulk.insert_rows(
        SerialNumber.__table__,
        [
            {"ca_id": ca.id, "serial_hex": f"{s:x}", "purpose": purpose, "reserved_at": now}
            for s in serials
        ],
    )
    return serials


class _IssuerCache:
    """Unsealed CAs ready to sign, per process, keyed by CA id and certificate fingerprint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[int, str, str], Issuer] = {}

    def get(self, ca: CertificateAuthority) -> Issuer:
        key = (ca.id, ca.fingerprint, ca.signature_hash)
        with self._lock:
            found = self._items.get(key)
        if found is not None:
            return found
        cert = x509.load_der_x509_certificate(ca.cert_der)
        try:
            private_key = keystore.unseal_private_key(ca.sealed_key, keks())
        except PkiError as exc:
            raise DomainError(f"The key of CA '{ca.name}' cannot be unsealed: {exc}") from exc
        issuer = make_issuer(
            cert, private_key, signature_hash=SignatureHash(ca.signature_hash), **urls(ca.id)
        )
        with self._lock:
            self._items[key] = issuer
        return issuer

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


ISSUERS = _IssuerCache()


def load_issuer(ca: CertificateAuthority) -> Issuer:
    """The CA ready to sign certificates.

    Raises:
        DomainError: the CA is retired or revoked (it signs nothing more).
    """
    if ca.status != CaStatus.ACTIVE:
        raise DomainError(f"The CA '{ca.name}' is {ca.status.value.lower()} and signs nothing.")
    return ISSUERS.get(ca)


_CHAINS: dict[tuple[int, str], list[x509.Certificate]] = {}
_CHAINS_LOCK = threading.Lock()


def cached_chain_of(ca: CertificateAuthority) -> list[x509.Certificate]:
    """chain_of, kept per process: a CA's certificate and its parents never change (a CA
    is created with both; keyed by id and fingerprint, so a reused id is a new entry).
    Every download and collect needs it; walking the parents cost a query each."""
    key = (ca.id, ca.fingerprint)
    with _CHAINS_LOCK:
        found = _CHAINS.get(key)
    if found is None:
        found = chain_of(ca)
        with _CHAINS_LOCK:
            if len(_CHAINS) > 1000:
                _CHAINS.clear()
            _CHAINS[key] = found
    return list(found)


def certificate_of(ca: CertificateAuthority) -> x509.Certificate:
    return x509.load_der_x509_certificate(ca.cert_der)


def chain_of(ca: CertificateAuthority) -> list[x509.Certificate]:
    """Issuer-first chain for certificates this CA issues: [ca, its parent, ..., root]."""
    chain, seen = [], set()
    node: CertificateAuthority | None = ca
    while node is not None and node.id not in seen:
        seen.add(node.id)
        chain.append(certificate_of(node))
        node = node.parent
    return chain
