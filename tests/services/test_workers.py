"""Jobs through real brokers: `flask jobs enqueue` sends after commit, real `dramatiq`
worker processes run the job against PostgreSQL and report themselves on the About page."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Job, WorkerHeartbeat
from app.services.scope import SYSTEM
from app.services.structure import orgs
from tests.processes import describe, wait_until
from tests.services.conftest import Stack

ENQUEUED = re.compile(r"^job (\d+) audit_verify pending$", re.M)
FINISHED = re.compile(r"^job (\d+) done: audit chain intact: (\d+) rows verified$", re.M)


def worker_rows(pids: list[int]) -> dict[int, WorkerHeartbeat]:
    rows = db.session.execute(
        select(WorkerHeartbeat).where(
            WorkerHeartbeat.pid.in_(pids), WorkerHeartbeat.kind == "worker"
        )
    ).scalars()
    found = {row.pid: row for row in rows}
    db.session.rollback()
    return found


def audit_rows() -> int:
    count = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    db.session.rollback()
    return int(count)


def run_audit_verify(stack: Stack, *, workers: int, pg: Flask, about: FlaskClient) -> Job:
    """Start `workers` worker processes, run audit_verify through the CLI, check the row."""
    # Something for the job to verify: a real audit event, written the app's way.
    orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name=f"Org of {stack.logs.name}", country="DE"))
    db.session.commit()
    expected_rows = audit_rows()
    with stack.workers("workers", processes=workers, threads=2) as proc:
        children = wait_until(
            lambda: len(proc.children()) == workers and proc.children(),
            timeout=20,
            what=f"{workers} dramatiq worker processes",
            why=describe(proc),
        )
        beats = wait_until(
            lambda: len(found := worker_rows(children)) == workers and found,
            timeout=30,
            what="a heartbeat from every worker process",
            why=describe(proc),
        )
        out = stack.flask("jobs", "enqueue", "audit_verify", "--wait", "--timeout", "60")
        job_id = int(ENQUEUED.search(out).group(1))  # type: ignore[union-attr]
        finished = FINISHED.search(out)
        assert finished, out + proc.log()
        assert int(finished.group(1)) == job_id

        job = db.session.get(Job, job_id)
        assert job is not None
        assert job.status.value == "done" and job.attempts == 1 and job.progress == 100
        assert job.result == {
            "message": f"audit chain intact: {expected_rows} rows verified",
            "ok": True,
            "rows": expected_rows,
            "expected": expected_rows,  # the authenticated head's count
        }
        assert job.started_at is not None and job.finished_at >= job.started_at

        # The About page lists the worker processes (and who they are).
        broker = stack.broker_url.split("://", 1)[0].replace("amqp", "rabbitmq")
        assert {row.broker for row in beats.values()} == {broker}
        page = about.get("/admin/about/").get_data(as_text=True)
        workers_cell = page.split('data-about="workers"', 1)[1].split("</td>", 1)[0]
        for pid in children:
            assert f"worker on {beats[pid].host} (pid {pid})" in workers_cell, workers_cell
        assert proc.alive(), proc.log()
    # Stopped gracefully (SIGTERM): every process signed off, so no row is left to go stale
    # and make recovery send their (handed back) messages again.
    assert worker_rows(children) == {}, proc.log()
    return job


def test_audit_verify_runs_on_two_worker_processes_over_redis(
    pg: Flask, pg_url: str, redis_url: str, stack_logs, mrao_client: FlaskClient
) -> None:
    stack = Stack(pg_url, redis_url, stack_logs, {})
    run_audit_verify(stack, workers=2, pg=pg, about=mrao_client)


def test_audit_verify_runs_over_rabbitmq(
    pg: Flask, pg_url: str, amqp_url: str, stack_logs, mrao_client: FlaskClient
) -> None:
    stack = Stack(pg_url, amqp_url, stack_logs, {})
    run_audit_verify(stack, workers=1, pg=pg, about=mrao_client)
