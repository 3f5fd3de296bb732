"""One network scan shared by two real `dramatiq` worker processes over Redis and
PostgreSQL, one of them SIGKILLed in the middle of a shard.

How a shard is caught mid-way without guessing at timing: every shard holds one "slow"
TLS server that accepts at once but answers the ClientHello only when the test opens a
gate. Each worker runs one thread, so once both have stored the rest of their first shard
(progress 5 of 6) each is provably inside one shard. Worker A is killed, then the gate
opens: the scheduler must hand A's shard (and any message A had prefetched) to worker B,
and the run must end Successful with every endpoint stored once and counts that are
exactly the truth.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Certificate,
    CertOrigin,
    Endpoint,
    Job,
    JobStatus,
    RunStatus,
    ScanRun,
    ScanShard,
    WorkerHeartbeat,
)
from app.services import discovery_rules, discovery_runs, discovery_tasks
from tests.factories import make_admin, make_org
from tests.processes import PY, ROOT, describe, wait_until
from tests.services.conftest import Stack
from tests.tlsbed.certs import Issued, issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context

STALE = 4  # CW_JOB_STALE_SECONDS of these processes
SHARDS, SHARD_SIZE = 8, 6
HOSTS = [f"127.77.0.{i}" for i in range(1, SHARDS * SHARD_SIZE + 1)]
HTTP_REPLY = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

# Started the way the console starts a scan (app code in a process wired to the broker,
# messages sent after commit), with small shards so that 48 addresses make 8 of them.
START_RUN = """
import sys
from wsgi import app
from app.extensions import db
from app.services import discovery_runs
with app.app_context():
    run = discovery_runs.start_run(actor=None, task_id=int(sys.argv[1]), shard_size=int(sys.argv[2]))
    db.session.commit()
    print(run.id)
"""


@dataclass
class Bed:
    """What the farm serves, and therefore what the scan must find."""

    port: int
    gate: threading.Event
    org: str
    presented: dict[str, str]  # TLS host -> SHA-256 of the leaf it presents
    not_tls: list[str]
    assigned: set[str]  # fingerprints a rule must place (subject O = the org's name)


def fingerprint(issued: Issued) -> str:
    return hashlib.sha256(issued.der).hexdigest()


@pytest.fixture
def bed() -> Iterator[Bed]:
    """Per shard of 6 addresses: a TLS server whose certificate every shard shares, one
    with a certificate of its own, the gated slow TLS server, then a plain HTTP server
    (even shards) or nothing, and two addresses where nothing listens (refused)."""
    org = f"Shard Corp {secrets.token_hex(3)}"
    shared = issue(make_name("shared.shards.test", org), sans=["shared.shards.test"])
    slow = issue(make_name("slow.shards.test", "Slow Inc"), sans=["slow.shards.test"])
    gate = threading.Event()
    port = free_port(HOSTS)
    presented: dict[str, str] = {}
    not_tls: list[str] = []
    assigned = {fingerprint(shared)}
    with ServerFarm() as farm:
        for shard in range(SHARDS):
            block = HOSTS[shard * SHARD_SIZE : (shard + 1) * SHARD_SIZE]
            own_org = org if shard % 2 == 0 else "Other Shards Inc"
            own = issue(make_name(f"host{shard}.shards.test", own_org), sans=["own.shards.test"])
            if own_org == org:
                assigned.add(fingerprint(own))
            farm.add_tls(block[0], port, server_context([shared]))
            farm.add_tls(block[1], port, server_context([own]))
            farm.add_gated_tls(block[2], port, server_context([slow]), gate)
            presented[block[0]] = fingerprint(shared)
            presented[block[1]] = fingerprint(own)
            presented[block[2]] = fingerprint(slow)
            if shard % 2 == 0:
                farm.add_plain(block[3], port, HTTP_REPLY)
                not_tls.append(block[3])
        try:
            yield Bed(port, gate, org, presented, not_tls, assigned)
        finally:
            gate.set()  # never leave a worker's handshake hanging on a failed test


def fresh(query):  # type: ignore[no-untyped-def]
    """Rows as they are now (another process writes them); no transaction left open."""
    db.session.expire_all()
    rows = db.session.execute(query).all()
    db.session.rollback()
    return rows


def lease_pid(lease: str) -> int | None:
    parts = lease.split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def test_a_scan_shared_by_two_workers_survives_one_killed_mid_shard(
    pg: Flask, pg_url: str, redis_url: str, stack_logs, bed: Bed, mrao_client: FlaskClient
) -> None:
    mrao = make_admin(f"mrao-{secrets.token_hex(3)}")
    org = make_org(bed.org)
    rule = discovery_rules.save_rule(
        actor=mrao,
        data=discovery_rules.RuleData(
            name=f"{bed.org} by O",
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": bed.org}],
            organization_id=org.id,
        ),
    )
    task = discovery_tasks.create_task(
        actor=mrao,
        data=discovery_tasks.TaskData(
            name=f"Shared scan {secrets.token_hex(3)}",
            ranges=f"{HOSTS[0]}-{HOSTS[-1]}",
            ports=str(bed.port),
            connect_timeout=3,
            handshake_timeout=60,  # the slow servers answer when the gate opens
            concurrency=16,
            rule_ids=[rule.id],
        ),
    )
    db.session.commit()
    task_id = task.id

    stack = Stack(
        pg_url, redis_url, stack_logs, {"CW_JOB_STALE_SECONDS": STALE, "CW_SCHEDULER_INTERVAL": 1}
    )
    with (
        stack.scheduler("scheduler") as sched,
        stack.workers("worker-a", processes=1, threads=1) as worker_a,
        stack.workers("worker-b", processes=1, threads=1) as worker_b,
    ):
        everyone = describe(worker_a, worker_b, sched)
        # Both workers up (their child process heartbeats) before the scan is sent.
        pids = wait_until(
            lambda: (
                len(worker_a.children()) == 1
                and len(worker_b.children()) == 1
                and (worker_a.children()[0], worker_b.children()[0])
            ),
            timeout=30,
            what="one dramatiq worker process under each of worker-a and worker-b",
            why=everyone,
        )
        pid_a, pid_b = pids
        wait_until(
            lambda: (
                len(
                    fresh(
                        select(WorkerHeartbeat.pid).where(
                            WorkerHeartbeat.pid.in_(pids), WorkerHeartbeat.kind == "worker"
                        )
                    )
                )
                == 2
            ),
            timeout=40,
            what="a heartbeat from both worker processes",
            why=everyone,
        )

        started = subprocess.run(
            [PY, "-c", START_RUN, str(task_id), str(SHARD_SIZE)],
            cwd=ROOT,
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        run_id = int(started.stdout.strip().splitlines()[-1])
        run = db.session.get(ScanRun, run_id)
        assert run is not None and run.shards_total == SHARDS and run.targets_total == len(HOSTS)
        db.session.rollback()

        samples: list[int] = []  # percent, as the task list polls it

        def shards() -> list[tuple[ScanShard, Job]]:
            rows = fresh(
                select(ScanShard, Job)
                .join(Job, Job.id == ScanShard.job_id)
                .where(ScanShard.run_id == run_id)
                .order_by(ScanShard.index)
            )
            poll = mrao_client.get(f"/admin/discovery_tasks/progress/?ids={task_id}")
            samples.append(poll.get_json()[str(task_id)]["percent"])
            return [(row[0], row[1]) for row in rows]

        def mid_shard() -> dict[int, int]:
            """worker pid -> job id, for shards stored up to the slow server."""
            return {
                pid: job.id
                for shard, job in shards()
                if job.status == JobStatus.RUNNING
                and shard.targets_done == shard.targets_total - 1
                and (pid := lease_pid(job.lease)) is not None
            }

        def state() -> str:
            lines = [
                f"shard {shard.index}: {shard.status} {shard.targets_done}/{shard.targets_total},"
                f" job {job.id} {job.status.value} attempt {job.attempts} lease {job.lease}"
                f" {job.message!r}"
                for shard, job in shards()
            ]
            return "\n".join([*lines, f"progress samples {samples}", everyone()])

        holders = wait_until(
            lambda: (found := mid_shard()).keys() == {pid_a, pid_b} and found,
            timeout=30,
            what="each worker process inside a shard, all but the slow server stored",
            why=state,
        )
        # Two shards of six, five targets each done: progress is live and exact.
        assert samples[-1] == 100 * 10 // len(HOSTS)
        killed_job = holders[pid_a]

        worker_a.kill()
        killed_at = time.monotonic()
        bed.gate.set()  # the slow servers answer from now on

        wait_until(
            lambda: (
                shards()
                and fresh(select(ScanRun.status).where(ScanRun.id == run_id))[0][0]
                != RunStatus.RUNNING
            ),
            timeout=45,
            what="the run to end after worker A was killed",
            why=state,
        )
        finished_in = time.monotonic() - killed_at
        assert worker_b.alive() and sched.alive(), everyone()

    rows = shards()
    run = db.session.get(ScanRun, run_id)
    assert run is not None
    # Successful, with counts that are the truth: nothing lost, nothing counted twice.
    assert run.status == RunStatus.SUCCESSFUL, (run.message, everyone())
    certificates = set(bed.presented.values())
    assert run.targets_done == run.targets_total == len(HOSTS)
    assert run.tls_endpoints == len(bed.presented) == 24
    assert run.certificates == len(certificates) == 10
    assert run.new_certificates == len(certificates)  # all were unknown before this run
    assert run.assigned == len(bed.assigned) == 5
    refused = len(HOSTS) - len(bed.presented) - len(bed.not_tls)
    assert run.counts["outcomes"] == {"tls": 24, "not_tls": 4, "refused": refused}
    assert run.message == "24 TLS endpoints, 10 certificates (10 new)"
    assert discovery_runs.progress(run) == 100
    assert finished_in < 30, f"the run took {finished_in:.0f} s to end after the kill"

    # The killed shard was started over once (by B); every other shard ran once.
    assert [shard.status for shard, _ in rows] == ["done"] * SHARDS
    attempts = {job.id: (job.status, job.attempts) for _, job in rows}
    assert attempts.pop(killed_job) == (JobStatus.DONE, 2), everyone()
    assert set(attempts.values()) == {(JobStatus.DONE, 1)}, attempts
    assert {shard.job_id: shard.attempts for shard, _ in rows}[killed_job] == 2

    # Intermediate progress was visible while the scan ran.
    assert samples[-1] == 100
    assert len({value for value in samples if 0 < value < 100}) >= 2, samples

    # History keeps the run with its counts.
    page = mrao_client.get(f"/admin/discovery_tasks/history/?id={task_id}").get_data(as_text=True)
    row = page.split(f'<tr data-run="{run_id}">', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert ">Successful</span>" in cells[3]
    assert cells[5:10] == ["48 / 48", "24", "10", "10", "5"], cells

    # Every endpoint stored exactly once; one inventory certificate per fingerprint.
    endpoints = [row[0] for row in fresh(select(Endpoint).where(Endpoint.task_id == task_id))]
    assert sorted(e.ip for e in endpoints) == sorted([*bed.presented, *bed.not_tls])
    by_ip = {e.ip: e for e in endpoints}
    stored = dict(
        fresh(
            select(Certificate.fingerprint, Certificate.id).where(
                Certificate.fingerprint.in_(certificates)
            )
        )
    )
    assert stored.keys() == certificates
    for ip, leaf in bed.presented.items():
        endpoint = by_ip[ip]
        assert (endpoint.error, endpoint.certificate_id) == ("", stored[leaf]), ip
        assert endpoint.port == bed.port and endpoint.last_run_id == run_id
    for ip in bed.not_tls:
        assert by_ip[ip].error == "not_tls" and by_ip[ip].certificate_id is None
    uses = dict(
        fresh(
            select(Certificate.fingerprint, func.count(Endpoint.id))
            .join(Endpoint, Endpoint.certificate_id == Certificate.id)
            .where(Endpoint.task_id == task_id)
            .group_by(Certificate.fingerprint)
        )
    )
    expected_uses = {f: list(bed.presented.values()).count(f) for f in certificates}
    assert uses == expected_uses
    placed = dict(
        fresh(
            select(Certificate.fingerprint, Certificate.organization_id).where(
                Certificate.fingerprint.in_(certificates),
                Certificate.origin == CertOrigin.DISCOVERED,
            )
        )
    )
    assert {f for f, org_id in placed.items() if org_id == org.id} == bed.assigned
    assert len(placed) == len(certificates)
