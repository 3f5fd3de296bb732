"""Notification actors: the hourly sweep and its range jobs, composing mail and webhook
messages, fanning events out, delivering webhooks."""

from __future__ import annotations

from typing import Any

import dramatiq

from app.extensions import db
from app.models import Job, NotificationSweep
from app.models.types import utcnow
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.notifications import compose, events, sweep, webhooks
from app.services.platform import jobs, scheduling
from app.settings import setting


def _sweep(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    started = sweep.start_sweep(trigger=str(job.payload.get("trigger", "schedule")))
    return {
        "message": f"sweep #{started.id}: {started.ranges_total} certificate ranges",
        "result_type": "NotificationSweep",
        "result_id": started.id,
    }


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def notification_sweep(job_id: int) -> None:
    jobs.execute(job_id, _sweep)


def _range(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    p = job.payload
    result = sweep.run_range(
        sweep_id=int(p["sweep_id"]), index=int(p["index"]), low=int(p["low"]), high=int(p["high"])
    )
    ctx.hold()  # a retry elsewhere owns the range now: commit nothing
    return {"message": f"{result.created} deliveries due", "created": result.created}


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=1_800_000)
def notification_range(job_id: int) -> None:
    jobs.execute(job_id, _range)


def _compose(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    found = db.session.get(NotificationSweep, int(job.payload["sweep_id"]))
    as_of = found.as_of if found is not None else utcnow()
    escalated = sweep.insert_escalations(as_of)
    db.session.commit()
    result = compose.compose_pending(as_of=as_of)
    if found is not None:
        found.status, found.finished_at = "done", utcnow()
        db.session.commit()
    return {
        "message": f"{result.mails} mails and {result.webhook_messages} webhook messages for "
        f"{result.deliveries} deliveries ({escalated} escalations, {result.refused} refused, "
        f"{result.suppressed} suppressed)",
        "mails": result.mails,
        "webhook_messages": result.webhook_messages,
        "deliveries": result.deliveries,
    }


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=3_600_000)
def notification_compose(job_id: int) -> None:
    jobs.execute(job_id, _compose)


# No dramatiq retries: the event rows are the record; the scheduler asks again for any left.
@dramatiq.actor(queue_name="default", max_retries=0, time_limit=1_800_000)
def fan_out_notification_events() -> None:
    events.fan_out()


@dramatiq.actor(queue_name="mail", max_retries=0, time_limit=120_000)
def deliver_webhook(message_id: int, attempt: int) -> None:
    webhooks.deliver(message_id, attempt)


events.register_sender(lambda: fan_out_notification_events.send())
webhooks.register_deliverer(lambda message_id, attempt: deliver_webhook.send(message_id, attempt))
scheduling.register_pass("notification_events", events.dispatch_pending)
scheduling.register_pass("webhooks", webhooks.dispatch_due)
jobs.register_kind(
    "notification_sweep",
    "Sweep the inventory for due expiry notices",
    notification_sweep,
    every=int(setting("CW_NOTIFY_SWEEP_SECONDS")),
)
jobs.register_kind(
    "notification_range",
    "Compute due notices for a range of certificates",
    notification_range,
    on_failure=sweep.range_failed,
)
jobs.register_kind(
    "notification_compose", "Compose notification mail and webhook messages", notification_compose
)
