"""Scanning agents over a real broker (Redis and RabbitMQ) and PostgreSQL: an agent process
started with broker URL, key file and allow-list only (no DATABASE_URL in its environment)
scans a real TLS server on 127.0.17.x and its finding lands in the inventory through the
central workers; a result signed with another key is rejected; a shard outside the agent's
local allow-list is refused; a task of an agent that never comes online fails with the
reason."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from flask import Flask
from sqlalchemy import func, select

from app.agent.process import RESULTS_ACTOR, RESULTS_QUEUE, make_broker
from app.extensions import db
from app.models import (
    AuditEvent,
    Certificate,
    Endpoint,
    Job,
    JobStatus,
    RunStatus,
    ScanAgent,
    ScanRun,
    ScanShard,
)
from app.scan import agentwire
from app.services.discovery import agents, tasks
from tests.factories import make_admin
from tests.processes import PY, ROOT, Proc, app_env, describe, wait_until
from tests.services.conftest import Stack
from tests.tlsbed.certs import issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context, silent_listeners

HOST = "127.0.17.10"
OUTSIDE_LOCAL = "127.0.17.200"  # in the console's allow-list, not in the agent's own

START_RUN = """
import sys
from wsgi import app
from app.extensions import db
from app.services.discovery import runs
from app.services.scope import SYSTEM
with app.app_context():
    run = runs.start_run(actor=SYSTEM, task_id=int(sys.argv[1]))
    db.session.commit()
    print(run.id)
"""


def fresh(query):  # type: ignore[no-untyped-def]
    db.session.expire_all()
    rows = db.session.execute(query).all()
    db.session.rollback()
    return rows


def start_run(stack: Stack, task_id: int) -> int:
    done = subprocess.run(
        [PY, "-c", START_RUN, str(task_id)],
        cwd=ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def wait_run(run_id: int, why) -> ScanRun:  # type: ignore[no-untyped-def]
    wait_until(
        lambda: (
            fresh(select(ScanRun.status).where(ScanRun.id == run_id))[0][0] != RunStatus.RUNNING
        ),
        timeout=90,
        what=f"scan #{run_id} to end",
        why=why,
    )
    db.session.expire_all()
    run = db.session.get(ScanRun, run_id)
    assert run is not None
    return run


@pytest.fixture
def tls_server() -> Iterator[tuple[int, str]]:
    leaf = issue(make_name(f"zone-{secrets.token_hex(3)}.agents.test", "Zone Inc"))
    port = free_port([HOST])
    with ServerFarm() as farm:
        farm.add_tls(HOST, port, server_context([leaf]))
        yield port, hashlib.sha256(leaf.der).hexdigest()


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_an_agent_with_only_broker_and_key_scans_and_central_stores(
    broker: str,
    request: pytest.FixtureRequest,
    pg: Flask,
    pg_url: str,
    stack_logs: Path,
    tls_server: tuple[int, str],
) -> None:
    url = request.getfixturevalue("redis_url" if broker == "redis" else "amqp_url")
    port, fingerprint = tls_server
    admin = make_admin(f"mrao-{secrets.token_hex(3)}")
    name, ghost = f"zone-{secrets.token_hex(3)}", f"ghost-{secrets.token_hex(3)}"
    created = agents.create_agent(actor=admin, name=name, allowed_ranges="127.0.17.0/24")
    agents.create_agent(actor=admin, name=ghost, allowed_ranges="127.0.17.0/24")
    key_file = stack_logs / f"{name}.key"
    key_file.write_bytes(created.private_key_pem)

    def task(label: str, ranges: str, agent: str) -> int:
        row = tasks.create_task(
            actor=admin,
            data=tasks.TaskData(
                name=f"{label} {secrets.token_hex(3)}",
                ranges=ranges,
                ports=str(port),
                connect_timeout=2,
                handshake_timeout=5,
                agent=agent,
            ),
        )
        return int(row.id)

    found_id = task("Zone", f"{HOST}-127.0.17.13", name)
    refused_id = task("Outside", OUTSIDE_LOCAL, name)
    offline_id = task("Offline", HOST, ghost)
    db.session.commit()

    stack = Stack(
        pg_url,
        url,
        stack_logs,
        {"CW_AGENT_OFFLINE_SECONDS": 5, "CW_AGENT_WAIT_SECONDS": 3},
    )
    instance = stack_logs / f"agent-instance-{broker}"
    instance.mkdir()
    # The agent's whole environment: no DATABASE_URL, no secrets, no BROKER_URL.
    agent_env = app_env(CW_INSTANCE_DIR=instance)
    assert not any(k in agent_env for k in ("DATABASE_URL", "BROKER_URL", "CW_AUDIT_KEY_FILE"))
    agent_args = [PY, "-m", "flask", "--app", "wsgi", "agent", "run", name]
    agent_args += ["--broker", url, "--key", str(key_file), "--allow", "127.0.17.0/28"]
    agent_args += ["--heartbeat", "1", "--threads", "2"]
    with (
        stack.workers(f"central-{broker}", processes=1, threads=4) as central,
        Proc(f"agent-{broker}", agent_args, env=agent_env, logs=stack_logs) as agent_proc,
    ):
        why = describe(central, agent_proc)
        wait_until(
            lambda: (
                fresh(select(agents.ScanAgent.last_seen_at).where(agents.ScanAgent.name == name))[
                    0
                ][0]
                is not None
            ),
            timeout=60,
            what="the agent's first heartbeat stored by the central workers",
            why=why,
        )
        run = wait_run(start_run(stack, found_id), why)
        assert run.status == RunStatus.SUCCESSFUL, (run.message, why())
        assert run.targets_done == run.targets_total == 4
        assert run.tls_endpoints == 1 and run.new_certificates == 1, run.message
        cert = db.session.execute(
            select(Certificate).where(Certificate.fingerprint == fingerprint)
        ).scalar_one()
        endpoint = db.session.execute(
            select(Endpoint).where(Endpoint.task_id == found_id, Endpoint.ip == HOST)
        ).scalar_one()
        assert endpoint.certificate_id == cert.id and endpoint.port == port
        seen = db.session.execute(
            select(agents.ScanAgent).where(agents.ScanAgent.name == name)
        ).scalar_one()
        assert seen.host and seen.version and seen.capacity == 2

        # The agent refuses a shard outside its own allow-list, whatever the console says.
        run = wait_run(start_run(stack, refused_id), why)
        assert run.status == RunStatus.FAILED
        assert "outside this agent's local allow-list" in run.message, run.message
        assert not fresh(select(Endpoint.id).where(Endpoint.task_id == refused_id))

        # A task of an agent that never comes online waits, then fails with the reason.
        run = wait_run(start_run(stack, offline_id), why)
        assert run.status == RunStatus.FAILED
        assert f"agent '{ghost}' is offline (never seen)" in run.message, run.message
        assert "never run elsewhere" in run.message
        assert not fresh(select(Endpoint.id).where(Endpoint.task_id == offline_id))

        # A stranger on the broker: the right agent name, another key. Rejected, audited.
        stranger_pem, _ = agentwire.new_key()
        shard_job = fresh(
            select(ScanShard.job_id).join(ScanRun).where(ScanRun.task_id == found_id)
        )[0][0]
        forged = agentwire.sign(
            agentwire.load_private_key(stranger_pem),
            agent=name,
            kind="batch",
            shard=shard_job,
            ts=time.time(),
            body={"lease": "x", "results": [], "progress": {}},
        )
        unsigned = {"agent": name, "kind": "batch", "shard": shard_job, "body": {}}
        sender = make_broker(url, "dramatiq")
        try:
            for envelope in (forged, unsigned):
                sender.enqueue(
                    dramatiq.Message(
                        queue_name=RESULTS_QUEUE,
                        actor_name=RESULTS_ACTOR,
                        args=(envelope,),
                        kwargs={},
                        options={},
                    )
                )
        finally:
            sender.close()

        def rejections() -> list[str]:
            return [
                m
                for (m,) in fresh(
                    select(AuditEvent.message).where(
                        AuditEvent.action == "agent.reject", AuditEvent.object_label == name
                    )
                )
            ]

        found = wait_until(
            lambda: len(r := rejections()) >= 2 and r,
            timeout=30,
            what="both strangers' messages rejected",
            why=why,
        )
        assert any("bad signature" in m for m in found), found
        assert any("unsigned" in m for m in found), found
    # The agent never made or opened a database (create_app leaves only its key folder).
    assert not [p for p in instance.rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3")]


CANCEL_RUN = """
import sys
from sqlalchemy import select
from wsgi import app
from app.extensions import db
from app.models import Admin
from app.services.discovery import runs
with app.app_context():
    admin = db.session.execute(select(Admin).where(Admin.login == sys.argv[2])).scalar_one()
    runs.cancel_run(actor=admin, run_id=int(sys.argv[1]))
    db.session.commit()
"""
SILENT = [f"127.31.9.{i}" for i in range(1, 41)]


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_cancel_stops_the_shard_an_agent_is_scanning(
    broker: str,
    request: pytest.FixtureRequest,
    pg: Flask,
    pg_url: str,
    stack_logs: Path,
) -> None:
    """A silent range that would take the agent 50 s (40 targets x 5 s / 4 in flight):
    cancelled once the agent reports progress, the agent reads the cancel on its control
    queue, stops within seconds, and the central side records where it stopped."""
    url = request.getfixturevalue("redis_url" if broker == "redis" else "amqp_url")
    admin = make_admin(f"mrao-{secrets.token_hex(3)}")
    name = f"slow-{secrets.token_hex(3)}"
    created = agents.create_agent(actor=admin, name=name, allowed_ranges="127.31.9.0/24")
    key_file = stack_logs / f"{name}.key"
    key_file.write_bytes(created.private_key_pem)
    port = free_port(SILENT)
    task = tasks.create_task(
        actor=admin,
        data=tasks.TaskData(
            name=f"Silent {secrets.token_hex(3)}",
            ranges=f"{SILENT[0]}-{SILENT[-1]}",
            ports=str(port),
            connect_timeout=5,
            handshake_timeout=5,
            concurrency=4,
            agent=name,
        ),
    )
    task_id = task.id
    db.session.commit()
    stack = Stack(pg_url, url, stack_logs, {})
    instance = stack_logs / f"agent-instance-cancel-{broker}"
    instance.mkdir()
    agent_args = [PY, "-m", "flask", "--app", "wsgi", "agent", "run", name]
    agent_args += ["--broker", url, "--key", str(key_file), "--allow", "127.31.9.0/24"]
    agent_args += ["--heartbeat", "1", "--threads", "2"]
    with (
        silent_listeners(SILENT, port),
        stack.workers(f"central-cancel-{broker}", processes=1, threads=4) as central,
        Proc(
            f"agent-cancel-{broker}",
            agent_args,
            env=app_env(CW_INSTANCE_DIR=instance),
            logs=stack_logs,
        ) as agent_proc,
    ):
        why = describe(central, agent_proc)
        wait_until(
            lambda: fresh(select(ScanAgent.last_seen_at).where(ScanAgent.name == name))[0][0],
            timeout=60,
            what="the agent's first heartbeat",
            why=why,
        )
        run_id = start_run(stack, task_id)
        # Its one shard (a task this small is one shard) runs and has reported a batch.
        wait_until(
            lambda: (
                fresh(
                    select(func.count())
                    .select_from(ScanShard)
                    .where(
                        ScanShard.run_id == run_id,
                        ScanShard.status == "running",
                        ScanShard.batches_received > 0,
                    )
                )[0][0]
                == 1
            ),
            timeout=60,
            what="the shard running on the agent",
            why=why,
        )
        held = [
            job_id
            for (job_id,) in fresh(
                select(Job.id)
                .join(ScanShard, ScanShard.job_id == Job.id)
                .where(ScanShard.run_id == run_id, Job.status == JobStatus.RUNNING)
            )
        ]
        assert len(held) == 1
        cancelled_at = time.monotonic()
        done = subprocess.run(
            [PY, "-c", CANCEL_RUN, str(run_id), admin.login],
            cwd=ROOT,
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr

        def stopped() -> list[str]:
            rows = fresh(select(Job.message).where(Job.id.in_(held)))
            return [m for (m,) in rows if "stopped after" in m]

        messages = wait_until(
            lambda: len(m := stopped()) == 1 and m,
            timeout=20,
            what="the agent's word that it stopped the shard",
            why=why,
        )
        took = time.monotonic() - cancelled_at
        # Well before the 50 s the shards had left (a batch a second, the cancel at once).
        assert took < 10, took
        for message in messages:
            assert message.startswith(f"scan cancelled; agent '{name}' stopped after "), message
            assert message.endswith(" of 40 targets"), message
        shards = fresh(
            select(ScanShard.status, ScanShard.finished_at).where(ScanShard.run_id == run_id)
        )
        assert {s for s, _ in shards} == {"cancelled"} and all(f for _, f in shards)
        run = fresh(select(ScanRun.status).where(ScanRun.id == run_id))[0][0]
        assert run == RunStatus.CANCELLED
        # The agent is free again: its heartbeat says nothing is in flight.
        wait_until(
            lambda: fresh(select(ScanAgent.in_flight).where(ScanAgent.name == name))[0][0] == 0,
            timeout=10,
            what="the agent's heartbeat with no shard in flight",
            why=why,
        )
