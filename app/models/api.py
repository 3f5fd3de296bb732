"""REST API bookkeeping: replayable enroll answers (idempotency) and per-admin call counts
(rate limiting). Rows, not process memory: every web process sees the same ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class ApiIdempotencyKey(db.Model):  # type: ignore[name-defined,misc]
    """A state-changing call made once per (API admin, key): a retry with the same key and
    the same body gets the first answer again instead of a second request."""

    __tablename__ = "api_idempotency_keys"
    __table_args__ = (UniqueConstraint("admin_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"))
    # "key:<Idempotency-Key header>" or "body:<SHA-256 of the call>" (implicit, short-lived)
    key: Mapped[str] = mapped_column(String(160))
    body_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ApiRateWindow(db.Model):  # type: ignore[name-defined,misc]
    """Calls of one API admin in one fixed window (epoch seconds // window length)."""

    __tablename__ = "api_rate_windows"
    __table_args__ = (UniqueConstraint("admin_id", "window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"))
    window: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    calls: Mapped[int] = mapped_column(Integer, default=0)
