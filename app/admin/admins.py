"""Console: Admins (MRAO / RAO / DRAO with scopes and privileges)."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup
from wtforms import BooleanField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from app.admin.base import AdminForm, SecureModelView, actor, select_choices
from app.admin.choices import parse_target, target_choices
from app.admin.fields import Place, ScopeGrantsField
from app.models import Admin, AdminKind, CertType, Role
from app.services.accounts import admins
from app.services.scope import Scope

ROLE_HELP = (
    "DRAO: departments. RAO: whole organizations. MRAO: the whole account. Start with the "
    "least that does the job; you can widen it later."
)
SCOPE_HELP = (
    "Tick the organizations (for an RAO) or departments (for a DRAO) and, on each, the "
    "certificate types this administrator may manage."
)
FORCE_HELP = "They choose their own password before they can use the console."
KIND_CHOICES = [
    (AdminKind.STANDARD.value, "Standard (signs in to the console)"),
    (AdminKind.API.value, "API (REST API calls only, no console sign-in)"),
]
NETWORKS_HELP = "API accounts: the networks calls may come from (CIDR), one a line; empty = any"


def _networks(form: Any) -> list[str]:
    return (form.api_networks.data or "").replace(",", "\n").splitlines()


# No required-field validators here: the accounts service checks every field and reports
# all problems at once (an empty login, a weak password and a missing scope together).
class AdminCreateForm(AdminForm):
    login = StringField("Login", validators=[Length(max=64)])
    email = StringField("Email", validators=[Length(max=254)])
    full_name = StringField("Full name", validators=[Length(max=128)])
    role = SelectField("Role", description=ROLE_HELP)
    scopes = ScopeGrantsField("Scopes and privileges", description=SCOPE_HELP)
    kind = SelectField(
        "Type", choices=select_choices(KIND_CHOICES), default=AdminKind.STANDARD.value
    )
    api_networks = TextAreaField("Source networks", description=NETWORKS_HELP)
    password = PasswordField("Password", description="At least 12 characters")
    must_change_password = BooleanField(
        "Must change the password at first sign-in", default=True, description=FORCE_HELP
    )


class AdminEditForm(AdminForm):
    email = StringField("Email", validators=[Length(max=254)])
    full_name = StringField("Full name", validators=[Length(max=128)])
    role = SelectField("Role", description=ROLE_HELP)
    active = BooleanField("Active")
    scopes = ScopeGrantsField("Scopes and privileges", description=SCOPE_HELP)
    api_networks = TextAreaField("Source networks", description=NETWORKS_HELP)
    new_password = PasswordField(
        "Set a new password",
        validators=[Optional()],
        description="Leave empty to keep the current one; the admin's sessions are signed out",
    )
    must_change_password = BooleanField(
        "With a new password: must change it at the next sign-in",
        default=True,
        description=FORCE_HELP,
    )


def _scopes_html(view: Any, context: Any, model: Admin, name: str) -> Markup:
    if model.is_master:
        return Markup('<span class="text-muted">account-wide</span>')
    return Markup("<br>").join(str(s) for s in model.scopes)


TYPE_VALUES = {t.value for t in CertType}


def _grants(form: Any) -> list[admins.Grant]:
    grants = []
    for value, types in (form.scopes.data or {}).items():
        org_id, dept_id = parse_target(value)
        privileges = frozenset(CertType(t) for t in types if t in TYPE_VALUES)
        grants.append(admins.Grant(org_id, dept_id, privileges))
    return grants


def _places() -> list[Place]:
    """Organizations with their departments under them, as the scope picker lists them."""
    orgs = {value: label for value, label in target_choices() if value.startswith("o:")}
    depts = [(value, label) for value, label in target_choices() if value.startswith("d:")]
    by_org: dict[str, list[Place]] = {}
    for value, label in depts:
        by_org.setdefault(label.split(" / ", 1)[0], []).append(
            Place(value, label, "department (DRAO)", True)
        )
    places: list[Place] = []
    names = sorted(
        {*(label.removesuffix(" (whole organization)") for label in orgs.values()), *by_org},
        key=str.lower,
    )
    org_value = {
        label.removesuffix(" (whole organization)"): value for value, label in orgs.items()
    }
    for name in names:
        if name in org_value:
            places.append(Place(org_value[name], name, "whole organization (RAO)", False))
        places.extend(by_org.get(name, []))
    return places


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
    record_noun = "Administrator"
    search_hint = "Search by login, email or name"
    empty_text = "No administrators besides you."
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
        "must_change_password",
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
        # Least powerful first, and chosen by default: nobody gets more than asked for.
        roles = sorted((r for r in Role if r.rank <= me.role.rank), key=lambda r: r.rank)
        form.role.choices = select_choices((r.value, r.value) for r in roles)
        form.scopes.places = _places()
        form.scopes.types = [(t.value, t.label) for t in CertType]
        if request.method == "GET":
            if obj is None:
                form.role.data = roles[0].value
            else:
                form.role.data = obj.role.value
                # A password set for someone else is theirs to replace (unticked: keep it).
                form.must_change_password.data = obj.id != me.id
                form.scopes.data = {
                    (f"d:{s.department_id}" if s.department_id else f"o:{s.organization_id}"): {
                        t.value for t in s.privileges()
                    }
                    for s in obj.scopes
                }
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
                must_change_password=form.must_change_password.data,
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
                must_change_password=form.must_change_password.data,
                api_networks=_networks(form),
            ),
        )

    def delete_model(self, model: Any) -> Any:
        return self.run_service(None, lambda: admins.delete_admin(actor=actor(), admin_id=model.id))
