"""Console: how the Network Discovery Tasks list and details show a task (status with
live progress, last run, Scan/Cancel buttons, rules in order, next run)."""

from __future__ import annotations

from typing import Any

from flask import g, url_for
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy import select

from app import recurrence
from app.admin import display
from app.admin.base import current_scope
from app.extensions import db
from app.models import AssignmentRule, DiscoveryTask, ScanRun, Schedule
from app.services.discovery import agents, endpoints, rules, runs

STATUS_BADGE = {
    "Running": "primary",
    "Successful": "success",
    "Failed": "danger",
    "Cancelled": "secondary",
}


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
        return recurrence.parse_schedule(task.schedule or {"kind": "manual"}).describe()
    except ValueError:
        return "invalid schedule"


def time_left(seconds: int | None) -> str:
    """'~40 s left', '~3 min left', '~2 h 5 min left'; '' when unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"~{max(1, seconds)} s left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"~{minutes} min left"
    return f"~{minutes // 60} h {minutes % 60} min left"


def run_state(run: ScanRun | None) -> dict[str, Any]:
    """What the Status column and its JSON poll show for a task's latest run."""
    if run is None:
        return {
            "status": "",
            "percent": None,
            "left": "",
            "run_id": None,
            "last_run": "",
            "message": "",
        }
    return {
        "status": run.status.value,
        "percent": runs.progress(run),
        "left": time_left(runs.seconds_left(run)),
        "run_id": run.id,
        "last_run": display.local_time(run.finished_at or run.started_at),
        "message": run.message,
    }


def latest_run(task_id: int) -> ScanRun | None:
    cache = g.setdefault("cw_latest_runs", {})
    if task_id not in cache:
        cache.update(endpoints.latest_runs([task_id]))
        cache.setdefault(task_id, None)
    return cache[task_id]  # type: ignore[no-any-return]


def status_cell(view: Any, context: Any, model: DiscoveryTask, name: str) -> Markup:
    state = run_state(latest_run(model.id))
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
        (f"{percent}%" + (f" · {state['left']}" if state["left"] else ""))
        if percent is not None
        else "",
        "" if status == "Running" else " d-none",
        percent or 0,
    )


def agent_cell(view: Any, context: Any, model: DiscoveryTask, name: str) -> Markup:
    """Auto, or the agent's name with its state (online, offline since ..., disabled)."""
    if not model.agent or model.agent == agents.AUTO:
        return Markup("Auto")
    agent = agents.by_name(model.agent)
    state = agents.status_text(agent) if agent is not None else "unknown"
    badge = "success" if state == "online" else "warning" if state != "disabled" else "danger"
    return Markup('{} <span class="badge badge-{} cw-agent-state">{}</span>').format(
        model.agent, badge, state
    )


def last_run_cell(view: Any, context: Any, model: DiscoveryTask, name: str) -> Markup:
    state = run_state(latest_run(model.id))
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


def run_buttons(view: Any, context: Any, model: DiscoveryTask, name: str) -> Markup:
    running = run_state(latest_run(model.id))["status"] == "Running"
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


def visible_rule_ids() -> set[int] | None:
    clause = rules.visible_rules_clause(current_scope())
    if clause is None:
        return None
    return set(db.session.execute(select(AssignmentRule.id).where(clause)).scalars())


def rules_cell(view: Any, context: Any, model: DiscoveryTask, name: str) -> str:
    visible = visible_rule_ids()
    shown = [r.name for r in model.rules if visible is None or r.id in visible]
    hidden = len(model.rules) - len(shown)
    text = " → ".join(f"{n}. {rule}" for n, rule in enumerate(shown, start=1)) or "none"
    return text + (f" (and {hidden} outside your scope)" if hidden else "")


def next_run_cell(view: Any, context: Any, model: DiscoveryTask, name: str) -> str:
    sched = db.session.get(Schedule, model.schedule_id) if model.schedule_id else None
    if sched is None or not sched.enabled or sched.next_run_at is None:
        return "not scheduled"
    return display.local_time(sched.next_run_at)
