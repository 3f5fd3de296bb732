"""Which processes are alive: the identity of this process, the heartbeat rows that worker,
scheduler and embedded processes write every second, and the database's clock they are
judged by. What recovery does with a dead one is app.services.platform.scheduling.

A row whose ``seen_at`` is older than CW_WORKER_STALE_SECONDS belongs to a process that
died (SIGKILL, out of memory, power). Both the beat and the judgement read the database's
clock, so a host whose clock is off by more than that threshold neither looks dead nor
hides a dead process; SQLite (one machine) uses this process's clock.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import WorkerHeartbeat
from app.models.types import utcnow

# Kinds of process that fetch messages from the broker (a scheduler consumes none).
CONSUMERS = ("worker", "embedded")

_identity: tuple[int, str] | None = None  # (pid, ident): forked children get their own


def process_ident() -> str:
    """``host:pid:token`` naming this process, unique even when a restarted container
    gives the next process the same host name and pid. Job leases start with it, so
    the jobs a dead process was running are known by its heartbeat row."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{socket.gethostname()[:32]}:{pid}:{secrets.token_hex(3)}")
    return _identity[1]


def heartbeat_id(kind: str) -> str:
    return f"{process_ident()}:{kind}"


def lease_prefix(row: WorkerHeartbeat) -> str:
    """What every job lease of the row's process starts with (its id without the kind)."""
    return row.id.rsplit(":", 1)[0] + ":"


def database_now() -> datetime:
    """The database server's clock (aware UTC) on PostgreSQL; this process's on SQLite."""
    if db.engine.dialect.name == "postgresql":
        now: datetime = db.session.execute(select(func.statement_timestamp())).scalar_one()
        return now.astimezone(UTC)
    return utcnow()


def stale_seconds() -> float:
    return float(current_app.config["CW_WORKER_STALE_SECONDS"])


def beat(*, ident: str, kind: str, broker: str) -> None:
    """Record that the process is alive (creating its row, e.g. after recovery removed
    it while the process was only slow). The caller commits."""
    now = database_now()
    row = db.session.get(WorkerHeartbeat, ident)
    if row is None:
        db.session.add(
            WorkerHeartbeat(
                id=ident,
                kind=kind,
                host=socket.gethostname(),
                pid=os.getpid(),
                broker=broker,
                started_at=now,
                seen_at=now,
            )
        )
    else:
        row.seen_at = now


def sign_off(ident: str) -> None:
    """A graceful stop: the row goes, so nobody takes the process for dead. The caller
    commits."""
    db.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.id == ident))


def live_processes() -> list[WorkerHeartbeat]:
    """Processes that beat within CW_WORKER_STALE_SECONDS (the About page)."""
    cutoff = database_now() - timedelta(seconds=stale_seconds())
    return list(
        db.session.execute(
            select(WorkerHeartbeat)
            .where(WorkerHeartbeat.seen_at >= cutoff)
            .order_by(WorkerHeartbeat.kind, WorkerHeartbeat.id)
        ).scalars()
    )


def dead_consumers(now: datetime | None = None) -> list[WorkerHeartbeat]:
    """Rows of message-consuming processes that stopped beating, locked for the caller
    (SKIP LOCKED: two schedulers handle each dead process once). This process's own row
    is never among them: whoever asks is alive, however slow its own beats were."""
    cutoff = (now or database_now()) - timedelta(seconds=stale_seconds())
    return list(
        db.session.execute(
            select(WorkerHeartbeat)
            .where(
                WorkerHeartbeat.kind.in_(CONSUMERS),
                WorkerHeartbeat.seen_at < cutoff,
                ~WorkerHeartbeat.id.startswith(f"{process_ident()}:", autoescape=True),
            )
            .with_for_update(skip_locked=True)
        ).scalars()
    )
