"""ACME (RFC 8555): external account binding keys, accounts, nonces, orders,
authorizations and challenges. States are app.acme.messages.Status values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.org import Department, Organization
from app.models.pki import CertificateProfile
from app.models.types import UTCDateTime, utcnow


class AcmeExternalKey(db.Model):  # type: ignore[name-defined,misc]
    """An EAB credential (RFC 8555 §7.3.4): a key id and an HMAC key an admin created for an
    organization (or one department); every account registered with it acts there."""

    __tablename__ = "acme_external_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    # The HMAC key, sealed with the key-encryption keys (CW_KEK); shown once, at creation.
    sealed_hmac_key: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str] = mapped_column(String(128), default="")
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )

    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def __str__(self) -> str:
        return self.label or self.key_id


class AcmeAccount(db.Model):  # type: ignore[name-defined,misc]
    """An ACME account: one client key (by its RFC 7638 thumbprint), bound by an EAB key
    to the EAB key's organization/department."""

    __tablename__ = "acme_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    jwk: Mapped[dict[str, str]] = mapped_column(JSON)
    contact: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="valid")
    external_key_id: Mapped[int] = mapped_column(ForeignKey("acme_external_keys.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the account last signed a request (written at most once a minute).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    external_key: Mapped[AcmeExternalKey] = relationship()
    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()


class AcmeNonce(db.Model):  # type: ignore[name-defined,misc]
    """A replay nonce (RFC 8555 §6.5): stored so that any web process accepts it, deleted
    when used (single use by one conditional DELETE)."""

    __tablename__ = "acme_nonces"

    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AcmeOrder(db.Model):  # type: ignore[name-defined,misc]
    """An order (§7.1.3) under one ACME-enabled profile; finalize makes it a certificate
    request that goes through enrollment like the console's."""

    __tablename__ = "acme_orders"
    __table_args__ = (
        Index(
            "ix_acme_orders_processing",
            "dispatched_at",
            postgresql_where=text("status = 'processing'"),
            sqlite_where=text("status = 'processing'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("acme_accounts.id"), index=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("certificate_profiles.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    identifiers: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate_requests.id"), nullable=True, index=True
    )
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    # RFC 9773 §5: the certificate this order replaces (its ARI identifier as the client
    # sent it, and the row).
    replaces: Mapped[str | None] = mapped_column(String(128), nullable=True)
    replaces_certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates.id"), nullable=True, index=True
    )
    # When the issuance message of this order was last sent (finalize, or the scheduler
    # sending it again: app.services.acme.dispatch); None: not ours to send (the request
    # waits for an administrator, whose approval queues the issuance).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    account: Mapped[AcmeAccount] = relationship()
    profile: Mapped[CertificateProfile] = relationship()
    authorizations: Mapped[list[AcmeAuthorization]] = relationship(
        back_populates="order", order_by="AcmeAuthorization.id"
    )


class AcmeAuthorization(db.Model):  # type: ignore[name-defined,misc]
    """An authorization (§7.1.4) for one identifier of one order (never reused)."""

    __tablename__ = "acme_authorizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("acme_orders.id"), index=True)
    identifier: Mapped[str] = mapped_column(String(253))  # the DNS name, without "*."
    wildcard: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    order: Mapped[AcmeOrder] = relationship(back_populates="authorizations")
    challenges: Mapped[list[AcmeChallenge]] = relationship(
        back_populates="authorization", order_by="AcmeChallenge.id"
    )


class AcmeChallenge(db.Model):  # type: ignore[name-defined,misc]
    """A challenge (§7.1.5, §8) of an authorization."""

    __tablename__ = "acme_challenges"
    __table_args__ = (
        Index(
            "ix_acme_challenges_processing",
            "dispatched_at",
            postgresql_where=text("status = 'processing'"),
            sqlite_where=text("status = 'processing'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authorization_id: Mapped[int] = mapped_column(ForeignKey("acme_authorizations.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")  # what validation saw, for admins
    # When the validation message was last sent (the client's response, or the scheduler
    # sending it again: app.services.acme.dispatch).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The account's URL as the client saw it when it responded (the Location of newAccount,
    # its kid), for CAA's accounturi (RFC 8657 §3); None before it responded.
    account_url: Mapped[str | None] = mapped_column(Text, nullable=True)

    authorization: Mapped[AcmeAuthorization] = relationship(back_populates="challenges")
