"""Assignment rules: validate, store, order per task, and dry-run against what was found.

A rule assigns a newly discovered certificate (or one still unassigned) to an organization or
department; the first matching rule of a task, in order, wins (app.scan.rules evaluates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    Admin,
    AssignmentRule,
    Certificate,
    Department,
    DiscoveryTask,
    Endpoint,
    Organization,
    TaskRule,
)
from app.scan import rules
from app.scan.observation import observe
from app.services import audit
from app.services.discovery.tasks import visible_tasks_clause
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import Scope, scope_of
from app.services.structure import orgs


@dataclass(frozen=True)
class RuleData:
    name: str
    match_mode: str
    conditions: Sequence[dict[str, str]]
    organization_id: int
    department_id: int | None = None


def visible_rules_clause(scope: Scope) -> ColumnElement[bool] | None:
    return scope.row_filter(AssignmentRule.organization_id, AssignmentRule.department_id)


def get_rule(*, actor: Admin, rule_id: int) -> AssignmentRule:
    rule = db.session.get(AssignmentRule, rule_id)
    if rule is None or not scope_of(actor).covers(rule.organization_id, rule.department_id):
        raise audit.not_found(
            actor=actor, what="assignment rule", model=AssignmentRule, object_id=rule_id
        )
    return rule


def check_rule(actor: Admin, data: RuleData, rule_id: int | None = None) -> rules.Rule:
    errors: dict[str, list[str]] = {}
    name = data.name.strip()
    if not name:
        errors["name"] = ["The rule name is required."]
    elif db.session.execute(
        select(AssignmentRule.id).where(
            func.lower(AssignmentRule.name) == name.lower(),
            AssignmentRule.id != (rule_id or 0),
            # unique per organization and department, like task names per owner
            AssignmentRule.organization_id == data.organization_id,
            AssignmentRule.department_id.is_(None)
            if data.department_id is None
            else AssignmentRule.department_id == data.department_id,
        )
    ).first():
        errors["name"] = [f"A rule named '{name}' already exists."]
    org = db.session.get(Organization, data.organization_id)
    if org is None or not scope_of(actor).covers(org.id, data.department_id):
        errors["target"] = ["Assign to one of your organizations or departments."]
    if data.department_id is not None:
        dept = db.session.get(Department, data.department_id)
        if dept is None or dept.organization_id != data.organization_id:
            errors["target"] = ["That department does not belong to the chosen organization."]
    payload = {
        "name": name or "rule",
        "match": data.match_mode,
        "conditions": list(data.conditions),
        "organization_id": data.organization_id,
        "department_id": data.department_id,
    }
    problems = rules.validate_rule(payload)
    if problems:
        errors["conditions"] = problems
    if errors:
        raise ValidationFailed(errors)
    return rules.parse_rule(payload)


RULE_FIELDS = ("name", "match_mode", "conditions", "organization_id", "department_id")


def save_rule(*, actor: Admin, data: RuleData, rule_id: int | None = None) -> AssignmentRule:
    parsed = check_rule(actor, data, rule_id)
    rule = (
        get_rule(actor=actor, rule_id=rule_id)
        if rule_id
        else AssignmentRule(created_by_id=actor.id)
    )
    before = audit.snapshot(rule, RULE_FIELDS) if rule_id else None
    rule.name, rule.match_mode = data.name.strip(), data.match_mode
    # As parsed: trimmed, and key types in the one vocabulary ("ECDSA-256" is EC-P256).
    rule.conditions = parsed.to_dict()["conditions"]
    rule.organization_id, rule.department_id = data.organization_id, data.department_id
    db.session.add(rule)
    db.session.flush()
    after = audit.snapshot(rule, RULE_FIELDS)
    audit.record(
        action="assignment_rule.update" if rule_id else "assignment_rule.create",
        actor=actor,
        object_type="AssignmentRule",
        object_id=rule.id,
        label=rule.name,
        before=before,
        after=after,
        organization_id=rule.organization_id,
        department_id=rule.department_id,
    )
    return rule


def delete_rule(*, actor: Admin, rule_id: int) -> None:
    rule = get_rule(actor=actor, rule_id=rule_id)
    used = db.session.execute(
        select(func.count()).select_from(TaskRule).where(TaskRule.rule_id == rule.id)
    ).scalar_one()
    if used:
        raise DomainError(f"The rule '{rule.name}' is attached to {used} tasks; detach it first.")
    audit.record(
        action="assignment_rule.delete",
        actor=actor,
        object_type="AssignmentRule",
        object_id=rule.id,
        label=rule.name,
        before=audit.snapshot(rule, RULE_FIELDS),
        organization_id=rule.organization_id,
    )
    db.session.delete(rule)


def rule_objects(task: DiscoveryTask) -> list[rules.Rule]:
    """The task's rules, in order, as app.scan rules (ids kept for 'assigned by')."""
    out = []
    for link in task.rule_links:
        r = link.rule
        out.append(
            rules.parse_rule(
                {
                    "rule_id": r.id,
                    "name": r.name,
                    "match": r.match_mode,
                    "conditions": r.conditions,
                    "organization_id": r.organization_id,
                    "department_id": r.department_id,
                }
            )
        )
    return out


@dataclass(frozen=True)
class DryRunHit:
    certificate: Certificate
    endpoint: Endpoint


def dry_run(
    *, actor: Admin, data: RuleData, limit: int = 200, rule_id: int | None = None
) -> list[DryRunHit]:
    """Which already-discovered certificates (by their endpoints) the rule would match.

    ``rule_id``: the rule being edited (its own name is not a duplicate)."""
    rule = check_rule(actor, data, rule_id)
    scope = scope_of(actor)
    query = select(Endpoint, Certificate).join(
        Certificate, Endpoint.certificate_id == Certificate.id
    )
    if not scope.is_master:
        owned = [
            t
            for t in db.session.execute(
                select(DiscoveryTask.id).where(visible_tasks_clause(scope))
            ).scalars()
        ]  # type: ignore[arg-type]
        clause = scope.row_filter(Certificate.organization_id, Certificate.department_id)
        query = query.where(
            or_(clause, Endpoint.task_id.in_(owned or [-1]) & Certificate.organization_id.is_(None))
        )  # type: ignore[arg-type]
    hits: list[DryRunHit] = []
    for endpoint, cert in db.session.execute(query.order_by(Endpoint.id).limit(20_000)):
        observation = observe(
            cert.der, ip=endpoint.ip, port=endpoint.port, host_name=endpoint.host_name or None
        )
        if rules.first_match([rule], observation) is not None:
            hits.append(DryRunHit(cert, endpoint))
            if len(hits) >= limit:
                break
    return hits


orgs.register_reference("assignment rules", AssignmentRule, "organization_id", "department_id")
