"""Replay nonces (RFC 8555 §6.5): rows, so that any web process accepts a nonce another
issued; a nonce is used by one conditional DELETE, so it is accepted once."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete

from app.acme import jose
from app.extensions import db
from app.models import AcmeNonce
from app.models.types import utcnow

LIFETIME = timedelta(hours=1)
# One issue in SWEEP_EVERY also deletes the expired nonces (an index range delete).
SWEEP_EVERY = 64


def new_nonce() -> str:
    """A fresh nonce, stored in the current transaction (the caller commits)."""
    value = jose.b64encode(secrets.token_bytes(16))
    now = utcnow()
    db.session.add(AcmeNonce(value=value, expires_at=now + LIFETIME))
    if secrets.randbelow(SWEEP_EVERY) == 0:
        db.session.execute(delete(AcmeNonce).where(AcmeNonce.expires_at < now))
    return value


def use_nonce(value: str) -> bool:
    """Whether ``value`` is a live nonce, which this call uses up (the caller commits)."""
    if len(value) > 64:
        return False
    gone = db.session.execute(
        delete(AcmeNonce).where(AcmeNonce.value == value, AcmeNonce.expires_at > utcnow())
    )
    return bool(gone.rowcount == 1)
