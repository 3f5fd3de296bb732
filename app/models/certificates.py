"""Certificate requests and THE inventory: one Certificate row per distinct certificate.

Issued, discovered and imported certificates all live in `certificates`, deduplicated by
SHA-256 fingerprint; dashboards, reports, notifications and the API read this one table.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.org import CertType, Department, Organization
from app.models.pki import CertificateAuthority, CertificateProfile
from app.models.types import UTCDateTime, str_enum, utcnow


class RequestStatus(enum.StrEnum):
    REQUESTED = "Requested"
    APPROVED = "Approved"
    DECLINED = "Declined"
    ISSUED = "Issued"
    FAILED = "Failed"


class RequestMode(enum.StrEnum):
    CSR = "csr"  # the requester holds the key and sent a CSR
    KEYGEN = "keygen"  # the server generates the key (delivered as PKCS#12 only)


class CertificateRequest(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "certificate_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cert_type: Mapped[CertType] = mapped_column(str_enum(CertType, 16))
    profile_id: Mapped[int] = mapped_column(ForeignKey("certificate_profiles.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )
    status: Mapped[RequestStatus] = mapped_column(
        str_enum(RequestStatus, 16), default=RequestStatus.REQUESTED, index=True
    )
    mode: Mapped[RequestMode] = mapped_column(str_enum(RequestMode, 8))
    csr_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    public_key_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    key_type: Mapped[str] = mapped_column(String(16))
    common_name: Mapped[str] = mapped_column(String(255))
    # DNS names and IP addresses (and emails for client certificates), normalised.
    sans: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Final subject after organization values were applied: {"C":..,"ST":..,"L":..,"O":..,"OU":..,"CN":..}
    subject: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    term_days: Mapped[int] = mapped_column(Integer)
    requester_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    requester_email: Mapped[str] = mapped_column(String(254), default="")
    external_requesters: Mapped[list[str]] = mapped_column(JSON, default=list)
    comments: Mapped[str] = mapped_column(Text, default="")
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False)
    renew_days_before: Mapped[int] = mapped_column(Integer, default=30)
    eula_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_message: Mapped[str] = mapped_column(Text, default="")
    failure_reason: Mapped[str] = mapped_column(Text, default="")
    issue_attempts: Mapped[int] = mapped_column(Integer, default=0)
    certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "certificates.id",
            use_alter=True,
            name="fk_certificate_requests_certificate_id_certificates",
        ),
        nullable=True,
    )
    # History: a renewal or replacement points at the certificate it succeeds.
    renewal_of_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "certificates.id",
            use_alter=True,
            name="fk_certificate_requests_renewal_of_id_certificates",
        ),
        nullable=True,
    )
    replaces_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "certificates.id",
            use_alter=True,
            name="fk_certificate_requests_replaces_id_certificates",
        ),
        nullable=True,
    )
    # The end user a client certificate is for (persons, the enrollment portal).
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id"), nullable=True, index=True
    )

    profile: Mapped[CertificateProfile] = relationship()
    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()
    certificate: Mapped[Certificate | None] = relationship(foreign_keys=[certificate_id])

    def __str__(self) -> str:
        return f"Request #{self.id} {self.common_name}"


class CertOrigin(enum.StrEnum):
    ISSUED = "Issued"  # by one of our CAs
    DISCOVERED = "Discovered"
    IMPORTED = "Imported"


class CertStatus(enum.StrEnum):
    ISSUED = "Issued"
    REVOKED = "Revoked"
    EXPIRED = "Expired"
    REPLACED = "Replaced"
    EXTERNAL = "External"


class Certificate(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("ca_id", "serial_hex"),
        Index("ix_certificates_org_dept", "organization_id", "department_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the DER
    der: Mapped[bytes] = mapped_column(LargeBinary)
    cert_type: Mapped[CertType | None] = mapped_column(str_enum(CertType, 16), nullable=True)
    origin: Mapped[CertOrigin] = mapped_column(str_enum(CertOrigin, 16))
    status: Mapped[CertStatus] = mapped_column(str_enum(CertStatus, 16), index=True)
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id"), nullable=True
    )
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )
    assigned_rule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    assigned_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ca_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate_authorities.id"), nullable=True
    )
    profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate_profiles.id"), nullable=True
    )
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate_requests.id"), nullable=True, index=True
    )
    serial_hex: Mapped[str] = mapped_column(String(64), index=True)
    subject_dn: Mapped[str] = mapped_column(Text, default="")
    common_name: Mapped[str] = mapped_column(String(255), default="", index=True)
    subject_o: Mapped[str] = mapped_column(String(255), default="")
    subject_ou: Mapped[str] = mapped_column(String(255), default="")
    issuer_dn: Mapped[str] = mapped_column(Text, default="")
    issuer_cn: Mapped[str] = mapped_column(String(255), default="")
    sans: Mapped[list[str]] = mapped_column(JSON, default=list)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Named in the vocabulary of app.pki.algorithms: family "EC", size 256, type "EC-P256",
    # signature "ECDSA-SHA256", whether we issued, discovered or imported the certificate.
    key_algorithm: Mapped[str] = mapped_column(String(32), default="")
    key_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_type: Mapped[str] = mapped_column(String(32), default="")
    signature_algorithm: Mapped[str] = mapped_column(String(64), default="")
    is_self_signed: Mapped[bool] = mapped_column(Boolean, default=False)
    is_ca: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revocation_reason: Mapped[str] = mapped_column(String(32), default="")
    revoked_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"), nullable=True)
    # The certificate in the inventory that signed this one, when known (imports link a
    # bundle's chain, and a new certificate to an issuer already stored). No foreign key:
    # certificates are never deleted, and SQLite cannot add or drop a column that holds
    # one without copying this table, which the tables referring to it forbid (0010).
    issuer_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # SHA-256 of the SubjectPublicKeyInfo: the key's identity, to find keys that several
    # certificates share ("" until computed: app.services.imports.findings).
    spki_sha256: Mapped[str] = mapped_column(String(64), default="", index=True)
    # Which version of the hygiene checks (app.services.imports.sweep.HYGIENE_VERSION) last
    # looked at this certificate: the sweep checks those below the current one.
    hygiene_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)
    # An RSA key's openssl-blacklist fingerprint (app.pki.weak_keys.debian_fingerprint), set
    # by the hygiene sweep: a Debian weak key list loaded later finds its certificates by it.
    debian_fingerprint: Mapped[str] = mapped_column(
        String(20), default="", server_default="", index=True
    )
    # A server-generated key, sealed like CA keys; released only inside a PKCS#12.
    sealed_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # SHA-256 of the token in the collection link mailed to the requesters.
    collect_token_hash: Mapped[str] = mapped_column(String(64), default="")
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False)
    renew_days_before: Mapped[int] = mapped_column(Integer, default=30)
    renewal_state: Mapped[str] = mapped_column(String(32), default="")
    # Chain presented by an endpoint (DER list, leaf excluded) for discovered/imported ones.
    chain_der: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    organization: Mapped[Organization | None] = relationship()
    department: Mapped[Department | None] = relationship()
    ca: Mapped[CertificateAuthority | None] = relationship()
    request: Mapped[CertificateRequest | None] = relationship(foreign_keys=[request_id])

    @property
    def is_managed(self) -> bool:
        return self.origin == CertOrigin.ISSUED

    def __str__(self) -> str:
        return self.common_name or self.fingerprint[:16]
