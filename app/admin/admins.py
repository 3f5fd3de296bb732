"""Console: Admins (MRAO / RAO / DRAO with scopes and privileges)."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup
from wtforms import (
    BooleanField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from app.admin.base import AdminForm, SecureModelView, actor, select_choices
from app.admin.choices import TYPE_CHOICES, parse_target, target_choices
from app.admin.fields import MultiCheckboxField
from app.models import Admin, AdminKind, CertType, Role
from app.services.accounts import admins
from app.services.scope import Scope

ROLE_HELP = "MRAO: the whole account. RAO: whole organizations. DRAO: departments."
KIND_CHOICES = [
    (AdminKind.STANDARD.value, "Standard (signs in to the console)"),
    (AdminKind.API.value, "API (REST API calls only, no console sign-in)"),
]
NETWORKS_HELP = "API accounts: the networks calls may come from (CIDR), one a line; empty = any"


def _networks(form: Any) -> list[str]:
    return (form.api_networks.data or "").replace(",", "\n").splitlines()


class AdminCreateForm(AdminForm):
    login = StringField("Login", validators=[DataRequired(), Length(max=64)])
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    full_name = StringField("Full name", validators=[Length(max=128)])
    role = SelectField("Role", description=ROLE_HELP)
    scopes = SelectMultipleField(
        "Scopes",
        description="Organizations for an RAO, departments for a DRAO",
        validate_choice=False,
    )
    privileges = MultiCheckboxField("Privileges on these scopes", choices=TYPE_CHOICES)
    kind = SelectField(
        "Type", choices=select_choices(KIND_CHOICES), default=AdminKind.STANDARD.value
    )
    api_networks = TextAreaField("Source networks", description=NETWORKS_HELP)
    password = PasswordField(
        "Password", validators=[DataRequired()], description="At least 12 characters"
    )


class AdminEditForm(AdminForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)])
    full_name = StringField("Full name", validators=[Length(max=128)])
    role = SelectField("Role", description=ROLE_HELP)
    active = BooleanField("Active")
    scopes = SelectMultipleField("Scopes", validate_choice=False)
    privileges = MultiCheckboxField("Privileges on these scopes", choices=TYPE_CHOICES)
    api_networks = TextAreaField("Source networks", description=NETWORKS_HELP)
    new_password = PasswordField(
        "Set a new password",
        validators=[Optional()],
        description="Leave empty to keep the current one; the admin's sessions are signed out",
    )


def _scopes_html(view: Any, context: Any, model: Admin, name: str) -> Markup:
    if model.is_master:
        return Markup('<span class="text-muted">account-wide</span>')
    return Markup("<br>").join(str(s) for s in model.scopes)


def _grants(form: Any) -> list[admins.Grant]:
    privileges = frozenset(CertType(p) for p in form.privileges.data or [])
    grants = []
    for value in form.scopes.data or []:
        org_id, dept_id = parse_target(value)
        grants.append(admins.Grant(org_id, dept_id, privileges))
    return grants


class AdminView(SecureModelView):
    column_list = (
        "login",
        "full_name",
        "email",
        "role",
        "kind",
        "scopes",
        "active",
        "last_login_at",
    )
    column_labels = {
        "last_login_at": "Last sign-in",
        "kind": "Type",
        "api_networks": "Source networks",
    }
    column_searchable_list = ("login", "email", "full_name")
    column_sortable_list = ("login", "email", "role", "active", "last_login_at")
    column_formatters = {"scopes": _scopes_html}
    column_details_list = (
        "login",
        "full_name",
        "email",
        "role",
        "kind",
        "api_networks",
        "scopes",
        "active",
        "timezone",
        "created_at",
        "last_login_at",
        "password_changed_at",
    )
    column_default_sort = "login"

    def scope_clause(self, scope: Scope) -> Any:
        return admins.visible_admins_clause(scope)

    def get_filters(self) -> Any:
        return [FilterEqual(Admin.role, "Role", options=[(r.value, r.value) for r in Role])]

    def get_create_form(self) -> Any:
        return AdminCreateForm

    def get_edit_form(self) -> Any:
        return AdminEditForm

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        me = actor()
        form.role.choices = select_choices(
            (r.value, r.value) for r in Role if r.rank <= me.role.rank
        )
        form.scopes.choices = select_choices(target_choices())
        if obj is not None and request.method == "GET":
            form.role.data = obj.role.value
            form.scopes.data = [
                f"d:{s.department_id}" if s.department_id else f"o:{s.organization_id}"
                for s in obj.scopes
            ]
            held = set().union(*(s.privileges() for s in obj.scopes)) if obj.scopes else set()
            form.privileges.data = [t.value for t in held]
            form.api_networks.data = "\n".join(obj.api_networks or [])
        return form

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return True

    def create_model(self, form: Any) -> Any:
        return self.run_service(
            form,
            lambda: admins.create_admin(
                actor=actor(),
                login=form.login.data or "",
                email=form.email.data or "",
                full_name=form.full_name.data or "",
                role=Role(form.role.data),
                password=form.password.data or "",
                grants=_grants(form),
                kind=AdminKind(form.kind.data or AdminKind.STANDARD.value),
                api_networks=_networks(form),
            ),
        )

    def update_model(self, form: Any, model: Any) -> Any:
        return self.run_service(
            form,
            lambda: admins.update_admin(
                actor=actor(),
                admin_id=model.id,
                email=form.email.data or "",
                full_name=form.full_name.data or "",
                role=Role(form.role.data),
                active=form.active.data,
                grants=_grants(form),
                new_password=form.new_password.data or None,
                api_networks=_networks(form),
            ),
        )

    def delete_model(self, model: Any) -> Any:
        return self.run_service(None, lambda: admins.delete_admin(actor=actor(), admin_id=model.id))
