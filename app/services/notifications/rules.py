"""Notification rules (Settings > Notifications): validate, store, scope, delete.

An MRAO's rule may cover every organization; an RAO's or DRAO's covers places inside their
own scope (organizations they hold as a whole, departments they hold), and for expiry rules
they must hold the certificate type's privilege there. A rule is visible to, and editable
by, the MRAOs and whoever's scope covers every place it names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, false, not_, or_, select
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    CertificateProfile,
    Department,
    Frequency,
    NotificationRule,
    NotificationRulePlace,
    NotificationType,
    NotificationWebhook,
    Organization,
    RecipientRole,
)
from app.models.types import utcnow
from app.notices import addresses, thresholds
from app.services import audit
from app.services.errors import NotFound, ValidationFailed
from app.services.scope import Actor, Scope, require_actor, scope_of

MAX_SUBSCRIBERS = 50
MAX_ESCALATION_HOURS = 24 * 30
DEFAULT_DAYS = (60, 30, 14, 7, 1)
AUDIT_FIELDS = (
    "name",
    "type",
    "enabled",
    "applies_to_all",
    "profile_ids",
    "days",
    "frequency",
    "roles",
    "subscribers",
    "send_email",
    "webhook_ids",
    "digest",
    "escalate_after_hours",
    "escalate_roles",
    "escalate_subscribers",
)


@dataclass(frozen=True)
class RuleData:
    """What a rule form (or API call) submits."""

    name: str
    type: str
    enabled: bool = True
    applies_to_all: bool = False
    places: Sequence[tuple[int, int | None]] = ()  # (organization, department or None)
    profile_ids: Sequence[int] = ()
    days: Sequence[int] = DEFAULT_DAYS
    frequency: str = Frequency.THRESHOLD.value
    roles: Sequence[str] = ()
    subscribers: Sequence[str] = ()
    send_email: bool = True
    webhook_ids: Sequence[int] = ()
    digest: bool = False
    escalate_after_hours: int | None = None
    escalate_roles: Sequence[str] = ()
    escalate_subscribers: Sequence[str] = ()


@dataclass
class Checked:
    """A RuleData after validation: the values to store."""

    values: dict[str, Any] = field(default_factory=dict)
    places: list[tuple[int, int | None]] = field(default_factory=list)


def visible_rules_clause(scope: Scope) -> ColumnElement[bool] | None:
    """Rules the admin may see and edit: all (MRAO), else those whose every place is theirs."""
    if scope.is_master:
        return None
    place = NotificationRulePlace
    parts: list[ColumnElement[bool]] = []
    if scope.orgs:
        parts.append(place.organization_id.in_(sorted(scope.orgs)))
    if scope.depts:
        parts.append(
            and_(place.department_id.is_not(None), place.department_id.in_(sorted(scope.depts)))
        )
    covered = or_(*parts) if parts else false()
    mine = place.rule_id == NotificationRule.id
    return and_(
        NotificationRule.applies_to_all.is_(false()),
        exists().where(mine),
        not_(exists().where(mine, not_(covered))),
    )


def live_rules() -> Any:
    return select(NotificationRule).where(NotificationRule.deleted_at.is_(None))


def get_rule(*, actor: Actor, rule_id: int) -> NotificationRule:
    """The rule if the actor may see it (NotFound otherwise, or when deleted)."""
    scope = scope_of(require_actor(actor))
    query = live_rules().where(NotificationRule.id == rule_id)
    clause = visible_rules_clause(scope)
    if clause is not None:
        query = query.where(clause)
    rule = db.session.execute(query).scalar_one_or_none()
    if rule is None:
        raise NotFound("No such notification rule.")
    return rule


def _strings(values: Sequence[str]) -> list[str]:
    return [v for v in (str(x).strip() for x in values) if v]


def _roles(values: Sequence[str], field_name: str, errors: dict[str, list[str]]) -> list[str]:
    roles = []
    for value in _strings(values):
        try:
            roles.append(RecipientRole(value).value)
        except ValueError:
            errors.setdefault(field_name, []).append(f"'{value}' is not a recipient role.")
    return sorted(set(roles))


def _addresses(values: Sequence[str], field_name: str, errors: dict[str, list[str]]) -> list[str]:
    items = _strings(values)
    if len(items) > MAX_SUBSCRIBERS:
        errors.setdefault(field_name, []).append(f"At most {MAX_SUBSCRIBERS} addresses.")
        return []
    try:
        return addresses.normalize_list(items)
    except addresses.AddressError as exc:
        errors.setdefault(field_name, []).append(str(exc))
        return []


def check_rule(actor: Actor, data: RuleData) -> Checked:
    """Validate a rule for this actor.

    Raises:
        ValidationFailed: every problem, by field.
    """
    scope = scope_of(require_actor(actor))
    errors: dict[str, list[str]] = {}
    out = Checked()
    name = " ".join(data.name.split())
    if not name:
        errors["name"] = ["Describe the rule (it names the notices it sends)."]
    elif len(name) > 128:
        errors["name"] = ["At most 128 characters."]
    try:
        kind = NotificationType(data.type)
    except ValueError:
        errors["type"] = [f"'{data.type}' is not a notification type."]
        raise ValidationFailed(errors) from None
    cert_type = kind.expiry_type
    # Scope.
    places = sorted({(int(o), int(d) if d else None) for o, d in data.places}, key=str)
    if data.applies_to_all:
        if not scope.is_master:
            errors["scope"] = ["Only an MRAO may make a rule for every organization."]
        places = []
    elif not places:
        errors["scope"] = ["Choose the organizations or departments the rule covers."]
    for org_id, dept_id in places:
        problem = _place_problem(actor, scope, org_id, dept_id, cert_type)
        if problem:
            errors.setdefault("scope", []).append(problem)
    out.places = places
    # Which certificates (expiry rules).
    profile_ids = sorted({int(p) for p in data.profile_ids})
    if profile_ids:
        found = {
            p.id: p
            for p in db.session.execute(
                select(CertificateProfile).where(CertificateProfile.id.in_(profile_ids))
            ).scalars()
        }
        for pid in profile_ids:
            profile = found.get(pid)
            if profile is None:
                errors.setdefault("profile_ids", []).append(f"Profile #{pid} does not exist.")
            elif cert_type is not None and profile.cert_type != cert_type:
                errors.setdefault("profile_ids", []).append(
                    f"'{profile.name}' issues {profile.cert_type.label} certificates, not {cert_type.label}."
                )
    days: list[int] = []
    frequency = Frequency.THRESHOLD
    if kind.is_expiry:
        try:
            days = thresholds.normalize_days(data.days)
        except thresholds.ThresholdError as exc:
            errors["days"] = [str(exc)[0].upper() + str(exc)[1:] + "."]
        try:
            frequency = Frequency(data.frequency)
        except ValueError:
            errors["frequency"] = [f"'{data.frequency}' is not a frequency."]
    # Who and how.
    roles = _roles(data.roles, "roles", errors)
    subscribers = _addresses(data.subscribers, "subscribers", errors)
    webhook_ids = sorted({int(w) for w in data.webhook_ids})
    hooks = {
        h.id: h
        for h in db.session.execute(
            select(NotificationWebhook).where(NotificationWebhook.id.in_(webhook_ids or [-1]))
        ).scalars()
    }
    for wid in webhook_ids:
        hook = hooks.get(wid)
        if hook is None or not (scope.is_master or hook.organization_id in scope.visible_org_ids):
            errors.setdefault("webhook_ids", []).append(f"Webhook #{wid} does not exist.")
            if hook is not None:
                audit.record_denied(
                    actor=actor,
                    object_type="NotificationWebhook",
                    object_id=hook.id,
                    attempted="a notification rule's webhook",
                )
    if not data.send_email and not webhook_ids:
        errors.setdefault("channels", []).append("Choose e-mail, a webhook, or both.")
    if data.send_email and not roles and not subscribers:
        errors.setdefault("roles", []).append(
            "Choose who receives the e-mails: a role, or subscribers' addresses."
        )
    escalate_hours = data.escalate_after_hours
    escalate_roles = _roles(data.escalate_roles, "escalate_roles", errors)
    escalate_subscribers = _addresses(data.escalate_subscribers, "escalate_subscribers", errors)
    if escalate_hours is not None:
        if not kind.is_expiry:
            errors["escalate_after_hours"] = ["Only expiry alerts escalate."]
        elif not 1 <= escalate_hours <= MAX_ESCALATION_HOURS:
            errors["escalate_after_hours"] = [f"From 1 to {MAX_ESCALATION_HOURS} hours."]
        elif not escalate_roles and not escalate_subscribers:
            errors["escalate_roles"] = ["Choose who is told when nobody acknowledges."]
    else:
        escalate_roles, escalate_subscribers = [], []
    if errors:
        raise ValidationFailed(errors)
    out.values = {
        "name": name,
        "type": kind,
        "enabled": bool(data.enabled),
        "applies_to_all": bool(data.applies_to_all),
        "profile_ids": profile_ids,
        "days": days,
        "frequency": frequency,
        "roles": roles,
        "subscribers": subscribers,
        "send_email": bool(data.send_email),
        "webhook_ids": webhook_ids,
        "digest": bool(data.digest),
        "escalate_after_hours": escalate_hours,
        "escalate_roles": escalate_roles,
        "escalate_subscribers": escalate_subscribers,
    }
    return out


def _place_problem(
    actor: Actor, scope: Scope, org_id: int, dept_id: int | None, cert_type: Any
) -> str:
    """What is wrong with a place of the rule. An organization the actor may not see, or a
    DRAO's sibling department, reads exactly like a missing one (and is a denied attempt):
    never its name."""
    org = db.session.get(Organization, org_id)
    if org is not None and not (scope.is_master or org.id in scope.visible_org_ids):
        _denied(actor, "Organization", org.id)
        org = None
    if org is None:
        return f"Organization #{org_id} does not exist."
    where = org.name
    if dept_id is not None:
        dept = db.session.get(Department, dept_id)
        if dept is not None and not scope.covers(dept.organization_id, dept.id):
            _denied(actor, "Department", dept.id)
            dept = None
        if dept is None or dept.organization_id != org_id:
            return f"Department #{dept_id} is not in {org.name}."
        where = f"{org.name} / {dept.name}"
        covered = True
    else:
        covered = scope.manages_org(org_id)
    if not covered:
        return f"{where} is outside your scope."
    if cert_type is not None and not scope.may(cert_type, org_id, dept_id):
        return f"You hold no {cert_type.label} privilege in {where}."
    return ""


def _denied(actor: Actor, object_type: str, object_id: int) -> None:
    audit.record_denied(
        actor=actor,
        object_type=object_type,
        object_id=object_id,
        attempted="a notification rule's places",
    )


def _snapshot(rule: NotificationRule) -> dict[str, Any]:
    data = audit.snapshot(rule, AUDIT_FIELDS)
    data["places"] = [[p.organization_id, p.department_id] for p in rule.places]
    return data


def save_rule(*, actor: Actor, data: RuleData, rule_id: int | None = None) -> NotificationRule:
    """Create a rule, or update one the actor may edit.

    Raises:
        ValidationFailed: see check_rule. NotFound: no such rule in the actor's scope.
    """
    actor = require_actor(actor)
    rule = get_rule(actor=actor, rule_id=rule_id) if rule_id is not None else None
    checked = check_rule(actor, data)
    before = _snapshot(rule) if rule is not None else None
    if rule is None:
        rule = NotificationRule(created_by_id=actor.id, created_at=utcnow())
        db.session.add(rule)
    for key, value in checked.values.items():
        setattr(rule, key, value)
    rule.updated_at = utcnow()
    current = [(p.organization_id, p.department_id) for p in rule.places]
    if current != checked.places:
        rule.places.clear()
        db.session.flush()
        for org_id, dept_id in checked.places:
            rule.places.append(NotificationRulePlace(organization_id=org_id, department_id=dept_id))
    db.session.flush()
    after = _snapshot(rule)
    if before is not None:
        changed = {k for k in after if before.get(k) != after[k]}
        before = {k: before[k] for k in changed}
        after = {k: after[k] for k in changed}
    audit.record(
        action="notification_rule.update" if rule_id is not None else "notification_rule.create",
        actor=actor,
        object_type="NotificationRule",
        object_id=rule.id,
        label=rule.name,
        before=before,
        after=after,
        organization_id=checked.places[0][0] if len(checked.places) == 1 else None,
    )
    return rule


def delete_rule(*, actor: Actor, rule_id: int) -> NotificationRule:
    """Stop a rule for good; its deliveries stay in Sent Notifications.

    Raises:
        NotFound: no such rule in the actor's scope.
    """
    rule = get_rule(actor=actor, rule_id=rule_id)
    before = {"enabled": rule.enabled, "deleted_at": None}
    rule.deleted_at = utcnow()
    rule.enabled = False
    audit.record(
        action="notification_rule.delete",
        actor=actor,
        object_type="NotificationRule",
        object_id=rule.id,
        label=rule.name,
        before=before,
        after={"enabled": False, "deleted_at": rule.deleted_at},
    )
    return rule


def scope_text(rule: NotificationRule) -> str:
    if rule.applies_to_all:
        return "Every organization"
    return ", ".join(
        p.organization.name + (f" / {p.department.name}" if p.department else "")
        for p in rule.places
    )


def draft_rule(*, actor: Actor, data: RuleData, rule_id: int | None = None) -> NotificationRule:
    """The rule as the form would save it, not stored (for a preview before saving).

    Raises:
        ValidationFailed: see check_rule. NotFound: rule_id is not the actor's.
    """
    if rule_id is not None:
        get_rule(actor=actor, rule_id=rule_id)
    checked = check_rule(actor, data)
    draft = NotificationRule(**checked.values)
    draft.id = rule_id
    draft.places = [
        NotificationRulePlace(organization_id=org, department_id=dept)
        for org, dept in checked.places
    ]
    return draft
