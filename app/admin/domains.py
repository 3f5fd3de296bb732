"""Console: Settings > Domains and Domain Delegations (approve / reject)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.admin.base import AdminForm, SecureModelView, actor, current_scope, select_choices
from app.admin.choices import TYPE_CHOICES, parse_target, target_choices
from app.admin.decisions import DecideForm
from app.admin.fields import MultiCheckboxField
from app.extensions import db
from app.ids import parse_id
from app.models import CertType, Delegation, DelegationStatus, Domain
from app.services.errors import DomainError
from app.services.scope import Scope
from app.services.structure import domains


class DomainCreateForm(AdminForm):
    name = StringField(
        "Domain",
        validators=[DataRequired(), Length(max=253)],
        description="example.com or *.example.com; internationalised names are stored as A-labels",
    )
    description = TextAreaField("Description", validators=[Length(max=2000)])
    active = BooleanField("Active", default=True)
    target = SelectField("Delegate to", validators=[Optional()], validate_choice=False)
    types = MultiCheckboxField(
        "Certificate types", choices=TYPE_CHOICES, default=[CertType.SSL.value]
    )


class DomainEditForm(AdminForm):
    description = TextAreaField("Description", validators=[Length(max=2000)])
    active = BooleanField("Active")


def _delegations_html(view: Any, context: Any, model: Domain, name: str) -> Markup:
    scope = current_scope()
    items = []
    for d in model.delegations:
        if not (
            scope.is_master
            or scope.covers(d.organization_id, d.department_id)
            or (d.department_id is None and d.organization_id in scope.visible_org_ids)
        ):
            continue
        where = d.organization.name + (f" / {d.department.name}" if d.department else "")
        badge = {"Approved": "success", "Requested": "warning", "Rejected": "secondary"}[
            d.status.value
        ]
        items.append(
            Markup('{} <span class="badge badge-{}">{}</span> <small>{}</small>').format(
                where, badge, d.status.value, d.types_label
            )
        )
    return (
        Markup("<br>").join(items)
        if items
        else Markup('<span class="text-muted">not delegated</span>')
    )


class DomainView(SecureModelView):
    field_map = {"organization": "target", "department": "target"}
    record_noun = "Domain"
    empty_text = (
        "No domains yet. Certificates are issued only for names inside an active domain "
        "delegated to the requesting organization or department."
    )
    search_hint = "Search by domain name or description"
    column_list = ("name", "description", "active", "delegations", "created_at")
    column_labels = {"name": "Domain", "delegations": "Delegated to"}
    column_searchable_list = ("name", "description")
    column_sortable_list = ("name", "active", "created_at")
    column_filters = ("active",)
    column_default_sort = "name"
    column_formatters = {"delegations": _delegations_html}
    column_details_list = ("name", "description", "active", "delegations", "created_at")

    def scope_clause(self, scope: Scope) -> Any:
        return domains.visible_domains_clause(scope)

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return current_scope().is_master

    can_delete = can_edit

    def get_create_form(self) -> Any:
        return DomainCreateForm

    def get_edit_form(self) -> Any:
        return DomainEditForm

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        if obj is None:
            scope = current_scope()
            choices = target_choices()
            form.target.choices = select_choices(
                ([("", "— not yet —")] if scope.is_master else []) + choices
            )
        return form

    def create_model(self, form: Any) -> Any:
        org_id, dept_id = parse_target(form.target.data) if form.target.data else (None, None)
        return self.run_service(
            form,
            lambda: domains.create_domain(
                actor=actor(),
                name=form.name.data or "",
                description=form.description.data or "",
                active=form.active.data,
                organization_id=org_id,
                department_id=dept_id,
                types=[CertType(t) for t in form.types.data or []],
            ),
        )

    def update_model(self, form: Any, model: Any) -> Any:
        return self.run_service(
            form,
            lambda: domains.update_domain(
                actor=actor(),
                domain_id=model.id,
                description=form.description.data or "",
                active=form.active.data,
            ),
        )

    def delete_model(self, model: Any) -> Any:
        return self.run_service(
            None, lambda: domains.delete_domain(actor=actor(), domain_id=model.id)
        )


class DelegationForm(AdminForm):
    domain_id = SelectField("Domain", coerce=int, validators=[DataRequired()])
    target = SelectField("Delegate to", validators=[DataRequired()], validate_choice=False)
    types = MultiCheckboxField("Certificate types", choices=TYPE_CHOICES)


class DelegationEditForm(AdminForm):
    types = MultiCheckboxField("Certificate types", choices=TYPE_CHOICES)


def _status_badge(view: Any, context: Any, model: Delegation, name: str) -> Markup:
    badge = {"Approved": "success", "Requested": "warning", "Rejected": "secondary"}[
        model.status.value
    ]
    html = Markup('<span class="badge badge-{}">{}</span>').format(badge, model.status.value)
    if model.status == DelegationStatus.REQUESTED and current_scope().is_master:
        url = url_for(".decide_view", id=model.id)
        html += Markup(
            ' <a class="btn btn-sm btn-outline-primary" href="{}">Approve / reject</a>'
        ).format(url)
    return html


class DelegationView(SecureModelView):
    field_map = {"organization": "target", "department": "target"}
    record_noun = "Delegation"
    empty_text = (
        "No domain delegations yet. A delegation lets an organization or department "
        "request certificates for a domain's names, per certificate type."
    )
    search_hint = "Search by decision message"

    def record_label(self, model: Any) -> str:
        where = model.department.name if model.department else model.organization.name
        return f"{model.domain.name} to {where}"

    def empty_actions(self) -> list[tuple[str, str]]:
        return [("Delegate a domain", url_for(".create_view"))] if self.can_create else []

    column_list = (
        "domain",
        "organization",
        "department",
        "types_label",
        "status",
        "requested_by",
        "decided_at",
        "decision_message",
    )
    column_labels = {
        "types_label": "Certificate types",
        "decided_at": "Decided",
        "decision_message": "Message",
        "requested_by": "Requested by",
    }
    column_searchable_list = ("decision_message",)
    column_sortable_list = (
        ("domain", "domain.name"),
        ("organization", "organization.name"),
        "status",
        "decided_at",
    )
    column_formatters = {
        "status": _status_badge,
        "department": lambda v, c, m, n: m.department.name if m.department else "",
    }
    column_default_sort = ("created_at", True)

    def scope_clause(self, scope: Scope) -> Any:
        return None if scope.is_master else domains.delegation_clause(scope)

    def get_filters(self) -> Any:
        statuses = [(s.value, s.value) for s in DelegationStatus]
        return [FilterEqual(Delegation.status, "Status", options=statuses)]

    def get_create_form(self) -> Any:
        return DelegationForm

    def get_edit_form(self) -> Any:
        return DelegationEditForm

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        if obj is None:
            query = select(Domain).order_by(Domain.name)
            clause = domains.visible_domains_clause(current_scope())
            if clause is not None:
                query = query.where(clause)
            form.domain_id.choices = select_choices(
                (d.id, d.name) for d in db.session.execute(query).scalars()
            )
            form.target.choices = select_choices(target_choices())
            domain_id = parse_id(request.args.get("domain_id"))
            if request.method == "GET" and domain_id is not None:
                form.domain_id.data = domain_id
        elif request.method == "GET":
            form.types.data = [t.value for t in obj.types()]
        return form

    def create_model(self, form: Any) -> Any:
        org_id, dept_id = parse_target(form.target.data)
        return self.run_service(
            form,
            lambda: domains.delegate(
                actor=actor(),
                domain_id=form.domain_id.data,
                organization_id=org_id,
                department_id=dept_id,
                types=[CertType(t) for t in form.types.data or []],
            ),
        )

    def update_model(self, form: Any, model: Any) -> Any:
        return self.run_service(
            form,
            lambda: domains.update_delegation_types(
                actor=actor(),
                delegation_id=model.id,
                types=[CertType(t) for t in form.types.data or []],
            ),
        )

    def delete_model(self, model: Any) -> Any:
        return self.run_service(
            None, lambda: domains.delete_delegation(actor=actor(), delegation_id=model.id)
        )

    def _decide_many(self, ids: list[str], approve: bool) -> None:
        done, refused = 0, []
        for raw in ids:
            try:
                domains.decide_delegation(actor=actor(), delegation_id=int(raw), approve=approve)
                db.session.commit()
                done += 1
            except DomainError as exc:
                db.session.rollback()
                refused.append(exc.message)
        if done:
            flash(f"{done} delegation(s) {'approved' if approve else 'rejected'}.", "success")
        for message in refused:
            flash(message, "error")

    @action("approve", "Approve", "Approve the selected requested delegations?")
    def action_approve(self, ids: list[str]) -> None:
        self._decide_many(ids, True)

    @action("reject", "Reject", "Reject the selected requested delegations?")
    def action_reject(self, ids: list[str]) -> None:
        self._decide_many(ids, False)

    def is_action_allowed(self, name: str) -> bool:
        if name in ("approve", "reject"):
            return current_scope().is_master
        return bool(super().is_action_allowed(name))

    @expose("/decide/", methods=("GET", "POST"))
    def decide_view(self) -> Any:
        delegation = self.get_one(request.args.get("id"))
        if delegation is None or not current_scope().is_master:
            flash("No such delegation, or you may not decide it.", "error")
            return redirect(url_for(".index_view"))
        form = DecideForm()
        if form.validate_on_submit():
            approve = "approve" in request.form
            if self.run_service(
                None,
                lambda: domains.decide_delegation(
                    actor=actor(),
                    delegation_id=delegation.id,
                    approve=approve,
                    message=form.message.data or "",
                ),
                success=f"Delegation {'approved' if approve else 'rejected'}.",
            ):
                return redirect(url_for(".index_view"))
        return self.render(
            "admin/decide.html",
            form=form,
            item=delegation,
            title="Domain delegation",
            summary=escape(str(delegation)),
        )
