"""Sign-in, sign-out and server-side sessions for administrators."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Admin, AdminSession, AuditEvent
from app.models.types import utcnow
from app.services import audit
from app.services.accounts.passwords import burn_time, hash_password, needs_rehash, verify_password
from app.services.errors import DomainError

INVALID = "Invalid login or password."


class SignInRefused(DomainError):
    status = 401


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(*, login: str, password: str, ip: str) -> Admin:
    """Check credentials with lockout and per-address throttling; audit every outcome.

    The caller commits whether this returns or raises (failures are recorded too).

    Raises:
        SignInRefused: bad credentials, a locked or disabled account, or too many
            failures from this address.
    """
    cfg = current_app.config
    now = utcnow()
    window = now - timedelta(minutes=cfg["CW_LOGIN_LOCK_MINUTES"])
    recent_ip_failures = db.session.execute(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "signin.failure", AuditEvent.ip == ip, AuditEvent.at >= window)
    ).scalar_one()
    if ip and recent_ip_failures >= cfg["CW_LOGIN_IP_MAX_FAILURES"]:
        audit.record(
            action="signin.throttled",
            actor=login[:64] or "anonymous",
            message="too many failures from this address",
        )
        raise SignInRefused("Too many failed sign-ins from this address. Try again later.")

    admin = db.session.execute(select(Admin).where(Admin.login == login)).scalar_one_or_none()
    if admin is None:
        burn_time(password)
        audit.record(
            action="signin.failure", actor=login[:64] or "anonymous", message="unknown login"
        )
        raise SignInRefused(INVALID)
    if admin.locked_until is not None and admin.locked_until > now:
        minutes = max(1, int((admin.locked_until - now).total_seconds() // 60) + 1)
        audit.record(
            action="signin.failure",
            actor=admin,
            object_type="Admin",
            object_id=admin.id,
            label=admin.login,
            message="account locked",
        )
        raise SignInRefused(
            f"This account is locked after repeated failed sign-ins. Try again in {minutes} minutes."
        )
    if not verify_password(admin.password_hash, password):
        admin.failed_logins += 1
        message = f"bad password ({admin.failed_logins} in a row)"
        if admin.failed_logins >= cfg["CW_LOGIN_MAX_FAILURES"]:
            admin.locked_until = now + timedelta(minutes=cfg["CW_LOGIN_LOCK_MINUTES"])
            admin.failed_logins = 0
            audit.record(
                action="admin.locked",
                actor=admin,
                object_type="Admin",
                object_id=admin.id,
                label=admin.login,
                message=f"locked for {cfg['CW_LOGIN_LOCK_MINUTES']} minutes after {cfg['CW_LOGIN_MAX_FAILURES']} failures",
            )
        audit.record(
            action="signin.failure",
            actor=admin,
            object_type="Admin",
            object_id=admin.id,
            label=admin.login,
            message=message,
        )
        raise SignInRefused(INVALID)
    if not admin.active:
        audit.record(
            action="signin.failure",
            actor=admin,
            object_type="Admin",
            object_id=admin.id,
            label=admin.login,
            message="account disabled",
        )
        raise SignInRefused("This account is disabled.")
    if needs_rehash(admin.password_hash):
        admin.password_hash = hash_password(password)
    admin.failed_logins = 0
    admin.locked_until = None
    admin.last_login_at = now
    audit.record(
        action="signin.success",
        actor=admin,
        object_type="Admin",
        object_id=admin.id,
        label=admin.login,
    )
    return admin


def start_session(*, admin: Admin, ip: str, user_agent: str) -> str:
    """Open a new server-side session and return its token (a fresh one each sign-in)."""
    token = secrets.token_urlsafe(32)
    db.session.add(
        AdminSession(
            token_hash=_token_hash(token),
            admin_id=admin.id,
            ip=ip[:64],
            user_agent=user_agent[:256],
        )
    )
    return token


def load_session(token: str | None) -> Admin | None:
    """The admin of a live session, or None (revoked, expired, disabled)."""
    if not token:
        return None
    row = db.session.execute(
        select(AdminSession).where(AdminSession.token_hash == _token_hash(token))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    lifetime = timedelta(seconds=int(current_app.config["PERMANENT_SESSION_LIFETIME"]))
    if now - row.last_seen_at > lifetime:
        return None
    admin = row.admin
    if not admin.active:
        return None
    if now - row.last_seen_at > timedelta(minutes=1):
        row.last_seen_at = now
        db.session.commit()
    return admin


def end_session(*, token: str | None, admin: Admin | None) -> None:
    if token:
        db.session.execute(
            update(AdminSession)
            .where(AdminSession.token_hash == _token_hash(token), AdminSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    if admin is not None:
        audit.record(
            action="signout",
            actor=admin,
            object_type="Admin",
            object_id=admin.id,
            label=admin.login,
        )


def revoke_other_sessions(*, admin: Admin, keep_token: str | None) -> None:
    keep = _token_hash(keep_token) if keep_token else ""
    db.session.execute(
        update(AdminSession)
        .where(
            AdminSession.admin_id == admin.id,
            AdminSession.revoked_at.is_(None),
            AdminSession.token_hash != keep,
        )
        .values(revoked_at=utcnow())
    )
