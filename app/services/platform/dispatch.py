"""Sending the delivery messages of durable outgoing rows (mail in the outbox, webhook
messages): the row, not the broker message, is the record. The scheduler asks on every pass
for a message per row that is due and has none in flight; row locks (SKIP LOCKED) keep two
schedulers from doubling up."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, or_, select

from app.extensions import db
from app.services.platform.jobs import after_commit

DISPATCH_BATCH = 1_000


def redispatch_after() -> timedelta:
    """How long a sent delivery message may go unclaimed before it is sent again: a broker
    keeps its messages, so only a long wait means one was lost; the embedded worker's queue
    lives in one process, and messages from any other (a CLI command) never reach it."""
    return timedelta(minutes=10) if current_app.config["BROKER_URL"] else timedelta(seconds=30)


def dispatch_due(
    model: Any, queued: Any, send: Callable[[int, int], None], *, now: datetime, restarted: bool
) -> int:
    """Send ``send(row id, attempts)`` after commit for each row of ``model`` (with status,
    next_attempt_at, dispatched_at and attempts) that is queued and due, and has no recent
    message (every due row when ``restarted``: the embedded queue starts empty); the caller
    commits. How many."""
    query = select(model).where(model.status == queued, model.next_attempt_at <= now)
    if not restarted:
        query = query.where(
            or_(model.dispatched_at.is_(None), model.dispatched_at < now - redispatch_after())
        )
    return send_rows(
        query.order_by(model.next_attempt_at).limit(DISPATCH_BATCH),
        lambda row: functools.partial(send, row.id, row.attempts),
        now=now,
    )


def send_rows(
    query: Select[Any], message: Callable[[Any], Callable[[], object]], *, now: datetime
) -> int:
    """For each row the query selects (locked, SKIP LOCKED: two schedulers never take the
    same row), set dispatched_at to ``now`` and send ``message(row)`` (made now, sent after
    commit); the caller commits. How many."""
    rows = db.session.execute(query.with_for_update(skip_locked=True)).scalars().all()
    for row in rows:
        row.dispatched_at = now
        after_commit(message(row))
    db.session.flush()
    return len(rows)
