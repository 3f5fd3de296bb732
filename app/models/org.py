"""Organizations, their departments, and the certificate types (CertType) scoped to them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class CertType(enum.StrEnum):
    SSL = "ssl"
    CLIENT = "client"
    CODE_SIGNING = "code_signing"
    DEVICE = "device"

    @property
    def label(self) -> str:
        return CERT_TYPE_LABELS[self]


CERT_TYPE_LABELS = {
    CertType.SSL: "SSL",
    CertType.CLIENT: "Client",
    CertType.CODE_SIGNING: "Code Signing",
    CertType.DEVICE: "Device",
}


class Organization(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    address1: Mapped[str] = mapped_column(String(128), default="")
    address2: Mapped[str] = mapped_column(String(128), default="")
    address3: Mapped[str] = mapped_column(String(128), default="")
    city: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(128), default="")
    postal_code: Mapped[str] = mapped_column(String(40), default="")
    country: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    departments: Mapped[list[Department]] = relationship(
        back_populates="organization", order_by="Department.name"
    )

    @property
    def org_ref(self) -> int:
        """The OrgID shown to users and used by the API."""
        return self.id

    def __str__(self) -> str:
        return self.name


class Department(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "departments"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization] = relationship(back_populates="departments")

    def __str__(self) -> str:
        return f"{self.organization.name} / {self.name}"
