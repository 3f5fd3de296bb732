"""Console: Settings > Notifications, the rules (with preview and "send a sample to me")."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from sqlalchemy import select
from wtforms import (
    BooleanField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import Optional

from app.admin.base import (
    AdminForm,
    SecureModelView,
    actor,
    apply_errors,
    current_scope,
    select_choices,
)
from app.admin.choices import parse_target, target_choices
from app.extensions import db
from app.models import (
    CertificateProfile,
    NotificationRule,
    NotificationType,
    NotificationWebhook,
    RecipientRole,
)
from app.notices import thresholds
from app.services.errors import DomainError, ValidationFailed
from app.services.notifications import rules, samples, sweep, webhooks
from app.services.scope import Scope

TYPE_CHOICES = [(t.value, t.label) for t in NotificationType]
ROLE_CHOICES = [(r.value, r.label) for r in RecipientRole]
FREQUENCY_CHOICES = [
    ("threshold", "Once per threshold"),
    ("daily", "Every day while inside the window"),
]


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip()]


class RuleForm(AdminForm):
    name = StringField("Description")
    type = SelectField("Type", choices=select_choices(TYPE_CHOICES))
    enabled = BooleanField("Enabled", default=True)
    applies_to_all = BooleanField("Every organization (MRAO only)")
    places = SelectMultipleField("Organizations and departments", choices=[])
    profile_ids = SelectMultipleField(
        "Certificate profiles", choices=[], description="None chosen: certificates of any profile."
    )
    days = StringField(
        "Days in advance",
        default="60, 30, 14, 7, 1",
        description="Expiry types: a notice at each threshold; 0 = when it has expired.",
    )
    frequency = SelectField("Frequency", choices=select_choices(FREQUENCY_CHOICES))
    roles = SelectMultipleField("Recipients by role", choices=select_choices(ROLE_CHOICES))
    subscribers = TextAreaField(
        "Extra subscribers",
        description="E-mail addresses, one per line, inside or outside the account.",
    )
    send_email = BooleanField("Send e-mail", default=True)
    webhook_ids = SelectMultipleField("Webhooks", choices=[])
    digest = BooleanField(
        "Daily digest",
        description="Recipients get one mail a day listing every notice instead of one mail each; "
        "each can switch from the link in their mails.",
    )
    escalate_after_hours = IntegerField(
        "Escalate after (hours)",
        validators=[Optional()],
        description="Expiry types: when an alert inside the last threshold is still unacknowledged.",
    )
    escalate_roles = SelectMultipleField("Escalate to roles", choices=select_choices(ROLE_CHOICES))
    escalate_subscribers = TextAreaField("Escalate to addresses")


def _rule_data(form: RuleForm) -> rules.RuleData:
    # Days before expiry mean something only to expiry rules, and the service asks for them
    # there: an empty field is no days, not an error (an event rule has none).
    text = form.days.data or ""
    try:
        days = thresholds.parse_days(text) if text.strip() else []
    except thresholds.ThresholdError as exc:
        raise ValidationFailed({"days": [str(exc)]}) from None
    return rules.RuleData(
        name=form.name.data or "",
        type=form.type.data or "",
        enabled=bool(form.enabled.data),
        applies_to_all=bool(form.applies_to_all.data),
        places=[parse_target(v) for v in form.places.data or []],
        profile_ids=[int(v) for v in form.profile_ids.data or [] if str(v).isdigit()],
        days=days,
        frequency=form.frequency.data or "threshold",
        roles=list(form.roles.data or []),
        subscribers=_lines(form.subscribers.data),
        send_email=bool(form.send_email.data),
        webhook_ids=[int(v) for v in form.webhook_ids.data or [] if str(v).isdigit()],
        digest=bool(form.digest.data),
        escalate_after_hours=form.escalate_after_hours.data,
        escalate_roles=list(form.escalate_roles.data or []),
        escalate_subscribers=_lines(form.escalate_subscribers.data),
    )


def _fill(form: RuleForm, rule: NotificationRule) -> None:
    form.name.data = rule.name
    form.type.data = rule.type.value
    form.enabled.data = rule.enabled
    form.applies_to_all.data = rule.applies_to_all
    form.places.data = [
        f"d:{p.department_id}" if p.department_id else f"o:{p.organization_id}" for p in rule.places
    ]
    form.profile_ids.data = [str(p) for p in rule.profile_ids]
    form.days.data = ", ".join(str(d) for d in rule.days) or "60, 30, 14, 7, 1"
    form.frequency.data = rule.frequency.value
    form.roles.data = list(rule.roles)
    form.subscribers.data = "\n".join(rule.subscribers)
    form.send_email.data = rule.send_email
    form.webhook_ids.data = [str(w) for w in rule.webhook_ids]
    form.digest.data = rule.digest
    form.escalate_after_hours.data = rule.escalate_after_hours
    form.escalate_roles.data = list(rule.escalate_roles)
    form.escalate_subscribers.data = "\n".join(rule.escalate_subscribers)


def _channels(view: Any, context: Any, model: NotificationRule, name: str) -> str:
    parts = []
    if model.send_email:
        parts.append("e-mail" + (" (digest)" if model.digest else ""))
    if model.webhook_ids:
        parts.append(f"{len(model.webhook_ids)} webhook(s)")
    return ", ".join(parts)


def _recipients(view: Any, context: Any, model: NotificationRule, name: str) -> str:
    labels = [RecipientRole(r).label for r in model.roles]
    if model.subscribers:
        labels.append(f"{len(model.subscribers)} subscriber(s)")
    return "; ".join(labels)


class NotificationRuleView(SecureModelView):
    """Settings > Notifications: MRAO for any scope, RAO/DRAO for theirs."""

    column_list = ("name", "type", "scope", "days", "channels", "recipients", "enabled")
    column_labels = {
        "name": "Description",
        "type": "Notification type",
        "scope": "Applies to",
        "days": "Days in advance",
        "channels": "Sent by",
        "recipients": "Who is told",
        "enabled": "Active",
    }
    column_details_list = column_list
    column_searchable_list = ("name",)
    column_sortable_list = ("name", "type", "enabled")
    column_default_sort = "name"
    column_formatters = {
        "type": lambda v, c, m, n: m.type.label,
        "scope": lambda v, c, m, n: rules.scope_text(m),
        "days": lambda v, c, m, n: ", ".join(str(d) for d in m.days) if m.days else "—",
        "channels": _channels,
        "recipients": _recipients,
    }
    form_template = "admin/notifications/rule_form.html"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NotificationRule, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        visible = rules.visible_rules_clause(scope)
        live = NotificationRule.deleted_at.is_(None)
        return live if visible is None else live & visible

    def _form(self, rule: NotificationRule | None) -> RuleForm:
        form = RuleForm()
        scope = current_scope()
        form.places.choices = select_choices(target_choices(managed_only=True))
        form.profile_ids.choices = select_choices(
            (str(p.id), f"{p.name} ({p.cert_type.label})")
            for p in db.session.execute(
                select(CertificateProfile).order_by(CertificateProfile.name)
            ).scalars()
        )
        hooks = select(NotificationWebhook).order_by(NotificationWebhook.name)
        clause = webhooks.visible_webhooks_clause(scope)
        if clause is not None:
            hooks = hooks.where(clause)
        form.webhook_ids.choices = select_choices(
            (str(h.id), h.name) for h in db.session.execute(hooks).scalars()
        )
        if request.method == "GET" and rule is not None:
            _fill(form, rule)
        return form

    def _edit(self, rule: NotificationRule | None) -> Any:
        form = self._form(rule)
        preview: tuple[int, list[sweep.PreviewRow]] | None = None
        if request.method == "POST" and "sample" in request.form and rule is not None:
            # The saved rule, not the form (CSRFProtect has checked the token).
            self.run_service(
                None,
                lambda: samples.send_sample(actor=actor(), rule_id=rule.id),
                success=f"A sample is on its way to {actor().email}.",
            )
            return redirect(url_for(".edit_view", id=rule.id))
        if request.method == "POST" and form.validate():
            try:
                data = _rule_data(form)
                if "preview" in request.form:
                    draft = rules.draft_rule(
                        actor=actor(), data=data, rule_id=rule.id if rule else None
                    )
                    preview = sweep.preview(draft) if draft.type.is_expiry else (0, [])
                    db.session.rollback()
                else:
                    saved = rules.save_rule(
                        actor=actor(), data=data, rule_id=rule.id if rule else None
                    )
                    db.session.commit()
                    flash(f"Saved the notification rule '{saved.name}'.", "success")
                    return redirect(url_for(".index_view"))
            except DomainError as exc:
                db.session.rollback()
                apply_errors(form, exc)
        return self.render(self.form_template, form=form, rule=rule, preview=preview)

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

    def delete_model(self, model: NotificationRule) -> Any:
        return self.run_service(None, lambda: rules.delete_rule(actor=actor(), rule_id=model.id))
