"""Console: Discovery > Network Discovery Tasks (form with schedule preview, CSV import,
Scan / Cancel, live progress, History)."""

from __future__ import annotations

from typing import Any

from flask import flash, g, jsonify, redirect, request, url_for
from flask_admin import expose
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy import select

from app.admin import display
from app.admin.base import SecureModelView, actor, current_scope, select_choices
from app.admin.discovery_forms import (
    RULE_SLOTS,
    CsvImportForm,
    TaskForm,
    fill_schedule,
    format_run,
    schedule_data,
)
from app.admin.orgs import org_choices
from app.extensions import db
from app.models import AssignmentRule, DiscoveryTask, Role, RunStatus, ScanRun, Schedule
from app.scan import schedule as scan_schedule
from app.services import discovery_runs, discovery_tasks, network_assets
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import Scope

STATUS_BADGE = {
    "Running": "primary",
    "Successful": "success",
    "Failed": "danger",
    "Cancelled": "secondary",
}
MAX_CSV_BYTES = 1_000_000


def ranges_summary(text: str, shown: int = 3) -> str:
    entries = [
        line.split("#", 1)[0].strip()
        for line in (text or "").splitlines()
        if line.split("#", 1)[0].strip()
    ]
    more = f" (+{len(entries) - shown} more)" if len(entries) > shown else ""
    return ", ".join(entries[:shown]) + more


def describe_schedule(task: DiscoveryTask) -> str:
    try:
        return scan_schedule.parse_schedule(task.schedule or {"kind": "manual"}).describe()
    except ValueError:
        return "invalid schedule"


def run_state(run: ScanRun | None) -> dict[str, Any]:
    """What the Status column and its JSON poll show for a task's latest run."""
    if run is None:
        return {"status": "", "percent": None, "run_id": None, "last_run": "", "message": ""}
    return {
        "status": run.status.value,
        "percent": discovery_runs.progress(run),
        "run_id": run.id,
        "last_run": display.local_time(run.finished_at or run.started_at),
        "message": run.message,
    }


def _latest(task_id: int) -> ScanRun | None:
    cache = g.setdefault("cw_latest_runs", {})
    if task_id not in cache:
        cache.update(network_assets.latest_runs([task_id]))
        cache.setdefault(task_id, None)
    return cache[task_id]  # type: ignore[no-any-return]


def _status(view: Any, context: Any, model: DiscoveryTask, name: str) -> Markup:
    state = run_state(_latest(model.id))
    status = state["status"]
    percent = state["percent"]
    return Markup(
        '<div class="cw-task-status" data-task="{}" data-status="{}" title="{}">'
        '<span class="badge badge-{} cw-status-label">{}</span> '
        '<span class="cw-percent">{}</span>'
        '<div class="progress mt-1{}" style="height: 5px; width: 8rem">'
        '<div class="progress-bar" role="progressbar" style="width: {}%"></div></div></div>'
    ).format(
        model.id,
        status,
        state["message"],
        STATUS_BADGE.get(status, "light"),
        status or "Never scanned",
        f"{percent}%" if percent is not None else "",
        "" if status == "Running" else " d-none",
        percent or 0,
    )


def _last_run(view: Any, context: Any, model: DiscoveryTask, name: str) -> Markup:
    state = run_state(_latest(model.id))
    return Markup('<a class="cw-last-run" data-task="{}" href="{}">{}</a>').format(
        model.id, url_for(".history_view", id=model.id), state["last_run"] or "history"
    )


def _run_form(action: str, css: str, task_id: int, button: str, label: str) -> Markup:
    return Markup(
        '<form method="post" action="{}" class="{}" style="display: inline" data-task="{}">'
        '<input type="hidden" name="csrf_token" value="{}">'
        '<input type="hidden" name="id" value="{}">'
        '<button class="btn btn-sm {}" type="submit">{}</button></form>'
    ).format(action, css, task_id, generate_csrf(), task_id, button, label)


def _run_buttons(view: Any, context: Any, model: DiscoveryTask, name: str) -> Markup:
    running = run_state(_latest(model.id))["status"] == "Running"
    scan = _run_form(
        url_for(".scan_view"),
        "cw-scan-form" + (" d-none" if running else ""),
        model.id,
        "btn-outline-primary",
        "Scan",
    )
    cancel = _run_form(
        url_for(".cancel_view"),
        "cw-cancel-form" + ("" if running else " d-none"),
        model.id,
        "btn-outline-danger",
        "Cancel",
    )
    return scan + cancel


def _visible_rule_ids() -> set[int] | None:
    clause = discovery_tasks.visible_rules_clause(current_scope())
    if clause is None:
        return None
    return set(db.session.execute(select(AssignmentRule.id).where(clause)).scalars())


def _rules(view: Any, context: Any, model: DiscoveryTask, name: str) -> str:
    visible = _visible_rule_ids()
    shown = [r.name for r in model.rules if visible is None or r.id in visible]
    hidden = len(model.rules) - len(shown)
    text = " → ".join(f"{n}. {rule}" for n, rule in enumerate(shown, start=1)) or "none"
    return text + (f" (and {hidden} outside your scope)" if hidden else "")


def _next_run(view: Any, context: Any, model: DiscoveryTask, name: str) -> str:
    sched = db.session.get(Schedule, model.schedule_id) if model.schedule_id else None
    if sched is None or not sched.enabled or sched.next_run_at is None:
        return "not scheduled"
    return display.local_time(sched.next_run_at)


class DiscoveryTaskView(SecureModelView):
    """Network Discovery Tasks: RAOs own tasks for their organizations; MRAOs for any."""

    roles = (Role.MRAO, Role.RAO)
    field_map = {"organization_id": "owner", "rule_ids": "rule_order", "schedule": "schedule_kind"}
    column_list = (
        "name",
        "organization",
        "ranges",
        "ports",
        "schedule",
        "last_run",
        "status",
        "run",
    )
    column_labels = {
        "organization": "Owner",
        "schedule": "Schedule",
        "last_run": "Last run",
        "run": "",
        "rules": "Assignment rules",
        "next_run": "Next run",
        "host_overrides": "Host overrides",
        "connect_timeout": "Connect timeout (s)",
        "handshake_timeout": "Handshake timeout (s)",
        "created_at": "Created",
    }
    column_details_list = (
        "name",
        "description",
        "agent",
        "organization",
        "ranges",
        "ports",
        "host_overrides",
        "connect_timeout",
        "handshake_timeout",
        "concurrency",
        "rules",
        "schedule",
        "next_run",
        "status",
        "created_at",
    )
    column_searchable_list = ("name", "ranges", "description")
    column_sortable_list = ("name", ("organization", "organization.name"), "ports")
    column_default_sort = "name"
    column_formatters = {
        "ranges": lambda v, c, m, n: Markup('<span title="{}">{}</span>').format(
            m.ranges, ranges_summary(m.ranges)
        ),
        "organization": lambda v, c, m, n: (
            m.organization.name if m.organization else "account-wide"
        ),
        "schedule": lambda v, c, m, n: describe_schedule(m),
        "status": _status,
        "last_run": _last_run,
        "run": _run_buttons,
    }
    column_formatters_detail = {
        "ranges": lambda v, c, m, n: Markup("<pre class='mb-0'>{}</pre>").format(m.ranges),
        "host_overrides": lambda v, c, m, n: Markup("<pre class='mb-0'>{}</pre>").format(
            m.host_overrides
        ),
        "organization": lambda v, c, m, n: (
            m.organization.name if m.organization else "account-wide"
        ),
        "schedule": lambda v, c, m, n: describe_schedule(m),
        "rules": _rules,
        "next_run": _next_run,
        "status": _status,
    }
    list_template = "admin/discovery/task_list.html"
    form_template = "admin/discovery/task_form.html"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(DiscoveryTask, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        return discovery_tasks.visible_tasks_clause(scope)

    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        count, rows = super().get_list(*args, **kwargs)
        runs = network_assets.latest_runs([row.id for row in rows])
        g.cw_latest_runs = {row.id: runs.get(row.id) for row in rows}
        return count, rows

    # --- the form --------------------------------------------------------------------
    def _form(self, task: DiscoveryTask | None) -> TaskForm:
        form = TaskForm(obj=task)
        scope = current_scope()
        owners = org_choices(managed_only=True)
        form.owner.choices = select_choices(
            ([("", "— none: account-wide —")] if scope.is_master else []) + owners
        )
        query = select(AssignmentRule).order_by(AssignmentRule.name)
        clause = discovery_tasks.visible_rules_clause(scope)
        if clause is not None:
            query = query.where(clause)
        rules = [
            (
                str(r.id),
                f"{r.name} → {r.organization.name}{' / ' + r.department.name if r.department else ''}",
            )
            for r in db.session.execute(query).scalars()
        ]
        if request.method == "GET":
            form.schedule_timezone.data = display.admin_zone().key
            if task is not None:
                form.owner.data = str(task.organization_id or "")
                fill_schedule(form, task.schedule or {})
                while form.rule_order.entries:
                    form.rule_order.pop_entry()
                for link in task.rule_links:
                    if any(value == str(link.rule_id) for value, _ in rules):
                        form.rule_order.append_entry(str(link.rule_id))
        attached = len([e for e in form.rule_order.entries if e.data])
        while len(form.rule_order.entries) < attached + RULE_SLOTS:
            form.rule_order.append_entry("")
        for entry in form.rule_order.entries:
            entry.choices = select_choices([("", "—"), *rules])
        return form

    def _data(self, form: TaskForm) -> discovery_tasks.TaskData:
        rule_ids = [int(e.data) for e in form.rule_order.entries if (e.data or "").isdigit()]
        return discovery_tasks.TaskData(
            name=form.name.data or "",
            description=form.description.data or "",
            ranges=form.ranges.data or "",
            ports=form.ports.data or "",
            host_overrides=form.host_overrides.data or "",
            connect_timeout=float(form.connect_timeout.data),
            handshake_timeout=float(form.handshake_timeout.data),
            concurrency=int(form.concurrency.data),
            schedule=schedule_data(form),
            organization_id=int(form.owner.data) if (form.owner.data or "").isdigit() else None,
            rule_ids=rule_ids,
        )

    def _checked_rules(self, form: TaskForm) -> bool:
        chosen = [e.data for e in form.rule_order.entries if e.data]
        if len(chosen) != len(set(chosen)):
            form.rule_order.errors = ["A rule is chosen twice; each rule once, in order."]
            return False
        return True

    def _preview(self, form: TaskForm) -> dict[str, Any]:
        data = schedule_data(form)
        try:
            runs = discovery_tasks.preview_schedule(data)
        except ValidationFailed as exc:
            return {"errors": exc.errors.get("schedule", [])}
        zone = data.get("timezone") or "UTC"
        return {
            "describe": scan_schedule.parse_schedule(data).describe(),
            "runs": [format_run(at, zone, display.admin_zone()) for at in runs],
        }

    def _edit(self, task: DiscoveryTask | None) -> Any:
        form = self._form(task)
        preview = None
        if request.method == "POST" and form.validate() and self._checked_rules(form):
            if "preview" in request.form:
                preview = self._preview(form)
            else:
                data = self._data(form)
                saved = self.run_service(
                    form,
                    lambda: (
                        discovery_tasks.update_task(actor=actor(), task_id=task.id, data=data)
                        if task is not None
                        else discovery_tasks.create_task(actor=actor(), data=data)
                    ),
                )
                if saved:
                    flash(f"Saved the discovery task '{saved.name}'.", "success")
                    return redirect(url_for(".index_view"))
        elif request.method == "GET":
            preview = self._preview(form)
        hidden = 0
        if task is not None:
            ids = _visible_rule_ids()
            hidden = len(
                [link for link in task.rule_links if ids is not None and link.rule_id not in ids]
            )
        return self.render(
            self.form_template,
            form=form,
            task=task,
            preview=preview,
            preview_url=url_for(".schedule_preview_view"),
            hidden_rules=hidden,
        )

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        if not self.can_create:
            return redirect(url_for(".index_view"))
        return self._edit(None)

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self) -> Any:
        task = self.get_one(request.args.get("id"))
        if task is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        return self._edit(task)

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        scope = current_scope()
        return scope.is_master or bool(scope.orgs)

    def delete_model(self, model: DiscoveryTask) -> Any:
        return self.run_service(
            None, lambda: discovery_tasks.delete_task(actor=actor(), task_id=model.id)
        )

    @expose("/schedule-preview/")
    def schedule_preview_view(self) -> Any:
        """JSON for the form's live preview: the schedule in words and its next five runs."""
        return jsonify(self._preview(request.args))  # type: ignore[arg-type]

    # --- scanning --------------------------------------------------------------------
    @expose("/scan/", methods=("POST",))
    def scan_view(self) -> Any:
        task = self.get_one(request.form.get("id"))
        if task is None:
            flash("No such discovery task.", "error")
            return redirect(url_for(".index_view"))
        run = self.run_service(
            None, lambda: discovery_runs.start_run(actor=actor(), task_id=task.id)
        )
        if run:
            flash(
                f"Scan #{run.id} of '{task.name}' started: {run.targets_total:,} targets in "
                f"{run.shards_total} shard(s).",
                "success",
            )
        return redirect(url_for(".index_view"))

    @expose("/cancel/", methods=("POST",))
    def cancel_view(self) -> Any:
        task = self.get_one(request.form.get("id"))
        run = (
            db.session.execute(
                select(ScanRun).where(
                    ScanRun.task_id == task.id, ScanRun.status == RunStatus.RUNNING
                )
            ).scalar_one_or_none()
            if task is not None
            else None
        )
        if run is None:
            flash("That task is not scanning.", "error")
            return redirect(url_for(".index_view"))
        if self.run_service(None, lambda: discovery_runs.cancel_run(actor=actor(), run_id=run.id)):
            flash(f"Scan #{run.id} of '{task.name}' cancelled.", "success")
        return redirect(url_for(".index_view"))

    @expose("/progress/")
    def progress_view(self) -> Any:
        """JSON for the list's Status column: the latest run of each visible task asked for."""
        ids = [int(i) for i in request.args.get("ids", "").split(",") if i.isdigit()][:500]
        visible = [t.id for t in self.get_query().filter(DiscoveryTask.id.in_(ids))]
        runs = network_assets.latest_runs(visible)
        return jsonify({str(i): run_state(runs.get(i)) for i in visible})

    @expose("/history/")
    def history_view(self) -> Any:
        task = self.get_one(request.args.get("id"))
        if task is None:
            flash("No such discovery task.", "error")
            return redirect(url_for(".index_view"))
        runs = network_assets.run_history(task.id)
        return self.render(
            "admin/discovery/task_history.html",
            task=task,
            runs=runs,
            states={run.id: run_state(run) for run in runs},
            badge=STATUS_BADGE,
        )

    # --- import ----------------------------------------------------------------------
    @expose("/import/", methods=("GET", "POST"))
    def import_view(self) -> Any:
        if not self.can_create:
            return redirect(url_for(".index_view"))
        form = CsvImportForm()
        problems: list[str] = []
        if form.validate_on_submit():
            upload = request.files.get("file")
            raw = upload.read(MAX_CSV_BYTES + 1) if upload and upload.filename else b""
            text = (form.text.data or "").strip()
            try:
                if len(raw) > MAX_CSV_BYTES:
                    raise DomainError("The file is larger than 1 MB.", field="file")
                if raw:
                    try:
                        text = raw.decode("utf-8-sig")
                    except UnicodeDecodeError:
                        raise DomainError("The file is not UTF-8 text.", field="file") from None
                if not text:
                    raise DomainError("Choose a CSV file or paste its text.", field="file")
                created = discovery_tasks.import_csv(actor=actor(), text=text)
                db.session.commit()
                flash(
                    f"Imported {len(created)} task(s): {', '.join(t.name for t in created)}.",
                    "success",
                )
                return redirect(url_for(".index_view"))
            except discovery_tasks.CsvImportError as exc:
                db.session.rollback()
                problems = exc.lines
                form.file.errors = [exc.message]
            except DomainError as exc:
                db.session.rollback()
                form.file.errors = [exc.message]
        return self.render(
            "admin/discovery/task_import.html",
            form=form,
            problems=problems,
            columns=discovery_tasks.CSV_COLUMNS,
        )
