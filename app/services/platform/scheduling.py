"""Recovery and the scheduler: what keeps background jobs moving when processes die.

The scheduler process (or the embedded one) calls tick() every few seconds: due schedules
become jobs (row locks with SKIP LOCKED, so two schedulers never fire one twice), the jobs
of a worker process that stopped heartbeating are retried (or failed with a reason) at
once, and messages that were lost with a dead worker or a restarted broker are sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import or_, select

from app.extensions import db
from app.models import Job, JobStatus, Schedule
from app.models.types import utcnow
from app.services.platform import jobs, mail, processes

log = logging.getLogger(__name__)

# Durable work other areas keep in their own rows (notification events, webhook messages):
# name -> fn(now, restarted) that sends the messages for what is due, after commit.
Pass = Callable[[datetime | None, bool], int]
PASSES: dict[str, Pass] = {}


def register_pass(name: str, fn: Pass) -> None:
    """Run fn on every scheduler pass (and with restarted=True when an embedded worker
    starts with an empty queue)."""
    PASSES[name] = fn


def _run_passes(now: datetime | None, *, restarted: bool) -> dict[str, int]:
    return {name: fn(now, restarted) for name, fn in PASSES.items()}


def recover(now: datetime | None = None) -> dict[str, int]:
    """Take back the work of processes that died; retry jobs whose lease went stale, or
    fail them when out of attempts; re-send lost messages."""
    counts = {"retried": 0, "failed": 0, "resent": 0}
    _recover_dead_workers(counts, now)
    now = now or utcnow()
    stale = now - timedelta(seconds=int(current_app.config["CW_JOB_STALE_SECONDS"]))
    # A running job that stopped heartbeating while its process still beats (or whose
    # process's row was already handled): the slower, per-job safety net.
    lost = (
        db.session.execute(
            select(Job)
            .where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < stale)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    for job in lost:
        _take_back(job, now, counts)
    # A pending job whose message was lost (broker restart, embedded queue gone).
    unsent = (
        db.session.execute(
            select(Job)
            .where(
                Job.status == JobStatus.PENDING,
                or_(Job.enqueued_at.is_(None), Job.enqueued_at < now - timedelta(minutes=5)),
            )
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    for job in unsent:
        if job.kind in jobs.KINDS:
            jobs.enqueue(job)
            counts["resent"] += 1
    db.session.commit()
    return counts


def _take_back(job: Job, now: datetime, counts: dict[str, int]) -> None:
    """A running job whose process is gone: send it again, or fail it out of attempts."""
    if job.attempts < job.max_attempts:
        job.status = JobStatus.PENDING
        job.message = f"the worker running attempt {job.attempts} stopped responding; retrying"
        jobs.enqueue(job)
        counts["retried"] += 1
    else:
        job.status = JobStatus.FAILED
        job.finished_at = now
        job.message = f"failed: the worker stopped responding on each of {job.attempts} attempts"
        jobs.failed_for_good(job)
        counts["failed"] += 1


def _recover_dead_workers(counts: dict[str, int], now: datetime | None) -> None:
    """Once per consuming process that stopped heartbeating (CW_WORKER_STALE_SECONDS, a
    few seconds): take back the jobs it was running and re-send every pending job.

    Its running jobs are known by their leases, which start with the process's identity,
    so they are retried at once instead of when each job's own heartbeat goes stale
    (CW_JOB_STALE_SECONDS). A worker also fetches more messages than it runs (dramatiq
    prefetches); the ones it had not started are still its own: Redis keeps them in the
    dead consumer's set until dramatiq's maintenance notices, minutes later, and an
    embedded worker's queue dies with it. Their jobs are pending, not running, so no lease
    goes stale. Which pending job it held is unknown, so all are sent again; a second
    message for a job is a no-op (the claim is conditional).

    A process presumed dead that was only slow loses nothing but time: its attempt stops
    at its next JobContext.hold() (LeaseLost) and it signs in again at its next beat.
    """
    dead = processes.dead_consumers(now)
    if not dead:
        return
    now = now or utcnow()
    taken: set[int] = set()  # sent again already
    for row in dead:
        log.warning("worker %s stopped heartbeating; taking back its jobs", row.id)
        running = (
            db.session.execute(
                select(Job)
                .where(
                    Job.status == JobStatus.RUNNING,
                    Job.lease.startswith(processes.lease_prefix(row), autoescape=True),
                )
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        for job in running:
            _take_back(job, now, counts)
            taken.add(job.id)
        db.session.delete(row)  # handled once; a process that was only slow signs in again
    db.session.flush()
    pending = (
        db.session.execute(
            select(Job).where(Job.status == JobStatus.PENDING).with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    for job in pending:
        if job.kind in jobs.KINDS and job.id not in taken:
            jobs.enqueue(job)
            counts["resent"] += 1


def pick_up_handed_off(limit: int = 1000) -> int:
    """Send the pending jobs that another process handed to this one (enqueued_at empty:
    no message exists anywhere; see jobs.set_handoff). Called every half second by the
    embedded worker, so a job created by a command-line process starts at once."""
    found = (
        db.session.execute(
            select(Job)
            .where(
                Job.status == JobStatus.PENDING,
                Job.enqueued_at.is_(None),
                Job.kind.in_(sorted(jobs.KINDS)),
            )
            .order_by(Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    for job in found:
        jobs.enqueue(job)
    db.session.commit()
    return len(found)


def resend_pending() -> int:
    """On start of an embedded worker: its in-memory queue is empty, so re-send every
    pending job and every queued mail that is due."""
    pending = db.session.execute(select(Job).where(Job.status == JobStatus.PENDING)).scalars().all()
    for job in pending:
        if job.kind in jobs.KINDS:
            jobs.enqueue(job)
    mails = mail.dispatch_due(restarted=True)
    others = _run_passes(None, restarted=True)
    db.session.commit()
    return len(pending) + mails + sum(others.values())


def next_due(spec: dict[str, Any], after: datetime) -> datetime | None:
    fn = jobs.RECURRENCES.get(str(spec.get("kind", "")))
    return fn(spec, after) if fn else None


def fire_due_schedules(now: datetime | None = None) -> list[int]:
    """Turn due schedules into jobs. Row locks (SKIP LOCKED) make two schedulers safe."""
    now = now or utcnow()
    due = (
        db.session.execute(
            select(Schedule)
            .where(
                Schedule.enabled.is_(True),
                Schedule.next_run_at.is_not(None),
                Schedule.next_run_at <= now,
            )
            .order_by(Schedule.next_run_at)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    created = []
    for sched in due:
        if sched.job_kind in jobs.KINDS:
            job = jobs.create_job(
                kind=sched.job_kind, payload=dict(sched.payload), schedule_id=sched.id
            )
            sched.last_job_id = job.id
            created.append(job.id)
        sched.last_run_at = now
        sched.next_run_at = next_due(sched.spec, now)
    db.session.commit()
    return created


def tick(now: datetime | None = None) -> dict[str, Any]:
    """One scheduler pass: fire due schedules, recover, dispatch mail that is due."""
    fired = fire_due_schedules(now)
    recovered = recover(now)
    mails = mail.dispatch_due(now)
    others = _run_passes(now, restarted=False)
    db.session.commit()
    return {"fired": fired, **recovered, "mail": mails, **others}


def ensure_interval_schedule(
    job_kind: str, seconds: int, *, first_at: datetime | None = None
) -> Schedule:
    """Idempotently create a system schedule that runs job_kind every `seconds`."""
    sched = db.session.execute(
        select(Schedule).where(Schedule.job_kind == job_kind, Schedule.owner_type == "system")
    ).scalar_one_or_none()
    if sched is None:
        sched = Schedule(
            job_kind=job_kind,
            owner_type="system",
            spec={"kind": "interval", "seconds": seconds},
            next_run_at=first_at or utcnow(),
        )
        db.session.add(sched)
        db.session.flush()
    return sched


def ensure_system_schedules() -> None:
    for kind, seconds in jobs.SYSTEM_SCHEDULES.items():
        ensure_interval_schedule(kind, seconds)
