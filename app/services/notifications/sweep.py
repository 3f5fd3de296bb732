"""The sweep: which expiry notices are due, computed in SQL over the inventory.

A sweep fixes its clock (``as_of``), cuts the certificate ids into ranges and creates one job
per range, so that every worker process takes a share. A range job runs, per enabled expiry
rule, one INSERT ... SELECT that writes a delivery for every (certificate, recipient) due
in the range, ON CONFLICT DO NOTHING: the delivery's unique key (rule, certificate,
threshold, occurrence, stage, channel, recipient) makes a second sweep, a retried job or a
job whose worker was killed insert nothing new. No Python loop touches a certificate. The
last range to finish queues the composition job (app.services.notifications.compose).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.selectable import CTE

from app.extensions import db
from app.models import (
    AckState,
    Certificate,
    CertStatus,
    Channel,
    DeliveryStage,
    DeliveryStatus,
    Frequency,
    Job,
    NotificationAck,
    NotificationDelivery,
    NotificationRule,
    NotificationSweep,
    NotificationType,
)
from app.models.types import utcnow
from app.notices import thresholds
from app.services.notifications import recipients
from app.services.notifications.rules import live_rules
from app.services.platform import jobs

RANGE_SIZE = 50_000
CERTS = Certificate.__table__
DELIVERIES = NotificationDelivery.__table__
ACKS = NotificationAck.__table__
ACTIVE = (CertStatus.ISSUED, CertStatus.EXTERNAL, CertStatus.EXPIRED)
INSERT_COLUMNS = (
    "rule_id",
    "subject_key",
    "certificate_id",
    "threshold",
    "occurrence",
    "stage",
    "channel",
    "recipient",
    "status",
    "error",
    "organization_id",
    "department_id",
    "created_at",
)


def expiry_rules() -> list[NotificationRule]:
    return list(
        db.session.execute(
            live_rules()
            .where(
                NotificationRule.enabled.is_(True),
                NotificationRule.type.in_([t for t in NotificationType if t.is_expiry]),
            )
            .order_by(NotificationRule.id)
        ).scalars()
    )


def insert_ignoring_duplicates(table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the session's database."""
    if db.session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# --- which certificates are due ------------------------------------------------------------


def rule_filter(rule: NotificationRule, table: Any = CERTS) -> ColumnElement[bool]:
    """Certificates the rule covers: its type, its scope, its profiles."""
    cert_type = rule.type.expiry_type
    conditions: list[ColumnElement[bool]] = [table.c.cert_type == cert_type]
    if not rule.applies_to_all:
        orgs = sorted(p.organization_id for p in rule.places if p.department_id is None)
        depts = sorted(p.department_id for p in rule.places if p.department_id is not None)
        parts = []
        if orgs:
            parts.append(table.c.organization_id.in_(orgs))
        if depts:
            parts.append(table.c.department_id.in_(depts))
        conditions.append(or_(*parts) if parts else false())
    if rule.profile_ids:
        conditions.append(table.c.profile_id.in_(sorted(rule.profile_ids)))
    return and_(*conditions)


def not_acknowledged(rule_id: Any, certificate_id: Any, as_of: datetime) -> ColumnElement[bool]:
    return not_(
        exists().where(
            ACKS.c.rule_id == rule_id,
            ACKS.c.certificate_id == certificate_id,
            or_(ACKS.c.state == AckState.ACKNOWLEDGED, ACKS.c.until > as_of),
        )
    )


def due_select(
    rule: NotificationRule, as_of: datetime, id_range: tuple[int, int] | None = None
) -> Select[Any]:
    """(cid, org, dept, request_id, sans, threshold, occurrence, not_after) of every
    certificate the rule notifies about at as_of."""
    days = list(rule.days)
    lower, upper = thresholds.window(days, as_of)
    bucket = case(
        *[(CERTS.c.not_after <= bound, literal(t)) for t, bound in thresholds.bounds(days, as_of)]
    )
    if rule.frequency == Frequency.DAILY:
        day = thresholds.occurrence(as_of, daily=True, threshold=1)
        occurrence: Any = case((CERTS.c.not_after <= as_of, literal(0)), else_=literal(day))
    else:
        occurrence = literal(0)
    conditions = [
        CERTS.c.not_after > lower,
        CERTS.c.not_after <= upper,
        CERTS.c.status.in_(ACTIVE),
        rule_filter(rule),
        not_acknowledged(rule.id, CERTS.c.id, as_of),
    ]
    if id_range is not None:
        conditions.append(CERTS.c.id.between(*id_range))
    return select(
        CERTS.c.id.label("cid"),
        CERTS.c.organization_id.label("org"),
        CERTS.c.department_id.label("dept"),
        CERTS.c.request_id.label("request_id"),
        CERTS.c.sans.label("sans"),
        bucket.label("threshold"),
        occurrence.label("occurrence"),
        CERTS.c.not_after.label("not_after"),
    ).where(*conditions)


def delivery_rows(
    rule: NotificationRule,
    due: CTE,
    *,
    stage: DeliveryStage,
    now: datetime,
    roles: list[str],
    subscribers: list[str],
    webhooks: list[int],
) -> Select[Any] | None:
    """The rows to insert for the due certificates: one per e-mail recipient (when the rule
    mails) and one per webhook."""
    cert_type = rule.type.expiry_type
    parts: list[Select[Any]] = []
    if rule.send_email:
        parts += recipients.role_selects(due, roles, subscribers, cert_type)
    channel_of: dict[int, str] = {}
    for index in range(len(parts)):
        channel_of[index] = Channel.EMAIL.value
    for hook in webhooks:
        parts.append(
            select(
                due.c.cid,
                due.c.org,
                due.c.dept,
                due.c.threshold,
                due.c.occurrence,
                literal(f"webhook:{hook}").label("recipient"),
            ).where(true())
        )
        channel_of[len(parts) - 1] = Channel.WEBHOOK.value
    if not parts:
        return None
    tagged = [
        part.add_columns(literal(channel_of[i]).label("channel")) for i, part in enumerate(parts)
    ]
    rows = union_all(*tagged).subquery("recipients")
    return select(
        literal(rule.id),
        rows.c.cid,
        rows.c.cid,
        rows.c.threshold,
        rows.c.occurrence,
        literal(int(stage)),
        rows.c.channel,
        rows.c.recipient,
        literal(DeliveryStatus.PENDING.value),
        literal(""),
        rows.c.org,
        rows.c.dept,
        literal(now, type_=DELIVERIES.c.created_at.type),
    ).where(rows.c.recipient.is_not(None), rows.c.recipient != "")


def insert_due(
    rule: NotificationRule, as_of: datetime, id_range: tuple[int, int] | None = None
) -> int:
    """Write the rule's due deliveries (in id_range); how many were new."""
    due = due_select(rule, as_of, id_range).cte("due")
    rows = delivery_rows(
        rule,
        due,
        stage=DeliveryStage.ALERT,
        now=utcnow(),
        roles=list(rule.roles),
        subscribers=list(rule.subscribers),
        webhooks=list(rule.webhook_ids),
    )
    if rows is None:
        return 0
    statement = (
        insert_ignoring_duplicates(DELIVERIES)
        .from_select(list(INSERT_COLUMNS), rows)
        .on_conflict_do_nothing()
    )
    return execute_counted(statement)


def execute_counted(statement: Any) -> int:
    """Run an INSERT ... SELECT ... ON CONFLICT DO NOTHING; how many rows it wrote. Neither
    driver reports a count for a statement that starts with WITH (a CTE): PostgreSQL
    counts the RETURNING rows of the insert (WITH ins AS (INSERT ... RETURNING 1) SELECT
    count(*) FROM ins, one statement), SQLite's changes() counts after it."""
    if db.session.get_bind().dialect.name == "postgresql":
        written = statement.returning(literal(1).label("one")).cte("written")
        return int(db.session.execute(select(func.count()).select_from(written)).scalar_one())
    db.session.execute(statement)
    return int(db.session.execute(select(func.changes())).scalar_one())


# --- escalation: alerts inside the last threshold nobody acknowledged -----------------------


def insert_escalations(as_of: datetime) -> int:
    """For each rule that escalates: alerts of its last (smallest) threshold composed at
    least N hours ago whose certificate nobody acknowledged (or snoozed) go to the
    escalation recipients, once."""
    created = 0
    for rule in expiry_rules():
        if not rule.escalate_after_hours or not rule.days:
            continue
        last = min(rule.days)
        cutoff = as_of - timedelta(hours=rule.escalate_after_hours)
        alerted = (
            select(DELIVERIES.c.subject_key)
            .where(
                DELIVERIES.c.rule_id == rule.id,
                DELIVERIES.c.stage == int(DeliveryStage.ALERT),
                DELIVERIES.c.threshold == last,
                DELIVERIES.c.status == DeliveryStatus.COMPOSED,
                DELIVERIES.c.composed_at <= cutoff,
            )
            .distinct()
            .subquery("alerted")
        )
        due = (
            select(
                CERTS.c.id.label("cid"),
                CERTS.c.organization_id.label("org"),
                CERTS.c.department_id.label("dept"),
                CERTS.c.request_id.label("request_id"),
                CERTS.c.sans.label("sans"),
                literal(last).label("threshold"),
                literal(0).label("occurrence"),
            )
            .select_from(alerted.join(CERTS, CERTS.c.id == alerted.c.subject_key))
            .where(CERTS.c.status.in_(ACTIVE), not_acknowledged(rule.id, CERTS.c.id, as_of))
            .cte("due")
        )
        rows = delivery_rows(
            rule,
            due,
            stage=DeliveryStage.ESCALATION,
            now=utcnow(),
            roles=list(rule.escalate_roles),
            subscribers=list(rule.escalate_subscribers),
            webhooks=list(rule.webhook_ids),
        )
        if rows is None:
            continue
        statement = (
            insert_ignoring_duplicates(DELIVERIES)
            .from_select(list(INSERT_COLUMNS), rows)
            .on_conflict_do_nothing()
        )
        created += execute_counted(statement)
    return created


# --- the sweep as jobs -------------------------------------------------------------------


def start_sweep(*, as_of: datetime | None = None, trigger: str = "schedule") -> NotificationSweep:
    """Create the sweep and one job per id range (messages after commit); with nothing to
    sweep, the composition job at once (events and digests still need composing)."""
    as_of = as_of or utcnow()
    sweep = NotificationSweep(as_of=as_of, trigger=trigger, ranges_done=[], ranges_failed=[])
    db.session.add(sweep)
    db.session.flush()
    low, high = db.session.execute(select(func.min(CERTS.c.id), func.max(CERTS.c.id))).one()
    ranges: list[tuple[int, int]] = []
    if low is not None and expiry_rules():
        start = int(low)
        while start <= int(high):
            ranges.append((start, min(int(high), start + RANGE_SIZE - 1)))
            start += RANGE_SIZE
    sweep.ranges_total = len(ranges)
    if ranges:
        jobs.create_jobs(
            kind="notification_range",
            payloads=[
                {"sweep_id": sweep.id, "index": i, "low": lo, "high": hi}
                for i, (lo, hi) in enumerate(ranges)
            ],
        )
    else:
        jobs.create_job(kind="notification_compose", payload={"sweep_id": sweep.id})
    return sweep


@dataclass(frozen=True)
class RangeResult:
    created: int
    finished_sweep: bool


def run_range(*, sweep_id: int, index: int, low: int, high: int) -> RangeResult:
    """Insert the due deliveries of one id range for every expiry rule; the caller commits.
    The last range of the sweep queues its composition (once: the sweep row is locked)."""
    sweep = db.session.get(NotificationSweep, sweep_id)
    if sweep is None or sweep.status != "running":
        return RangeResult(0, False)
    created = sum(insert_due(rule, sweep.as_of, (low, high)) for rule in expiry_rules())
    return RangeResult(created, _range_finished(sweep_id, index, created, failed=False))


def _range_finished(sweep_id: int, index: int, created: int, *, failed: bool) -> bool:
    # populate_existing: run_range read the sweep before taking the lock; without it the
    # session would keep that earlier copy and two ranges finishing at once would each
    # append to the list as it was before the other (a lost update: the sweep would never
    # see its last range, nor queue its composition).
    sweep = db.session.execute(
        select(NotificationSweep)
        .where(NotificationSweep.id == sweep_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    done = list(sweep.ranges_done or [])
    bad = list(sweep.ranges_failed or [])
    if index in done or index in bad:
        return False  # a retry of a range already counted
    if failed:
        sweep.ranges_failed = [*bad, index]
    else:
        sweep.ranges_done = [*done, index]
        sweep.created = sweep.created + created
    if len(sweep.ranges_done) + len(sweep.ranges_failed) < sweep.ranges_total:
        return False
    jobs.create_job(kind="notification_compose", payload={"sweep_id": sweep_id})
    return True


def range_failed(job: Job) -> None:
    """A range out of attempts: count it as failed so the sweep still composes the rest."""
    payload = job.payload or {}
    if "sweep_id" in payload:
        _range_finished(int(payload["sweep_id"]), int(payload["index"]), 0, failed=True)


# --- preview: what a rule would notify about today ----------------------------------------


@dataclass(frozen=True)
class PreviewRow:
    certificate: Certificate
    threshold: int
    days_left: int
    already_notified: bool


def preview(
    rule: NotificationRule, *, as_of: datetime | None = None, limit: int = 100
) -> tuple[int, list[PreviewRow]]:
    """How many certificates the rule notifies about at as_of, and the first ``limit``
    (soonest expiry first), each with whether it was notified for that threshold already."""
    as_of = as_of or utcnow()
    due = due_select(rule, as_of).subquery("due")
    total = int(db.session.execute(select(func.count()).select_from(due)).scalar_one())
    notified = (
        exists()
        .where(
            DELIVERIES.c.rule_id == rule.id,
            DELIVERIES.c.subject_key == due.c.cid,
            DELIVERIES.c.threshold == due.c.threshold,
            DELIVERIES.c.occurrence == due.c.occurrence,
            DELIVERIES.c.stage == int(DeliveryStage.ALERT),
        )
        .correlate(due)
        if rule.id is not None
        else literal(False)
    )
    rows = db.session.execute(
        select(Certificate, due.c.threshold, notified.label("notified"))
        .join(due, due.c.cid == Certificate.id)
        .order_by(due.c.not_after, Certificate.id)
        .limit(limit)
    ).all()
    return total, [
        PreviewRow(cert, int(threshold), thresholds.days_left(cert.not_after, as_of), bool(seen))
        for cert, threshold, seen in rows
    ]
