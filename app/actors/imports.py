"""Import actors: reading uploaded certificate files into the inventory."""

from __future__ import annotations

import dramatiq

from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.imports import imports
from app.services.platform import jobs


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=3_600_000)
def import_certificates(job_id: int) -> None:
    jobs.execute(job_id, imports.run_import_job)


jobs.register_kind(
    imports.JOB_KIND,
    "Import certificates",
    import_certificates,
    on_failure=imports.import_job_failed,
)
