"""Helpers for the notification tests: a real SMTP server (aiosmtpd) that keeps what it
receives, parsed; certificates in bulk (copies of one real certificate's row with their own
fingerprint, serial and expiry, as discovery stores certificates it finds)."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, CertOrigin, CertStatus, CertType
from app.models.types import utcnow
from app.services import bulk


class Inbox:
    """An aiosmtpd handler keeping every message (envelope and parsed content)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for _, rcpts, m in self.received if address in rcpts]

    def subjects(self, address: str | None = None) -> list[str]:
        return [
            str(m["Subject"])
            for _, rcpts, m in self.received
            if address is None or address in rcpts
        ]

    def clear(self) -> None:
        self.received.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smtp_server() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def parts(message: EmailMessage) -> dict[str, str]:
    """content type -> text of each leaf part."""
    found = {}
    for part in message.walk():
        if not part.is_multipart():
            found[part.get_content_type()] = part.get_content()
    return found


def copies(
    template: Certificate,
    not_afters: Sequence[datetime],
    *,
    organization_id: int | None = None,
    department_id: int | None = None,
    status: CertStatus = CertStatus.EXTERNAL,
    prefix: str = "host",
) -> list[int]:
    """Insert one certificate row per expiry, copied from a real one; their ids."""
    row = (
        db.session.execute(select(Certificate.__table__).where(Certificate.id == template.id))
        .mappings()
        .one()
    )
    rows = []
    for i, not_after in enumerate(not_afters):
        data = {k: v for k, v in row.items() if k != "id"}
        data.update(
            fingerprint=f"{prefix}-{i:08d}-{template.id}".ljust(64, "0")[:64],
            serial_hex=f"{i:x}{template.id:x}",
            ca_id=None,
            request_id=None,
            common_name=f"{prefix}{i}.example",
            not_after=not_after,
            status=status,
            origin=CertOrigin.DISCOVERED,
            organization_id=organization_id
            if organization_id is not None
            else row["organization_id"],
            department_id=department_id,
            sealed_key=None,
            collect_token_hash="",
        )
        rows.append(data)
    return bulk.insert_rows(Certificate.__table__, rows, return_ids=True)


def discovered_certificate(
    org_id: int | None, not_after: datetime, *, cn: str = "found.example"
) -> Certificate:
    """A real self-signed certificate stored as discovery stores one it found (External),
    without an issuance (and so without a worker)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    row = Certificate(
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        der=cert.public_bytes(serialization.Encoding.DER),
        cert_type=CertType.SSL,
        origin=CertOrigin.DISCOVERED,
        status=CertStatus.EXTERNAL,
        organization_id=org_id,
        serial_hex=f"{cert.serial_number:x}",
        subject_dn=f"CN={cn}",
        common_name=cn,
        issuer_dn=f"CN={cn}",
        issuer_cn=cn,
        sans=[cn],
        not_before=now - timedelta(days=1),
        not_after=not_after,
        is_self_signed=True,
    )
    db.session.add(row)
    db.session.flush()
    return row
