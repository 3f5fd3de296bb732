"""Two deployments sharing one Redis database keep apart by CW_REDIS_NAMESPACE: a job sent
by one is never taken by the other's workers (whose job ids mean other rows)."""

from __future__ import annotations

import re
import time

import redis
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Job, JobStatus
from tests.processes import describe, wait_until
from tests.services.conftest import Stack

BOOT = 120  # seconds a worker may take to start on a busy machine


def status(job_id: int) -> JobStatus:
    value = db.session.execute(select(Job.status).where(Job.id == job_id)).scalar_one()
    db.session.rollback()
    return JobStatus(value)


def test_deployments_sharing_a_redis_database_keep_apart_by_key_prefix(
    pg: Flask, pg_url: str, redis_url: str, stack_logs
) -> None:
    prod = Stack(pg_url, redis_url, stack_logs, {"CW_REDIS_NAMESPACE": "cw-prod"})
    other = Stack(pg_url, redis_url, stack_logs, {})  # the default prefix, "dramatiq"
    client = redis.Redis.from_url(redis_url)
    before = client.hlen("dramatiq:default.msgs")  # other tests of the run use the default
    out = prod.flask("jobs", "enqueue", "audit_verify")
    job_id = int(re.search(r"job (\d+) audit_verify pending", out).group(1))  # type: ignore[union-attr]
    assert client.hlen("cw-prod:default.msgs") == client.llen("cw-prod:default") == 1
    assert client.hlen("dramatiq:default.msgs") == before

    with other.workers("other-deployment", processes=1, threads=1) as proc:
        wait_until(
            lambda: "Worker process is ready" in proc.log(),
            timeout=BOOT,
            what="the other deployment's worker",
            why=describe(proc),
        )
        time.sleep(3)  # it polls every second: ample time to take a message it could see
        assert status(job_id) == JobStatus.PENDING, proc.log()
    with prod.workers("prod", processes=1, threads=1) as proc:
        wait_until(
            lambda: status(job_id) == JobStatus.DONE,
            timeout=BOOT,
            what="the job on its own deployment's worker",
            why=describe(proc),
        )
    assert db.session.get(Job, job_id).attempts == 1
