"""Replay nonces (RFC 8555 §6.5): any web process accepts a nonce another issued, once.

Two stores, chosen by CW_ACME_NONCE_STORE (app.config.acme_nonce_store):

- **Redis** (the default when BROKER_URL is a Redis): a nonce carries its own expiry and an
  HMAC under a key derived from SECRET_KEY (which every web process shares), so issuing one
  stores nothing; using it sets a key for it in Redis with SET NX and the nonce's remaining
  life as expiry. Of two requests with one nonce, in any processes, one SET succeeds.
- **The database** (otherwise): each nonce issued is a row, and using it is one conditional
  DELETE, so it is accepted once; an issue in SWEEP_EVERY also deletes the expired rows.

A nonce of one store is not one of the other (a changed setting answers badNonce, which
clients retry with the fresh nonce that comes with it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from typing import cast

import redis
from flask import Flask, current_app
from sqlalchemy import delete

from app.acme import jose
from app.acme.problems import AcmeProblem
from app.config import acme_nonce_store
from app.extensions import db
from app.models import AcmeNonce
from app.models.types import utcnow
from app.settings import setting

LIFETIME = timedelta(hours=1)
# One issue in SWEEP_EVERY also deletes the expired nonces (an index range delete).
SWEEP_EVERY = 64
# A Redis nonce: expiry (8 bytes, Unix seconds) + 16 random bytes + the first 16 bytes of
# HMAC-SHA256 over both: 40 bytes, 54 characters of base64url.
_BODY, _TAG = 24, 16
_EXTENSION = "cw_acme_nonces"


class _RedisNonces:
    def __init__(self, url: str, secret: str, namespace: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.key = hmac.new(secret.encode(), b"certwright acme nonce", hashlib.sha256).digest()
        self.prefix = f"{namespace}:acme-used-nonce:"

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self.key, body, hashlib.sha256).digest()[:_TAG]

    def issue(self) -> str:
        expires = int(time.time() + LIFETIME.total_seconds())
        body = expires.to_bytes(8, "big") + secrets.token_bytes(_BODY - 8)
        return jose.b64encode(body + self._tag(body))

    def use(self, value: str) -> bool:
        try:
            raw = jose.b64decode(value, what="nonce")
        except AcmeProblem:
            return False
        body, tag = raw[:_BODY], raw[_BODY:]
        if len(raw) != _BODY + _TAG or not hmac.compare_digest(tag, self._tag(body)):
            return False
        left = int.from_bytes(body[:8], "big") - int(time.time())
        if left <= 0:
            return False
        try:
            return bool(self.client.set(self.prefix + value, b"1", nx=True, ex=left))
        except redis.RedisError as exc:
            raise AcmeProblem(
                "serverInternal", f"the nonce store (Redis) cannot be reached: {exc}", status=503
            ) from exc


def _redis(app: Flask) -> _RedisNonces | None:
    """This app's Redis store, or None for the database (built once per app)."""
    if _EXTENSION not in app.extensions:
        where = acme_nonce_store(
            str(app.config.get("CW_ACME_NONCE_STORE", "")), str(app.config.get("BROKER_URL", ""))
        )
        app.extensions[_EXTENSION] = (
            None
            if where == "database"
            else _RedisNonces(
                where,
                str(app.config["SECRET_KEY"]),
                str(setting("CW_REDIS_NAMESPACE")) or "dramatiq",
            )
        )
    return cast("_RedisNonces | None", app.extensions[_EXTENSION])


def in_database() -> bool:
    """Whether nonces are rows of the current transaction (the database store), so that
    using one must be committed by the caller before anything else can fail."""
    return _redis(current_app) is None


def new_nonce() -> str:
    """A fresh nonce; with the database store, added to the current transaction (the
    caller commits)."""
    store = _redis(current_app)
    if store is not None:
        return store.issue()
    value = jose.b64encode(secrets.token_bytes(16))
    now = utcnow()
    db.session.add(AcmeNonce(value=value, expires_at=now + LIFETIME))
    if secrets.randbelow(SWEEP_EVERY) == 0:
        db.session.execute(delete(AcmeNonce).where(AcmeNonce.expires_at < now))
    return value


def use_nonce(value: str) -> bool:
    """Whether ``value`` is a live nonce of ours, which this call uses up (with the database
    store, in the current transaction: the caller commits).

    Raises:
        AcmeProblem: serverInternal (503) when Redis cannot be reached.
    """
    if len(value) > 64:
        return False
    store = _redis(current_app)
    if store is not None:
        return store.use(value)
    gone = db.session.execute(
        delete(AcmeNonce).where(AcmeNonce.value == value, AcmeNonce.expires_at > utcnow())
    )
    return bool(gone.rowcount == 1)
