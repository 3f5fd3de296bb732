"""Generated reports on PostgreSQL with real processes: `flask report run --background`
sends one message per id range to Redis, two dramatiq worker processes build the chunks,
and the download stitches them in order, holding only the asking RAO's organization."""

from __future__ import annotations

import csv
import io
import json
import secrets

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Job, JobStatus, Report, Role
from tests.factories import make_admin, make_org
from tests.integration.test_reports import EVIL, add_certificates
from tests.processes import describe, wait_until
from tests.services.conftest import Stack

BOOT = 120  # seconds a process may take to start on a busy machine
MINE, THEIRS = 700, 300


def fresh(query):
    db.session.expire_all()
    try:
        return db.session.execute(query)
    finally:
        db.session.rollback()


def test_two_workers_build_a_chunked_report_stitched_in_order(
    pg: Flask, pg_url: str, redis_url: str, stack_logs, tmp_path
) -> None:
    tag = secrets.token_hex(3)
    mine, theirs = make_org(f"{EVIL} {tag}"), make_org(f"Theirs {tag}")
    add_certificates(mine, MINE, prefix=f"mine-{tag}-")
    add_certificates(theirs, THEIRS, prefix=f"theirs-{tag}-")
    rao = f"rao-{tag}"
    make_admin(rao, Role.RAO, org=mine)
    settings = {"CW_KEK": pg.config["CW_KEK"], "CW_REPORT_CHUNK_ROWS": 100}
    stack = Stack(pg_url, redis_url, stack_logs, settings)
    with (
        stack.workers("worker-a", processes=1, threads=1) as worker_a,
        stack.workers("worker-b", processes=1, threads=1) as worker_b,
    ):
        why = describe(worker_a, worker_b)
        pids = wait_until(
            lambda: (
                len(worker_a.children()) == 1
                and len(worker_b.children()) == 1
                and {worker_a.children()[0], worker_b.children()[0]}
            ),
            timeout=BOOT,
            what="one dramatiq process under each worker",
            why=why,
        )
        out = stack.flask(
            "report",
            "run",
            "ssl_certificates",
            "--format",
            "csv",
            "--background",
            "--as",
            rao,
            "--json",
        )
        started = json.loads(out)
        assert started["chunks"] >= (MINE + THEIRS) // 100
        report_id = started["id"]
        wait_until(
            lambda: (
                fresh(select(Report.status).where(Report.id == report_id)).scalar_one() == "done"
            ),
            timeout=BOOT,
            what=f"report #{report_id} built by the workers",
            why=why,
        )
        path = tmp_path / "report.csv"
        stack.flask("report", "download", str(report_id), "--out", str(path), "--as", rao)
    report = fresh(select(Report).where(Report.id == report_id)).scalar_one()
    assert report.row_count == MINE and report.chunks_done == list(range(report.chunks_total))
    leases = [
        lease
        for lease, payload in fresh(
            select(Job.lease, Job.payload).where(
                Job.kind == "report_chunk", Job.status == JobStatus.DONE
            )
        ).all()
        if payload["report_id"] == report_id
    ]
    assert len(leases) == report.chunks_total
    # Every chunk was built by one of the two worker processes, none by the command.
    assert all(any(f":{pid}:" in lease for pid in pids) for lease in leases), (leases, pids)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    ids = [int(r[0]) for r in rows[1:]]
    assert len(ids) == MINE and ids == sorted(ids)
    assert {r[2] for r in rows[1:]} == {"'" + mine.name}
    assert not any(tag in r[1] and "theirs" in r[1] for r in rows[1:])
