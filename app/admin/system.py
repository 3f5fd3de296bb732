"""Console: Reports > Account Activity, About, Background Jobs, Mail Outbox, My Profile."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import available_timezones

from flask import current_app, flash, jsonify, redirect, request, session, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import DateTimeBetweenFilter, FilterEqual, FilterLike
from markupsafe import Markup
from sqlalchemy import func, or_, select
from wtforms import PasswordField, SelectField
from wtforms.validators import DataRequired

from app.admin import display
from app.admin.auth import SESSION_KEY, safe_next
from app.admin.base import (
    AdminForm,
    SecureModelView,
    SecureView,
    actor,
    apply_errors,
    current_scope,
    per_request,
    select_choices,
)
from app.config import broker_kind
from app.extensions import db
from app.models import AuditEvent, Job, JobStatus, OutboxMessage, Role
from app.services.accounts import admins
from app.services.errors import DomainError
from app.services.platform import jobs, processes
from app.services.scope import Scope
from app.version import __version__


def _json(view: Any, context: Any, model: Any, name: str) -> Any:
    value = getattr(model, name)
    return display.compact_json(value) if value else ""


def _json_full(view: Any, context: Any, model: Any, name: str) -> Any:
    value = getattr(model, name)
    if not value:
        return ""
    return Markup("<pre class='mb-0'>{}</pre>").format(
        json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False)
    )


class AuditView(SecureModelView):
    """Account Activity: every sign-in and change. Read-only, MRAO only."""

    roles = (Role.MRAO,)
    can_create = False
    can_edit = False
    can_delete = False
    can_export = True
    export_types = ["csv"]
    column_list = (
        "seq",
        "at",
        "actor",
        "ip",
        "action",
        "object_type",
        "object_label",
        "message",
        "before",
        "after",
    )
    column_labels = {
        "seq": "#",
        "at": "When",
        "ip": "Source IP",
        "object_type": "Object",
        "object_label": "Name",
    }
    column_searchable_list = ("actor", "action", "object_label", "message", "ip")
    column_sortable_list = ("seq", "at", "actor", "action")
    column_default_sort = ("seq", True)
    column_formatters = {"before": _json, "after": _json}
    column_formatters_detail = {"before": _json_full, "after": _json_full}
    list_template = "admin/audit_list.html"
    record_noun = "Event"
    empty_text = "No activity recorded yet."
    search_hint = "Search by actor, action, object, message or source IP"
    column_details_list = (
        "seq",
        "at",
        "actor",
        "actor_id",
        "ip",
        "action",
        "object_type",
        "object_id",
        "object_label",
        "organization_id",
        "department_id",
        "message",
        "before",
        "after",
        "prev_hash",
        "hash",
    )
    page_size = 100

    def get_filters(self) -> Any:
        actions = per_request(
            lambda: [
                (a, a)
                for a in db.session.execute(
                    select(AuditEvent.action).distinct().order_by(AuditEvent.action)
                ).scalars()
            ]
        )
        return [
            FilterEqual(AuditEvent.action, "Action", options=actions),
            FilterLike(AuditEvent.actor, "Actor"),
            DateTimeBetweenFilter(AuditEvent.at, "When"),
        ]

    def get_export_value(self, model: Any, name: str) -> Any:
        value = getattr(model, name, "")
        if name in ("before", "after") and isinstance(value, dict | list):
            return json.dumps(value, sort_keys=True, ensure_ascii=False)
        return super().get_export_value(model, name)

    @expose("/verify/", methods=("POST",))
    def verify_view(self) -> Any:
        job = jobs.create_job(kind="audit_verify", actor=actor())
        db.session.commit()
        # The list shows the job's outcome in place when it is done (no reload needed).
        return redirect(url_for(".index_view", verify=job.id))

    def render(self, template: str, **kwargs: Any) -> Any:
        raw = request.args.get("verify", "")
        job = db.session.get(Job, int(raw)) if raw.isdigit() and len(raw) < 19 else None
        if job is not None and job.kind == "audit_verify":
            kwargs["verify_job"] = job
            kwargs["verify_state"] = job_state(job)
        return super().render(template, **kwargs)


def _job_status(view: Any, context: Any, model: Job, name: str) -> Markup:
    badge = {
        "pending": "secondary",
        "running": "primary",
        "done": "success",
        "failed": "danger",
        "cancelled": "warning",
    }[model.status.value]
    text = model.status.value
    if model.status == JobStatus.RUNNING:
        text += f" {model.progress}%"
    return Markup('<span class="badge badge-{}" data-job-status="{}">{}</span>').format(
        badge, model.status.value, text
    )


JOB_BADGE = {
    "pending": "secondary",
    "running": "primary",
    "done": "success",
    "failed": "danger",
    "cancelled": "warning",
}


def job_state(job: Job) -> dict[str, Any]:
    """A job as the live status element shows it: its state, its message, its page."""
    status = job.status.value
    label = status.capitalize() + (f" {job.progress}%" if job.status == JobStatus.RUNNING else "")
    text = job.message or ("Waiting for a worker…" if job.status == JobStatus.PENDING else "")
    if job.kind == "audit_verify" and job.status == JobStatus.DONE and job.result:
        ok = job.result.get("ok")
        label = "Intact" if ok else "Broken"
        text = (
            f"The hash chain is intact: {job.result.get('rows', 0)} events verified."
            if ok
            else f"The hash chain is broken: {job.message}"
        )
    return {
        "state": label,
        "badge": JOB_BADGE[status] if label not in ("Broken",) else "danger",
        "final": job.status.is_final,
        "text": text,
        "links": [{"href": url_for("jobs.details_view", id=job.id), "label": f"job #{job.id}"}],
    }


class JobView(SecureModelView):
    can_create = False
    can_edit = False
    can_delete = False
    column_list = (
        "id",
        "kind",
        "status",
        "progress",
        "message",
        "attempts",
        "created_at",
        "finished_at",
    )
    column_labels = {"id": "#", "created_at": "Created", "finished_at": "Finished"}
    record_noun = "Job"
    empty_text = "No background jobs yet: scans, issuance and checks appear here while they run."
    search_hint = "Search by job kind or message"
    column_sortable_list = ("id", "kind", "status", "created_at", "finished_at")
    column_default_sort = ("id", True)
    column_formatters = {"status": _job_status}
    column_searchable_list = ("kind", "message")

    def scope_clause(self, scope: Scope) -> Any:
        if scope.is_master:
            return None
        parts = [Job.created_by_id == scope.admin_id]
        if scope.visible_org_ids:
            parts.append(Job.organization_id.in_(sorted(scope.orgs) or [-1]))
        return or_(*parts)

    def get_filters(self) -> Any:
        return [FilterEqual(Job.status, "Status", options=[(s.value, s.value) for s in JobStatus])]

    @expose("/status/")
    def status_view(self) -> Any:
        """Live status of the jobs named by ?ids= (only those the admin may see)."""
        ids = [
            int(i)
            for i in request.args.get("ids", "").split(",")[:100]
            if i.isdigit() and len(i) < 19
        ]
        self.record_foreign_ids(ids)
        rows = self.get_query().filter(Job.id.in_(ids or [-1])).all()
        return jsonify({str(j.id): job_state(j) for j in rows})

    @action("cancel", "Cancel", "Cancel the selected jobs?")
    def action_cancel(self, ids: list[str]) -> None:
        for raw in ids:
            job = self.get_one(raw)
            if job is None:
                continue
            self.run_service(
                None,
                lambda job_id=job.id: jobs.cancel(actor=actor(), job_id=job_id),
                success=f"Job #{job.id} cancelled.",
            )


class OutboxView(SecureModelView):
    """Mail kept in the outbox (no SMTP configured) and the delivery record of sent mail."""

    can_create = False
    can_edit = False
    can_delete = False
    column_list = (
        "id",
        "created_at",
        "to",
        "subject",
        "category",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "error",
    )
    column_details_list = (
        "id",
        "created_at",
        "to",
        "subject",
        "category",
        "status",
        "sent_at",
        "attempts",
        "next_attempt_at",
        "error",
        "body",
    )
    column_labels = {
        "id": "#",
        "created_at": "Created",
        "sent_at": "Sent",
        "to": "To",
        "next_attempt_at": "Next attempt",
    }
    record_noun = "Message"
    empty_text = "No mail yet: collection links, approvals and notices appear here."
    search_hint = "Search by recipient or subject"
    column_searchable_list = ("to", "subject")
    column_default_sort = ("id", True)
    column_formatters_detail = {"body": lambda v, c, m, n: Markup("<pre>{}</pre>").format(m.body)}

    def scope_clause(self, scope: Scope) -> Any:
        # An RAO reads the mail of their organizations, a DRAO that of their departments
        # (collection links included); mail about no organization is for MRAOs.
        return scope.row_filter(OutboxMessage.organization_id, OutboxMessage.department_id)


class AboutView(SecureView):
    @expose("/")
    def index(self) -> Any:
        alive = processes.live_processes()
        engine = db.engine
        counts = dict(
            db.session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        )
        return self.render(
            "admin/about.html",
            version=__version__,
            database=engine.dialect.name,
            database_url=engine.url.render_as_string(hide_password=True),
            broker=broker_kind(current_app.config["BROKER_URL"]),
            base_url=current_app.config["CW_BASE_URL"],
            base_url_source=current_app.config.get("CW_BASE_URL_SOURCE", "configuration"),
            pki_url=current_app.config.get("CW_PKI_URL") or "",
            workers=alive,
            job_counts={s.value if hasattr(s, "value") else s: n for s, n in counts.items()},
            smtp=current_app.config.get("SMTP_HOST") or "",
            kinds=sorted(jobs.KINDS.values(), key=lambda k: k.label),
            is_master=current_scope().is_master,
        )


class PasswordChangeForm(AdminForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField(
        "New password", validators=[DataRequired()], description="At least 12 characters"
    )
    confirm = PasswordField("Repeat the new password", validators=[DataRequired()])


ZONES = sorted(available_timezones())


class TimezoneForm(AdminForm):
    timezone = SelectField("Show times in", choices=select_choices((z, z) for z in ZONES))


class MyProfileView(SecureView):
    @expose("/timezone/", methods=("POST",))
    def timezone_view(self) -> Any:
        form = TimezoneForm()
        if form.validate_on_submit():
            self.run_service(
                None,
                lambda: admins.set_timezone(admin=actor(), timezone=form.timezone.data),
                success=f"Times are now shown in {form.timezone.data}.",
            )
        else:
            flash("Choose a time zone from the list.", "error")
        return redirect(url_for(".index"))

    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        me = actor()
        form = PasswordChangeForm()
        zone_form = TimezoneForm(timezone=me.timezone)
        if form.validate_on_submit():
            if form.new_password.data != form.confirm.data:
                form.confirm.errors = ["The two new passwords differ."]
            else:
                try:
                    admins.change_own_password(
                        admin=me,
                        current=form.current_password.data,
                        new=form.new_password.data,
                        keep_token=session.get(SESSION_KEY),
                    )
                    db.session.commit()
                    flash(
                        "Your password was changed; your other sessions were signed out.", "success"
                    )
                    return redirect(url_for(".index"))
                except DomainError as exc:
                    db.session.commit()  # the failed attempt stays in the audit log
                    apply_errors(form, exc)
        return self.render(
            "admin/profile.html", form=form, zone_form=zone_form, me=me, scopes=me.scopes
        )

    @expose("/dismiss-welcome/", methods=("POST",))
    def dismiss_welcome(self) -> Any:
        admins.dismiss_welcome(admin=actor())
        db.session.commit()

        return redirect(safe_next(request.form.get("next")))
