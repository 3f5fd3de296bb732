"""One network scan shared by two real `dramatiq` worker processes over Redis and
PostgreSQL: one worker SIGKILLed in the middle of a shard, or the scan cancelled.

How a shard is caught mid-way without guessing at timing: every shard holds one "slow"
TLS server that accepts at once but answers the ClientHello only when the test opens a
gate. Each worker runs one thread, so once both have stored the rest of their first shard
(progress 5 of 6) each is provably inside one shard, and stays there until the gate opens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Admin,
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
from app.services.discovery import rules, runs, tasks
from tests.conftest import csrf_token
from tests.factories import make_admin, make_org
from tests.processes import PY, ROOT, Proc, describe, wait_until
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
from app.services.discovery import runs
from app.services.scope import SYSTEM
with app.app_context():
    run = runs.start_run(actor=SYSTEM, task_id=int(sys.argv[1]), shard_size=int(sys.argv[2]))
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
    """The process id in a claim's lease (host:pid:token:random: jobs.new_lease)."""
    parts = lease.split(":")
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None


@dataclass
class Scan:
    """A task over HOSTS with a rule placing the certificates whose O is the bed's org."""

    task_id: int
    org_id: int
    admin: Admin


@pytest.fixture
def scan(pg: Flask, bed: Bed) -> Scan:
    admin = make_admin(f"mrao-{secrets.token_hex(3)}")
    org = make_org(bed.org)
    rule = rules.save_rule(
        actor=admin,
        data=rules.RuleData(
            name=f"{bed.org} by O",
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": bed.org}],
            organization_id=org.id,
        ),
    )
    task = tasks.create_task(
        actor=admin,
        data=tasks.TaskData(
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
    return Scan(task.id, org.id, admin)


@dataclass
class Cluster:
    scheduler: Proc
    worker_a: Proc
    worker_b: Proc
    pid_a: int  # the dramatiq worker process under each
    pid_b: int

    def logs(self) -> str:
        return describe(self.worker_a, self.worker_b, self.scheduler)()


@contextmanager
def cluster(stack: Stack) -> Iterator[Cluster]:
    """A scheduler and two single-threaded worker processes, each up and heartbeating."""
    with (
        stack.scheduler("scheduler") as sched,
        stack.workers("worker-a", processes=1, threads=1) as worker_a,
        stack.workers("worker-b", processes=1, threads=1) as worker_b,
    ):
        why = describe(worker_a, worker_b, sched)
        pids = wait_until(
            lambda: (
                len(worker_a.children()) == 1
                and len(worker_b.children()) == 1
                and (worker_a.children()[0], worker_b.children()[0])
            ),
            timeout=30,
            what="one dramatiq worker process under each of worker-a and worker-b",
            why=why,
        )
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
            why=why,
        )
        yield Cluster(sched, worker_a, worker_b, *pids)


def start_run(stack: Stack, task_id: int) -> int:
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
    return run_id


@dataclass
class Watch:
    """Looks at one run the way an operator does, keeping every progress value seen."""

    run_id: int
    task_id: int
    client: FlaskClient
    cluster: Cluster
    samples: list[int] = field(default_factory=list)  # percent, as the task list polls it

    def shards(self) -> list[tuple[ScanShard, Job]]:
        rows = fresh(
            select(ScanShard, Job)
            .join(Job, Job.id == ScanShard.job_id)
            .where(ScanShard.run_id == self.run_id)
            .order_by(ScanShard.index)
        )
        poll = self.client.get(f"/admin/discovery_tasks/progress/?ids={self.task_id}")
        self.samples.append(poll.get_json()[str(self.task_id)]["percent"])
        return [(row[0], row[1]) for row in rows]

    def status(self) -> RunStatus:
        return fresh(select(ScanRun.status).where(ScanRun.id == self.run_id))[0][0]

    def state(self) -> str:
        lines = [
            f"shard {shard.index}: {shard.status} {shard.targets_done}/{shard.targets_total},"
            f" job {job.id} {job.status.value} attempt {job.attempts} lease {job.lease}"
            f" {job.message!r}"
            for shard, job in self.shards()
        ]
        return "\n".join([*lines, f"progress samples {self.samples}", self.cluster.logs()])

    def both_workers_mid_shard(self) -> dict[int, int]:
        """Wait until each worker process holds a shard stored up to its slow server;
        returns worker pid -> job id."""

        def held() -> dict[int, int]:
            return {
                pid: job.id
                for shard, job in self.shards()
                if job.status == JobStatus.RUNNING
                and shard.targets_done == shard.targets_total - 1
                and (pid := lease_pid(job.lease)) is not None
            }

        pids = {self.cluster.pid_a, self.cluster.pid_b}
        holders = wait_until(
            lambda: (found := held()).keys() == pids and found,
            timeout=30,
            what="each worker process inside a shard, all but the slow server stored",
            why=self.state,
        )
        # Two shards of six, five targets each done: progress is live and exact.
        assert self.samples[-1] == 100 * 10 // len(HOSTS)
        return holders

    def history(self) -> list[str]:
        """The run's row on the task's History page, cell by cell."""
        page = self.client.get(f"/admin/discovery_tasks/history/?id={self.task_id}")
        row = page.get_data(as_text=True).split(f'<tr data-run="{self.run_id}">', 1)[1]
        return re.findall(r"<td[^>]*>(.*?)</td>", row.split("</tr>", 1)[0], re.S)


def test_a_scan_shared_by_two_workers_survives_one_killed_mid_shard(
    pg_url: str, redis_url: str, stack_logs, bed: Bed, scan: Scan, mrao_client: FlaskClient
) -> None:
    stack = Stack(
        pg_url, redis_url, stack_logs, {"CW_JOB_STALE_SECONDS": STALE, "CW_SCHEDULER_INTERVAL": 1}
    )
    with cluster(stack) as procs:
        run_id = start_run(stack, scan.task_id)
        watch = Watch(run_id, scan.task_id, mrao_client, procs)
        killed_job = watch.both_workers_mid_shard()[procs.pid_a]

        procs.worker_a.kill()
        killed_at = time.monotonic()
        bed.gate.set()  # the slow servers answer from now on: B's shard goes on
        # The scheduler must hand A's shard, and what A had prefetched, to B.
        wait_until(
            lambda: watch.shards() and watch.status() != RunStatus.RUNNING,
            timeout=45,
            what="the run to end after worker A was killed",
            why=watch.state,
        )
        finished_in = time.monotonic() - killed_at
        assert procs.worker_b.alive() and procs.scheduler.alive(), procs.logs()

    rows = watch.shards()
    run = db.session.get(ScanRun, run_id)
    assert run is not None
    # Successful, with counts that are the truth: nothing lost, nothing counted twice.
    assert run.status == RunStatus.SUCCESSFUL, (run.message, procs.logs())
    certificates = set(bed.presented.values())
    assert run.targets_done == run.targets_total == len(HOSTS)
    assert run.tls_endpoints == len(bed.presented) == 24
    assert run.certificates == len(certificates) == 10
    assert run.new_certificates == len(certificates)  # all were unknown before this run
    assert run.assigned == len(bed.assigned) == 5
    refused = len(HOSTS) - len(bed.presented) - len(bed.not_tls)
    assert run.counts["outcomes"] == {"tls": 24, "not_tls": 4, "refused": refused}
    assert run.message == "24 TLS endpoints, 10 certificates (10 new)"
    assert runs.progress(run) == 100
    assert finished_in < 30, f"the run took {finished_in:.0f} s to end after the kill"

    # The killed shard was started over once (by B); every other shard ran once.
    assert [shard.status for shard, _ in rows] == ["done"] * SHARDS
    attempts = {job.id: (job.status, job.attempts) for _, job in rows}
    assert attempts.pop(killed_job) == (JobStatus.DONE, 2), procs.logs()
    assert set(attempts.values()) == {(JobStatus.DONE, 1)}, attempts
    assert {shard.job_id: shard.attempts for shard, _ in rows}[killed_job] == 2
    assert {lease_pid(job.lease) for _, job in rows if job.id == killed_job} == {procs.pid_b}

    # Intermediate progress was visible while the scan ran.
    assert watch.samples[-1] == 100
    assert len({value for value in watch.samples if 0 < value < 100}) >= 2, watch.samples

    # History keeps the run with its counts.
    cells = watch.history()
    assert ">Successful</span>" in cells[3]
    assert cells[5:10] == ["48 / 48", "24", "10", "10", "5"], cells

    # Every endpoint stored exactly once; one inventory certificate per fingerprint.
    endpoints = [row[0] for row in fresh(select(Endpoint).where(Endpoint.task_id == scan.task_id))]
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
            .where(Endpoint.task_id == scan.task_id)
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
    assert {f for f, owner in placed.items() if owner == scan.org_id} == bed.assigned
    assert len(placed) == len(certificates)


def test_cancel_stops_the_shards_running_on_two_workers_and_the_rest(
    pg_url: str, redis_url: str, stack_logs, bed: Bed, scan: Scan, mrao_client: FlaskClient
) -> None:
    stack = Stack(pg_url, redis_url, stack_logs, {"CW_SCHEDULER_INTERVAL": 1})
    with cluster(stack) as procs:
        run_id = start_run(stack, scan.task_id)
        watch = Watch(run_id, scan.task_id, mrao_client, procs)
        held = set(watch.both_workers_mid_shard().values())

        page = "/admin/discovery_tasks/"
        cancelled = mrao_client.post(
            "/admin/discovery_tasks/cancel/",
            data={"id": scan.task_id, "csrf_token": csrf_token(mrao_client, page)},
            follow_redirects=True,
        )
        assert f"Scan #{run_id} of" in cancelled.get_data(as_text=True)
        # Running shards stop at their next batch although their slow server never
        # answered; the workers take the other shards' messages off the queue and skip them.
        queue = redis.Redis.from_url(redis_url)
        try:
            wait_until(
                lambda: (
                    all(
                        shard.finished_at is not None
                        for shard, job in watch.shards()
                        if job.id in held
                    )
                    and queue.llen("dramatiq:scan") == 0
                ),
                timeout=20,
                what="both workers to stop their shards after Cancel and take the rest",
                why=watch.state,
            )
        finally:
            queue.close()
        rows = watch.shards()
        bed.gate.set()
        assert procs.worker_a.alive() and procs.worker_b.alive(), procs.logs()

    run = db.session.get(ScanRun, run_id)
    assert run is not None and run.status == RunStatus.CANCELLED
    assert run.message.startswith("cancelled by mrao-")
    assert run.targets_done == 10 and runs.progress(run) == 100 * 10 // len(HOSTS)
    for shard, job in rows:
        assert job.status == JobStatus.CANCELLED and shard.status == "cancelled", watch.state()
        if job.id in held:  # stopped mid-way: its slow server's target never done
            assert (job.attempts, shard.targets_done) == (1, SHARD_SIZE - 1)
        else:  # never started
            assert (job.attempts, shard.targets_done, shard.finished_at) == (0, 0, None)
    assert ">Cancelled</span>" in watch.history()[3]
