"""Portal actors: key generation and PKCS#12 packaging for registrations, and the sweep
that deletes PKCS#12 files nobody downloaded."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq

from app.extensions import db
from app.models import Job
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.persons import registration, throttle
from app.services.platform import jobs

log = logging.getLogger(__name__)


def _enroll(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    ids = registration.enrollment_ids(job.payload)
    if job.attempts == 1:
        ids += _adopt(job, ctx, ids)
    try:
        result = registration.build_pkcs12s(ids)
    except Exception:  # one registration broke the batch: each on its own, apart
        db.session.rollback()
        log.exception("job %s: the batch of %d registrations failed; one by one", job.id, len(ids))
        return _one_by_one(job, ids)
    return {"message": result.summary(), "ready": result.ready, "failed": result.failed}


def _adopt(job: Job, ctx: jobs.JobContext, ids: list[int]) -> list[int]:
    """Take on the registrations queued behind this one (first-attempt jobs nobody holds,
    up to the batch size), as issuance batches its requests. Committed at once with this
    job's payload: the adopted jobs' messages then find them done instead of waiting on
    this batch's row locks (the other worker goes on with the next registrations), and a
    retry of this job (a crash, a failure) still carries every registration it took."""
    more, adopted = jobs.adopt_pending(
        kind="portal_enrollment",
        into=job.id,
        key="enrollment_ids",
        room=registration.BATCH_SIZE - len(ids),
    )
    if not adopted:
        return []
    ctx.carry({**job.payload, "enrollment_ids": ids + more, "adopted_jobs": adopted})
    return [int(i) for i in more]


def _one_by_one(job: Job, ids: list[int]) -> dict[str, Any]:
    """Each registration in a transaction of its own: a bad one fails alone. Any that
    failed makes the job retry (the ready ones are skipped then); out of attempts, the
    failure hook tells the people still waiting."""
    ready: list[int] = []
    errors: dict[int, str] = {}
    for enrollment_id in ids:
        try:
            result = registration.build_pkcs12s([enrollment_id])
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            log.exception("job %s: registration %s failed", job.id, enrollment_id)
            errors[enrollment_id] = f"{type(exc).__name__}: {exc}"
            continue
        ready += result.ready
    if errors:
        raise RuntimeError(
            f"{len(errors)} of {len(ids)} registrations failed ("
            + "; ".join(f"#{i}: {reason}" for i, reason in errors.items())
            + "); retrying those"
        )
    return {"message": f"{len(ready)} PKCS#12 files ready (one by one)", "ready": ready}


# Key generation is CPU work (RSA-2048 about 30 keys a second a core): its own queue, so
# dedicated workers can take it, and never a web request thread.
@dramatiq.actor(queue_name="keygen", max_retries=0, time_limit=300_000)
def portal_enrollment(job_id: int) -> None:
    jobs.execute(job_id, _enroll)


def _enrollment_failed(job: Job) -> None:
    registration.failed_for_good(registration.enrollment_ids(job.payload), job.message)


def _sweep(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    expired = registration.expire_uncollected()
    forgotten = throttle.purge()
    return {
        "message": f"{expired} uncollected PKCS#12 files deleted, {forgotten} old throttle counters"
    }


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def portal_housekeeping(job_id: int) -> None:
    jobs.execute(job_id, _sweep)


jobs.register_kind(
    "portal_enrollment",
    "Generate a key and PKCS#12 for a portal registration",
    portal_enrollment,
    on_failure=_enrollment_failed,
)
jobs.register_kind(
    "portal_housekeeping",
    "Delete PKCS#12 files not downloaded in time and old throttle counters",
    portal_housekeeping,
    every=3600,
)
