"""Build the rule Observation from a scanned certificate and its endpoint. Pure."""

from __future__ import annotations

from cryptography.x509.oid import NameOID

from app.scan.certinfo import (
    common_names,
    distinguished_name,
    key_type_labels,
    load_certificate,
    name_values,
    san_values,
)
from app.scan.probe import ProbeResult
from app.scan.rules import Observation


def observe(
    leaf: bytes | None,
    *,
    ip: str | None = None,
    port: int | None = None,
    host_name: str | None = None,
) -> Observation:
    """Observation of a leaf certificate (DER) found at ``ip:port`` (and ``host_name``).

    An unparseable or missing leaf yields only the endpoint fields.
    """
    cert = load_certificate(leaf) if leaf else None
    if cert is None:
        return Observation(host_name=host_name, ip=ip, port=port)
    issuer = cert.issuer
    return Observation(
        subject_cn=common_names(cert.subject),
        subject_o=name_values(cert.subject, NameOID.ORGANIZATION_NAME),
        subject_ou=name_values(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        san=san_values(cert),
        issuer=(
            *common_names(issuer),
            *name_values(issuer, NameOID.ORGANIZATION_NAME),
            distinguished_name(issuer),
        ),
        host_name=host_name,
        ip=ip or None,
        port=port,
        key_type=key_type_labels(cert),
    )


def observe_result(result: ProbeResult) -> Observation:
    """Observation of a probe result's leaf and endpoint."""
    return observe(result.leaf, ip=result.ip, port=result.port, host_name=result.host_name)
