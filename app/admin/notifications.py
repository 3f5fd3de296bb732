"""Console: Settings > Notifications (rules, with preview and "send a sample to me"),
Settings > Notification Webhooks, Reports > Sent Notifications."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import DateTimeBetweenFilter, FilterEqual, FilterLike
from markupsafe import Markup
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload
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
    per_request,
    select_choices,
)
from app.admin.choices import org_choices, parse_target, target_choices
from app.extensions import db
from app.models import (
    CertificateProfile,
    Channel,
    DeliveryStage,
    DeliveryStatus,
    NotificationDelivery,
    NotificationRule,
    NotificationType,
    NotificationWebhook,
    OutboxMessage,
    RecipientRole,
    WebhookMessage,
)
from app.notices import thresholds
from app.services.errors import DomainError, ValidationFailed
from app.services.notifications import acknowledgements, rules, samples, sweep, webhooks
from app.services.platform import mail
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


# --- Reports > Sent Notifications ---------------------------------------------------------------


def delivery_status(model: NotificationDelivery) -> str:
    """What happened to the notice: the delivery's own state until composed, then its
    message's (mail: outbox/queued/sent/failed; webhook: queued/sent/failed)."""
    if model.status != DeliveryStatus.COMPOSED:
        return model.status.value
    if model.outbox_message is not None:
        return model.outbox_message.status.value
    if model.webhook_message is not None:
        return model.webhook_message.status.value
    return model.status.value


def delivery_attempts(model: NotificationDelivery) -> int:
    message = model.outbox_message or model.webhook_message
    return message.attempts if message is not None else 0


def delivery_error(model: NotificationDelivery) -> str:
    message = model.outbox_message or model.webhook_message
    return (message.error if message is not None and message.error else "") or model.error


def delivery_subject(model: NotificationDelivery) -> str:
    if model.event is not None:
        return model.event.label
    if model.certificate is not None:
        return model.certificate.common_name or model.certificate.fingerprint[:16]
    return ""


def _recipient(model: NotificationDelivery) -> str:
    if model.channel == Channel.WEBHOOK:
        hook = db.session.get(NotificationWebhook, int(model.recipient.split(":", 1)[1]))
        return f"webhook {hook.name}" if hook is not None else model.recipient
    return model.recipient


STATUS_CHOICES = [
    ("sent", "sent"),
    ("failed", "failed (dead letter)"),
    ("queued", "queued (being delivered)"),
    ("outbox", "kept in the outbox (no SMTP)"),
    ("pending", "pending (not composed yet)"),
    ("refused", "refused (invalid recipient)"),
    ("suppressed", "suppressed (acknowledged or snoozed)"),
]


class _StatusFilter(FilterEqual):
    """The status Sent Notifications shows: the delivery's own until composed, then its
    mail's or webhook message's."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        if value in (DeliveryStatus.PENDING, DeliveryStatus.REFUSED, DeliveryStatus.SUPPRESSED):
            return query.filter(NotificationDelivery.status == value)
        mails = select(OutboxMessage.id).where(OutboxMessage.status == value)
        posts = select(WebhookMessage.id).where(WebhookMessage.status == value)
        return query.filter(
            or_(
                NotificationDelivery.outbox_message_id.in_(mails),
                NotificationDelivery.webhook_message_id.in_(posts),
            )
        )


class _TypeFilter(FilterEqual):
    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        rules_of_type = select(NotificationRule.id).where(NotificationRule.type == value)
        return query.filter(NotificationDelivery.rule_id.in_(rules_of_type))


def _rule_choices() -> list[tuple[int, str]]:
    query = rules.live_rules().order_by(NotificationRule.name)
    clause = rules.visible_rules_clause(current_scope())
    if clause is not None:
        query = query.where(clause)
    return [(r.id, r.name) for r in db.session.execute(query).scalars()]


class SentNotificationView(SecureModelView):
    """Reports > Sent Notifications: every delivery, filter, export to CSV."""

    can_create = False
    can_edit = False
    can_delete = False
    can_export = True
    export_types = ["csv"]
    column_list = (
        "created_at",
        "rule.name",
        "rule.type",
        "subject",
        "threshold",
        "stage",
        "channel",
        "recipient",
        "delivery_status",
        "attempts",
        "error",
        "sent_at",
    )
    column_export_list = column_list
    column_details_list = column_list
    column_labels = {
        "created_at": "Due",
        "rule.name": "Rule",
        "rule.type": "Type",
        "subject": "About",
        "threshold": "Days before expiry",
        "stage": "Notice",
        "channel": "Sent by",
        "recipient": "Sent to",
        "delivery_status": "Status",
        "sent_at": "Sent",
    }
    column_sortable_list = ("created_at", "channel", "recipient", "threshold")
    column_default_sort = ("created_at", True)
    column_searchable_list = ("recipient",)

    def get_filters(self) -> Any:
        return [
            DateTimeBetweenFilter(NotificationDelivery.created_at, "Due"),
            FilterEqual(NotificationDelivery.rule_id, "Rule", options=per_request(_rule_choices)),
            _TypeFilter(NotificationDelivery.rule_id, "Type", options=TYPE_CHOICES),
            FilterEqual(
                NotificationDelivery.channel,
                "Channel",
                options=[(c.value, c.value) for c in Channel],
            ),
            FilterLike(NotificationDelivery.recipient, "Recipient"),
            _StatusFilter(NotificationDelivery.status, "Status", options=STATUS_CHOICES),
        ]

    column_formatters = {
        "rule.type": lambda v, c, m, n: m.rule.type.label,
        "subject": lambda v, c, m, n: delivery_subject(m),
        "threshold": lambda v, c, m, n: m.threshold if m.event_id is None else "",
        "stage": lambda v, c, m, n: DeliveryStage(m.stage).name.lower(),
        "recipient": lambda v, c, m, n: _recipient(m),
        "delivery_status": lambda v, c, m, n: delivery_status(m),
        "attempts": lambda v, c, m, n: delivery_attempts(m),
        "error": lambda v, c, m, n: delivery_error(m),
        "sent_at": lambda v, c, m, n: (
            (m.outbox_message or m.webhook_message).sent_at
            if (m.outbox_message or m.webhook_message) is not None
            else None
        ),
    }
    column_formatters_export = column_formatters

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NotificationDelivery, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        return acknowledgements.visible_deliveries_clause(scope)

    def get_query(self) -> Any:
        # Every row shows its rule, subject and message: load them with it (the CSV export
        # also reads them after the request's session is gone).
        return (
            super()
            .get_query()
            .options(
                joinedload(NotificationDelivery.rule),
                joinedload(NotificationDelivery.certificate),
                joinedload(NotificationDelivery.event),
                joinedload(NotificationDelivery.outbox_message),
                joinedload(NotificationDelivery.webhook_message),
            )
        )

    def _visible(self, ids: list[str]) -> list[NotificationDelivery]:
        return [d for d in (self.get_one(i) for i in ids) if d is not None]

    @action(
        "acknowledge",
        "Acknowledge",
        "Stop further reminders of these rules for these certificates?",
    )
    def action_acknowledge(self, ids: list[str]) -> None:
        chosen = [d.id for d in self._visible(ids)]
        self.run_service(
            None,
            lambda: acknowledgements.acknowledge_deliveries(actor=actor(), delivery_ids=chosen),
            success=lambda n: f"Acknowledged {n} certificate alert(s): no more reminders for them.",
        )

    @action("snooze", "Snooze 7 days", "No reminders for these certificates for 7 days?")
    def action_snooze(self, ids: list[str]) -> None:
        chosen = [d.id for d in self._visible(ids)]
        self.run_service(
            None,
            lambda: acknowledgements.acknowledge_deliveries(
                actor=actor(), delivery_ids=chosen, snooze_days=7
            ),
            success=lambda n: f"Snoozed {n} certificate alert(s) for 7 days.",
        )

    @action(
        "resend",
        "Resend failed",
        "Queue the failed mails and webhook messages of these deliveries again?",
    )
    def action_resend(self, ids: list[str]) -> None:
        chosen = self._visible(ids)

        def resend_all() -> int:
            count = 0
            for message_id in sorted(
                {
                    d.outbox_message_id
                    for d in chosen
                    if d.outbox_message_id and delivery_status(d) == "failed"
                }
            ):
                mail.resend(actor=actor(), message_id=message_id)
                count += 1
            for message_id in sorted(
                {
                    d.webhook_message_id
                    for d in chosen
                    if d.webhook_message_id and delivery_status(d) == "failed"
                }
            ):
                webhooks.resend(actor=actor(), message_id=message_id)
                count += 1
            if not count:
                raise DomainError("None of the selected deliveries has a failed message to resend.")
            return count

        self.run_service(None, resend_all, success=lambda n: f"{n} message(s) queued again.")


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
