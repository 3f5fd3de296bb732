"""The audit log: record events in the caller's transaction; chain them at commit.

Each event is linked to the previous one by HMAC-SHA256(key, canonical row), so editing,
deleting or reordering rows is detectable by verify(). Sequence numbers and hashes are
assigned under a lock on the single audit_head row just before commit, so concurrent
transactions append in one order. The head (row count and last hash) carries its own HMAC,
so deleting the newest rows and rewriting the head needs the audit key as well; a head
found without a valid MAC when appending is itself recorded in the chain (docs/audit.md).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import Admin, AuditEvent, AuditHead
from app.models.types import utcnow
from app.services import bulk
from app.services.errors import NotFound
from app.services.scope import Actor, require_actor

GENESIS = "0" * 64
_PENDING = "cw_audit_pending"
# Denied cross-scope attempts outlive the rollback of the refused operation: they are
# written by the next commit (commit_denials, which every web request's teardown calls).
_DENIED = "cw_audit_denied"
_source_ip: ContextVar[str] = ContextVar("cw_audit_ip", default="")
_source_label: ContextVar[str] = ContextVar("cw_audit_source", default="")


def push_source(*, ip: str = "", label: str = "") -> tuple[Token[str], Token[str]]:
    """Tell the audit log where the current work comes from (set by the front door)."""
    return _source_ip.set(ip), _source_label.set(label)


def pop_source(tokens: tuple[Token[str], Token[str]]) -> None:
    _source_ip.reset(tokens[0])
    _source_label.reset(tokens[1])


@contextmanager
def source(*, ip: str = "", label: str = "") -> Iterator[None]:
    tokens = push_source(ip=ip, label=label)
    try:
        yield
    finally:
        pop_source(tokens)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:  # the common case first (an enum member is not plain)
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named attributes of obj as JSON values, for before/after."""
    return {name: jsonable(getattr(obj, name)) for name in fields}


def record(
    *,
    action: str,
    actor: Actor | str,
    object_type: str = "",
    object_id: Any = "",
    label: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    message: str = "",
    organization_id: int | None = None,
    department_id: int | None = None,
) -> None:
    """Queue an audit event in the current transaction (it is written at commit)."""
    db.session.info.setdefault(_PENDING, []).append(
        _event(
            action=action,
            actor=actor,
            object_type=object_type,
            object_id=object_id,
            label=label,
            before=before,
            after=after,
            message=message,
            organization_id=organization_id,
            department_id=department_id,
        )
    )


def record_denied(*, actor: Actor, object_type: str, object_id: Any, attempted: str) -> None:
    """A scoped admin reached for an existing object outside their scope (an id typed into a
    URL or a form): an ``access.denied`` event, kept even though the refused operation rolls
    back, and written by the next commit (``commit_denials``)."""
    db.session.info.setdefault(_DENIED, []).append(
        _event(
            action="access.denied",
            actor=actor,
            object_type=object_type,
            object_id=object_id,
            message=f"outside the administrator's scope: {attempted}",
        )
    )


def denied(
    *, actor: Actor, what: str, object_type: str, object_id: Any, field: str | None = None
) -> NotFound:
    """The refusal for an existing object outside the actor's scope: recorded as a denied
    attempt, and answered exactly like a missing object ("No such <what>.") so that nothing
    about it is learnt. ``raise audit.denied(...)``."""
    record_denied(actor=actor, object_type=object_type, object_id=object_id, attempted=what)
    return NotFound(f"No such {what}.", field=field)


def not_found(
    *, actor: Actor, what: str, model: type, object_id: Any, field: str | None = None
) -> NotFound:
    """The refusal when a scoped lookup found nothing: "No such <what>." either way, and a
    denied attempt recorded when the object does exist (outside the actor's scope)."""
    if db.session.get(model, object_id) is not None:
        return denied(
            actor=actor, what=what, object_type=model.__name__, object_id=object_id, field=field
        )
    return NotFound(f"No such {what}.", field=field)


def is_denial_pending(*, object_type: str, object_id: Any) -> bool:
    """Is a denied attempt on this object already waiting for the next commit? (A console
    bulk action records its foreign ids once, before its handler looks each one up.)"""
    key = (object_type, str(object_id)[:64])
    return any((e["object_type"], e["object_id"]) == key for e in db.session.info.get(_DENIED, []))


def has_denials() -> bool:
    return bool(db.session.info.get(_DENIED))


def commit_denials() -> None:
    """Write the denied attempts left by a refused operation, in a transaction of their own
    (whatever else the session held is rolled back first). For front doors, after the
    refusal has been answered."""
    if has_denials():
        db.session.rollback()
        db.session.commit()


def _event(
    *,
    action: str,
    actor: Actor | str,
    object_type: str = "",
    object_id: Any = "",
    label: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    message: str = "",
    organization_id: int | None = None,
    department_id: int | None = None,
) -> dict[str, Any]:
    if isinstance(actor, str):  # someone not signed in, named by what they claimed (a login)
        actor_id, actor_name = None, actor
    elif isinstance(require_actor(actor), Admin):
        actor_id, actor_name = actor.id, actor.login
    else:  # the system: named by its source (the scheduler, the command line) if known
        actor_id, actor_name = None, _source_label.get() or "system"
    return {
        "at": utcnow(),
        "actor_id": actor_id,
        "actor": actor_name[:128],
        "ip": _source_ip.get()[:64],
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id)[:64] if object_id is not None else "",
        "object_label": (label or "")[:256],
        "organization_id": organization_id,
        "department_id": department_id,
        "before": jsonable(before) if before is not None else None,
        "after": jsonable(after) if after is not None else None,
        "message": message,
    }


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that differ, for compact update events."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def _canonical(row: dict[str, Any]) -> bytes:
    fields = {
        "seq": row["seq"],
        "at": row["at"].isoformat(timespec="microseconds"),
        "actor_id": row["actor_id"],
        "actor": row["actor"],
        "ip": row["ip"],
        "action": row["action"],
        "object_type": row["object_type"],
        "object_id": row["object_id"],
        "object_label": row["object_label"],
        "organization_id": row["organization_id"],
        "department_id": row["department_id"],
        "before": row["before"],
        "after": row["after"],
        "message": row["message"],
        "prev_hash": row["prev_hash"],
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(key: bytes, row: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(row), hashlib.sha256).hexdigest()


def _key() -> bytes:
    return str(current_app.config["CW_AUDIT_KEY"]).encode()


def head_mac(key: bytes, seq: int, last_hash: str) -> str:
    """HMAC-SHA256 of the chain head (row count and last hash), domain-separated from the
    row hashes. Migration 0006_trust computes the same value for existing heads."""
    return hmac.new(
        key, f"certwright-audit-head:{seq}:{last_hash}".encode(), hashlib.sha256
    ).hexdigest()


FORGED_HEAD = "audit.head_forged"


def _forged_head_event(seq: int, last_hash: str) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "actor_id": None,
        "actor": "system",
        "ip": "",
        "action": FORGED_HEAD,
        "object_type": "AuditHead",
        "object_id": "1",
        "object_label": "",
        "organization_id": None,
        "department_id": None,
        "before": {"seq": seq, "hash": last_hash},
        "after": None,
        "message": (
            f"the chain head (row {seq}, hash {last_hash[:16]}) did not match its MAC: it was "
            "rewritten without the audit key, so rows may have been deleted from the end"
        ),
    }


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.pop(_DENIED, []) + session.info.pop(_PENDING, [])
    if not pending:
        return
    # Write first, and read what was locked in the same statement: the no-op UPDATE takes
    # the row lock on PostgreSQL (and answers the latest committed head once it has it) and
    # the write lock on SQLite, so concurrent commits chain one after the other. Every
    # round trip here is spent holding the account's one audit lock.
    locked = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq)
        .returning(AuditHead.seq, AuditHead.hash, AuditHead.mac)
    ).first()
    key = _key()
    if locked is None:  # the migration writes it: missing means a database built otherwise
        session.add(AuditHead(id=1, seq=0, hash=GENESIS, mac=head_mac(key, 0, GENESIS)))
        session.flush()
        seq, prev, mac = 0, GENESIS, head_mac(key, 0, GENESIS)
    else:
        seq, prev, mac = locked
    if not hmac.compare_digest(mac or "", head_mac(key, seq, prev)):
        # Someone rewrote the head without the key (rows cut off the end). Extending it
        # would sign the forgery, so the chain first records what it found, for good.
        pending.insert(0, _forged_head_event(seq, prev))
    for row in pending:
        seq += 1
        row.update(seq=seq, prev_hash=prev)
        row["hash"] = prev = _digest(key, row)
    move_head = (
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=seq, hash=prev, mac=head_mac(key, seq, prev))
        .execution_options(synchronize_session=False)
    )
    if len(pending) <= bulk.FEW_ROWS and session.get_bind().dialect.name == "postgresql":
        # A few rows (one request's events): inserted by the statement that moves the head
        # (a data-modifying WITH runs once, to completion, whether or not the UPDATE reads
        # it), one round trip less while the head row is locked.
        rows = insert(AuditEvent.__table__).values(pending).cte("cw_audit_rows")
        session.execute(move_head.add_cte(rows))
        return
    # One bulk insert while the head row is locked: issuance batches write hundreds.
    bulk.insert_rows(AuditEvent.__table__, pending, session=session)
    session.execute(move_head)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    rows: int  # rows verified (up to the first bad one)
    first_bad_seq: int | None = None
    reason: str = ""
    expected: int | None = None  # rows the authenticated head says were written
    head_hash: str = ""

    def summary(self) -> str:
        """One line for the CLI, the job result and the console."""
        if self.ok:
            return (
                f"OK: {self.rows} audit rows, chain intact; the authenticated head expects "
                f"{self.expected} rows ending in {self.head_hash[:16]}."
            )
        expected = (
            f"the authenticated head expects {self.expected} rows"
            if self.expected is not None
            else "the head is not authenticated, so the number of rows written is unknown"
        )
        return f"BROKEN at row {self.first_bad_seq}: {self.reason} ({expected})."


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    authentic: bool


def _read_head(key: bytes) -> _Head | None:
    # A plain row from a fresh statement: the values committed now, not a cached object.
    row = db.session.execute(
        select(AuditHead.seq, AuditHead.hash, AuditHead.mac).where(AuditHead.id == 1)
    ).first()
    if row is None:
        return None
    return _Head(
        row.seq, row.hash, hmac.compare_digest(row.mac or "", head_mac(key, row.seq, row.hash))
    )


def verify(batch: int = 5000) -> Verdict:
    """Walk the chain up to its authenticated head; name the first row that was edited,
    deleted (also from the end), inserted or reordered, and say how many rows the head
    expects. Rows appended while it runs are followed as the head moves on."""
    key = _key()
    table = AuditEvent.__table__
    head = _read_head(key)
    if head is None:
        return Verdict(False, 0, 1, "the chain head row is missing (audit_head was deleted)")
    expected = head.seq if head.authentic else None

    def broken(rows: int, seq: int, reason: str) -> Verdict:
        return Verdict(False, rows, seq, reason, expected)

    prev, rows, last_seq = GENESIS, 0, 0
    while True:
        while last_seq < head.seq:
            # Plain rows, not ORM objects: nothing lands in the session's identity map.
            events = db.session.execute(
                select(table)
                .where(table.c.seq > last_seq, table.c.seq <= head.seq)
                .order_by(table.c.seq)
                .limit(batch)
            ).all()
            if not events:
                break
            for ev in events:
                row = dict(ev._mapping)
                if ev.seq != last_seq + 1:
                    return broken(
                        rows,
                        last_seq + 1,
                        f"row {last_seq + 1} is missing (deleted); the chain resumes at row {ev.seq}",
                    )
                if ev.prev_hash != prev:
                    return broken(
                        rows,
                        ev.seq,
                        f"row {ev.seq} does not follow row {ev.seq - 1} (rows reordered or replaced)",
                    )
                if not hmac.compare_digest(_digest(key, row), ev.hash):
                    return broken(
                        rows,
                        ev.seq,
                        f"row {ev.seq} was edited (its content no longer matches its hash)",
                    )
                if ev.action == FORGED_HEAD:
                    return broken(rows, ev.seq, f"at row {ev.seq} {ev.message}")
                prev, rows, last_seq = ev.hash, rows + 1, ev.seq
        if not head.authentic:
            return broken(
                rows,
                head.seq + 1,
                f"the chain head (row {head.seq}) does not match its MAC: it was rewritten "
                "without the audit key, so rows may have been deleted from the end",
            )
        if rows != head.seq or prev != head.hash:
            return broken(
                rows,
                rows + 1,
                f"the log ends at row {rows} but {head.seq} rows were written (rows deleted from the end)",
            )
        beyond = db.session.execute(
            select(func.min(table.c.seq)).where(table.c.seq > head.seq)
        ).scalar_one()
        if beyond is None:
            return Verdict(True, rows, expected=head.seq, head_hash=head.hash)
        newer = _read_head(key)
        if newer is None or newer.seq < beyond:  # not appended meanwhile: put there
            return broken(
                rows,
                beyond,
                f"row {beyond} lies beyond the last row the head knows ({head.seq}): "
                "it was inserted without the audit key",
            )
        head = newer
        expected = head.seq if head.authentic else None
