"""Import actors: reading uploaded certificate files into the inventory."""

from __future__ import annotations

from typing import Any

import dramatiq

from app.models import Job
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.imports import imports, reading, sweep
from app.services.platform import jobs
from app.settings import setting


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=3_600_000)
def import_certificates(job_id: int) -> None:
    jobs.execute(job_id, reading.run_import_job)


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=3_600_000)
def import_certificates_part(job_id: int) -> None:
    jobs.execute(job_id, reading.run_part_job)


jobs.register_kind(reading.PART_KIND, "Import certificates (a part)", import_certificates_part)
jobs.register_kind(
    imports.JOB_KIND,
    "Import certificates",
    import_certificates,
    on_failure=reading.import_job_failed,
)


def _hygiene_sweep(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    ranges = sweep.start_sweep()
    return {"message": f"{ranges} ranges of certificates to check"}


# The hygiene backlog (every stored certificate after an upgrade, pkilint on each) has a
# queue of its own at the lowest priority: it never holds up imports, notifications or
# reports waiting on "default", and a deployment may give it workers of its own.
HYGIENE_QUEUE = "hygiene"


@dramatiq.actor(queue_name=HYGIENE_QUEUE, priority=100, max_retries=0, time_limit=600_000)
def hygiene_sweep(job_id: int) -> None:
    jobs.execute(job_id, _hygiene_sweep)


def _hygiene_range(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    result = sweep.run_range(int(job.payload["low"]), int(job.payload["high"]))
    return {
        "message": f"{result.checked} certificates checked, {result.findings} new findings",
        "checked": result.checked,
    }


@dramatiq.actor(queue_name=HYGIENE_QUEUE, priority=100, max_retries=0, time_limit=1_800_000)
def hygiene_range(job_id: int) -> None:
    jobs.execute(job_id, _hygiene_range)


jobs.register_kind(
    sweep.SWEEP_KIND,
    "Check certificates' keys, signatures and pkilint findings",
    hygiene_sweep,
    every=int(setting("CW_HYGIENE_SWEEP_SECONDS")),
)
jobs.register_kind(sweep.RANGE_KIND, "Check a range of certificates", hygiene_range)
