"""Crash recovery: a job whose worker process is SIGKILLed mid-way is retried by another
worker (or failed with a reason when out of attempts), never left running.

How the job is caught mid-way without a test-only job kind: the test holds an ACCESS
EXCLUSIVE lock on audit_events, so a real audit_verify job claims its row (status
running, lease, heartbeats) and then waits inside its handler on the table, as a job
does behind a long migration or VACUUM FULL. The worker process is then SIGKILLed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Job, JobStatus
from app.models.types import utcnow
from app.services.platform import jobs
from tests.processes import describe, wait_until
from tests.services.conftest import Stack

STALE = 5  # CW_JOB_STALE_SECONDS for these processes


@pytest.fixture
def audit_table_locked(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A transaction holding an ACCESS EXCLUSIVE lock on audit_events until rolled back."""
    conn = psycopg.connect(pg_url)
    try:
        conn.execute("SET lock_timeout = '5s'")
        conn.execute("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
        yield conn
    finally:
        conn.rollback()
        conn.close()


def load(job_id: int) -> Job:
    db.session.expire_all()
    job = db.session.get(Job, job_id)
    assert job is not None
    db.session.rollback()  # read, do not hold a transaction open
    return job


def test_killed_worker_job_is_retried_by_another_worker_or_failed(
    pg: Flask, pg_url: str, redis_url: str, stack_logs, audit_table_locked
) -> None:
    stack = Stack(
        pg_url, redis_url, stack_logs, {"CW_JOB_STALE_SECONDS": STALE, "CW_SCHEDULER_INTERVAL": 1}
    )
    # Two scheduler processes, as in a deployment that runs one per host by mistake:
    # recovery must still retry each lost job once.
    with (
        stack.scheduler("scheduler-1") as sched1,
        stack.scheduler("scheduler-2") as sched2,
        stack.workers("worker-a", processes=1, threads=2) as worker_a,
    ):
        # Job 1 the app's way (CLI, sent after commit), 3 attempts.
        out = stack.flask("jobs", "enqueue", "audit_verify")
        retried = int(re.search(r"job (\d+) audit_verify pending", out).group(1))  # type: ignore[union-attr]
        # Job 2 with a single attempt, never sent: the scheduler's recovery sends it.
        last = jobs.create_job(kind="audit_verify", max_attempts=1, send=False)
        db.session.commit()
        single = last.id

        everyone = describe(worker_a, sched1, sched2)
        wait_until(
            lambda: all(load(j).status == JobStatus.RUNNING for j in (retried, single)),
            timeout=40,
            what="worker A to claim both jobs",
            why=everyone,
        )
        # A live worker stuck longer than the stale limit keeps its jobs: it heartbeats
        # them well within the limit, so recovery never takes them from a live process.
        oldest = 0.0
        until = time.monotonic() + STALE * 1.6
        while time.monotonic() < until:
            job = load(retried)
            assert job.heartbeat_at is not None
            oldest = max(oldest, (utcnow() - job.heartbeat_at).total_seconds())
            time.sleep(0.1)
        assert oldest < STALE * 0.6, f"a heartbeat was {oldest:.1f} s old; stale at {STALE} s"
        for job_id in (retried, single):
            job = load(job_id)
            assert (job.status, job.attempts) == (JobStatus.RUNNING, 1), (job.message, everyone())

        worker_a.kill()
        killed_at = time.monotonic()
        with stack.workers("worker-b", processes=1, threads=2) as worker_b:
            audit_table_locked.rollback()  # whatever held the table is done
            everyone = describe(worker_a, worker_b, sched1, sched2)
            wait_until(
                lambda: all(load(j).status.is_final for j in (retried, single)),
                timeout=60,
                what="both jobs to end after the worker was killed",
                why=everyone,
            )
            recovered_in = time.monotonic() - killed_at
            assert worker_b.alive(), worker_b.log()
        assert sched1.alive() and sched2.alive(), everyone()

    job = load(retried)
    assert job.status == JobStatus.DONE, (job.message, everyone())
    assert job.attempts == 2  # retried once, by one scheduler
    assert job.result and job.result["ok"] is True
    assert job.message.startswith("audit chain intact")

    job = load(single)
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert job.message == "failed: the worker stopped responding on each of 1 attempts"
    assert job.finished_at is not None

    assert recovered_in < 60
    leftovers = (
        db.session.execute(select(Job.id).where(Job.status == JobStatus.RUNNING)).scalars().all()
    )
    db.session.rollback()
    assert leftovers == []
