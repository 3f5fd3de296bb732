"""Console: Settings > Organizations and Departments."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup
from wtforms import IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.admin.base import (
    AdminForm,
    SecureModelView,
    actor,
    current_scope,
    per_request,
    select_choices,
)
from app.admin.choices import COUNTRIES, org_choices
from app.models import Department
from app.services.notifications import templates as notice_templates
from app.services.persons import invitations, mailing
from app.services.scope import (
    Scope,
    department_clause,
    organization_clause,
)
from app.services.structure import orgs


class OrganizationForm(AdminForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=128)])
    address1 = StringField("Address line 1", validators=[Length(max=128)])
    address2 = StringField("Address line 2", validators=[Length(max=128)])
    address3 = StringField("Address line 3", validators=[Length(max=128)])
    city = StringField("City", validators=[Length(max=128)])
    state = StringField("State / province", validators=[Length(max=128)])
    postal_code = StringField("Postal code", validators=[Length(max=40)])
    country = SelectField(
        "Country",
        choices=select_choices(COUNTRIES),
        validate_choice=False,  # the service names a wrong code; this names a missing one
        validators=[DataRequired(message="Choose the country.")],
    )


class TemplateForm(AdminForm):
    subject = StringField("Subject", validators=[Length(max=256)])
    body = TextAreaField("Body (text)", validators=[Length(max=mailing.MAX_TEMPLATE)])


class NoticeTemplateForm(AdminForm):
    subject = StringField("Subject", validators=[Length(max=256)])
    body = TextAreaField("Plain-text part", validators=[Length(max=notice_templates.MAX_TEMPLATE)])
    html = TextAreaField(
        "HTML part (empty: made from the plain text)",
        validators=[Length(max=notice_templates.MAX_TEMPLATE)],
    )


class DaysForm(AdminForm):
    invitation_days = IntegerField(
        "Invitation codes stay valid (days)", validators=[Optional()], default=7
    )


def _org_data(form: Any) -> orgs.OrgData:
    return orgs.OrgData(**{f: form[f].data or "" for f in orgs.ORG_FIELDS})


class OrganizationView(SecureModelView):
    form = OrganizationForm
    record_noun = "Organization"
    empty_text = (
        "No organizations yet. An organization is the subject (O, L, ST, C) of the "
        "certificates issued for it, and the unit that RAOs administer."
    )
    search_hint = "Search by name or city"
    column_list = ("id", "name", "city", "state", "country", "departments", "created_at", "portal")
    column_labels = {
        "id": "OrgID",
        "state": "State / province",
        "address1": "Address",
        "created_at": "Created",
        "portal": "Portal mails",
    }
    column_searchable_list = ("name", "city")
    column_sortable_list = ("id", "name", "city", "country", "created_at")
    column_details_list = (
        "id",
        "name",
        "address1",
        "address2",
        "address3",
        "city",
        "state",
        "postal_code",
        "country",
        "departments",
        "created_at",
    )
    column_formatters = {
        "departments": lambda v, c, m, n: ", ".join(
            d.name for d in m.departments if current_scope().covers(m.id, d.id)
        ),
        "portal": lambda v, c, m, n: (
            Markup('<a href="{}">email template</a> · <a href="{}">notifications</a>').format(
                url_for(".portal_view", id=m.id), url_for(".notices_view", id=m.id)
            )
            if current_scope().manages_org(m.id)
            else ""
        ),
    }
    column_default_sort = "name"

    def scope_clause(self, scope: Scope) -> Any:
        return organization_clause(scope)

    @expose("/portal/", methods=("GET", "POST"))
    def portal_view(self) -> Any:
        """Email Template: the organization's portal mails (preview, save, reset) and how
        long its invitation codes stay valid."""
        org = self.get_one(request.values.get("id"))
        if org is None or not current_scope().manages_org(org.id):
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        kind = request.values.get("kind", "invitation")
        if kind not in mailing.KINDS:
            kind = "invitation"
        subject, body, custom = mailing.template_of(org.id, kind)
        form = TemplateForm(data={"subject": subject, "body": body})
        days = DaysForm(
            prefix="days", data={"invitation_days": invitations.invitation_days(org.id)}
        )
        preview = None
        back = url_for(".portal_view", id=org.id, kind=kind)
        if request.method == "POST" and "days-invitation_days" in request.form:
            if days.validate_on_submit() and self.run_service(
                days,
                lambda: invitations.set_invitation_days(
                    actor=actor(), organization_id=org.id, days=days.invitation_days.data or 0
                ),
                success="Invitation validity saved.",
            ):
                return redirect(back)
        elif form.validate_on_submit():
            if "reset" in request.form:
                if self.run_service(
                    None,
                    lambda: mailing.reset_template(
                        actor=actor(), organization_id=org.id, kind=kind
                    ),
                    success="The built-in wording is used again.",
                ):
                    return redirect(back)
            elif "save" in request.form:
                if self.run_service(
                    form,
                    lambda: mailing.save_template(
                        actor=actor(),
                        organization_id=org.id,
                        kind=kind,
                        subject=form.subject.data or "",
                        body=form.body.data or "",
                    ),
                    success="Template saved.",
                ):
                    return redirect(back)
            else:
                preview = self.run_service(
                    form,
                    lambda: mailing.preview(
                        actor=actor(),
                        organization_id=org.id,
                        kind=kind,
                        subject=form.subject.data or "",
                        body=form.body.data or "",
                    ),
                )
        return self.render(
            "admin/org_portal.html",
            org=org,
            kind=kind,
            kinds=mailing.KINDS,
            custom=custom,
            form=form,
            days=days,
            preview=preview or None,
            variables=mailing.KINDS[kind].variables,
        )

    @expose("/notices/", methods=("GET", "POST"))
    def notices_view(self) -> Any:
        """The organization's own notification templates, per type (and digest): preview
        with sample values, save, back to the built-in template."""
        org = self.get_one(request.values.get("id"))
        if org is None or not current_scope().manages_org(org.id):
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        kind = request.values.get("kind", "notice.ssl_expiration")
        if kind not in notice_templates.KINDS:
            kind = "notice.ssl_expiration"
        spec = notice_templates.KINDS[kind]
        stored = notice_templates.template_of(org.id, kind)
        form = NoticeTemplateForm(
            data={
                "subject": stored.templates.subject,
                "body": stored.templates.text,
                "html": stored.templates.html,
            }
        )
        preview = None
        back = url_for(".notices_view", id=org.id, kind=kind)
        if form.validate_on_submit():
            typed = {
                "subject": form.subject.data or "",
                "body": form.body.data or "",
                "html": form.html.data or "",
            }
            if "reset" in request.form:
                if self.run_service(
                    None,
                    lambda: notice_templates.reset_template(
                        actor=actor(), organization_id=org.id, kind=kind
                    ),
                    success="The built-in template is used again.",
                ):
                    return redirect(back)
            elif "save" in request.form:
                if self.run_service(
                    form,
                    lambda: notice_templates.save_template(
                        actor=actor(), organization_id=org.id, kind=kind, **typed
                    ),
                    success="Template saved.",
                ):
                    return redirect(back)
            else:
                preview = self.run_service(
                    form,
                    lambda: notice_templates.preview(
                        actor=actor(), organization_id=org.id, kind=kind, **typed
                    ),
                )
        return self.render(
            "admin/org_notices.html",
            org=org,
            kind=kind,
            kinds=notice_templates.KINDS,
            customised=notice_templates.custom_kinds(org.id),
            custom=stored.custom,
            form=form,
            preview=preview or None,
            variables=notice_templates.VARIABLES[spec.family],
        )

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return current_scope().is_master

    can_delete = can_create

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        scope = current_scope()
        return scope.is_master or bool(scope.orgs)

    def create_model(self, form: Any) -> Any:
        return _warned(
            self.run_service(form, lambda: orgs.create_org(actor=actor(), data=_org_data(form)))
        )

    def update_model(self, form: Any, model: Any) -> Any:
        return _warned(
            self.run_service(
                form, lambda: orgs.update_org(actor=actor(), org_id=model.id, data=_org_data(form))
            )
        )

    def delete_model(self, model: Any) -> Any:
        return self.run_service(None, lambda: orgs.delete_org(actor=actor(), org_id=model.id))


class DepartmentForm(AdminForm):
    organization_id = SelectField("Organization", coerce=int, validators=[DataRequired()])
    name = StringField("Name", validators=[DataRequired(), Length(max=128)])


class DepartmentView(SecureModelView):
    form = DepartmentForm
    record_noun = "Department"
    empty_text = (
        "No departments yet. Departments divide an organization (the OU of its "
        "certificates) and are what DRAOs administer."
    )
    search_hint = "Search by department name"
    column_list = ("id", "organization", "name", "created_at")
    column_labels = {"created_at": "Created"}
    column_searchable_list = ("name",)
    column_sortable_list = ("id", "name", ("organization", "organization.name"), "created_at")
    column_default_sort = "name"

    def scope_clause(self, scope: Scope) -> Any:
        return department_clause(scope)

    def get_filters(self) -> Any:
        return [
            FilterEqual(
                Department.organization_id, "Organization", options=per_request(org_choices)
            )
        ]

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        scope = current_scope()
        return scope.is_master or bool(scope.orgs)

    can_edit = can_create
    can_delete = can_create

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        if obj is not None:  # a department does not move between organizations
            del form.organization_id
        else:
            form.organization_id.choices = select_choices(org_choices(managed_only=True))
        return form

    def create_model(self, form: Any) -> Any:
        return _warned(
            self.run_service(
                form,
                lambda: orgs.create_dept(
                    actor=actor(),
                    organization_id=form.organization_id.data,
                    name=form.name.data or "",
                ),
            )
        )

    def update_model(self, form: Any, model: Any) -> Any:
        return _warned(
            self.run_service(
                form,
                lambda: orgs.update_dept(
                    actor=actor(), dept_id=model.id, name=form.name.data or ""
                ),
            )
        )

    def delete_model(self, model: Any) -> Any:
        return self.run_service(None, lambda: orgs.delete_dept(actor=actor(), dept_id=model.id))


def _warned(saved: Any) -> Any:
    """Flash what the subject-text rules warn about a saved name (e.g. mixed scripts)."""
    if saved:
        for warning in orgs.name_warnings(saved.name):
            flash(warning, "warning")
    return saved
