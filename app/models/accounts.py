"""Administrators, their scopes (org/department + privileges), sign-in sessions and the
sign-in throttle."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.org import CertType, Department, Organization
from app.models.types import UTCDateTime, str_enum, utcnow


class AdminKind(enum.StrEnum):
    """STANDARD administrators sign in to the console; API administrators are scripts that
    authenticate on every REST API call (docs/api.md) and never sign in to the console."""

    STANDARD = "STANDARD"
    API = "API"


class Role(enum.StrEnum):
    MRAO = "MRAO"
    RAO = "RAO"
    DRAO = "DRAO"

    @property
    def rank(self) -> int:
        return {Role.MRAO: 3, Role.RAO: 2, Role.DRAO: 1}[self]


class Admin(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    full_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[Role] = mapped_column(str_enum(Role, 8))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    welcome_dismissed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Someone else chose the password: the console asks for a new one before anything else.
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("admins.id", ondelete="SET NULL"), nullable=True
    )
    kind: Mapped[AdminKind] = mapped_column(
        str_enum(AdminKind, 8), default=AdminKind.STANDARD, server_default="STANDARD"
    )
    # API administrators only: the source networks (CIDR) calls may come from; None = any.
    api_networks: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)

    scopes: Mapped[list[AdminScope]] = relationship(
        back_populates="admin", cascade="all, delete-orphan", order_by="AdminScope.id"
    )
    sessions: Mapped[list[AdminSession]] = relationship(
        back_populates="admin", cascade="all, delete-orphan", passive_deletes=True
    )

    # Flask-Login protocol (the session token, not the id, identifies a sign-in).
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return str(self.id)

    @property
    def is_master(self) -> bool:
        return self.role == Role.MRAO

    @property
    def is_api(self) -> bool:
        return self.kind == AdminKind.API

    def __str__(self) -> str:
        return self.login


class AdminScope(db.Model):  # type: ignore[name-defined,misc]
    """One delegation of authority: an organization (RAO) or a department (DRAO)."""

    __tablename__ = "admin_scopes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id"), nullable=True, index=True
    )
    ssl: Mapped[bool] = mapped_column(Boolean, default=False)
    client: Mapped[bool] = mapped_column(Boolean, default=False)
    code_signing: Mapped[bool] = mapped_column(Boolean, default=False)
    device: Mapped[bool] = mapped_column(Boolean, default=False)

    admin: Mapped[Admin] = relationship(back_populates="scopes")
    organization: Mapped[Organization] = relationship()
    department: Mapped[Department | None] = relationship()

    def privileges(self) -> set[CertType]:
        return {t for t in CertType if getattr(self, t.value)}

    def __str__(self) -> str:
        where = f"{self.organization.name}"
        if self.department is not None:
            where += f" / {self.department.name}"
        privs = ", ".join(t.label for t in CertType if t in self.privileges()) or "no privileges"
        return f"{where} ({privs})"


class AdminSession(db.Model):  # type: ignore[name-defined,misc]
    """A server-side sign-in; the cookie carries a random token, the table its SHA-256."""

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(256), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    admin: Mapped[Admin] = relationship(back_populates="sessions")


class SignInThrottle(db.Model):  # type: ignore[name-defined,misc]
    """Failed sign-ins from one address (login "") or of one login from one address, and
    until when further attempts are answered "wait" (app/services/accounts/sessions.py).
    Rows, not process memory: every web process sees the same counts."""

    __tablename__ = "signin_throttles"
    __table_args__ = (UniqueConstraint("address", "login"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    login: Mapped[str] = mapped_column(String(64), default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
