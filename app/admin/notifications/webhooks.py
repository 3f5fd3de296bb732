"""Console: Settings > Notification Webhooks, and their attempt log."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup
from wtforms import (
    BooleanField,
    SelectField,
    StringField,
)

from app.admin.base import (
    AdminForm,
    SecureModelView,
    actor,
    apply_errors,
    current_scope,
    select_choices,
)
from app.admin.choices import org_choices
from app.extensions import db
from app.models import (
    NotificationWebhook,
)
from app.services.errors import DomainError
from app.services.notifications import webhooks
from app.services.scope import Scope


def _hook_rules(view: Any, context: Any, model: NotificationWebhook, name: str) -> str:
    return ", ".join(r.name for r in webhooks.rules_using(model.id)) or "no rule"


class WebhookForm(AdminForm):
    name = StringField("Name")
    url = StringField("URL", description="JSON is POSTed here, signed (X-Certwright-Signature).")
    organization_id = SelectField("Organization", choices=[])
    enabled = BooleanField("Enabled", default=True)
    rotate_secret = BooleanField("Replace the signing secret")


class NotificationWebhookView(SecureModelView):
    """Settings > Notification Webhooks: where webhook notices go, and their delivery log."""

    column_list = ("name", "url", "organization", "enabled", "rules")
    column_labels = {
        "url": "Address (URL)",
        "organization": "Owner",
        "enabled": "Active",
        "rules": "Used by rules",
    }
    column_formatters = {
        "organization": lambda v, c, m, n: (
            m.organization.name if m.organization else "Account (MRAO)"
        ),
        "rules": _hook_rules,
    }
    details_template = "admin/notifications/webhook_details.html"
    form_template = "admin/notifications/webhook_form.html"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NotificationWebhook, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        return webhooks.visible_webhooks_clause(scope)

    def _form(self, hook: NotificationWebhook | None) -> WebhookForm:
        form = WebhookForm()
        scope = current_scope()
        owners = [("", "Account (MRAO)")] if scope.is_master else []
        form.organization_id.choices = select_choices(
            owners + [(str(i), n) for i, n in org_choices(managed_only=True)]
        )
        if request.method == "GET" and hook is not None:
            form.name.data, form.url.data, form.enabled.data = hook.name, hook.url, hook.enabled
            form.organization_id.data = str(hook.organization_id or "")
        return form

    def _edit(self, hook: NotificationWebhook | None) -> Any:
        form = self._form(hook)
        if request.method == "POST" and form.validate():
            try:
                if hook is None:
                    owner = form.organization_id.data or ""
                    hook, secret = webhooks.create_webhook(
                        actor=actor(),
                        name=form.name.data or "",
                        url=form.url.data or "",
                        organization_id=int(owner) if owner.isdigit() else None,
                    )
                else:
                    hook, secret = webhooks.update_webhook(
                        actor=actor(),
                        webhook_id=hook.id,
                        name=form.name.data or "",
                        url=form.url.data or "",
                        enabled=bool(form.enabled.data),
                        rotate_secret=bool(form.rotate_secret.data),
                    )
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                apply_errors(form, exc)
            else:
                if secret:
                    flash(
                        Markup("Saved. The signing secret, shown only now: <code>{}</code>").format(
                            secret
                        ),
                        "success",
                    )
                else:
                    flash(f"Saved the webhook '{hook.name}'.", "success")
                return redirect(url_for(".details_view", id=hook.id))
        return self.render(self.form_template, form=form, hook=hook)

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        return self._edit(None)

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self) -> Any:
        hook = self.get_one(request.args.get("id"))
        if hook is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        return self._edit(hook)

    @expose("/details/")
    def details_view(self) -> Any:
        hook = self.get_one(request.args.get("id"))
        if hook is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        return self.render(self.details_template, hook=hook, log=webhooks.attempt_log(hook.id))

    def delete_model(self, model: NotificationWebhook) -> Any:
        return self.run_service(
            None, lambda: webhooks.delete_webhook(actor=actor(), webhook_id=model.id)
        )
