"""Sign-in, sign-out and server-side sessions for administrators; the sign-in throttle.

Every refused sign-in gets the same answer after the same work (one argon2id verify, the
account's hash or a dummy one), so an answer tells nothing about whether a login exists.
Failures are counted per address and per (login, address) in database rows, shared by every
web process; past a threshold each further failure makes the next attempt from there wait
(30 s, doubling, up to CW_LOGIN_LOCK_MINUTES), answered 429 with Retry-After. No count of
unauthenticated failures ever locks an account: a stranger slows down only their own
address, and the administrator signs in from theirs (docs/authorization.md).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import Admin, AdminSession, SignInThrottle
from app.models.types import utcnow
from app.services import audit
from app.services.accounts.passwords import (
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from app.services.errors import DomainError

INVALID = "Invalid login or password."
FIRST_WAIT_SECONDS = 30


class SignInRefused(DomainError):
    status = 401


class SignInThrottled(SignInRefused):
    """Too many recent failures from this address (for this login, or for any): wait."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"Too many failed sign-ins from this address. Try again in {duration(retry_after)}."
        )


def duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ThrottlePolicy:
    per_login: int  # failures of one login from one address before waits start
    per_address: int  # failures from one address (any logins) before waits start
    longest: timedelta  # the longest wait
    forget: timedelta  # a counter with no failure for this long starts again from zero

    @classmethod
    def from_config(cls) -> ThrottlePolicy:
        cfg = current_app.config
        longest = timedelta(minutes=int(cfg["CW_LOGIN_LOCK_MINUTES"]))
        return cls(
            per_login=int(cfg["CW_LOGIN_MAX_FAILURES"]),
            per_address=int(cfg["CW_LOGIN_IP_MAX_FAILURES"]),
            longest=longest,
            forget=max(timedelta(hours=1), 4 * longest),
        )

    def wait_after(self, failures: int, free: int) -> timedelta:
        """The wait imposed by the ``failures``-th failure: none before ``free`` failures,
        then 30 s, 60 s, 2 min, ... up to ``longest``."""
        if failures < free:
            return timedelta(0)
        doublings = min(failures - free, 32)
        return min(self.longest, timedelta(seconds=FIRST_WAIT_SECONDS * 2**doublings))


def _counters(login: str, ip: str, policy: ThrottlePolicy) -> list[tuple[str, str, int]]:
    """(address, login, free failures): the address as a whole, and this login from it."""
    return [(ip[:64], "", policy.per_address), (ip[:64], login[:64], policy.per_login)]


def blocked_until(login: str, ip: str, now: datetime, policy: ThrottlePolicy) -> Any:
    """The latest wait this address (for this login, or for any) is under, as a scalar
    subquery: a caller may read it in the statement that loads the account (one round
    trip instead of two on every REST API call); NULL when there is none."""
    keys = _counters(login, ip, policy)
    return (
        select(func.max(SignInThrottle.blocked_until))
        .where(
            SignInThrottle.address == keys[0][0],
            SignInThrottle.login.in_([k[1] for k in keys]),
            SignInThrottle.blocked_until > now,
        )
        .scalar_subquery()
    )


def raise_if_blocked(latest: datetime | None, now: datetime) -> None:
    """Raises SignInThrottled when ``latest`` (blocked_until's value) is still ahead."""
    if latest is not None and latest > now:
        raise SignInThrottled(max(1, math.ceil((latest - now).total_seconds())))


def check_throttle(login: str, ip: str, now: datetime, policy: ThrottlePolicy) -> None:
    raise_if_blocked(
        db.session.execute(select(blocked_until(login, ip, now, policy))).scalar(), now
    )


def count_failure(login: str, ip: str, now: datetime, policy: ThrottlePolicy) -> timedelta:
    """Count one failure on both counters; the wait it imposes on the next attempt."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    wait = timedelta(0)
    for address, name, free in _counters(login, ip, policy):
        db.session.execute(
            insert(SignInThrottle)
            .values(address=address, login=name, failures=0, last_failure_at=now)
            .on_conflict_do_nothing(index_elements=["address", "login"])
        )
        row = db.session.execute(
            select(SignInThrottle)
            .where(SignInThrottle.address == address, SignInThrottle.login == name)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        if row.last_failure_at < now - policy.forget:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        this = policy.wait_after(row.failures, free)
        row.blocked_until = now + this if this else None
        wait = max(wait, this)
    return wait


def authenticate(*, login: str, password: str, ip: str) -> Admin:
    """Check credentials under the throttle; audit every checked attempt.

    The caller commits whether this returns or raises (failures are counted and recorded).
    An unknown login, a wrong password and an account that is failing often get the same
    answer after the same work.

    Raises:
        SignInThrottled: this address (for this login, or for all) must wait; nothing was
            checked.
        SignInRefused: bad credentials, or a disabled account (told only to someone who
            knows its password).
    """
    policy = ThrottlePolicy.from_config()
    now = utcnow()
    check_throttle(login, ip, now, policy)
    admin = db.session.execute(select(Admin).where(Admin.login == login)).scalar_one_or_none()
    # One argon2id verify on every path: against a dummy hash for a login that does not exist.
    matches = verify_password(admin.password_hash if admin else dummy_hash(), password)
    if admin is None or not matches:
        wait = count_failure(login, ip, now, policy)
        reason = "unknown login" if admin is None else "bad password"
        if wait:
            reason += f"; the next attempt from {ip or 'this address'} waits {duration(int(wait.total_seconds()))}"
        audit.record(
            action="signin.failure",
            actor=admin if admin is not None else (login[:64] or "anonymous"),
            object_type="Admin" if admin is not None else "",
            object_id=admin.id if admin is not None else "",
            label=admin.login if admin is not None else "",
            message=reason,
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
    if admin.is_api:
        audit.record(
            action="signin.failure",
            actor=admin,
            object_type="Admin",
            object_id=admin.id,
            label=admin.login,
            message="an API administrator cannot sign in to the console",
        )
        raise SignInRefused(
            "This is an API account: it authenticates on REST API calls, not in the console."
        )
    if needs_rehash(admin.password_hash):
        admin.password_hash = hash_password(password)
    # A success clears this login's count from this address (not the address's own count:
    # signing in to one's own account must not buy guesses at others).
    db.session.execute(
        delete(SignInThrottle).where(
            SignInThrottle.address == ip[:64], SignInThrottle.login == login[:64]
        )
    )
    before = {"last_login_at": audit.jsonable(admin.last_login_at)}
    admin.last_login_at = now
    audit.record(
        action="signin.success",
        actor=admin,
        object_type="Admin",
        object_id=admin.id,
        label=admin.login,
        before=before,
        after={"last_login_at": audit.jsonable(now)},
    )
    return admin


def forget_old_failures() -> int:
    """Delete throttle counters nobody has failed on for the forget period (housekeeping)."""
    policy = ThrottlePolicy.from_config()
    return int(
        db.session.execute(
            delete(SignInThrottle).where(SignInThrottle.last_failure_at < utcnow() - policy.forget)
        ).rowcount
    )


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
