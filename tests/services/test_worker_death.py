"""A worker process that dies (kill -9) and what supervision needs from the rest: its work
goes to the surviving workers within seconds, exactly once; a killed `dramatiq` parent
leaves no orphans; a stopped scheduler signs off; a heartbeat never waits on a locked job.

How issuance is caught mid-batch without a test-only job kind: the test holds an ACCESS
EXCLUSIVE lock on serial_numbers, so real issuance jobs claim their rows and load their
requests, then wait inside the batch where serials are reserved, as a batch does behind a
long migration. The defaults of CW_WORKER_STALE_SECONDS and CW_SCHEDULER_INTERVAL apply:
what an operator following the README gets.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (
    Certificate,
    CertificateRequest,
    CertType,
    Job,
    JobStatus,
    LintMode,
    RequestMode,
    RequestStatus,
    SerialNumber,
    WorkerHeartbeat,
)
from app.models.types import utcnow
from app.services.ca import authorities, profiles
from app.services.certificates import enrollment
from app.services.platform import jobs
from app.services.scope import SYSTEM
from tests.factories import make_admin, make_csr, make_domain, make_org
from tests.processes import describe, wait_until
from tests.services.conftest import Stack

JOBS = 4  # issuance batches
PER_JOB = 5  # requests a batch
THREADS = 2  # per worker process: dramatiq prefetches 2 x threads messages
WORKER_STALE = 10  # CW_WORKER_STALE_SECONDS, the default
TAKEN_BACK = 20  # seconds from the kill until B runs all of A's batches (stale + a pass)
BOUND = 30  # seconds from the kill until every certificate is issued (was 45 and more)
BOOT = 120  # seconds a process may take to start on a busy machine


def fresh(query: Any) -> Any:
    """Run a read in a transaction of its own (the processes write meanwhile)."""
    db.session.expire_all()
    try:
        return db.session.execute(query)
    finally:
        db.session.rollback()


def worker_row(pid: int) -> WorkerHeartbeat | None:
    row = fresh(select(WorkerHeartbeat).where(WorkerHeartbeat.pid == pid)).scalars().first()
    return row  # type: ignore[no-any-return]


@pytest.fixture
def serials_lock(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose transaction takes an ACCESS EXCLUSIVE lock on serial_numbers
    when the test says (after it has created its CAs), held until rolled back."""
    conn = psycopg.connect(pg_url)
    try:
        conn.execute("SET lock_timeout = '5s'")
        conn.commit()
        yield conn
    finally:
        conn.rollback()
        conn.close()


def arrange_requests(tag: str) -> tuple[str, list[int], int]:
    """An MRAO, an organization with a delegated domain, a CA pair, a profile and
    JOBS x PER_JOB Requested SSL requests; (the MRAO's login, request ids, issuing CA id)."""
    login = f"mrao-{tag}"
    mrao = make_admin(login)
    org = make_org(f"Acme {tag}", city="Berlin")
    make_domain(f"{tag}.example", by=mrao, org=org)
    root = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name=f"Root {tag}", key_type="EC-P256", customer_name="Acme", country="DE"
        ),
    )
    issuing = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name=f"Issuing {tag}",
            key_type="EC-P256",
            customer_name="Acme",
            country="DE",
            parent_id=root.id,
        ),
    )
    profile = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name=f"TLS {tag}",
            cert_type=CertType.SSL,
            ca_id=issuing.id,
            terms=(90,),
            key_types=("EC-P256",),
            requires_approval=True,
            lint_mode=LintMode.EVERY,
        ),
    )
    db.session.commit()
    ids = []
    for n in range(JOBS * PER_JOB):
        csr, _key = make_csr(f"host{n}.{tag}.example")
        req = enrollment.submit_request(
            actor=mrao,
            data=enrollment.RequestData(
                organization_id=org.id,
                profile_id=profile.id,
                term_days=90,
                mode=RequestMode.CSR,
                csr=csr,
                eula_accepted=True,
            ),
        )
        ids.append(req.id)
    db.session.commit()
    return login, ids, issuing.id


def test_a_killed_worker_process_s_batches_are_issued_by_the_other_worker_within_seconds(
    pg: Flask, pg_url: str, redis_url: str, stack_logs, serials_lock
) -> None:
    tag = secrets.token_hex(3)
    login, request_ids, ca_id = arrange_requests(tag)
    serials_lock.execute("LOCK TABLE serial_numbers IN ACCESS EXCLUSIVE MODE")
    # The workers unseal the CA keys this process sealed.
    settings = {"dramatiq_worker_timeout": 200, "CW_KEK": pg.config["CW_KEK"]}
    stack = Stack(pg_url, redis_url, stack_logs, settings)
    queue = redis.Redis.from_url(redis_url)
    with (
        stack.scheduler("scheduler") as scheduler,
        stack.workers("worker-a", processes=1, threads=THREADS) as worker_a,
    ):
        [a_pid] = wait_until(
            lambda: len(worker_a.children()) == 1 and worker_a.children(),
            timeout=BOOT,
            what="worker A's process",
            why=describe(worker_a),
        )
        wait_until(
            lambda: worker_row(a_pid),
            timeout=BOOT,
            what="worker A's heartbeat",
            why=describe(worker_a),
        )
        a_leases = f":{a_pid}:"  # a lease names its process: host:pid:...
        approved = ""
        for start in range(0, len(request_ids), PER_JOB):  # one batch (job) per call
            batch = [str(i) for i in request_ids[start : start + PER_JOB]]
            approved += stack.flask("cert", "approve", *batch, "--as", login)
        jobs_now = fresh(select(Job).where(Job.kind == "issue_certificates")).scalars().all()
        job_ids = [job.id for job in jobs_now if job.payload["request_ids"][0] in request_ids]
        assert len(job_ids) == JOBS, (approved, [(j.id, j.status, j.message) for j in jobs_now])

        def a_running() -> list[int]:
            return list(
                fresh(
                    select(Job.id).where(
                        Job.id.in_(job_ids),
                        Job.status == JobStatus.RUNNING,
                        Job.lease.contains(a_leases),
                    )
                ).scalars()
            )

        # A runs two batches (both wait for the lock) and holds the other two, fetched
        # ahead: nothing is left in the queue for anyone else.
        running_on_a = wait_until(
            lambda: (
                len(found := a_running()) == THREADS
                and queue.llen("dramatiq:issuance") == 0
                and found
            ),
            timeout=BOOT,
            what="worker A to run two batches and fetch the other two",
            why=lambda: (
                str(
                    (
                        a_leases,
                        queue.llen("dramatiq:issuance"),
                        queue.keys(),
                        fresh(
                            select(Job.id, Job.status, Job.message).where(Job.id.in_(job_ids))
                        ).all(),
                    )
                )
                + describe(worker_a, scheduler)()
            ),
        )
        stuck_since = time.monotonic()
        with stack.workers("worker-b", processes=1, threads=THREADS) as worker_b:
            [b_pid] = wait_until(
                lambda: len(worker_b.children()) == 1 and worker_b.children(),
                timeout=BOOT,
                what="worker B's process",
                why=describe(worker_b),
            )
            wait_until(
                lambda: worker_row(b_pid),
                timeout=BOOT,
                what="worker B's heartbeat",
                why=describe(worker_b),
            )
            # A live worker stuck longer than CW_WORKER_STALE_SECONDS is not taken for dead:
            # its heartbeat thread keeps beating while its batches wait.
            time.sleep(max(0.0, WORKER_STALE + 2 - (time.monotonic() - stuck_since)))
            assert sorted(a_running()) == sorted(running_on_a), worker_a.log()
            assert worker_row(a_pid) is not None
            attempts = fresh(select(Job.attempts).where(Job.id.in_(job_ids))).scalars().all()
            assert sorted(attempts) == [0] * (JOBS - THREADS) + [1] * THREADS
            assert queue.llen("dramatiq:issuance") == 0  # B has sat idle all along

            os.kill(a_pid, signal.SIGKILL)  # one worker process, not its dramatiq parent
            killed_at = time.monotonic()
            serials_lock.rollback()  # whatever held the table is done

            everyone = describe(worker_a, worker_b, scheduler)

            def issued() -> int:
                return int(
                    fresh(
                        select(func.count())
                        .select_from(CertificateRequest)
                        .where(
                            CertificateRequest.id.in_(request_ids),
                            CertificateRequest.status == RequestStatus.ISSUED,
                        )
                    ).scalar_one()
                )

            b_leases = f":{b_pid}:"

            def on_b() -> bool:
                """Every batch run by B, or taken over (adopted) by a batch B ran."""
                rows = fresh(select(Job.id, Job.lease, Job.result).where(Job.id.in_(job_ids)))
                rows = rows.all()
                by_b = {job_id for job_id, lease, _ in rows if b_leases in lease}
                return all(
                    job_id in by_b or (result or {}).get("adopted_by") in by_b
                    for job_id, _, result in rows
                )

            wait_until(on_b, timeout=40, what="B to take every batch of A", why=everyone)
            taken = time.monotonic() - killed_at
            wait_until(
                lambda: issued() == len(request_ids),
                timeout=40,
                what="every request of the killed worker's batches to be issued",
                why=everyone,
            )
            took = time.monotonic() - killed_at
            print(f"killed worker: batches taken back in {taken:.1f} s, all issued in {took:.1f} s")
            assert worker_b.alive(), worker_b.log()
            # dramatiq's parent stops its whole command when one of its processes dies
            # (and would stay down without a supervisor: deploy/systemd restarts it).
            wait_until(lambda: not worker_a.alive(), timeout=20, what="worker A's command to end")
            assert worker_a.popen.returncode == 1, worker_a.log()
            assert "exited unexpectedly" in worker_a.log(), worker_a.log()
        assert scheduler.alive(), scheduler.log()

    assert taken < TAKEN_BACK, f"B took A's batches after {taken:.1f} s\n{everyone()}"
    assert took < BOUND, f"the surviving worker needed {took:.1f} s\n{everyone()}"
    # Exactly once: one certificate per request, one serial per certificate (the dead
    # attempt's reservations rolled back with it), every batch done.
    certs = fresh(
        select(Certificate.request_id, Certificate.serial_hex).where(
            Certificate.request_id.in_(request_ids)
        )
    ).all()
    assert sorted(r for r, _ in certs) == sorted(request_ids)
    serials = fresh(
        select(SerialNumber.serial_hex).where(
            SerialNumber.ca_id == ca_id, SerialNumber.purpose == "leaf"
        )
    ).scalars()
    assert sorted(serials) == sorted(s for _, s in certs)
    done = {job.id: job for job in fresh(select(Job).where(Job.id.in_(job_ids))).scalars()}
    assert {job.status for job in done.values()} == {JobStatus.DONE}
    # A waiting batch may have been taken over by one B ran (jobs.adopt_pending): never run
    # itself, so no attempt; the batches A was running are never adopted, B re-ran them.
    adopted = {i for i, job in done.items() if (job.result or {}).get("adopted_by")}
    assert not adopted & set(running_on_a)
    assert all(done[i].attempts == 0 and done[i].result["adopted_by"] in done for i in adopted)
    ran = [job.attempts for i, job in done.items() if i not in adopted]
    assert sorted(ran) == [1] * (JOBS - THREADS - len(adopted)) + [2] * THREADS
    for job_id in running_on_a:  # taken back from the dead process, run by B
        assert done[job_id].lease.split(":")[1] == str(b_pid)


def test_killing_the_dramatiq_parent_stops_its_processes_gracefully(
    pg: Flask, pg_url: str, redis_url: str, stack_logs
) -> None:
    """Without a supervisor that kills the whole group, a `dramatiq` parent killed with
    SIGKILL used to leave its worker processes working on as orphans, their log lines
    going to a pipe nobody read. Now each notices, stops as on SIGTERM (signing off, so
    nothing is taken for dead) and says so on the stderr it inherited."""
    stack = Stack(pg_url, redis_url, stack_logs, {})
    with stack.workers("orphans", processes=2, threads=1) as proc:
        children = wait_until(
            lambda: len(proc.children()) == 2 and proc.children(),
            timeout=BOOT,
            what="two worker processes",
            why=describe(proc),
        )
        wait_until(
            lambda: all(worker_row(pid) for pid in children),
            timeout=BOOT,
            what="a heartbeat from each",
            why=describe(proc),
        )
        os.kill(proc.pid, signal.SIGKILL)  # the parent only
        proc.popen.wait(timeout=10)

        def gone(pid: int) -> bool:
            try:  # exited, or a zombie its killed parent will never reap
                return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
            except (FileNotFoundError, ProcessLookupError):
                return True

        wait_until(
            lambda: all(gone(pid) for pid in children),
            timeout=20,
            what="the orphaned worker processes to stop",
            why=describe(proc),
        )
        assert [worker_row(pid) for pid in children] == [None, None], proc.log()
        log = proc.log(tail=20_000)
        for pid in children:
            assert f"is gone: stopping worker process {pid}" in log, log


def test_a_stopped_scheduler_signs_off(pg: Flask, pg_url: str, redis_url: str, stack_logs) -> None:
    stack = Stack(pg_url, redis_url, stack_logs, {})
    scheduler = stack.scheduler("scheduler-stopped")
    try:
        wait_until(
            lambda: worker_row(scheduler.pid),
            timeout=BOOT,
            what="the scheduler's heartbeat",
            why=describe(scheduler),
        )
        scheduler.popen.send_signal(signal.SIGTERM)
        assert scheduler.popen.wait(timeout=15) == 0, scheduler.log()
        assert worker_row(scheduler.pid) is None  # About no longer lists it
        assert "scheduler stopped and signed off" in scheduler.log()
    finally:
        scheduler.stop()


def test_a_job_heartbeat_skips_a_row_its_job_holds_instead_of_waiting(pg: Flask) -> None:
    """JobContext.hold() keeps the job row locked until the batch commits; the heartbeat
    thread must not wait behind it (the process's own beat would stall with it)."""
    job = jobs.create_job(kind="audit_verify", send=False)
    db.session.commit()
    ctx = jobs.claim(job.id)
    assert ctx is not None
    with pg.app_context():
        ctx.hold()  # another session of this process holds the row now
        done = threading.Event()

        def beat() -> None:
            with pg.app_context():
                try:
                    jobs.heartbeat({job.id: ctx.lease})
                    done.set()
                finally:
                    db.session.remove()

        thread = threading.Thread(target=beat, daemon=True)
        started = utcnow()
        thread.start()
        assert done.wait(5), "the heartbeat waited for the job's own row lock"
        assert (utcnow() - started).total_seconds() < 2
        db.session.rollback()
    thread.join(5)
    try:
        jobs.heartbeat({job.id: ctx.lease})  # unlocked: refreshed as before
        assert fresh(select(Job.heartbeat_at).where(Job.id == job.id)).scalar_one() > started
    finally:  # no running job left behind for the recovery of the tests that follow
        db.session.execute(update(Job).where(Job.id == job.id).values(status=JobStatus.CANCELLED))
        db.session.commit()
