"""Report actors: one chunk (id range) of a generated report per message; a scheduled
report fired by the scheduler; the hourly purge of reports past their keeping time; the dashboard's summary rows folded
every ten minutes."""

from __future__ import annotations

import dramatiq

from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.platform import jobs
from app.services.reports import counts, generation, schedules


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=3_600_000)
def build_report_chunk(job_id: int) -> None:
    jobs.execute(job_id, generation.run_chunk_job)


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def start_scheduled_report(job_id: int) -> None:
    jobs.execute(job_id, schedules.run_schedule_job)


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def purge_reports(job_id: int) -> None:
    jobs.execute(job_id, generation.run_purge_job)


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def fold_dashboard_counts(job_id: int) -> None:
    jobs.execute(job_id, counts.run_fold_job)


jobs.register_kind(
    generation.JOB_KIND,
    "Build a chunk of a report",
    build_report_chunk,
    on_failure=generation.chunk_failed,
)
jobs.register_kind(
    schedules.JOB_KIND,
    "Start a scheduled report",
    start_scheduled_report,
)
jobs.register_kind(
    generation.PURGE_KIND,
    "Delete generated reports past their keeping time",
    purge_reports,
    every=3600,
)
jobs.register_kind(
    counts.JOB_KIND,
    "Fold the dashboard's summary rows (certificate counts)",
    fold_dashboard_counts,
    every=600,
)
