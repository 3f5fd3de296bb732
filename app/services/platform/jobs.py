"""Background jobs: create, send after commit, claim, heartbeat, finish (recovery and the
scheduler: app.services.platform.scheduling).

Delivery is at-least-once, so every step is a conditional update: a job is claimed by
exactly one process (status pending -> running with a fresh lease), a stale lease (the
process died) is reclaimed, and a message for a finished job is a no-op.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import event as sa_event
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import Admin, Job, JobStatus
from app.models.types import utcnow
from app.services import audit, bulk
from app.services.errors import Conflict, NotFound
from app.services.platform import processes
from app.services.scope import SYSTEM, Actor

log = logging.getLogger(__name__)
_AFTER = "cw_after_commit"


# --- sending messages only after the transaction commits --------------------------------


def after_commit(fn: Callable[[], None]) -> None:
    """Run fn once the current transaction has committed (dropped on rollback)."""
    db.session.info.setdefault(_AFTER, []).append(fn)


@sa_event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for fn in session.info.pop(_AFTER, []):
        try:
            fn()
        except Exception:  # the recovery sweep re-sends pending jobs; never fail the commit
            log.exception("sending a message after commit failed")


@sa_event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER, None)


# --- kinds: actors register how to send a job of their kind ------------------------------


class Sender(Protocol):
    def send_with_options(self, *, args: tuple[Any, ...] = ..., delay: int | None = ...) -> Any: ...


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    actor: Sender
    # Called in the transaction that marks a job of this kind failed for good.
    on_failure: Callable[[Job], None] | None = None


KINDS: dict[str, Kind] = {}
# Recurrence rules for Schedule.spec["kind"]: fn(spec, after) -> next due time or None.
RECURRENCES: dict[str, Callable[[dict[str, Any], datetime], datetime | None]] = {}


SYSTEM_SCHEDULES: dict[str, int] = {}


def register_kind(
    name: str,
    label: str,
    actor: Sender,
    *,
    every: int | None = None,
    on_failure: Callable[[Job], None] | None = None,
) -> None:
    """Make a job kind known; `every` (seconds) also makes it a recurring system job."""
    KINDS[name] = Kind(name, label, actor, on_failure)
    if every:
        SYSTEM_SCHEDULES[name] = every


def register_recurrence(
    kind: str, fn: Callable[[dict[str, Any], datetime], datetime | None]
) -> None:
    RECURRENCES[kind] = fn


def _interval(spec: dict[str, Any], after: datetime) -> datetime:
    return after + timedelta(seconds=int(spec["seconds"]))


register_recurrence("interval", _interval)


# --- handing jobs to the server: a process whose messages no worker can receive ---------
#
# Without a broker (BROKER_URL unset) messages live in the memory of the process that sent
# them, and only a worker inside that same process runs them. A `flask --app wsgi ...`
# command next to a running `make run` server has no worker: a message it sent would be
# lost with it. Such a process hands its jobs to the server instead: it sends nothing and
# leaves the row's enqueued_at empty ("no message exists"), and the server's embedded
# worker picks those rows up within a second (pick_up_handed_off, app.runtime.embedded).
# The runtime decides which processes hand off (set_handoff); by default messages are sent.


def _never() -> bool:
    return False


_handoff: Callable[[], bool] = _never


def set_handoff(rule: Callable[[], bool] | None) -> None:
    """Install the rule telling whether this process hands its jobs off (None: never)."""
    global _handoff
    _handoff = rule or _never


def hands_off() -> bool:
    """True when jobs created now are left for the server's worker instead of sent."""
    return _handoff()


def _send(job_id: int, kind: str, delay_ms: int | None = None) -> None:
    KINDS[kind].actor.send_with_options(args=(job_id,), delay=delay_ms)


def enqueue(job: Job, *, delay_ms: int | None = None) -> None:
    """Send the job's message once the current transaction commits (or, in a process that
    hands its jobs off, leave the row for the server's worker to pick up)."""
    if job.kind not in KINDS:
        raise ValueError(f"unknown job kind {job.kind!r}")
    if hands_off():
        job.enqueued_at = None
        db.session.flush()
        return
    job.enqueued_at = utcnow()
    db.session.flush()
    job_id, kind = job.id, job.kind
    after_commit(lambda: _send(job_id, kind, delay_ms))


def create_job(
    *,
    kind: str,
    payload: dict[str, Any] | None = None,
    actor: Actor = SYSTEM,
    organization_id: int | None = None,
    max_attempts: int = 3,
    schedule_id: int | None = None,
    send: bool = True,
) -> Job:
    """Add a pending job and (by default) send its message after commit."""
    job = Job(
        kind=kind,
        payload=payload or {},
        created_by_id=actor.id,
        organization_id=organization_id,
        max_attempts=max_attempts,
        schedule_id=schedule_id,
        status=JobStatus.PENDING,
    )
    db.session.add(job)
    if send:
        enqueue(job)  # sets enqueued_at before the first flush: one INSERT, no UPDATE
    else:
        db.session.flush()
    return job


def create_jobs(*, kind: str, payloads: list[dict[str, Any]], max_attempts: int = 3) -> list[int]:
    """Add one pending system job per payload in one bulk insert and send their messages
    after commit, in order; their ids. For fan-out (an approval of thousands of requests):
    one INSERT instead of two statements a job."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    now = utcnow()
    handed_off = hands_off()
    rows = [
        {
            "kind": kind,
            "payload": payload,
            "max_attempts": max_attempts,
            "status": JobStatus.PENDING,
            "created_at": now,
            "enqueued_at": None if handed_off else now,
        }
        for payload in payloads
    ]
    ids = bulk.insert_rows(Job.__table__, rows, return_ids=True)
    if not handed_off:
        for job_id in ids:
            after_commit(functools.partial(_send, job_id, kind))
    return ids


# --- running ---------------------------------------------------------------------------


class JobCancelled(Exception):
    """Raised inside a handler when an admin cancelled its job."""


class LeaseLost(Exception):
    """Raised inside a handler whose job was given to another attempt: this one missed its
    heartbeats long enough to be presumed dead. It stops and stores nothing more."""


@dataclass
class JobContext:
    job_id: int
    lease: str

    def progress(self, percent: int, message: str | None = None) -> None:
        """Record progress (and a heartbeat) in its own short transaction."""
        values: dict[str, Any] = {
            "progress": max(0, min(100, int(percent))),
            "heartbeat_at": utcnow(),
        }
        if message is not None:
            values["message"] = message[:2000]
        db.session.execute(
            update(Job)
            .where(Job.id == self.job_id, Job.lease == self.lease, Job.status == JobStatus.RUNNING)
            .values(**values)
        )
        db.session.commit()

    def carry(self, payload: dict[str, Any]) -> None:
        """Replace the job's payload with what this attempt took on (the items of the jobs
        it adopted, say) and commit, so that a retry of the job carries them too.

        Raises:
            LeaseLost: the job was claimed again by another attempt.
        """
        moved = db.session.execute(
            update(Job)
            .where(Job.id == self.job_id, Job.lease == self.lease, Job.status == JobStatus.RUNNING)
            .values(payload=payload)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            raise LeaseLost()
        db.session.commit()

    def is_cancelled(self) -> bool:
        status = db.session.execute(select(Job.status).where(Job.id == self.job_id)).scalar_one()
        db.session.commit()
        return bool(status == JobStatus.CANCELLED)

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise JobCancelled()

    def hold(self) -> None:
        """Check that this attempt still holds the job and keep it until the transaction
        ends (a row lock on PostgreSQL): call before writing results, so that an attempt
        presumed dead and retried elsewhere cannot overwrite what the retry writes.

        Raises:
            LeaseLost: the job was claimed again by another attempt.
        """
        row = db.session.execute(
            select(Job.lease, Job.status).where(Job.id == self.job_id).with_for_update()
        ).one_or_none()
        # Pending again with this lease: recovery took the job back (this process was
        # presumed dead) and another attempt is about to claim it.
        if row is None or row.lease != self.lease or row.status == JobStatus.PENDING:
            raise LeaseLost()


Handler = Callable[[Job, JobContext], dict[str, Any] | None]


class _Running:
    """The jobs this process is running (job id -> lease), for the heartbeat thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, str] = {}

    def add(self, job_id: int, lease: str) -> None:
        with self._lock:
            self._leases[job_id] = lease

    def discard(self, job_id: int) -> None:
        with self._lock:
            self._leases.pop(job_id, None)

    def snapshot(self) -> dict[int, str]:
        with self._lock:
            return dict(self._leases)


RUNNING = _Running()


def new_lease() -> str:
    """A claim's lease: unique, and naming the process that holds the job
    (host:pid:token:random, its heartbeat id without the kind), so an operator can tell who
    runs what and recovery can take a dead process's jobs back at once."""
    return f"{processes.process_ident()}:{secrets.token_hex(6)}"


def claim(job_id: int, *, lease: str | None = None) -> JobContext | None:
    """Take the job for this process; None if it is finished or alive elsewhere."""
    now = utcnow()
    stale = now - timedelta(seconds=int(current_app.config["CW_JOB_STALE_SECONDS"]))
    lease = lease or new_lease()
    result = db.session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                Job.status == JobStatus.PENDING,
                (Job.status == JobStatus.RUNNING) & (Job.heartbeat_at < stale),
            ),
            Job.attempts < Job.max_attempts,
        )
        .values(
            status=JobStatus.RUNNING,
            lease=lease,
            attempts=Job.attempts + 1,
            heartbeat_at=now,
            started_at=now,
        )
    )
    db.session.commit()
    if result.rowcount != 1:
        return None
    return JobContext(job_id=job_id, lease=lease)


def adopt_pending(*, kind: str, into: int, key: str, room: int) -> tuple[list[Any], list[int]]:
    """Take over pending first-attempt jobs of ``kind`` whose payload lists items under
    ``key`` (others are left alone), while their items fit in ``room``: they are marked
    done ("with job #into") in the caller's transaction, and their items returned with
    their ids.

    Used by work made of independent items (issuance): many small jobs created at once by
    concurrent callers become one batch, and their messages then find the job finished and
    skip it. If the caller's transaction rolls back, the jobs stay pending and run on their
    own. A job another worker is claiming right now is locked and left to it (SKIP LOCKED);
    the conditional UPDATE keeps SQLite, which has no row locks, exact.
    """
    if room <= 0:
        return [], []
    candidates = db.session.execute(
        select(Job.id, Job.payload)
        .where(
            Job.kind == kind,
            Job.status == JobStatus.PENDING,
            Job.attempts == 0,
            Job.id != into,
        )
        .order_by(Job.id)
        .limit(room)
        .with_for_update(skip_locked=True)
    ).all()
    chosen, items = [], []
    for job_id, payload in candidates:
        theirs = list((payload or {}).get(key, []))
        if not theirs:  # nothing under key (a job of an older payload shape): its own run
            continue
        if len(items) + len(theirs) > room:
            break
        chosen.append(job_id)
        items.extend(theirs)
    if not chosen:
        return [], []
    now = utcnow()
    message = f"done with job #{into}"
    taken = set(
        db.session.execute(
            update(Job)
            .where(Job.id.in_(chosen), Job.status == JobStatus.PENDING, Job.attempts == 0)
            .values(
                status=JobStatus.DONE,
                progress=100,
                message=message,
                result={"message": message, "adopted_by": into},
                started_at=now,
                finished_at=now,
                heartbeat_at=now,
            )
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    if taken != set(chosen):  # SQLite: another process finished one first; use only ours
        items = [
            i
            for job_id, payload in candidates
            if job_id in taken
            for i in (payload or {}).get(key, [])
        ]
    return items, sorted(taken)


def execute(job_id: int, handler: Handler) -> str:
    """Claim and run a job; record done/failed/retry. Returns what happened (for logs)."""
    ctx = claim(job_id)
    if ctx is None:
        return "skipped"
    RUNNING.add(job_id, ctx.lease)
    try:
        job = db.session.get(Job, job_id)
        assert job is not None
        result = handler(job, ctx)
        _finish(ctx, JobStatus.DONE, result=result)
        return "done"
    except JobCancelled:
        db.session.rollback()
        return "cancelled"
    except LeaseLost:
        db.session.rollback()
        log.warning("job %s: another attempt took it over; this one stopped", job_id)
        return "lost"
    except Exception as exc:
        db.session.rollback()
        log.exception("job %s failed", job_id)
        return _fail_or_retry(ctx, f"{type(exc).__name__}: {exc}")
    finally:
        RUNNING.discard(job_id)


def finish(ctx: JobContext, *, result: dict[str, Any] | None = None) -> None:
    """Mark a job this attempt holds done, with its result (work that ends outside the
    handler, e.g. a shard an agent reports finished). Commits."""
    _finish(ctx, JobStatus.DONE, result=result)


def _finish(
    ctx: JobContext,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    message: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "heartbeat_at": utcnow()}
    if status == JobStatus.DONE:
        values["progress"] = 100
    if result is not None:
        values["result"] = audit.jsonable(result)
        if "message" in result:
            values["message"] = str(result["message"])[:2000]
        if "result_type" in result:
            values["result_type"] = str(result["result_type"])
            values["result_id"] = str(result.get("result_id", ""))
    if message is not None:
        values["message"] = message[:2000]
    db.session.execute(
        update(Job)
        .where(Job.id == ctx.job_id, Job.lease == ctx.lease, Job.status == JobStatus.RUNNING)
        .values(**values)
    )
    db.session.commit()


def _fail_or_retry(ctx: JobContext, reason: str) -> str:
    job = db.session.get(Job, ctx.job_id)
    if job is None or job.lease != ctx.lease or job.status != JobStatus.RUNNING:
        return "lost"
    if job.attempts < job.max_attempts:
        job.status = JobStatus.PENDING
        job.message = f"attempt {job.attempts} failed ({reason}); retrying"[:2000]
        enqueue(job, delay_ms=min(60_000, 2_000 * 2 ** (job.attempts - 1)))
        db.session.commit()
        return "retry"
    job.status = JobStatus.FAILED
    job.finished_at = utcnow()
    job.message = f"failed after {job.attempts} attempts: {reason}"[:2000]
    failed_for_good(job)
    db.session.commit()
    return "failed"


def failed_for_good(job: Job) -> None:
    """A job out of attempts: run its kind's failure hook (e.g. end a scan run as Failed)."""
    kind = KINDS.get(job.kind)
    if kind is not None and kind.on_failure is not None:
        kind.on_failure(job)


def heartbeat(leases: dict[int, str]) -> None:
    """Called every second by each process for the jobs it is running.

    A job row that the job itself holds locked (JobContext.hold() until its transaction
    commits) is skipped, not waited for: the beat must not stall behind the work it
    vouches for, and the commit that releases the lock refreshes the row anyway.
    """
    if not leases:
        return
    now = utcnow()
    for job_id, lease in leases.items():
        free = (
            select(Job.id)
            .where(Job.id == job_id, Job.lease == lease, Job.status == JobStatus.RUNNING)
            .with_for_update(skip_locked=True)
        )
        db.session.execute(update(Job).where(Job.id.in_(free)).values(heartbeat_at=now))
    db.session.commit()


def cancel(*, actor: Admin, job_id: int, visible: Callable[[Job], bool] | None = None) -> Job:
    job = db.session.get(Job, job_id)
    if job is None or (visible is not None and not visible(job)):
        raise NotFound("No such job.")
    before = job.status.value
    result = db.session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
        .values(
            status=JobStatus.CANCELLED, finished_at=utcnow(), message="cancelled by " + actor.login
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.refresh(job)  # what it is now, not the copy loaded before
        raise Conflict(f"Job #{job.id} has already ended ({job.status.value}).")
    audit.record(
        action="job.cancel",
        actor=actor,
        object_type="Job",
        object_id=job.id,
        label=f"{job.kind} #{job.id}",
        before={"status": before},
        after={"status": JobStatus.CANCELLED.value},
        organization_id=job.organization_id,
    )
    db.session.expire(job)
    return job
