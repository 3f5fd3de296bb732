"""Reports > Scheduled Reports: a report on a recurrence (the shared schedule fields and
live preview of the discovery task form), mailed to recipients; list, create, edit, run
now, delete. Each admin sees their own schedules (an MRAO: everyone's); a report runs with
its owner's scope (app.services.reports.schedules)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_admin import expose
from sqlalchemy import select
from wtforms import IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from app import recurrence
from app.admin import display
from app.admin.base import SecureView, actor, select_choices
from app.admin.choices import parse_target, target_choices
from app.admin.discovery.forms import TaskForm, fill_schedule, format_run, schedule_data
from app.admin.reports import ReportForm, _profiles
from app.extensions import db
from app.ids import parse_id
from app.models import Admin, ReportSchedule
from app.services.errors import ValidationFailed
from app.services.reports import catalog, schedules
from app.services.reports.catalog import Filters


class ScheduledReportForm(ReportForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=120)])
    recipients = TextAreaField(
        "Recipients",
        validators=[InputRequired(), Length(max=5000)],
        description="Addresses the report is mailed to, separated by commas or new lines.",
    )
    period = SelectField(
        "Dates",
        choices=select_choices(schedules.PERIODS.items()),
        validate_choice=False,
        description="Relative to each run, on the date chosen under 'Dates apply to' (e.g. "
        "certificates expiring in the 30 days after each run).",
    )
    period_days = IntegerField(
        "Days", validators=[Optional(), NumberRange(1, schedules.MAX_PERIOD_DAYS)]
    )
    schedule_kind = TaskForm.schedule_kind
    schedule_time = TaskForm.schedule_time
    schedule_timezone = TaskForm.schedule_timezone
    schedule_weekday = TaskForm.schedule_weekday
    schedule_day_of_month = TaskForm.schedule_day_of_month
    schedule_month = TaskForm.schedule_month
    schedule_at = TaskForm.schedule_at


class ScheduledReportsView(SecureView):
    field_map = {
        "type": "report_type",
        "format": "fmt",
        "organization_id": "target",
        "department_id": "target",
        "profile_id": "profile",
        "schedule": "schedule_kind",
        "filters": "report_type",
    }

    @expose("/")
    def index(self) -> Any:
        items = schedules.visible_schedules(actor=actor())
        ids = {i.owner_id for i in items if i.owner_id is not None}
        rows = db.session.execute(select(Admin.id, Admin.login).where(Admin.id.in_(ids)))
        owners = {int(admin_id): str(login) for admin_id, login in rows}
        return self.render(
            "admin/reports/schedules.html",
            items=items,
            owners=owners,
            types=catalog.TYPES,
            describe=lambda item: recurrence.parse_schedule(item.schedule).describe(),
            next_run=schedules.next_run_at,
            max_bytes=schedules.mail_max_bytes(),
            link_hours=schedules.link_hours(),
        )

    def _form(self, item: ReportSchedule | None) -> ScheduledReportForm:
        form = ScheduledReportForm()
        fields = sorted({f for t in catalog.TYPES.values() for f in t.date_fields})
        statuses = sorted({s for t in catalog.TYPES.values() for s in t.statuses})
        form.date_field.choices = select_choices(
            [("", "the report's first"), *((f, f) for f in fields)]
        )
        form.status.choices = select_choices([("", "any"), *((s, s) for s in statuses)])
        form.target.choices = select_choices([("", "everything you may see"), *target_choices()])
        form.profile.choices = select_choices(_profiles())
        if request.method == "GET":
            if item is None:
                form.schedule_kind.data = "weekly"
                form.schedule_weekday.data = "0"
                form.schedule_time.data = "07:00"
                form.schedule_timezone.data = display.admin_zone().key
            else:
                self._fill(form, item)
        return form

    def _fill(self, form: ScheduledReportForm, item: ReportSchedule) -> None:
        filters = Filters.from_dict(item.filters or {})
        form.name.data = item.name
        form.report_type.data = item.report_type
        form.fmt.data = item.format
        form.bom.data = item.bom
        form.date_from.data = filters.date_from
        form.date_to.data = filters.date_to
        form.date_field.data = filters.date_field
        if filters.department_id is not None:
            form.target.data = f"d:{filters.department_id}"
        elif filters.organization_id is not None:
            form.target.data = f"o:{filters.organization_id}"
        form.status.data = filters.status
        form.profile.data = str(filters.profile_id or "")
        form.issuer.data = filters.issuer
        form.period.data = item.period
        form.period_days.data = item.period_days
        form.recipients.data = item.recipients
        fill_schedule(form, item.schedule or {})  # type: ignore[arg-type]

    def _data(self, form: ScheduledReportForm) -> schedules.ScheduleData:
        org_id, dept_id = parse_target(form.target.data) if form.target.data else (None, None)
        return schedules.ScheduleData(
            name=form.name.data or "",
            report_type=form.report_type.data or "",
            fmt=form.fmt.data or "csv",
            bom=bool(form.bom.data),
            filters=Filters(
                date_from=form.date_from.data,
                date_to=form.date_to.data,
                date_field=form.date_field.data or "",
                organization_id=org_id,
                department_id=dept_id,
                status=form.status.data or "",
                profile_id=parse_id(form.profile.data),
                issuer=(form.issuer.data or "").strip(),
            ),
            schedule=schedule_data(form),
            recipients=form.recipients.data or "",
            period=form.period.data or "",
            period_days=form.period_days.data,
        )

    def _preview(self, values: Any) -> dict[str, Any]:
        data = schedule_data(values)
        try:
            upcoming = schedules.preview_schedule(data)
        except ValidationFailed as exc:
            return {"errors": exc.errors.get("schedule", [])}
        zone = data.get("timezone") or "UTC"
        return {
            "describe": recurrence.parse_schedule(data).describe(),
            "runs": [format_run(at, zone, display.admin_zone()) for at in upcoming],
        }

    def _edit(self, item: ReportSchedule | None) -> Any:
        form = self._form(item)
        preview = None
        if request.method == "POST" and form.validate():
            if "preview" in request.form:
                preview = self._preview(form)
            else:
                data = self._data(form)
                saved = self.run_service(
                    form,
                    lambda: (
                        schedules.update_schedule(actor=actor(), schedule_id=item.id, data=data)
                        if item is not None
                        else schedules.create_schedule(actor=actor(), data=data)
                    ),
                )
                if saved:
                    flash(f"Saved the scheduled report '{saved.name}'.", "success")
                    return redirect(url_for(".index"))
        else:
            preview = self._preview(form)
        return self.render(
            "admin/reports/schedule_form.html",
            form=form,
            item=item,
            preview=preview,
            preview_url=url_for(".schedule_preview"),
            periods=schedules.PERIODS,
        )

    def _item(self) -> ReportSchedule:
        schedule_id = parse_id(request.values.get("id"))
        if schedule_id is None:
            abort(404)
        found = self.run_service(
            None, lambda: schedules.get_schedule(actor=actor(), schedule_id=schedule_id)
        )
        if not found:
            abort(404)
        return found  # type: ignore[no-any-return]

    @expose("/new/", methods=("GET", "POST"))
    def create(self) -> Any:
        return self._edit(None)

    @expose("/edit/", methods=("GET", "POST"))
    def edit(self) -> Any:
        return self._edit(self._item())

    @expose("/delete/", methods=("POST",))
    def delete(self) -> Any:
        item = self._item()
        name = item.name
        self.run_service(
            None,
            lambda: schedules.delete_schedule(actor=actor(), schedule_id=item.id),
            success=f"Deleted the scheduled report '{name}'.",
        )
        return redirect(url_for(".index"))

    @expose("/run/", methods=("POST",))
    def run_now(self) -> Any:
        item = self._item()
        result = self.run_service(
            None, lambda: schedules.run_now(actor=actor(), schedule_id=item.id)
        )
        if result:
            flash(str(result["message"]), "error" if "not run" in result["message"] else "success")
        return redirect(url_for(".index"))

    @expose("/schedule-preview/")
    def schedule_preview(self) -> Any:
        """JSON for the form's live preview: the schedule in words and its next five runs."""
        return jsonify(self._preview(request.args))
