"""Domains and their delegations to organizations/departments, per certificate type."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.accounts import Admin
from app.models.org import CertType, Department, Organization
from app.models.types import UTCDateTime, str_enum, utcnow


class DelegationStatus(enum.StrEnum):
    REQUESTED = "Requested"
    APPROVED = "Approved"
    REJECTED = "Rejected"


class Domain(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored lowercase as A-labels (IDNA); a wildcard domain keeps its leading '*.'.
    name: Mapped[str] = mapped_column(String(253), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Domain control validation (docs/api.md, DCV): none yet means the administrator who
    # added the domain vouched for it; a CNAME proof sets the method and its dates.
    dcv_method: Mapped[str] = mapped_column(String(8), default="", server_default="")
    dcv_validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    dcv_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    dcv_order_status: Mapped[str] = mapped_column(
        String(16), default="NOT_INITIATED", server_default="NOT_INITIATED"
    )
    dcv_order_method: Mapped[str] = mapped_column(String(8), default="", server_default="")
    dcv_token: Mapped[str] = mapped_column(String(64), default="", server_default="")

    delegations: Mapped[list[Delegation]] = relationship(
        back_populates="domain", cascade="all, delete-orphan"
    )

    @property
    def is_wildcard(self) -> bool:
        return self.name.startswith("*.")

    def __str__(self) -> str:
        return self.name


class Delegation(db.Model):  # type: ignore[name-defined,misc]
    """A domain delegated to an organization (or one of its departments) for cert types."""

    __tablename__ = "delegations"
    __table_args__ = (UniqueConstraint("domain_id", "organization_id", "department_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), index=True, nullable=True
    )
    ssl: Mapped[bool] = mapped_column(Boolean, default=False)
    client: Mapped[bool] = mapped_column(Boolean, default=False)
    code_signing: Mapped[bool] = mapped_column(Boolean, default=False)
    device: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[DelegationStatus] = mapped_column(
        str_enum(DelegationStatus),
        default=DelegationStatus.REQUESTED,
    )
    requested_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    decided_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Which names under the domain may be requested (SCM's domainCertificateRequestPrivileges:
    # DOMAIN, SUBDOMAIN, WILDCARD_1ST_LEVEL, WILDCARD_2ND_LEVEL); None = DOMAIN and SUBDOMAIN.
    request_privileges: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)

    domain: Mapped[Domain] = relationship(back_populates="delegations")
    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()
    requested_by: Mapped[Admin | None] = relationship(foreign_keys=[requested_by_id])

    def types(self) -> list[CertType]:
        return [t for t in CertType if getattr(self, t.value)]

    @property
    def types_label(self) -> str:
        return ", ".join(t.label for t in self.types())

    def __str__(self) -> str:
        target = self.department.name if self.department else self.organization.name
        return f"{self.domain.name} → {target} ({self.types_label}; {self.status.value})"
