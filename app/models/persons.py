"""End users of client certificates: persons, their invitations and portal enrollments,
the portal's guessing throttle, and per-organization portal settings and mail templates."""

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
from app.models.accounts import Admin
from app.models.domains import Domain
from app.models.org import Department, Organization
from app.models.pki import CertificateProfile
from app.models.types import UTCDateTime, str_enum, utcnow


class ValidationType(enum.StrEnum):
    """How the person's identity was checked; decides the S/MIME subject (docs/pki.md)."""

    STANDARD = "Standard"  # the mailbox only: S/MIME BR mailbox-validated
    HIGH = "High"  # the person's name too: S/MIME BR individual-validated


class Person(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"), index=True)
    # Lower-case domain part, as typed local part; unique account-wide (the portal's key).
    email: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(64))
    middle_name: Mapped[str] = mapped_column(String(64), default="")
    last_name: Mapped[str] = mapped_column(String(64))
    alt_emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    validation_type: Mapped[ValidationType] = mapped_column(
        str_enum(ValidationType, 16), default=ValidationType.STANDARD
    )
    phone: Mapped[str] = mapped_column(String(32), default="")
    # argon2 hashes; the secret id is never shown back, the passphrase is the end user's.
    secret_id_hash: Mapped[str] = mapped_column(String(256), default="")
    passphrase_hash: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )

    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()
    domain: Mapped[Domain] = relationship()

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.middle_name, self.last_name) if p)

    @property
    def emails(self) -> list[str]:
        return [self.email, *(self.alt_emails or [])]

    def __str__(self) -> str:
        return f"{self.full_name} <{self.email}>"


class InvitationKind(enum.StrEnum):
    REGISTRATION = "registration"  # an admin invited the person
    RENEWAL = "renewal"  # the person renewed through the portal


class InvitationStatus(enum.StrEnum):
    PENDING = "Pending"
    USED = "Used"
    REVOKED = "Revoked"
    SUPERSEDED = "Superseded"  # a newer invitation (resend) replaced it


class Invitation(db.Model):  # type: ignore[name-defined,misc]
    """A one-time registration code, bound to a person; only its SHA-256 is stored."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    kind: Mapped[InvitationKind] = mapped_column(
        str_enum(InvitationKind, 16), default=InvitationKind.REGISTRATION
    )
    profile_id: Mapped[int] = mapped_column(ForeignKey("certificate_profiles.id"))
    term_days: Mapped[int] = mapped_column(Integer)
    key_type: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[InvitationStatus] = mapped_column(
        str_enum(InvitationStatus, 16), default=InvitationStatus.PENDING, index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A self-service renewal: the certificate revoked (superseded) once the new one is collected.
    renews_certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates.id"), nullable=True
    )

    person: Mapped[Person] = relationship()
    profile: Mapped[CertificateProfile] = relationship()
    created_by: Mapped[Admin | None] = relationship()

    def __str__(self) -> str:
        return f"Invitation #{self.id}"


class EnrollmentStatus(enum.StrEnum):
    PENDING = "pending"  # the key generation job has not finished
    READY = "ready"  # the PKCS#12 waits for its one download
    COLLECTED = "collected"
    FAILED = "failed"
    EXPIRED = "expired"  # not collected in time: the PKCS#12 was deleted


class PortalEnrollment(db.Model):  # type: ignore[name-defined,misc]
    """One registration on the portal: its request, the key generation job and the
    PKCS#12 that is downloaded once. The PKCS#12 password is sealed under the KEK only
    until the job has built the file; the file is sealed too and deleted when collected."""

    __tablename__ = "portal_enrollments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    invitation_id: Mapped[int] = mapped_column(
        ForeignKey("invitations.id", ondelete="CASCADE"), unique=True
    )
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate_requests.id"), nullable=True
    )
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"), nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Random; the progress page's URL carries HMAC(SECRET_KEY, nonce), so the database
    # alone does not give the link, and the worker can still mail it.
    token_nonce: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[EnrollmentStatus] = mapped_column(
        str_enum(EnrollmentStatus, 16), default=EnrollmentStatus.PENDING
    )
    legacy_pkcs12: Mapped[bool] = mapped_column(Boolean, default=False)
    sealed_password: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sealed_pkcs12: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    failure_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    person: Mapped[Person] = relationship()
    invitation: Mapped[Invitation] = relationship()


class PortalThrottle(db.Model):  # type: ignore[name-defined,misc]
    """Failed portal attempts per key ("ip:..." / "email:...") in a fixed window."""

    __tablename__ = "portal_throttles"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PortalSettings(db.Model):  # type: ignore[name-defined,misc]
    """An organization's settings for client certificates on the portal."""

    __tablename__ = "organization_portal_settings"

    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    invitation_days: Mapped[int] = mapped_column(Integer, default=7)


class MailTemplate(db.Model):  # type: ignore[name-defined,misc]
    """An organization's own wording of one of its mails (default: built in): the portal
    mails (kind "invitation", ...) and its notifications ("notice.<type>", "digest.<type>",
    app/services/notifications/templates.py)."""

    __tablename__ = "mail_templates"
    __table_args__ = (UniqueConstraint("organization_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text)  # the plain-text part
    # Notifications only: the HTML part (empty: made from the plain text).
    html: Mapped[str] = mapped_column(Text, default="", server_default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )

    organization: Mapped[Organization] = relationship()
