"""Console: Discovery > Network Discovery Tasks (form with schedule preview, CSV import,
Scan / Cancel, live progress, History)."""

from __future__ import annotations

from typing import Any

from flask import flash, g, jsonify, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup
from sqlalchemy import select

from app import recurrence
from app.admin import display
from app.admin.base import SecureModelView, actor, current_scope, select_choices
from app.admin.choices import org_choices
from app.admin.discovery.columns import (
    STATUS_BADGE,
    agent_cell,
    describe_schedule,
    last_run_cell,
    next_run_cell,
    ranges_summary,
    rules_cell,
    run_buttons,
    run_state,
    status_cell,
    visible_rule_ids,
)
from app.admin.discovery.forms import (
    RULE_SLOTS,
    CsvImportForm,
    TaskForm,
    fill_schedule,
    format_run,
    schedule_data,
)
from app.extensions import db
from app.ids import parse_id, parse_ids
from app.models import AssignmentRule, DiscoveryTask, Role, RunStatus, ScanRun
from app.services.discovery import agents, endpoints, rules, runs, tasks
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import Scope

MAX_CSV_BYTES = 1_000_000


class DiscoveryTaskView(SecureModelView):
    """Network Discovery Tasks: RAOs own tasks for their organizations; MRAOs for any."""

    roles = (Role.MRAO, Role.RAO)
    field_map = {"organization_id": "owner", "rule_ids": "rule_order", "schedule": "schedule_kind"}
    column_list = (
        "name",
        "organization",
        "agent",
        "ranges",
        "ports",
        "schedule",
        "last_run",
        "status",
        "run",
    )
    record_noun = "Discovery task"
    empty_text = (
        "No network discovery tasks yet. A task scans host names, IP addresses and ranges "
        "for TLS certificates, on demand or on a schedule, and places what it finds."
    )
    search_hint = "Search by name, range or description"
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
        "rate": "Rate cap (connections/s, 0 = none)",
        "protocols": "Protocol overrides",
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
        "rate",
        "protocols",
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
        "agent": agent_cell,
        "status": status_cell,
        "last_run": last_run_cell,
        "run": run_buttons,
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
        "agent": agent_cell,
        "rules": rules_cell,
        "next_run": next_run_cell,
        "status": status_cell,
    }
    # The export is the import's format (docs/discovery.md "Import from CSV"): the same
    # column names as its header, ranges and protocol overrides with ';' inside a cell.
    can_export = True
    export_types = ["csv"]
    column_export_list = tasks.CSV_COLUMNS
    column_formatters_export = {
        "ranges": lambda v, c, m, n: ";".join(m.ranges.split()),
        "protocols": lambda v, c, m, n: ";".join(
            p.strip() for p in m.protocols.replace("\n", ",").split(",") if p.strip()
        ),
        "organization": lambda v, c, m, n: m.organization.name if m.organization else "",
        "agent": lambda v, c, m, n: m.agent or agents.AUTO,
        "connect_timeout": lambda v, c, m, n: f"{m.connect_timeout:g}",
        "handshake_timeout": lambda v, c, m, n: f"{m.handshake_timeout:g}",
        "rate": lambda v, c, m, n: f"{m.rate:g}",
    }
    list_template = "admin/discovery/task_list.html"
    details_template = "admin/discovery/task_details.html"
    form_template = "admin/discovery/task_form.html"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(DiscoveryTask, **kwargs)

    def get_export_columns(self) -> list[tuple[str, str]]:
        """The import's header names, not the list's labels, so an export imports back."""
        return [(name, name) for name in tasks.CSV_COLUMNS]

    def scope_clause(self, scope: Scope) -> Any:
        return tasks.visible_tasks_clause(scope)

    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        count, rows = super().get_list(*args, **kwargs)
        latest = endpoints.latest_runs([row.id for row in rows])
        g.cw_latest_runs = {row.id: latest.get(row.id) for row in rows}
        return count, rows

    # --- the form --------------------------------------------------------------------
    def _form(self, task: DiscoveryTask | None) -> TaskForm:
        form = TaskForm(obj=task)
        scope = current_scope()
        owners = org_choices(managed_only=True)
        form.owner.choices = select_choices(
            ([("", "— none: account-wide —")] if scope.is_master else []) + owners
        )
        agent_choices = agents.choices()
        if task is not None and task.agent not in {v for v, _ in agent_choices}:
            agent_choices.append((task.agent, f"{task.agent} (disabled)"))
        form.agent.choices = select_choices(agent_choices)
        query = select(AssignmentRule).order_by(AssignmentRule.name)
        clause = rules.visible_rules_clause(scope)
        if clause is not None:
            query = query.where(clause)
        rule_choices = [
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
                    if any(value == str(link.rule_id) for value, _ in rule_choices):
                        form.rule_order.append_entry(str(link.rule_id))
        attached = len([e for e in form.rule_order.entries if e.data])
        while len(form.rule_order.entries) < attached + RULE_SLOTS:
            form.rule_order.append_entry("")
        for entry in form.rule_order.entries:
            entry.choices = select_choices([("", "—"), *rule_choices])
        return form

    def _data(self, form: TaskForm) -> tasks.TaskData:
        rule_ids = [i for i in (parse_id(e.data) for e in form.rule_order.entries) if i is not None]
        return tasks.TaskData(
            name=form.name.data or "",
            description=form.description.data or "",
            ranges=form.ranges.data or "",
            ports=form.ports.data or "",
            host_overrides=form.host_overrides.data or "",
            connect_timeout=float(form.connect_timeout.data),
            handshake_timeout=float(form.handshake_timeout.data),
            concurrency=int(form.concurrency.data),
            rate=float(form.rate.data or 0),
            protocols=form.protocols.data or "",
            schedule=schedule_data(form),
            organization_id=parse_id(form.owner.data),
            rule_ids=rule_ids,
            agent=form.agent.data or agents.AUTO,
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
            upcoming = tasks.preview_schedule(data)
        except ValidationFailed as exc:
            return {"errors": exc.errors.get("schedule", [])}
        zone = data.get("timezone") or "UTC"
        return {
            "describe": recurrence.parse_schedule(data).describe(),
            "runs": [format_run(at, zone, display.admin_zone()) for at in upcoming],
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
                        tasks.update_task(actor=actor(), task_id=task.id, data=data)
                        if task is not None
                        else tasks.create_task(actor=actor(), data=data)
                    ),
                )
                if saved:
                    flash(f"Saved the discovery task '{saved.name}'.", "success")
                    return redirect(url_for(".index_view"))
        elif request.method == "GET":
            preview = self._preview(form)
        hidden = 0
        if task is not None:
            ids = visible_rule_ids()
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
        return self.run_service(None, lambda: tasks.delete_task(actor=actor(), task_id=model.id))

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
        run = self.run_service(None, lambda: runs.start_run(actor=actor(), task_id=task.id))
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
        if self.run_service(None, lambda: runs.cancel_run(actor=actor(), run_id=run.id)):
            flash(f"Scan #{run.id} of '{task.name}' cancelled.", "success")
        return redirect(url_for(".index_view"))

    @expose("/progress/")
    def progress_view(self) -> Any:
        """JSON for the list's Status column: the latest run of each visible task asked for."""
        ids = parse_ids(request.args.get("ids"), limit=500)
        self.record_foreign_ids(ids)
        visible = [t.id for t in self.get_query().filter(DiscoveryTask.id.in_(ids))]
        latest = endpoints.latest_runs(visible)
        return jsonify({str(i): run_state(latest.get(i)) for i in visible})

    @expose("/history/")
    def history_view(self) -> Any:
        task = self.get_one(request.args.get("id"))
        if task is None:
            flash("No such discovery task.", "error")
            return redirect(url_for(".index_view"))
        history = endpoints.run_history(task.id)
        return self.render(
            "admin/discovery/task_history.html",
            task=task,
            runs=history,
            states={run.id: run_state(run) for run in history},
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
                created = tasks.import_csv(actor=actor(), text=text)
                db.session.commit()
                flash(
                    f"Imported {len(created)} task(s): {', '.join(t.name for t in created)}.",
                    "success",
                )
                return redirect(url_for(".index_view"))
            except tasks.CsvImportError as exc:
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
            columns=tasks.CSV_COLUMNS,
        )
