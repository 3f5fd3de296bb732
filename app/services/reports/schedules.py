"""Scheduled reports: a report type, format and filters run on a recurrence (app.recurrence)
with its owner's scope, and the result mailed to recipients: attached up to
CW_REPORT_MAIL_MAX_BYTES, else as a signed download link that expires after
CW_REPORT_LINK_HOURS.

The scheduler fires a schedule once (row locks on its Schedule row, as every schedule); the
fired job starts the report (chunk jobs, as any report) and a job run twice finds the report
it started. When the last chunk is built the report is mailed in that same transaction,
once. A mailed link is token-scoped: it names one report and an expiry, signed with the
SECRET_KEY; it downloads that file without signing in, until it expires, the report is
deleted, its schedule is deleted or its owner is deactivated.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from app import recurrence
from app.extensions import db
from app.models import Admin, Job, Report, ReportSchedule, Schedule
from app.models.types import utcnow
from app.notices import addresses, signing
from app.reports.export import Format
from app.services import audit
from app.services.errors import DomainError, NotFound, ValidationFailed
from app.services.platform import jobs, mail
from app.services.reports import catalog, generation
from app.services.reports.catalog import Filters
from app.services.scope import SYSTEM, Actor, scope_of

JOB_KIND = "report_schedule"
OWNER_TYPE = "report_schedule"
PERIODS = {
    "": "the dates set below",
    "next": "the days after each run",
    "last": "the days before each run",
}
MAX_RECIPIENTS = 50
MAX_PERIOD_DAYS = 3660
FIELDS = (
    "name",
    "report_type",
    "format",
    "bom",
    "filters",
    "period",
    "period_days",
    "schedule",
    "recipients",
    "owner_id",
    "organization_id",
)
_SPLIT = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class ScheduleData:
    """What the form (or the CLI) sends: ``schedule`` is app.recurrence's dict."""

    name: str
    report_type: str
    fmt: str
    filters: Filters
    schedule: dict[str, Any]
    recipients: str
    bom: bool = False
    period: str = ""
    period_days: int | None = None


def mail_max_bytes() -> int:
    return int(current_app.config["CW_REPORT_MAIL_MAX_BYTES"])


def link_hours() -> int:
    return int(current_app.config["CW_REPORT_LINK_HOURS"])


def split_recipients(text: str) -> list[str]:
    return [a for a in _SPLIT.split(text or "") if a]


def _clean(actor: Actor, data: ScheduleData) -> dict[str, Any]:
    """The columns of a valid schedule, or every problem at once (ValidationFailed)."""
    errors: dict[str, list[str]] = {}
    name = data.name.strip()
    if not name:
        errors["name"] = ["Give the schedule a name."]
    elif len(name) > 120:
        errors["name"] = ["At most 120 characters."]
    rtype = catalog.TYPES.get(data.report_type)
    if rtype is None:
        errors["report_type"] = [f"No report type {data.report_type!r}."]
    try:
        fmt = Format(data.fmt.lower())
    except ValueError:
        errors["format"] = [f"No report format {data.fmt!r}; choose csv, xml or html."]
        fmt = Format.CSV
    filters = data.filters
    if data.period not in PERIODS:
        errors["period"] = ["Choose fixed dates, the days after or the days before each run."]
    elif data.period:
        if data.period_days is None or not 1 <= data.period_days <= MAX_PERIOD_DAYS:
            errors["period_days"] = [f"Between 1 and {MAX_PERIOD_DAYS} days."]
        if filters.date_from or filters.date_to:
            errors["period"] = ["Dates relative to each run replace From and To: leave them empty."]
    if rtype is not None:
        try:
            catalog.check_filters(rtype, actor, filters)
        except DomainError as exc:
            errors.setdefault(exc.field or "filters", []).append(exc.message)
    problems = recurrence.validate_schedule(data.schedule)
    if problems:
        errors["schedule"] = problems
    recipients = split_recipients(data.recipients)
    if not recipients:
        errors["recipients"] = ["Give at least one address to mail the report to."]
    elif len(recipients) > MAX_RECIPIENTS:
        errors["recipients"] = [f"At most {MAX_RECIPIENTS} addresses."]
    else:
        for address in recipients:
            try:
                addresses.check_address(address)
            except addresses.AddressError as exc:
                errors.setdefault("recipients", []).append(f"{address!r}: {exc}")
    if errors:
        raise ValidationFailed(errors)
    return {
        "name": name,
        "report_type": data.report_type,
        "format": fmt.value,
        "bom": bool(data.bom and fmt == Format.CSV),
        "filters": dataclasses.replace(filters, as_of=None).to_dict(),
        "period": data.period,
        "period_days": data.period_days if data.period else None,
        "schedule": recurrence.parse_schedule(data.schedule).to_dict(),
        "recipients": ", ".join(dict.fromkeys(recipients)),
        "organization_id": filters.organization_id,
    }


def _snapshot(item: ReportSchedule) -> dict[str, Any]:
    return audit.snapshot(item, FIELDS)


def visible_schedules(*, actor: Actor) -> list[ReportSchedule]:
    """The viewer's own schedules (an MRAO: everyone's), by name."""
    query = select(ReportSchedule).order_by(ReportSchedule.name, ReportSchedule.id)
    if not scope_of(actor).is_master:
        query = query.where(ReportSchedule.owner_id == actor.id)
    return list(db.session.execute(query).scalars())


def get_schedule(*, actor: Actor, schedule_id: int) -> ReportSchedule:
    """Raises:
    NotFound: no such schedule, or another admin's (unless the viewer is an MRAO)."""
    item = db.session.get(ReportSchedule, schedule_id)
    if item is None or not (scope_of(actor).is_master or item.owner_id == actor.id):
        raise audit.not_found(
            actor=actor, what="scheduled report", model=ReportSchedule, object_id=schedule_id
        )
    return item


def create_schedule(*, actor: Actor, data: ScheduleData) -> ReportSchedule:
    """A new schedule owned by ``actor`` (its reports run with the actor's scope).

    Raises:
        ValidationFailed: every problem, by field.
    """
    values = _clean(actor, data)
    item = ReportSchedule(owner_id=actor.id, last_error="", **values)
    db.session.add(item)
    db.session.flush()
    sync_schedule(item)
    audit.record(
        action="report_schedule.create",
        actor=actor,
        object_type="ReportSchedule",
        object_id=item.id,
        label=item.name,
        after=_snapshot(item),
        organization_id=item.organization_id,
    )
    return item


def update_schedule(*, actor: Actor, schedule_id: int, data: ScheduleData) -> ReportSchedule:
    """Change a schedule; it keeps its owner (an MRAO editing an RAO's schedule does not
    widen it). The filters are checked against the owner's scope and the editor's.

    Raises:
        NotFound: not the viewer's schedule.
        ValidationFailed: every problem, by field.
    """
    item = get_schedule(actor=actor, schedule_id=schedule_id)
    owner = db.session.get(Admin, item.owner_id) if item.owner_id else None
    values = _clean(actor, data)
    if owner is not None and owner.id != actor.id:
        _clean(owner, data)
    before = _snapshot(item)
    for key, value in values.items():
        setattr(item, key, value)
    item.updated_at = utcnow()
    db.session.flush()
    sync_schedule(item)
    old, new = audit.changes(before, _snapshot(item))
    if new:
        audit.record(
            action="report_schedule.update",
            actor=actor,
            object_type="ReportSchedule",
            object_id=item.id,
            label=item.name,
            before=old,
            after=new,
            organization_id=item.organization_id,
        )
    return item


def delete_schedule(*, actor: Actor, schedule_id: int) -> None:
    """Delete a schedule and its scheduler row; links already mailed stop working.

    Raises:
        NotFound: not the viewer's schedule.
    """
    item = get_schedule(actor=actor, schedule_id=schedule_id)
    audit.record(
        action="report_schedule.delete",
        actor=actor,
        object_type="ReportSchedule",
        object_id=item.id,
        label=item.name,
        before=_snapshot(item),
        organization_id=item.organization_id,
    )
    if item.schedule_id:
        sched = db.session.get(Schedule, item.schedule_id)
        if sched is not None:  # the jobs it fired stay, as history
            db.session.execute(
                update(Job).where(Job.schedule_id == sched.id).values(schedule_id=None)
            )
            db.session.delete(sched)
    db.session.delete(item)
    db.session.flush()


def sync_schedule(item: ReportSchedule) -> None:
    """Keep the schedule's Schedule row (what the scheduler reads) in step with it."""
    parsed = recurrence.parse_schedule(item.schedule or {"kind": "manual"})
    next_at = recurrence.next_run(parsed, utcnow())
    sched = db.session.get(Schedule, item.schedule_id) if item.schedule_id else None
    if sched is None:
        sched = Schedule(job_kind=JOB_KIND, owner_type=OWNER_TYPE)
        db.session.add(sched)
    db.session.flush()
    sched.owner_id = item.id
    sched.payload = {"report_schedule_id": item.id}
    sched.spec = {"kind": "report", "schedule": parsed.to_dict()}
    sched.next_run_at = next_at
    sched.enabled = next_at is not None
    item.schedule_id = sched.id


def _next_report(spec: dict[str, Any], after: dt.datetime) -> dt.datetime | None:
    return recurrence.next_run(recurrence.parse_schedule(spec["schedule"]), after)


jobs.register_recurrence("report", _next_report)


def next_run_at(item: ReportSchedule) -> dt.datetime | None:
    sched = db.session.get(Schedule, item.schedule_id) if item.schedule_id else None
    return sched.next_run_at if sched is not None and sched.enabled else None


def preview_schedule(data: dict[str, Any], count: int = 5) -> list[dt.datetime]:
    """The next ``count`` run times (UTC) of a schedule, for the form.

    Raises:
        ValidationFailed: the schedule's problems.
    """
    problems = recurrence.validate_schedule(data)
    if problems:
        raise ValidationFailed({"schedule": problems})
    return recurrence.next_runs(recurrence.parse_schedule(data), utcnow(), count)


def filters_for_run(item: ReportSchedule, now: dt.datetime) -> Filters:
    """The schedule's filters, with dates relative to this run when it says so (whole UTC
    days: "next 30" is today and the 30 days after it)."""
    filters = Filters.from_dict(item.filters or {})
    if item.period and item.period_days:
        today = now.astimezone(dt.UTC).date()
        days = dt.timedelta(days=item.period_days)
        if item.period == "next":
            filters = dataclasses.replace(filters, date_from=today, date_to=today + days)
        else:
            filters = dataclasses.replace(filters, date_from=today - days, date_to=today)
    return filters


def run_schedule_job(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    """The scheduler fired a schedule: start its report with the owner's scope. Run twice,
    it finds the report it started (one per job)."""
    ctx.hold()
    schedule_id = int((job.payload or {})["report_schedule_id"])
    item = db.session.execute(
        select(ReportSchedule).where(ReportSchedule.id == schedule_id).with_for_update()
    ).scalar_one_or_none()
    if item is None:
        return {"message": f"scheduled report #{schedule_id} no longer exists"}
    started = db.session.execute(
        select(Report.id).where(Report.schedule_job_id == job.id)
    ).scalar_one_or_none()
    if started is not None:
        return {
            "message": f"report #{started} already started",
            "result_type": "Report",
            "result_id": started,
        }
    return start_scheduled(item, job_id=job.id)


def run_now(*, actor: Actor, schedule_id: int) -> dict[str, Any]:
    """Run a schedule at once (the console's Run now), as the scheduler would: with the
    owner's scope, mailed when done; its next scheduled run is unchanged.

    Raises:
        NotFound: not the viewer's schedule.
    """
    item = get_schedule(actor=actor, schedule_id=schedule_id)
    return start_scheduled(item, job_id=None)


def start_scheduled(item: ReportSchedule, *, job_id: int | None) -> dict[str, Any]:
    """Start the schedule's report now (the caller commits); a refusal is kept on the
    schedule (last_error) and audited, not retried: the next run tries again."""
    now = utcnow()
    item.last_run_at = now
    owner = db.session.get(Admin, item.owner_id) if item.owner_id else None
    if owner is None or not owner.active:
        return _refused(item, "its owner was deleted or deactivated; an MRAO may take it over")
    try:
        report = generation.start_report(
            actor=owner,
            report_type=item.report_type,
            fmt=item.format,
            filters=filters_for_run(item, now),
            bom=item.bom,
            report_schedule_id=item.id,
            schedule_job_id=job_id,
        )
    except DomainError as exc:
        return _refused(item, exc.message)
    item.last_report_id = report.id
    item.last_error = ""
    return {
        "message": f"scheduled report '{item.name}': report #{report.id} started",
        "result_type": "Report",
        "result_id": report.id,
    }


def _refused(item: ReportSchedule, reason: str) -> dict[str, Any]:
    item.last_error = reason[:2000]
    audit.record(
        action="report_schedule.refused",
        actor=SYSTEM,
        object_type="ReportSchedule",
        object_id=item.id,
        label=item.name,
        message=reason,
        organization_id=item.organization_id,
    )
    return {"message": f"scheduled report '{item.name}' not run: {reason}"}


# --- mailing the result ------------------------------------------------------------------


def _key() -> bytes:
    return str(current_app.config["SECRET_KEY"]).encode()


def link_token(report_id: int, expires: int) -> str:
    """The signature in a mailed link: one report, one expiry (Unix seconds)."""
    return signing.link_token(_key(), f"report-download:{expires}", report_id)


def download_link(report: Report, *, now: dt.datetime) -> tuple[str, dt.datetime]:
    """A signed link to this report's file and when it stops working."""
    until = min(now + dt.timedelta(hours=link_hours()), report.expires_at)
    expires = int(until.timestamp())
    base = str(current_app.config["CW_BASE_URL"])
    return f"{base}/reports/link/{report.id}/{expires}/{link_token(report.id, expires)}", until


def report_for_link(
    *, report_id: int, expires: int, token: str, now: dt.datetime | None = None
) -> Report:
    """The report a mailed link names, if the link is ours, unexpired and its report, its
    schedule and its owner still exist.

    Raises:
        NotFound: a wrong token (indistinguishable from an unknown report) or a link that
            no longer works (the message says why).
    """
    if not signing.check_link_token(_key(), f"report-download:{expires}", report_id, token):
        raise NotFound("This link is not valid (it may have been cut short by a mail program).")
    now = now or utcnow()
    if now.timestamp() >= expires:
        raise NotFound("This link has expired; the next scheduled report brings a new one.")
    report = db.session.get(Report, report_id)
    if report is None or report.status != "done":
        raise NotFound("This report has been deleted.")
    item = (
        db.session.get(ReportSchedule, report.report_schedule_id)
        if report.report_schedule_id
        else None
    )
    owner = db.session.get(Admin, report.created_by_id) if report.created_by_id else None
    if item is None or owner is None or not owner.active:
        raise NotFound("This report's schedule or its owner no longer exists.")
    return report


def download_by_link(
    *, report_id: int, expires: int, token: str, now: dt.datetime | None = None
) -> generation.Download:
    """The file a mailed link names, audited (``report.download``, actor "link").

    Raises:
        NotFound: see report_for_link.
    """
    report = report_for_link(report_id=report_id, expires=expires, token=token, now=now)
    audit.record(
        action="report.download",
        actor="link",
        object_type="Report",
        object_id=report.id,
        label=f"{report} (mailed link)",
    )
    return generation.content(report)


def mail_result(report: Report) -> None:
    """generation.ON_READY: a scheduled report is done; mail it to the schedule's
    recipients, attached when it fits CW_REPORT_MAIL_MAX_BYTES, else as a link."""
    if report.report_schedule_id is None:
        return
    item = db.session.get(ReportSchedule, report.report_schedule_id)
    if item is None:
        return
    now = utcnow()
    rtype = catalog.report_type(report.report_type)
    download = generation.content(report)
    data = b""
    fits = report.size_bytes <= mail_max_bytes()
    if fits:
        data = b"".join(download.chunks)
        fits = len(data) <= mail_max_bytes()
    described = recurrence.parse_schedule(item.schedule).describe()
    lines = [
        f"The scheduled report '{item.name}' ran on {now:%Y-%m-%d %H:%M} UTC.",
        "",
        f"Report: {rtype.title} ({report.format.upper()})",
        f"Rows: {report.row_count}",
        f"Schedule: {described}",
    ]
    shown = {k: v for k, v in (report.filters or {}).items() if k != "as_of"}
    if shown:
        lines.append("Filters: " + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())))
    lines.append("")
    attachment = None
    if fits:
        attachment = mail.Attachment(download.filename, download.mimetype, data)
        lines.append(f"The report is attached ({len(data)} bytes): {download.filename}")
    else:
        url, until = download_link(report, now=now)
        lines += [
            f"The report is {report.size_bytes} bytes, more than is mailed as an attachment.",
            f"Download it until {until:%Y-%m-%d %H:%M} UTC (anyone with this link can):",
            url,
        ]
    mail.send_mail(
        to=split_recipients(item.recipients),
        subject=f"Scheduled report: {item.name}",
        body="\n".join(lines) + "\n",
        category="report",
        organization_id=item.organization_id,
        attachment=attachment,
    )


if mail_result not in generation.ON_READY:
    generation.ON_READY.append(mail_result)
