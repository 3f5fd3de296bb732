"""A discovery scan on PostgreSQL through a real `dramatiq` worker process over Redis: the
run ends Successful with its summary (PostgreSQL, unlike SQLite, cannot DISTINCT rows
that have json columns, which once left every run on PostgreSQL Running for ever)."""

from __future__ import annotations

import secrets

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, RunStatus, ScanRun
from app.services.discovery import rules, tasks
from tests.factories import make_admin, make_org
from tests.services.conftest import Stack
from tests.tlsbed.certs import issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context

HOSTS = [f"127.0.31.{i}" for i in range(1, 4)]


def test_scan_through_a_worker_on_postgres_ends_successful(
    pg: Flask, pg_url: str, redis_url: str, stack_logs
) -> None:
    tag = secrets.token_hex(3)
    mrao = make_admin(f"mrao-{tag}")
    org = make_org(f"Scanned {tag}")
    rule = rules.save_rule(
        actor=mrao,
        data=rules.RuleData(
            name=f"Corp {tag}",
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": f"Corp {tag}"}],
            organization_id=org.id,
        ),
    )
    root = issue(make_name(f"Root {tag}", f"Corp {tag}"), ca=True)
    leaf = issue(make_name(f"a-{tag}.test", f"Corp {tag}"), issuer=root, sans=[f"a-{tag}.test"])
    other = issue(make_name(f"b-{tag}.test", "Elsewhere"), sans=[f"b-{tag}.test"])
    port = free_port(HOSTS)
    task = tasks.create_task(
        actor=mrao,
        data=tasks.TaskData(
            name=f"Loopback {tag}",
            ranges=f"{HOSTS[0]}-{HOSTS[-1]}",
            ports=str(port),
            connect_timeout=2,
            handshake_timeout=3,
            rule_ids=[rule.id],
        ),
    )
    db.session.commit()
    stack = Stack(pg_url, redis_url, stack_logs, {})
    with ServerFarm() as farm:
        farm.add_tls(HOSTS[0], port, server_context([leaf, root]))
        farm.add_tls(HOSTS[1], port, server_context([leaf, root]))
        farm.add_tls(HOSTS[2], port, server_context([other]))
        with stack.workers("workers", processes=1, threads=1) as proc:
            out = stack.flask("discovery", "run", str(task.id), "--timeout", "60")
            assert proc.alive(), proc.log()
    assert "Successful" in out, out
    run = db.session.execute(select(ScanRun).where(ScanRun.task_id == task.id)).scalar_one()
    assert run.status == RunStatus.SUCCESSFUL, run.message
    assert (run.tls_endpoints, run.certificates, run.new_certificates, run.assigned) == (3, 2, 2, 1)
    assert run.counts["summary"]["total"] == 2
    assert run.counts["summary"]["self_signed"] == 1
    placed = db.session.execute(
        select(Certificate.organization_id).where(Certificate.common_name == f"a-{tag}.test")
    ).scalar_one()
    assert placed == org.id
