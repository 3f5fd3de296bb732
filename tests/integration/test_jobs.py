"""Job machinery: send after commit, claim once, retry, recover, schedule once, cancel."""

from __future__ import annotations

import time
from datetime import timedelta

import dramatiq
import pytest
from sqlalchemy import func, select
from sqlalchemy import update as sa_update

from app.extensions import db
from app.models import Job, JobStatus, Schedule, WorkerHeartbeat
from app.models.types import utcnow
from app.runtime.broker import broker
from app.services.platform import jobs, scheduling
from tests.conftest import drain
from tests.factories import make_admin

CALLS: list[int] = []


def _flaky(job: Job, ctx: jobs.JobContext) -> dict:
    CALLS.append(job.id)
    if job.payload.get("fail_times", 0) >= job.attempts:
        raise RuntimeError(f"boom on attempt {job.attempts}")
    ctx.progress(50, "half way")
    return {"message": f"ok after {job.attempts} attempts"}


@dramatiq.actor(queue_name="test", max_retries=0)
def flaky_job(job_id: int) -> None:
    jobs.execute(job_id, _flaky)


jobs.register_kind("test_flaky", "Test: fails N times then succeeds", flaky_job)


def queued() -> int:
    return sum(q.qsize() for name, q in broker.queues.items())


def test_message_is_sent_only_after_commit(app):
    broker.flush_all()
    jobs.create_job(kind="audit_verify")
    assert queued() == 0
    db.session.rollback()
    assert queued() == 0
    assert db.session.execute(select(func.count()).select_from(Job)).scalar_one() == 0
    jobs.create_job(kind="audit_verify")
    db.session.commit()
    assert queued() == 1
    broker.flush_all()


def test_job_runs_to_done_through_the_worker(app, stub_worker):
    make_admin()
    job = jobs.create_job(kind="audit_verify")
    drain(stub_worker)
    db.session.refresh(job)
    assert job.status == JobStatus.DONE and job.progress == 100
    assert job.result["ok"] is True and "audit chain intact" in job.message


def test_a_second_delivery_is_a_no_op(app, stub_worker):
    CALLS.clear()
    job = jobs.create_job(kind="test_flaky")
    drain(stub_worker)
    flaky_job.send(job.id)  # at-least-once delivery: the same message again
    drain(stub_worker)
    assert [job.id] == CALLS


def test_failures_are_retried_then_marked_failed(app, stub_worker):
    CALLS.clear()
    ok = jobs.create_job(kind="test_flaky", payload={"fail_times": 1}, max_attempts=3)
    bad = jobs.create_job(kind="test_flaky", payload={"fail_times": 5}, max_attempts=2)
    drain(stub_worker)
    db.session.refresh(ok)
    db.session.refresh(bad)
    assert ok.status == JobStatus.DONE and ok.attempts == 2 and ok.message == "ok after 2 attempts"
    assert bad.status == JobStatus.FAILED and bad.attempts == 2
    assert "failed after 2 attempts: RuntimeError: boom on attempt 2" in bad.message


def test_stale_running_job_is_retried_or_failed(app):
    now = utcnow()
    stale = now - timedelta(seconds=app.config["CW_JOB_STALE_SECONDS"] + 5)
    retry = Job(
        kind="audit_verify",
        status=JobStatus.RUNNING,
        attempts=1,
        max_attempts=3,
        heartbeat_at=stale,
        lease="dead",
    )
    give_up = Job(
        kind="audit_verify",
        status=JobStatus.RUNNING,
        attempts=3,
        max_attempts=3,
        heartbeat_at=stale,
        lease="dead",
    )
    alive = Job(
        kind="audit_verify",
        status=JobStatus.RUNNING,
        attempts=1,
        max_attempts=3,
        heartbeat_at=now,
        lease="alive",
    )
    db.session.add_all([retry, give_up, alive])
    db.session.commit()
    broker.flush_all()
    counts = scheduling.recover()
    assert counts["retried"] == 1 and counts["failed"] == 1
    assert retry.status == JobStatus.PENDING and "stopped responding" in retry.message
    assert (
        give_up.status == JobStatus.FAILED
        and "stopped responding on each of 3 attempts" in give_up.message
    )
    assert alive.status == JobStatus.RUNNING
    assert queued() == 1
    broker.flush_all()


def test_jobs_a_dead_worker_may_have_prefetched_are_sent_again_once(app):
    """A pending job's message can sit in the buffer of a worker that died (dramatiq
    prefetches): when a worker stops heartbeating, pending jobs are sent again, once."""
    now = utcnow()
    stale = now - timedelta(seconds=app.config["CW_JOB_STALE_SECONDS"] + 5)

    def beat(ident: str, kind: str, seen_at) -> WorkerHeartbeat:
        host, pid, _ = ident.split(":")
        return WorkerHeartbeat(
            id=ident, kind=kind, host=host, pid=int(pid), broker="redis", seen_at=seen_at
        )

    db.session.add_all(
        [
            beat("w1:11:worker", "worker", stale),
            beat("w2:12:worker", "worker", now),
            beat("w1:13:scheduler", "scheduler", stale),  # consumes no messages
        ]
    )
    waiting = jobs.create_job(kind="audit_verify")
    done = Job(kind="audit_verify", status=JobStatus.DONE, enqueued_at=now)
    db.session.add(done)
    db.session.commit()
    broker.flush_all()

    assert scheduling.recover()["resent"] == 1
    assert queued() == 1
    db.session.expire_all()
    assert db.session.get(WorkerHeartbeat, "w1:11:worker") is None  # handled once
    assert db.session.get(WorkerHeartbeat, "w2:12:worker") is not None
    assert db.session.get(WorkerHeartbeat, "w1:13:scheduler") is not None
    assert scheduling.recover()["resent"] == 0 and queued() == 1
    assert db.session.get(Job, waiting.id).status == JobStatus.PENDING
    broker.flush_all()


def test_a_live_claim_cannot_be_taken_twice(app):
    job = jobs.create_job(kind="audit_verify", send=False)
    db.session.commit()
    first = jobs.claim(job.id)
    assert first is not None
    assert jobs.claim(job.id) is None


def test_due_schedule_fires_exactly_once(app):
    broker.flush_all()
    sched = Schedule(
        job_kind="housekeeping",
        owner_type="test",
        spec={"kind": "interval", "seconds": 3600},
        next_run_at=utcnow() - timedelta(seconds=1),
    )
    db.session.add(sched)
    db.session.commit()
    first = scheduling.fire_due_schedules()
    second = scheduling.fire_due_schedules()
    assert len(first) == 1 and second == []
    db.session.refresh(sched)
    assert sched.next_run_at > utcnow() + timedelta(minutes=59)
    broker.flush_all()


def test_cancel_stops_a_pending_job(app, stub_worker):
    admin = make_admin()
    job = jobs.create_job(kind="test_flaky", send=False)
    db.session.commit()
    jobs.cancel(actor=admin, job_id=job.id)
    db.session.commit()
    flaky_job.send(job.id)
    drain(stub_worker)
    db.session.refresh(job)
    assert job.status == JobStatus.CANCELLED and "cancelled by mrao" in job.message
    with pytest.raises(Exception, match="already ended"):
        jobs.cancel(actor=admin, job_id=job.id)


def test_system_schedules_exist_after_bootstrap(app):
    result = app.test_cli_runner().invoke(
        args=["bootstrap"], env={"CW_ADMIN_PASSWORD": "bootstrap-password-1"}
    )
    assert result.exit_code == 0, result.output
    kinds = set(
        db.session.execute(
            select(Schedule.job_kind).where(Schedule.owner_type == "system")
        ).scalars()
    )
    assert {"audit_verify", "housekeeping"} <= kinds
    again = app.test_cli_runner().invoke(args=["bootstrap"])
    assert again.exit_code == 0 and "Created" not in again.output


def test_an_attempt_presumed_dead_stops_at_its_next_write(app):
    """A worker that missed its heartbeats long enough is presumed dead and its job claimed
    again; when the first attempt wakes up, hold() stops it before it writes anything."""
    job = jobs.create_job(kind="audit_verify", send=False)
    db.session.commit()
    first = jobs.claim(job.id)
    assert first is not None
    first.hold()  # still ours
    db.session.commit()
    stale = utcnow() - timedelta(seconds=app.config["CW_JOB_STALE_SECONDS"] + 5)
    db.session.execute(sa_update(Job).where(Job.id == job.id).values(heartbeat_at=stale))
    db.session.commit()
    second = jobs.claim(job.id)
    assert second is not None and second.lease != first.lease
    with pytest.raises(jobs.LeaseLost):
        first.hold()
    db.session.rollback()
    second.hold()
    db.session.rollback()

    # Through execute(): the handler's attempt is overtaken while it works; its write is
    # rolled back and the job stays with the attempt that took it over.
    other = jobs.create_job(kind="audit_verify", send=False)
    db.session.commit()

    def overtaken(job: Job, ctx: jobs.JobContext) -> dict:
        db.session.execute(
            sa_update(Job).where(Job.id == job.id).values(lease="another-worker:1:x")
        )
        db.session.commit()  # what a retry's claim elsewhere does
        job.message = "written by the attempt presumed dead"
        ctx.hold()
        return {"message": "never recorded"}

    assert jobs.execute(other.id, overtaken) == "lost"
    db.session.expire_all()
    row = db.session.get(Job, other.id)
    assert row.lease == "another-worker:1:x" and row.status == JobStatus.RUNNING
    assert row.message != "written by the attempt presumed dead"


def test_a_worker_that_stops_gracefully_signs_off_so_nothing_is_sent_again(app):
    """dramatiq hands a stopping worker's fetched messages back to the broker: its
    heartbeat row goes with it, and recovery later has no dead worker to re-send for."""
    from app.runtime.heartbeat import Heartbeat

    heartbeat = Heartbeat(app, kind="worker")
    heartbeat.start()
    ident = heartbeat.ident_str
    waiting = jobs.create_job(kind="audit_verify")
    db.session.commit()
    broker.flush_all()
    for _ in range(100):
        db.session.expire_all()
        if db.session.get(WorkerHeartbeat, ident) is not None:
            break
        time.sleep(0.05)
    assert db.session.get(WorkerHeartbeat, ident) is not None
    db.session.rollback()
    heartbeat.sign_off()
    assert not heartbeat.is_alive()
    db.session.expire_all()
    assert db.session.get(WorkerHeartbeat, ident) is None
    later = utcnow() + timedelta(seconds=app.config["CW_JOB_STALE_SECONDS"] + 5)
    assert scheduling.recover(later)["resent"] == 0 and queued() == 0
    assert db.session.get(Job, waiting.id).status == JobStatus.PENDING


def dead_worker_row(ident: str, seen_seconds_ago: float) -> WorkerHeartbeat:
    host, pid = ident.split(":")[:2]
    return WorkerHeartbeat(
        id=f"{ident}:worker",
        kind="worker",
        host=host,
        pid=int(pid),
        broker="redis",
        seen_at=utcnow() - timedelta(seconds=seen_seconds_ago),
    )


def test_a_dead_workers_running_jobs_are_taken_back_at_once(app):
    """A worker process that stops heartbeating for CW_WORKER_STALE_SECONDS (a few seconds)
    is dead: the jobs it was running (known by their leases) are retried, or failed when
    out of attempts, long before their own heartbeats reach CW_JOB_STALE_SECONDS."""
    worker_stale = app.config["CW_WORKER_STALE_SECONDS"]
    assert worker_stale * 3 < app.config["CW_JOB_STALE_SECONDS"]
    just_dead = worker_stale + 2
    beat_at = utcnow() - timedelta(seconds=just_dead)  # their last beat, like the process's
    dead, alive = "w1:11:aa11aa", "w1:12:bb22bb"
    db.session.add_all([dead_worker_row(dead, just_dead), dead_worker_row(alive, 0)])

    def running(lease: str, attempts: int = 1) -> Job:
        job = Job(
            kind="audit_verify",
            status=JobStatus.RUNNING,
            attempts=attempts,
            max_attempts=2,
            heartbeat_at=beat_at,
            lease=lease,
            enqueued_at=utcnow(),
        )
        db.session.add(job)
        return job

    retried = running(f"{dead}:0123456789ab")
    failed = running(f"{dead}:ba9876543210", attempts=2)
    # The same host and pid in an earlier container, or another process: not the dead one's.
    other = running("w1:11:cc33cc:0123456789ab")
    kept = running(f"{alive}:0123456789ab")
    waiting = jobs.create_job(kind="audit_verify", send=False)  # maybe in its prefetch
    db.session.commit()
    broker.flush_all()

    counts = scheduling.recover()
    assert counts == {"retried": 1, "failed": 1, "resent": 1}
    db.session.expire_all()
    assert (retried.status, retried.attempts) == (JobStatus.PENDING, 1)
    assert retried.message == "the worker running attempt 1 stopped responding; retrying"
    assert failed.status == JobStatus.FAILED
    assert failed.message == "failed: the worker stopped responding on each of 2 attempts"
    assert other.status == JobStatus.RUNNING and kept.status == JobStatus.RUNNING
    assert waiting.status == JobStatus.PENDING
    assert queued() == 2  # the retried job and the pending one, each once
    assert db.session.get(WorkerHeartbeat, f"{dead}:worker") is None
    assert scheduling.recover() == {"retried": 0, "failed": 0, "resent": 0}
    broker.flush_all()


def test_a_worker_that_missed_only_a_few_beats_is_alive(app):
    db.session.add(dead_worker_row("w1:11:aa11aa", app.config["CW_WORKER_STALE_SECONDS"] - 2))
    job = Job(
        kind="audit_verify",
        status=JobStatus.RUNNING,
        attempts=1,
        heartbeat_at=utcnow() - timedelta(seconds=8),
        lease="w1:11:aa11aa:0123456789ab",
    )
    db.session.add(job)
    db.session.commit()
    broker.flush_all()
    assert scheduling.recover() == {"retried": 0, "failed": 0, "resent": 0}
    assert job.status == JobStatus.RUNNING and queued() == 0


def test_the_process_that_recovers_never_takes_itself_for_dead(app):
    """The embedded worker and scheduler share a process: a heartbeat delayed by a long
    SQLite write does not make that process retry its own jobs."""
    from app.services.platform import processes

    me = processes.process_ident()
    db.session.add(dead_worker_row(me, 3600))
    job = Job(
        kind="audit_verify",
        status=JobStatus.RUNNING,
        attempts=1,
        heartbeat_at=utcnow(),
        lease=jobs.new_lease(),
    )
    db.session.add(job)
    db.session.commit()
    assert job.lease.startswith(me + ":")
    broker.flush_all()
    assert scheduling.recover() == {"retried": 0, "failed": 0, "resent": 0}
    assert job.status == JobStatus.RUNNING


def test_an_attempt_whose_job_was_taken_back_stops_before_it_writes(app):
    job = jobs.create_job(kind="audit_verify", send=False)
    db.session.commit()
    ctx = jobs.claim(job.id)
    assert ctx is not None
    db.session.execute(sa_update(Job).where(Job.id == job.id).values(status=JobStatus.PENDING))
    db.session.commit()  # what recovery does when it takes the process for dead
    with pytest.raises(jobs.LeaseLost):
        ctx.hold()
    db.session.rollback()


def test_heartbeats_come_every_second_well_inside_both_limits(app):
    from app.runtime.heartbeat import beat_interval

    assert beat_interval(app) == 1.0
    app.config["CW_WORKER_STALE_SECONDS"] = 3
    assert beat_interval(app) == pytest.approx(0.6)
    app.config["CW_JOB_STALE_SECONDS"] = 1
    assert beat_interval(app) == pytest.approx(1 / 3)


def test_about_lists_live_processes_only(app, client):
    from tests.conftest import login
    from tests.factories import PASSWORD

    make_admin("mrao")
    stale = app.config["CW_WORKER_STALE_SECONDS"]
    db.session.add_all(
        [
            dead_worker_row("live-host:101:aa11aa", 1),
            dead_worker_row("dead-host:202:bb22bb", stale + 1),
        ]
    )
    db.session.commit()
    login(client, "mrao", PASSWORD)
    page = client.get("/admin/about/").get_data(as_text=True)
    assert "worker on live-host (pid 101)" in page
    assert "dead-host" not in page


def test_a_command_without_a_worker_hands_its_job_to_the_running_server(app, monkeypatch):
    """Embedded mode: a `flask --app wsgi jobs enqueue` process has no worker, so a message
    it sent to its in-memory broker would die with it (the job then waited five minutes for
    the stale resend). It leaves the row for the server's embedded worker, which starts it
    within a second."""
    from app.runtime.embedded import Embedded

    make_admin()
    broker.flush_all()
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")  # what Flask sets for every command
    result = app.test_cli_runner().invoke(args=["jobs", "enqueue", "audit_verify"])
    assert result.exit_code == 0, result.output
    job = db.session.execute(select(Job).order_by(Job.id.desc())).scalars().first()
    assert job.status == JobStatus.PENDING and job.enqueued_at is None
    assert queued() == 0  # nothing went to a queue that nobody drains
    monkeypatch.delenv("FLASK_RUN_FROM_CLI")

    def finished_within(job_id: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.get(Job, job_id).status == JobStatus.DONE:
                return True
            db.session.commit()
            time.sleep(0.05)
        return False

    server = Embedded(app, threads=1, scheduler=False).start()  # no scheduler passes
    try:
        assert finished_within(job.id, 5)  # handed off before the server started
        # ... and one handed off while it runs (the row another process commits):
        later = jobs.create_job(kind="audit_verify", send=False)
        db.session.commit()
        assert later.enqueued_at is None
        assert finished_within(later.id, 3)
    finally:
        server.stop()


def test_a_command_with_its_own_worker_sends_as_usual(app, stub_worker, monkeypatch):
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    job = jobs.create_job(kind="audit_verify")
    assert job.enqueued_at is not None
    drain(stub_worker)
    db.session.refresh(job)
    assert job.status == JobStatus.DONE
