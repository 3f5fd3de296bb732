"""Portal actors: key generation and PKCS#12 packaging for registrations, and the sweep
that deletes PKCS#12 files nobody downloaded."""

from __future__ import annotations

from typing import Any

import dramatiq

from app.extensions import db
from app.models import Job
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.certificates import issuance
from app.services.persons import registration, throttle
from app.services.platform import jobs


def _enroll(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    try:
        return registration.build_pkcs12(int(job.payload["enrollment_id"]))
    except issuance.IssuanceRaced as exc:  # another attempt issued it: retry packages it
        db.session.rollback()
        raise RuntimeError(f"issued concurrently ({exc}); packaging on the next attempt") from exc


# Key generation is CPU work (RSA-2048 about 30 keys a second a core): its own queue, so
# dedicated workers can take it, and never a web request thread.
@dramatiq.actor(queue_name="keygen", max_retries=0, time_limit=300_000)
def portal_enrollment(job_id: int) -> None:
    jobs.execute(job_id, _enroll)


def _enrollment_failed(job: Job) -> None:
    registration.failed_for_good(int(job.payload.get("enrollment_id", 0)), job.message)


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
