"""Several schedulers at once on PostgreSQL never fire a due schedule twice."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from flask import Flask
from sqlalchemy import select, update

from app.extensions import db
from app.models import Job, JobStatus, Schedule
from app.models.types import utcnow
from app.runtime.broker import broker
from app.services.platform import scheduling

SCHEDULERS = 4
ROUNDS = 60
EVERY = 60  # seconds between due times


def test_concurrent_schedulers_fire_each_due_time_exactly_once(pg: Flask) -> None:
    base = utcnow().replace(microsecond=0) - timedelta(days=1)
    sched = Schedule(
        job_kind="housekeeping",
        owner_type="test",
        spec={"kind": "interval", "seconds": EVERY},
        next_run_at=base,
    )
    db.session.add(sched)
    db.session.commit()
    sched_id = sched.id

    start = threading.Barrier(SCHEDULERS, timeout=30)
    fired: list[list[int]] = [[] for _ in range(ROUNDS)]
    errors: list[BaseException] = []

    def scheduler() -> None:
        # Each thread is its own scheduler: own app context, own session and connection.
        with pg.app_context():
            try:
                for round_no in range(ROUNDS):
                    start.wait()
                    now = base + timedelta(seconds=EVERY * round_no)
                    mine = scheduling.fire_due_schedules(now)
                    fired[round_no].extend(mine)
            except BaseException as exc:
                errors.append(exc)
                start.abort()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=scheduler) for _ in range(SCHEDULERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors

        made = db.session.execute(
            select(Job.id, Job.schedule_id).where(Job.schedule_id == sched_id).order_by(Job.id)
        ).all()
        per_round = Counter(len(ids) for ids in fired)
        assert per_round == {1: ROUNDS}, per_round  # one job per due time, never two
        assert [job_id for job_id, _ in made] == [ids[0] for ids in fired]
        db.session.expire_all()
        row = db.session.get(Schedule, sched_id)
        assert row is not None
        assert row.last_job_id == fired[-1][0]
        assert row.next_run_at == base + timedelta(seconds=EVERY * ROUNDS)
    finally:
        # Leave nothing due or pending for the other tests' schedulers and workers.
        db.session.rollback()
        db.session.execute(update(Schedule).where(Schedule.id == sched_id).values(enabled=False))
        db.session.execute(
            update(Job)
            .where(Job.schedule_id == sched_id, Job.status == JobStatus.PENDING)
            .values(status=JobStatus.CANCELLED, message="test schedule")
        )
        db.session.commit()
        broker.flush_all()  # the messages went to this process's embedded (stub) broker
