"""Console: Discovery > Assignment Rules (conditions, target, dry run before saving)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from sqlalchemy import select

from app.admin.base import SecureModelView, actor, apply_errors, current_scope, select_choices
from app.admin.choices import parse_target, target_choices
from app.admin.discovery.forms import (
    RuleForm,
    conditions_text,
    place_condition_errors,
    rule_conditions,
)
from app.extensions import db
from app.models import AssignmentRule, DiscoveryTask, TaskRule
from app.services.discovery import endpoints, rules
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import Scope


def _target(view: Any, context: Any, model: AssignmentRule, name: str) -> str:
    return model.organization.name + (f" / {model.department.name}" if model.department else "")


def _used_by(view: Any, context: Any, model: AssignmentRule, name: str) -> str:
    visible = endpoints.visible_task_ids(current_scope())
    names = [
        task.name
        for task in db.session.execute(
            select(DiscoveryTask)
            .join(TaskRule, TaskRule.task_id == DiscoveryTask.id)
            .where(TaskRule.rule_id == model.id)
            .order_by(DiscoveryTask.name)
        ).scalars()
        if visible is None or task.id in visible
    ]
    return ", ".join(names) or "no task"


class AssignmentRuleView(SecureModelView):
    """Named, reusable rules; tasks attach them in order."""

    column_list = ("name", "match_mode", "conditions", "target", "used_by", "created_at")
    record_noun = "Assignment rule"
    empty_text = (
        "No assignment rules yet. A rule places discovered certificates in an organization "
        "or department by their subject, names, issuer, host or address."
    )
    search_hint = "Search by rule name"
    column_labels = {
        "match_mode": "Match",
        "target": "Assigns to",
        "used_by": "Used by tasks",
        "created_at": "Created",
    }
    column_details_list = column_list
    column_searchable_list = ("name",)
    column_sortable_list = ("name", ("target", "organization.name"), "created_at")
    column_default_sort = "name"
    column_formatters = {
        "match_mode": lambda v, c, m, n: (
            "all conditions" if m.match_mode == "all" else "any condition"
        ),
        "conditions": lambda v, c, m, n: conditions_text(m.match_mode, m.conditions),
        "target": _target,
        "used_by": _used_by,
    }
    form_template = "admin/discovery/rule_form.html"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(AssignmentRule, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        return rules.visible_rules_clause(scope)

    def _form(self, rule: AssignmentRule | None) -> RuleForm:
        form = RuleForm(obj=None)
        form.target.choices = select_choices(target_choices())
        if request.method == "GET" and rule is not None:
            form.name.data = rule.name
            form.match_mode.data = rule.match_mode
            form.target.data = (
                f"d:{rule.department_id}" if rule.department_id else f"o:{rule.organization_id}"
            )
            for entry, condition in zip(form.conditions.entries, rule.conditions, strict=False):
                entry.form.field.data = condition.get("field", "")
                entry.form.operator.data = condition.get("operator", "equals")
                entry.form.value.data = condition.get("value", "")
            for condition in rule.conditions[len(form.conditions.entries) :]:
                form.conditions.append_entry(condition)
        return form

    def _edit(self, rule: AssignmentRule | None) -> Any:
        form = self._form(rule)
        hits = None
        condition_errors: list[str] = []
        if request.method == "POST" and form.validate():
            conditions, rows = rule_conditions(form)
            org_id, dept_id = parse_target(form.target.data or "")
            data = rules.RuleData(
                name=form.name.data or "",
                match_mode=form.match_mode.data or "all",
                conditions=conditions,
                organization_id=org_id,
                department_id=dept_id,
            )
            try:
                if "dry_run" in request.form:
                    hits = rules.dry_run(
                        actor=actor(), data=data, rule_id=rule.id if rule else None
                    )
                else:
                    saved = rules.save_rule(
                        actor=actor(), data=data, rule_id=rule.id if rule else None
                    )
                    db.session.commit()
                    flash(f"Saved the assignment rule '{saved.name}'.", "success")
                    return redirect(url_for(".index_view"))
            except ValidationFailed as exc:
                db.session.rollback()
                errors = dict(exc.errors)
                condition_errors = place_condition_errors(form, errors.pop("conditions", []), rows)
                for field, messages in errors.items():
                    apply_errors(form, DomainError("; ".join(messages), field=field))
            except DomainError as exc:
                db.session.rollback()
                apply_errors(form, exc)
        return self.render(
            self.form_template,
            form=form,
            rule=rule,
            hits=hits,
            condition_errors=condition_errors,
            states={h.certificate.id: endpoints.inventory_state(h.certificate) for h in hits or []},
        )

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        return self._edit(None)

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self) -> Any:
        rule = self.get_one(request.args.get("id"))
        if rule is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        return self._edit(rule)

    def delete_model(self, model: AssignmentRule) -> Any:
        return self.run_service(None, lambda: rules.delete_rule(actor=actor(), rule_id=model.id))
