"""Private CAs, certificate profiles, reserved serial numbers and cached OCSP responses."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.org import CertType
from app.models.types import UTCDateTime, str_enum, utcnow


class CaStatus(enum.StrEnum):
    ACTIVE = "Active"
    RETIRED = "Retired"
    REVOKED = "Revoked"  # its certificate is on its parent's CRL; it signs nothing more


class CertificateAuthority(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "certificate_authorities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate_authorities.id"), nullable=True
    )
    key_type: Mapped[str] = mapped_column(String(16))
    signature_hash: Mapped[str] = mapped_column(String(16))
    customer_name: Mapped[str] = mapped_column(String(64))
    locality: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(128), default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    subject_dn: Mapped[str] = mapped_column(String(512))
    serial_hex: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    cert_der: Mapped[bytes] = mapped_column(LargeBinary)
    # The private key, sealed with the key-encryption key (MultiFernet); never shown.
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[CaStatus] = mapped_column(str_enum(CaStatus, 16), default=CaStatus.ACTIVE)
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    crl_this_update: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    crl_next_update: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    # An issuing CA whose certificate its parent revoked (listed on the parent's CRL and
    # answered "revoked" by the parent's OCSP responder); a root is never revoked.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revocation_reason: Mapped[str] = mapped_column(String(32), default="")

    parent: Mapped[CertificateAuthority | None] = relationship(remote_side=[id])

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def kind_label(self) -> str:
        return "Root CA" if self.is_root else "Issuing CA"

    def __str__(self) -> str:
        return self.name


class LintMode(enum.StrEnum):
    EVERY = "every"  # lint every certificate (default)
    SAMPLE = "sample"  # lint the first after any profile change, then one in N


class CertificateProfile(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "certificate_profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    cert_type: Mapped[CertType] = mapped_column(str_enum(CertType, 16))
    ca_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"), index=True)
    terms: Mapped[list[int]] = mapped_column(JSON, default=list)  # allowed terms in days
    key_types: Mapped[list[str]] = mapped_column(JSON, default=list)  # e.g. ["RSA-2048", "EC-P256"]
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=True)
    four_eyes: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_key_reuse: Mapped[bool] = mapped_column(Boolean, default=True)
    include_client_auth: Mapped[bool] = mapped_column(Boolean, default=False)
    # Device certificates: serverAuth beside clientAuth (a device that also serves TLS).
    include_server_auth: Mapped[bool] = mapped_column(Boolean, default=False)
    # Client certificates: keep the server-generated key sealed under the KEK (exportable
    # by an MRAO, audited); otherwise it exists only inside the end user's PKCS#12.
    key_escrow: Mapped[bool] = mapped_column(Boolean, default=False)
    # PKCS#12 with 3DES and SHA-1 (old Windows and macOS importers) instead of AES-256.
    pkcs12_legacy: Mapped[bool] = mapped_column(Boolean, default=False)
    lint_mode: Mapped[LintMode] = mapped_column(str_enum(LintMode, 16), default=LintMode.EVERY)
    lint_sample_n: Mapped[int] = mapped_column(Integer, default=100)
    # Counts certificates since the last change, for the sampling lint mode.
    issued_since_change: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set: the profile has an ACME directory at /acme/<acme_slug>/directory (RFC 8555).
    acme_slug: Mapped[str | None] = mapped_column(
        String(63), unique=True, index=True, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    ca: Mapped[CertificateAuthority] = relationship()

    @property
    def terms_label(self) -> str:
        return ", ".join(f"{t} days" for t in sorted(self.terms or []))

    def __str__(self) -> str:
        return self.name


class SerialNumber(db.Model):  # type: ignore[name-defined,misc]
    """A serial reserved for a CA before anything is signed with it (unique per CA)."""

    __tablename__ = "serial_numbers"
    __table_args__ = (UniqueConstraint("ca_id", "serial_hex"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"))
    serial_hex: Mapped[str] = mapped_column(String(42))
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    purpose: Mapped[str] = mapped_column(String(32), default="leaf")


class BlockedKey(db.Model):  # type: ignore[name-defined,misc]
    """A public key that is never certified again (CA/B Forum BR 6.1.1.3(4)): its
    certificate was revoked for keyCompromise (or cACompromise), or it was imported from a
    list of compromised or weak keys. Identified by the SHA-256 of its DER
    SubjectPublicKeyInfo (app.pki.weak_keys.spki_sha256)."""

    __tablename__ = "blocked_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spki_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(255), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DebianWeakKey(db.Model):  # type: ignore[name-defined,misc]
    """An RSA key made by Debian's broken OpenSSL of 2006-2008 (CVE-2008-0166; BR
    6.1.1.3(5.1)), by the fingerprint Debian's openssl-blacklist files use
    (app.pki.weak_keys.debian_fingerprint), loaded with `flask --app wsgi ca weak-keys load`."""

    __tablename__ = "debian_weak_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(20), unique=True)
    source: Mapped[str] = mapped_column(String(255), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CrlPublication(db.Model):  # type: ignore[name-defined,misc]
    """Every CRL a CA published (the CA row keeps the latest one's bytes)."""

    __tablename__ = "crl_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"), index=True)
    crl_number: Mapped[int] = mapped_column(Integer)
    entries: Mapped[int] = mapped_column(Integer, default=0)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(64), default="")
