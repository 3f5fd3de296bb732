"""System actors: mail delivery, audit chain verification, housekeeping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dramatiq
from sqlalchemy import delete

from app.extensions import db
from app.models import AdminSession, Job, WorkerHeartbeat
from app.models.types import utcnow
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services import audit
from app.services.accounts import sessions as signins
from app.services.certificates import orders
from app.services.platform import jobs, mail
from app.services.scope import SYSTEM


# No dramatiq retries: the outbox row is the durable record, and the scheduler dispatches it
# again after its backoff (app/services/platform/mail.py), surviving restarts.
@dramatiq.actor(queue_name="mail", max_retries=0, time_limit=600_000)
def deliver_mail(message_id: int, attempt: int | None = None) -> None:
    mail.deliver(message_id, attempt)


mail.register_deliverer(lambda message_id, attempt: deliver_mail.send(message_id, attempt))


def _verify_audit(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    verdict = audit.verify()
    if verdict.ok:
        return {
            "message": f"audit chain intact: {verdict.rows} rows verified",
            "ok": True,
            "rows": verdict.rows,
            "expected": verdict.expected,
        }
    audit.record(action="audit.verify_failed", actor=SYSTEM, message=verdict.reason)
    db.session.commit()
    return {
        "message": f"audit chain {verdict.summary()}",
        "ok": False,
        "rows": verdict.rows,
        "expected": verdict.expected,
        "first_bad_seq": verdict.first_bad_seq,
    }


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=3_600_000)
def verify_audit_chain(job_id: int) -> None:
    jobs.execute(job_id, _verify_audit)


def _housekeeping(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    now = utcnow()
    sessions = db.session.execute(
        delete(AdminSession).where(AdminSession.last_seen_at < now - timedelta(days=30))
    ).rowcount
    beats = db.session.execute(
        delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < now - timedelta(days=1))
    ).rowcount
    throttles = signins.forget_old_failures()
    keys = orders.forget_old_keys()
    db.session.commit()
    return {
        "message": f"removed {sessions} old sessions, {beats} old worker heartbeats, "
        f"{throttles} forgotten sign-in failure counts and {keys} expired API idempotency keys"
    }


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def housekeeping(job_id: int) -> None:
    jobs.execute(job_id, _housekeeping)


jobs.register_kind(
    "audit_verify", "Verify the audit log chain", verify_audit_chain, every=24 * 3600
)
jobs.register_kind("housekeeping", "Housekeeping", housekeeping, every=3600)
