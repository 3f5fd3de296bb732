"""Discovery tasks and assignment rules: validate, store, schedule, import from CSV, dry-run.

Only what a task lists is ever scanned; targets are validated by app.scan.targets against a
configurable cap (CW_SCAN_MAX_ADDRESSES) and deny list (CW_SCAN_DENY plus the built-in
link-local/multicast/unspecified/broadcast entries).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.sql import ColumnElement

from app import recurrence
from app.extensions import db
from app.models import (
    Admin,
    AssignmentRule,
    DiscoveryTask,
    Organization,
    RunStatus,
    ScanRun,
    Schedule,
    TaskRule,
)
from app.models.types import utcnow
from app.scan import addresses, resolve, settings, starttls, targets
from app.scan.errors import ScanInputError
from app.services import audit
from app.services.discovery import agents
from app.services.errors import DomainError, ValidationFailed
from app.services.platform import jobs
from app.services.scope import SYSTEM, Actor, Scope, scope_of
from app.services.structure import orgs

TASK_FIELDS = (
    "name",
    "description",
    "ranges",
    "ports",
    "host_overrides",
    "connect_timeout",
    "handshake_timeout",
    "concurrency",
    "rate",
    "protocols",
    "schedule",
    "organization_id",
    "agent",
)


def deny_list() -> tuple[addresses.DenyEntry, ...]:
    extra = [e.strip() for e in str(current_app.config["CW_SCAN_DENY"]).split(",") if e.strip()]
    return (
        (*addresses.DEFAULT_DENY, *addresses.parse_deny_list(extra))
        if extra
        else addresses.DEFAULT_DENY
    )


def lookup() -> resolve.Lookup:
    """How workers resolve task host names: CW_SCAN_RESOLVER, else the system resolver."""
    server = str(current_app.config["CW_SCAN_RESOLVER"]).strip()
    return resolve.nameserver_lookup(server) if server else resolve.lookup_addresses


def max_addresses() -> int:
    return int(current_app.config["CW_SCAN_MAX_ADDRESSES"])


@dataclass(frozen=True)
class TaskData:
    name: str
    ranges: str
    ports: str = settings.PORTS
    host_overrides: str = ""
    connect_timeout: float = settings.CONNECT_TIMEOUT
    handshake_timeout: float = settings.HANDSHAKE_TIMEOUT
    concurrency: int = settings.CONCURRENCY
    rate: float = settings.RATE
    protocols: str = ""
    schedule: dict[str, Any] = field(default_factory=lambda: {"kind": "manual"})
    organization_id: int | None = None
    description: str = ""
    rule_ids: Sequence[int] = ()
    agent: str = "Auto"  # or the name of an enabled agent (app.services.discovery.agents)


def target_spec(task: DiscoveryTask | TaskData) -> targets.TargetSpec:
    """Parse a task's targets (raises ValidationFailed with one message per bad entry)."""
    errors: dict[str, list[str]] = {}
    overrides: dict[str, list[str]] = {}
    try:
        overrides = targets.parse_host_overrides(task.host_overrides or "")
    except ScanInputError as exc:
        errors["host_overrides"] = list(exc.messages)
    try:
        return targets.parse_target_spec(
            task.ranges or "",
            task.ports or settings.PORTS,
            host_overrides=overrides,
            max_addresses=max_addresses(),
            deny=deny_list(),
        )
    except ScanInputError as exc:
        for message in exc.messages:
            errors.setdefault("ports" if message.startswith("port") else "ranges", []).append(
                message
            )
    raise ValidationFailed(errors)


def visible_tasks_clause(scope: Scope) -> ColumnElement[bool] | None:
    """MRAO: all tasks; RAO: the tasks of their organizations; DRAO: none."""
    if scope.is_master:
        return None
    return DiscoveryTask.organization_id.in_(sorted(scope.orgs) or [-1])


def get_task(*, actor: Admin, task_id: int) -> DiscoveryTask:
    task = db.session.get(DiscoveryTask, task_id)
    scope = scope_of(actor)
    if task is None or not (
        scope.is_master or (task.organization_id is not None and task.organization_id in scope.orgs)
    ):
        raise audit.not_found(
            actor=actor, what="discovery task", model=DiscoveryTask, object_id=task_id
        )
    return task


def _clean(actor: Actor, data: TaskData, task_id: int | None) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    name = data.name.strip()
    if not name:
        errors["name"] = ["The task name is required."]
    elif db.session.execute(
        select(DiscoveryTask.id).where(
            func.lower(DiscoveryTask.name) == name.lower(),
            DiscoveryTask.id != (task_id or 0),
            # unique per owner: another organization's names are none of this one's business
            DiscoveryTask.organization_id.is_(None)
            if data.organization_id is None
            else DiscoveryTask.organization_id == data.organization_id,
        )
    ).first():
        errors["name"] = [f"A task named '{name}' already exists."]
    agent = (data.agent or agents.AUTO).strip()
    if agent.lower() == agents.AUTO.lower():
        agent = agents.AUTO
    try:
        spec = target_spec(data)
    except ValidationFailed as exc:
        errors.update(exc.errors)
    else:
        if agent != agents.AUTO:
            problems = agents.check_task_targets(agent, spec)
            if problems:
                errors["agent"] = problems
    if not 0 < data.connect_timeout <= settings.MAX_CONNECT_TIMEOUT:
        errors["connect_timeout"] = [f"Between 0 and {settings.MAX_CONNECT_TIMEOUT:g} seconds."]
    if not 0 < data.handshake_timeout <= settings.MAX_HANDSHAKE_TIMEOUT:
        errors["handshake_timeout"] = [f"Between 0 and {settings.MAX_HANDSHAKE_TIMEOUT:g} seconds."]
    if not 0 <= data.rate <= settings.MAX_RATE:
        errors["rate"] = [
            f"Between 0 (no cap) and {settings.MAX_RATE:,.0f} new connections a second."
        ]
    try:
        starttls.parse_protocol_overrides(data.protocols or "")
    except ScanInputError as exc:
        errors["protocols"] = list(exc.messages)
    if not 1 <= data.concurrency <= settings.MAX_CONCURRENCY:
        errors["concurrency"] = [
            f"Between 1 and {settings.MAX_CONCURRENCY:,} connections in flight."
        ]
    problems = recurrence.validate_schedule(data.schedule)
    if problems:
        errors["schedule"] = problems
    scope = None if actor is SYSTEM else scope_of(actor)
    if scope is not None and not scope.is_master:
        if data.organization_id is None or data.organization_id not in scope.orgs:
            errors["organization_id"] = [
                "Choose one of your organizations as the owner of the task."
            ]
            if (
                data.organization_id is not None
                and db.session.get(Organization, data.organization_id) is not None
            ):
                audit.record_denied(
                    actor=actor,
                    object_type="Organization",
                    object_id=data.organization_id,
                    attempted="a discovery task's owner",
                )
    elif (
        data.organization_id is not None
        and db.session.get(Organization, data.organization_id) is None
    ):
        errors["organization_id"] = ["No such organization."]
    rule_rows = []
    for rule_id in data.rule_ids:
        rule = db.session.get(AssignmentRule, rule_id)
        if rule is None or (
            scope is not None and not scope.covers(rule.organization_id, rule.department_id)
        ):
            errors["rule_ids"] = [
                "One of the chosen rules does not exist or is outside your scope."
            ]
            if rule is not None:
                audit.record_denied(
                    actor=actor,
                    object_type="AssignmentRule",
                    object_id=rule.id,
                    attempted="a discovery task's rules",
                )
            break
        rule_rows.append(rule)
    if errors:
        raise ValidationFailed(errors)
    return {
        "name": name,
        "description": data.description.strip(),
        "ranges": data.ranges.strip(),
        "ports": data.ports.strip() or settings.PORTS,
        "host_overrides": data.host_overrides.strip(),
        "connect_timeout": float(data.connect_timeout),
        "handshake_timeout": float(data.handshake_timeout),
        "concurrency": int(data.concurrency),
        "rate": float(data.rate),
        "protocols": data.protocols.strip(),
        "schedule": recurrence.parse_schedule(data.schedule).to_dict(),
        "organization_id": data.organization_id,
        "agent": agent,
        "_rules": rule_rows,
    }


def _apply(task: DiscoveryTask, values: dict[str, Any]) -> None:
    rule_rows = values.pop("_rules")
    for key, value in values.items():
        setattr(task, key, value)
    task.rule_links.clear()
    db.session.flush()
    for position, rule in enumerate(rule_rows):
        task.rule_links.append(TaskRule(rule_id=rule.id, position=position))
    sync_schedule(task)


def _snapshot(task: DiscoveryTask) -> dict[str, Any]:
    data = audit.snapshot(task, TASK_FIELDS)
    data["rules"] = [link.rule_id for link in task.rule_links]
    return data


def create_task(*, actor: Actor, data: TaskData) -> DiscoveryTask:
    values = _clean(actor, data, None)
    task = DiscoveryTask(created_by_id=actor.id)
    db.session.add(task)
    _apply(task, values)
    db.session.flush()
    audit.record(
        action="discovery_task.create",
        actor=actor,
        object_type="DiscoveryTask",
        object_id=task.id,
        label=task.name,
        after=_snapshot(task),
        organization_id=task.organization_id,
    )
    return task


def update_task(*, actor: Admin, task_id: int, data: TaskData) -> DiscoveryTask:
    task = get_task(actor=actor, task_id=task_id)
    before = _snapshot(task)
    _apply(task, _clean(actor, data, task.id))
    db.session.flush()
    old, new = audit.changes(before, _snapshot(task))
    if new:
        audit.record(
            action="discovery_task.update",
            actor=actor,
            object_type="DiscoveryTask",
            object_id=task.id,
            label=task.name,
            before=old,
            after=new,
            organization_id=task.organization_id,
        )
    return task


def delete_task(*, actor: Admin, task_id: int) -> None:
    task = get_task(actor=actor, task_id=task_id)
    running = db.session.execute(
        select(ScanRun.id).where(ScanRun.task_id == task.id, ScanRun.status == RunStatus.RUNNING)
    ).first()
    if running:
        raise DomainError(f"'{task.name}' is scanning now; cancel the scan first.")
    audit.record(
        action="discovery_task.delete",
        actor=actor,
        object_type="DiscoveryTask",
        object_id=task.id,
        label=task.name,
        before=_snapshot(task),
        organization_id=task.organization_id,
    )
    if task.schedule_id:
        sched = db.session.get(Schedule, task.schedule_id)
        task.schedule_id = None
        if sched is not None:
            db.session.delete(sched)
    db.session.delete(task)
    db.session.flush()


def sync_schedule(task: DiscoveryTask) -> None:
    """Keep the task's Schedule row (what the scheduler reads) in step with its schedule."""
    parsed = recurrence.parse_schedule(task.schedule or {"kind": "manual"})
    next_at = recurrence.next_run(parsed, utcnow())
    sched = db.session.get(Schedule, task.schedule_id) if task.schedule_id else None
    if sched is None:
        sched = Schedule(job_kind="discovery_run", owner_type="discovery_task")
        db.session.add(sched)
    db.session.flush()
    sched.owner_id = task.id
    sched.payload = {"task_id": task.id}
    sched.spec = {"kind": "discovery", "schedule": parsed.to_dict()}
    sched.next_run_at = next_at
    sched.enabled = next_at is not None
    task.schedule_id = sched.id


def _next_discovery(spec: dict[str, Any], after: datetime) -> datetime | None:
    return recurrence.next_run(recurrence.parse_schedule(spec["schedule"]), after)


jobs.register_recurrence("discovery", _next_discovery)


def preview_schedule(data: dict[str, Any], count: int = 5) -> list[datetime]:
    """The next `count` run times (UTC) of a schedule, for the task form."""
    problems = recurrence.validate_schedule(data)
    if problems:
        raise ValidationFailed({"schedule": problems})
    return recurrence.next_runs(recurrence.parse_schedule(data), utcnow(), count)


CSV_COLUMNS = (
    "name",
    "ranges",
    "ports",
    "connect_timeout",
    "handshake_timeout",
    "concurrency",
    "rate",
    "protocols",
    "organization",
    "description",
    "agent",
)


class CsvImportError(DomainError):
    """Rows with errors: nothing was imported; `lines` has one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(
            f"Nothing was imported: {len(lines)} problem(s) in the file.", field="file"
        )
        self.lines = lines


def import_csv(*, actor: Actor, text: str) -> list[DiscoveryTask]:
    """One task per row (header: name,ranges,ports,...). Every row is validated and every
    error is reported with its line; the tasks are created only if no row has an error.
    ``agent`` is Auto (or empty) or the name of an enabled agent whose allow-list covers
    the row's ranges.

    Raises:
        CsvImportError: with every problem, line by line (the caller rolls back).
    """
    errors: list[str] = []
    valid: list[TaskData] = []
    reader = csv.DictReader(io.StringIO(text))
    if (
        reader.fieldnames is None
        or "name" not in reader.fieldnames
        or "ranges" not in reader.fieldnames
    ):
        raise DomainError(
            f"The CSV needs a header line with at least 'name' and 'ranges' (columns: {', '.join(CSV_COLUMNS)}).",
            field="file",
        )
    seen: set[str] = set()
    scope = None if actor is SYSTEM else scope_of(actor)
    owners = sorted(scope.orgs) if scope is not None and not scope.is_master else None
    for row in reader:
        line = reader.line_num
        try:
            org_id = None
            if (row.get("organization") or "").strip():
                query = select(Organization).where(Organization.name == row["organization"].strip())
                if owners is not None:  # another organization answers like a missing one
                    query = query.where(Organization.id.in_(owners or [-1]))
                org = db.session.execute(query).scalar_one_or_none()
                if org is None:
                    raise ValidationFailed(
                        {"organization": [f"no organization named '{row['organization'].strip()}'"]}
                    )
                org_id = org.id
            name = (row.get("name") or "").strip()
            if name.lower() in seen:
                raise ValidationFailed({"name": [f"'{name}' appears twice in the file"]})
            seen.add(name.lower())
            data = TaskData(
                name=name,
                ranges=(row.get("ranges") or "").replace(";", "\n"),
                ports=(row.get("ports") or settings.PORTS).replace(";", ","),
                connect_timeout=float(row.get("connect_timeout") or settings.CONNECT_TIMEOUT),
                handshake_timeout=float(row.get("handshake_timeout") or 5),
                concurrency=int(row.get("concurrency") or settings.CONCURRENCY),
                rate=float(row.get("rate") or settings.RATE),
                protocols=(row.get("protocols") or "").replace(";", ","),
                organization_id=org_id,
                description=row.get("description") or "",
                agent=(row.get("agent") or "").strip() or agents.AUTO,
            )
            _clean(actor, data, None)  # validate every row before anything is written
            valid.append(data)
        except ValidationFailed as exc:
            errors += [f"line {line}: {f}: {m}" for f, ms in exc.errors.items() for m in ms]
        except (DomainError, ValueError) as exc:
            errors.append(f"line {line}: {getattr(exc, 'message', exc)}")
    if not valid and not errors:
        errors.append("the file has no task rows")
    if errors:
        raise CsvImportError(errors)
    return [create_task(actor=actor, data=data) for data in valid]


orgs.register_reference("discovery tasks", DiscoveryTask, "organization_id", None)
