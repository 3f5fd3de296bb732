"""Notifications on PostgreSQL with real processes: two sweeps at once (two schedulers
firing), fanned out over dramatiq (Redis) to two worker processes, one of them killed -9 in
the middle of a range, and a real SMTP server (aiosmtpd) that must receive every due mail
exactly once; and composers racing on the same pending deliveries.

How a range is caught mid-flight without a test-only hook: the test holds an ACCESS
EXCLUSIVE lock on notification_deliveries, so the range jobs compute their INSERT ... SELECT
and wait on the table, as they would behind a long migration.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Certificate,
    DeliveryStatus,
    Job,
    JobStatus,
    MailStatus,
    NotificationDelivery,
    OutboxMessage,
)
from app.models.types import utcnow
from app.services.notifications import compose, rules, sweep
from app.services.scope import SYSTEM
from tests import notify
from tests.factories import make_dept, make_org
from tests.processes import describe, wait_until
from tests.services.conftest import Stack

CERTS = 60_000  # two id ranges of 50,000
SPREAD = 600  # days over which their expiries are spread
WEB = 100  # certificates of the Web department, each due for its own mail
BOOT = 120  # seconds a process may take to start on a busy machine


def fresh(query: Any) -> Any:
    db.session.expire_all()
    try:
        return db.session.execute(query)
    finally:
        db.session.rollback()


def template_certificate(org_id: int) -> Certificate:
    """A real certificate row to copy, outside every window."""
    return notify.discovered_certificate(
        org_id, utcnow() + timedelta(days=SPREAD + 100), cn="template.example"
    )


@pytest.fixture
def smtp() -> Iterator[tuple[Any, notify.Inbox]]:
    yield from notify.smtp_server()


def arrange(tag: str) -> dict[str, Any]:
    """An organization with CERTS certificates expiring over SPREAD days (12 h past whole
    days, far from any threshold's edge) and WEB more in its Web department expiring in ten
    days; a rule mailing each Web certificate at 30 days, and a digest rule over the whole
    organization at 7 days."""
    org = make_org(f"Acme {tag}", city="Berlin")
    web = make_dept(org, "Web")
    template = template_certificate(org.id)
    now = utcnow()
    notify.copies(
        template,
        [now + timedelta(days=1 + i % SPREAD, hours=12) for i in range(CERTS)],
        organization_id=org.id,
        prefix=f"fleet{tag}-",
    )
    notify.copies(
        template,
        [now + timedelta(days=10, minutes=i) for i in range(WEB)],
        organization_id=org.id,
        department_id=web.id,
        prefix=f"web{tag}-",
    )
    rules.save_rule(
        actor=SYSTEM,
        data=rules.RuleData(
            name="Web, one mail each",
            type="ssl_expiration",
            places=[(org.id, web.id)],
            days=(30,),
            subscribers=[f"web-{tag}@acme.example"],
        ),
    )
    rules.save_rule(
        actor=SYSTEM,
        data=rules.RuleData(
            name="Fleet digest",
            type="ssl_expiration",
            places=[(org.id, None)],
            days=(7,),
            subscribers=[f"fleet-{tag}@acme.example"],
            digest=True,
        ),
    )
    db.session.commit()
    due_in_week = CERTS // SPREAD * 6  # offsets of 1..6 days (and 12 h)
    return {
        "web": f"web-{tag}@acme.example",
        "fleet": f"fleet-{tag}@acme.example",
        "fleet_due": due_in_week,
    }


@pytest.fixture
def deliveries_lock(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(pg_url)
    try:
        conn.execute("SET lock_timeout = '10s'")
        conn.commit()
        yield conn
    finally:
        conn.rollback()
        conn.close()


def test_two_sweeps_and_a_killed_worker_send_each_due_mail_exactly_once(
    pg: Flask, pg_url: str, redis_url: str, stack_logs, smtp, deliveries_lock
) -> None:
    controller, inbox = smtp
    tag = secrets.token_hex(3)
    expected = arrange(tag)
    settings = {
        "CW_KEK": pg.config["CW_KEK"],
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": controller.port,
        "MAIL_FROM": "certwright@example.com",
        "CW_NOTIFY_DIGEST_HOUR": 0,
        "dramatiq_worker_timeout": 200,
    }
    stack = Stack(pg_url, redis_url, stack_logs, settings)
    with (
        stack.scheduler("scheduler-1") as sched_1,
        stack.scheduler("scheduler-2") as sched_2,
        stack.workers("worker-a", processes=1, threads=1) as worker_a,
        stack.workers("worker-b", processes=1, threads=1) as worker_b,
    ):
        why = describe(worker_a, worker_b, sched_1, sched_2)
        a_pid, _b_pid = wait_until(
            lambda: (
                len(worker_a.children()) == 1
                and len(worker_b.children()) == 1
                and (worker_a.children()[0], worker_b.children()[0])
            ),
            timeout=BOOT,
            what="one dramatiq process under each worker",
            why=why,
        )
        deliveries_lock.execute("LOCK TABLE notification_deliveries IN ACCESS EXCLUSIVE MODE")
        # Two schedulers fire the sweep at once: two sweeps, each cut into two ranges.
        stack.flask("jobs", "enqueue", "notification_sweep")
        stack.flask("jobs", "enqueue", "notification_sweep")

        def running_ranges() -> list[tuple[int, str]]:
            return list(
                fresh(
                    select(Job.id, Job.lease).where(
                        Job.kind == "notification_range", Job.status == JobStatus.RUNNING
                    )
                ).all()
            )

        wait_until(
            lambda: any(f":{a_pid}:" in (lease or "") for _, lease in running_ranges()),
            timeout=BOOT,
            what="worker A to run a range (waiting on the locked deliveries)",
            why=why,
        )
        worker_a.kill()  # kill -9, mid-range: its INSERT never commits
        deliveries_lock.rollback()  # the table is free again
        total = WEB + 1
        wait_until(
            lambda: len(inbox.received) >= total,
            timeout=240,
            what=f"{total} mails (the Web certificates' and one digest)",
            why=why,
        )
        # Whatever else is still running (redispatch passes, the other sweep's compose)
        # finishes and sends nothing more.
        wait_until(
            lambda: (
                not fresh(
                    select(Job.id).where(
                        Job.kind.like("notification_%"),
                        Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]),
                    )
                ).all()
            ),
            timeout=120,
            what="every notification job to end",
            why=why,
        )
        import time

        time.sleep(3)
    received = [(rcpts[0], str(m["Subject"])) for _, rcpts, m in inbox.received]
    assert len(received) == total, Counter(received).most_common(3)
    assert all(n == 1 for n in Counter(received).values())
    web = [s for r, s in received if r == expected["web"]]
    assert len(web) == WEB and len({s for s in web}) == WEB
    [digest] = [m for _, rcpts, m in inbox.received if rcpts == [expected["fleet"]]]
    assert f"{expected['fleet_due']} expiring within 7 days" in str(digest["Subject"])
    body = notify.parts(digest)["text/plain"]
    assert body.startswith(f"{expected['fleet_due']} certificates need attention.")
    rows = fresh(
        select(NotificationDelivery.status, func.count()).group_by(NotificationDelivery.status)
    ).all()
    assert dict(rows) == {DeliveryStatus.COMPOSED: WEB + expected["fleet_due"]}
    mails = fresh(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.to.in_([expected["web"], expected["fleet"]]))
        .group_by(OutboxMessage.status)
    ).all()
    assert dict(mails) == {MailStatus.SENT: total}


def test_composers_racing_on_postgresql_claim_each_delivery_once(pg: Flask) -> None:
    tag = secrets.token_hex(3)
    org = make_org(f"Race {tag}", city="Berlin")
    template = template_certificate(org.id)
    now = utcnow()
    ids = notify.copies(
        template,
        [now + timedelta(days=3, minutes=i) for i in range(300)],
        organization_id=org.id,
        prefix=f"race{tag}-",
    )
    rules.save_rule(
        actor=SYSTEM,
        data=rules.RuleData(
            name=f"Race {tag}",
            type="ssl_expiration",
            places=[(org.id, None)],
            days=(7,),
            subscribers=["a@race.example", "b@race.example"],
        ),
    )
    db.session.commit()
    errors: list[BaseException] = []
    start = threading.Barrier(4, timeout=30)
    made: list[int] = []

    def racer() -> None:
        with pg.app_context():
            try:
                start.wait()
                for rule in sweep.expiry_rules():
                    sweep.insert_due(rule, now, (min(ids), max(ids)))
                db.session.commit()
                start.wait()
                made.append(compose.compose_pending(as_of=now, batch=50).mails)
            except BaseException as exc:
                errors.append(exc)
                start.abort()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert sum(made) == 600, made
    rows = (
        fresh(
            select(NotificationDelivery.outbox_message_id).where(
                NotificationDelivery.certificate_id.in_(ids)
            )
        )
        .scalars()
        .all()
    )
    assert len(rows) == 600 and len(set(rows)) == 600 and None not in rows


def test_a_sweep_over_rabbitmq_delivers_each_due_mail_exactly_once(
    pg: Flask, pg_url: str, amqp_url: str, stack_logs, smtp
) -> None:
    """The same path over RabbitMQ: two sweeps at once, each cut into several id ranges,
    taken by two worker processes from the broker; every due mail arrives once."""
    from sqlalchemy import text

    from app.models import WorkerHeartbeat

    controller, inbox = smtp
    tag = secrets.token_hex(3)
    org = make_org(f"Rabbit {tag}", city="Berlin")
    template = template_certificate(org.id)
    now = utcnow()
    due = 40
    ids = notify.copies(
        template,
        [now + timedelta(days=5, minutes=i) for i in range(due)],
        organization_id=org.id,
        prefix=f"rabbit{tag}-",
    )
    # One more certificate two ranges further on (ids need not be dense): the sweep is cut
    # into at least three range jobs.
    far = max(ids) + 2 * sweep.RANGE_SIZE + 1
    row = dict(
        db.session.execute(select(Certificate.__table__).where(Certificate.id == ids[0]))
        .mappings()
        .one()
    )
    row.update(id=far, fingerprint=f"far-{tag}".ljust(64, "0"), common_name=f"far{tag}.example")
    db.session.execute(Certificate.__table__.insert().values(**row))
    db.session.execute(text("SELECT setval('certificates_id_seq', :id)").bindparams(id=far))
    address = f"rabbit-{tag}@acme.example"
    rules.save_rule(
        actor=SYSTEM,
        data=rules.RuleData(
            name=f"Rabbit {tag}",
            type="ssl_expiration",
            places=[(org.id, None)],
            days=(7,),
            subscribers=[address],
        ),
    )
    db.session.commit()
    settings = {
        "CW_KEK": pg.config["CW_KEK"],
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": controller.port,
        "MAIL_FROM": "certwright@example.com",
    }
    stack = Stack(pg_url, amqp_url, stack_logs, settings)
    with stack.workers("rabbit-workers", processes=2, threads=2) as workers:
        why = describe(workers)
        wait_until(
            lambda: len(workers.children()) == 2, timeout=BOOT, what="two worker processes", why=why
        )
        stack.flask("jobs", "enqueue", "notification_sweep")
        stack.flask("jobs", "enqueue", "notification_sweep")
        wait_until(
            lambda: len(inbox.to(address)) >= due + 1,
            timeout=240,
            what=f"{due + 1} mails",
            why=why,
        )
        wait_until(
            lambda: (
                not fresh(
                    select(Job.id).where(
                        Job.kind.like("notification_%"),
                        Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]),
                    )
                ).all()
            ),
            timeout=120,
            what="every notification job to end",
            why=why,
        )
        import time

        time.sleep(3)
        brokers = set(
            fresh(
                select(WorkerHeartbeat.broker).where(WorkerHeartbeat.pid.in_(workers.children()))
            ).scalars()
        )
    assert brokers == {"rabbitmq"}
    ranges = fresh(
        select(func.count()).select_from(Job).where(Job.kind == "notification_range")
    ).scalar_one()
    assert ranges >= 6  # two sweeps of at least three ranges each
    subjects = [str(m["Subject"]) for m in inbox.to(address)]
    assert len(subjects) == due + 1 and len(set(subjects)) == due + 1, Counter(subjects)
    assert any(f"far{tag}.example" in s for s in subjects)
    statuses = fresh(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.to == address)
        .group_by(OutboxMessage.status)
    ).all()
    assert dict(statuses) == {MailStatus.SENT: due + 1}


def test_two_ranges_finishing_at_once_both_count_and_the_sweep_composes(pg: Flask) -> None:
    """A range job reads its sweep before it locks it to count itself done: the count must
    be taken from the locked row, not the session's earlier copy, or the range finished
    meanwhile by another worker is lost and the sweep never composes (found by
    bench/notifications.py with two worker processes)."""
    from app.models import NotificationSweep

    record = NotificationSweep(as_of=utcnow(), trigger="test", ranges_done=[], ranges_failed=[])
    record.ranges_total = 2
    db.session.add(record)
    db.session.commit()
    sweep_id = record.id
    db.session.expire_all()
    assert db.session.get(NotificationSweep, sweep_id).ranges_done == []  # read, as run_range

    def other_worker() -> None:
        with pg.app_context():
            try:
                assert not sweep._range_finished(sweep_id, 1, 5, failed=False)
                db.session.commit()
            finally:
                db.session.remove()

    thread = threading.Thread(target=other_worker)
    thread.start()
    thread.join(timeout=60)
    assert sweep._range_finished(sweep_id, 0, 7, failed=False)  # the last one: composes
    db.session.commit()
    done = fresh(select(NotificationSweep).where(NotificationSweep.id == sweep_id)).scalar_one()
    assert sorted(done.ranges_done) == [0, 1] and done.created == 12
    composing = fresh(select(Job.payload).where(Job.kind == "notification_compose")).scalars().all()
    assert {"sweep_id": sweep_id} in composing
