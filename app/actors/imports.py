"""Import actors: reading uploaded certificate files into the inventory."""

from __future__ import annotations

from typing import Any

import dramatiq

from app.models import Job
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.imports import imports
from app.services.platform import jobs


def _import(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    import_id = int(job.payload["import_id"])

    def progress(percent: int, message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(percent, message)

    return imports.run_import(import_id=import_id, progress=progress, hold=ctx.hold)


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=3_600_000)
def import_certificates(job_id: int) -> None:
    jobs.execute(job_id, _import)


jobs.register_kind(
    imports.JOB_KIND,
    "Import certificates",
    import_certificates,
    on_failure=imports.import_job_failed,
)
