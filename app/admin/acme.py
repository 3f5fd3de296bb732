"""Console: Settings > ACME accounts: the EAB keys ACME clients register with (create,
shown once with the client commands; revoke), and the accounts registered with them."""

from __future__ import annotations

from typing import Any

from flask import flash, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from sqlalchemy import select
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from app.admin.base import AdminForm, SecureModelView, actor, current_scope, select_choices
from app.admin.choices import parse_target, target_choices
from app.extensions import db
from app.ids import parse_id
from app.models import AcmeExternalKey, CertificateProfile
from app.services.acme import external_keys
from app.services.errors import DomainError
from app.services.scope import Scope


class AcmeKeyForm(AdminForm):
    label = StringField(
        "Label",
        validators=[Length(max=128)],
        description="What the key is for, e.g. 'web servers of the Berlin office'",
    )
    target = SelectField(
        "Organization / department",
        validators=[DataRequired()],
        validate_choice=False,
        description="Accounts registered with this key order certificates for names "
        "delegated here (SSL)",
    )


def _status(view: Any, context: Any, model: AcmeExternalKey, name: str) -> str:
    return "Revoked" if model.is_revoked else "Active"


def directories() -> list[tuple[str, str]]:
    """(profile name, directory URL) of every active ACME-enabled profile."""
    rows = db.session.execute(
        select(CertificateProfile)
        .where(CertificateProfile.acme_slug.is_not(None), CertificateProfile.active.is_(True))
        .order_by(CertificateProfile.name)
    ).scalars()
    return [(p.name, url_for("acme.directory", slug=p.acme_slug, _external=True)) for p in rows]


class AcmeKeyView(SecureModelView):
    record_noun = "ACME key"
    empty_text = (
        "No ACME keys yet. An ACME client (certbot, lego, acme.sh) registers an account with "
        "an external account binding key created here; the account then orders certificates "
        "for the names delegated to the key's organization or department."
    )
    column_list = (
        "key_id",
        "label",
        "organization",
        "department",
        "status",
        "created_at",
        "revoked_at",
    )
    column_labels = {
        "key_id": "EAB key id",
        "label": "What it is for",
        "status": "Status",
        "revoked_at": "Revoked",
    }
    column_formatters = {"status": _status}
    column_searchable_list = ("key_id", "label")
    column_default_sort = ("created_at", True)
    column_details_list = column_list
    can_edit = False
    can_delete = False

    def scope_clause(self, scope: Scope) -> Any:
        return scope.row_filter(AcmeExternalKey.organization_id, AcmeExternalKey.department_id)

    def get_create_form(self) -> Any:
        return AcmeKeyForm

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        form.target.choices = select_choices(target_choices())
        return form

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        """The HMAC key is shown on the page that answers the creation, once: it is never
        stored readable, put in a flash (a cookie) or shown again."""
        form = self.prepare_form(AcmeKeyForm())
        if request.method == "POST" and form.validate():
            org_id, dept_id = parse_target(form.target.data or "")
            created = self.run_service(
                form,
                lambda: external_keys.create_key(
                    actor=actor(),
                    organization_id=org_id,
                    department_id=dept_id,
                    label=form.label.data or "",
                ),
            )
            if created:
                return self.render(
                    "admin/acme_key_created.html",
                    key=created.key,
                    hmac_key=created.hmac_key,
                    directories=directories(),
                )
        return self.render(
            "admin/model/create.html",
            form=form,
            form_opts=None,
            return_url=url_for(".index_view"),
        )

    @action("revoke", "Revoke", "Revoke the selected ACME keys? Their accounts stop working.")
    def action_revoke(self, ids: list[str]) -> None:
        done = 0
        for raw in ids:
            key_id = parse_id(raw)
            if key_id is None:
                continue
            try:
                external_keys.revoke_key(actor=actor(), key_id=key_id)
                db.session.commit()
                done += 1
            except DomainError as exc:
                db.session.rollback()
                flash(exc.message, "error")
        if done:
            flash(f"{done} ACME key{'s' if done != 1 else ''} revoked.", "success")

    def is_action_allowed(self, name: str) -> bool:
        if name == "revoke":
            return bool(current_scope().is_master or current_scope().orgs or current_scope().depts)
        return bool(super().is_action_allowed(name))
