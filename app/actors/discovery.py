"""Discovery actors: one message per scan shard; scheduled task runs."""

from __future__ import annotations

from typing import Any

import dramatiq

from app.models import Job
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services import audit
from app.services.discovery import runs
from app.services.errors import DomainError
from app.services.platform import jobs
from app.services.scope import SYSTEM


@dramatiq.actor(queue_name="scan", max_retries=0, time_limit=6 * 3600 * 1000)
def scan_shard(job_id: int) -> None:
    jobs.execute(job_id, runs.run_shard_job)


def _scheduled_run(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    try:
        with audit.source(label="scheduler"):
            run = runs.start_run(
                actor=SYSTEM, task_id=int(job.payload["task_id"]), trigger="schedule"
            )
    except DomainError as exc:  # already scanning, or targets no longer valid
        return {"message": f"not started: {exc.message}"}
    return {
        "message": f"scan #{run.id} started with {run.shards_total} shards",
        "result_type": "ScanRun",
        "result_id": run.id,
    }


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def discovery_run(job_id: int) -> None:
    jobs.execute(job_id, _scheduled_run)


jobs.register_kind(
    "scan_shard",
    "Scan a block of addresses",
    scan_shard,
    on_failure=runs.on_shard_failure,
)
jobs.register_kind("discovery_run", "Start a scheduled network discovery", discovery_run)
