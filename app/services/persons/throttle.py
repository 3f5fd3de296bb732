"""The portal's guessing throttle: failed attempts counted per source address and per
email address (so per person) in a fixed window; past the limit, the portal answers 429.

Failures are written in their own short transaction, so they count although the
request's own transaction is rolled back (a refused code stores nothing else).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import PortalThrottle
from app.models.types import utcnow
from app.services.errors import DomainError

WINDOW = timedelta(minutes=15)
# Failures allowed per window: an address (a shared office NAT) more than one mailbox.
LIMITS = {"ip": 20, "email": 5}


class Throttled(DomainError):
    """Too many failed attempts: try again after ``retry_after`` seconds."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(
            f"Too many failed attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
        self.retry_after = retry_after


def keys_for(*, ip: str, email: str) -> list[str]:
    return [f"ip:{ip[:64]}", f"email:{email.strip().lower()[:254]}"]


def check(keys: Sequence[str]) -> None:
    """Raise Throttled when any key has used up its failures in the current window."""
    now = utcnow()
    rows = db.session.execute(select(PortalThrottle).where(PortalThrottle.key.in_(keys))).scalars()
    waits = [
        (row.window_start + WINDOW - now).total_seconds()
        for row in rows
        if row.failures >= LIMITS[row.key.split(":", 1)[0]] and row.window_start + WINDOW > now
    ]
    if waits:
        raise Throttled(math.ceil(max(waits)))


def record_failure(keys: Sequence[str]) -> None:
    """Count one failure for every key, in a transaction of its own (committed now)."""
    now = utcnow()
    table = PortalThrottle.__table__
    with db.engine.begin() as conn:
        for key in keys:
            insert = (
                postgresql.insert(table)
                if conn.dialect.name == "postgresql"
                else sqlite.insert(table)
            )
            conn.execute(
                insert.values(key=key, failures=0, window_start=now).on_conflict_do_nothing(
                    index_elements=["key"]
                )
            )
            # A window that ended starts again at this failure.
            conn.execute(
                update(table)
                .where(table.c.key == key, table.c.window_start <= now - WINDOW)
                .values(failures=0, window_start=now)
            )
            conn.execute(
                update(table).where(table.c.key == key).values(failures=table.c.failures + 1)
            )


def purge() -> int:
    """Forget counters whose window ended a day ago (housekeeping)."""
    result = db.session.execute(
        delete(PortalThrottle).where(PortalThrottle.window_start < utcnow() - timedelta(days=1))
    )
    return int(result.rowcount or 0)
