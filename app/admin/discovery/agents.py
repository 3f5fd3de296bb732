"""Console: Discovery > Agents (MRAO only): the scanners placed in network zones, their
heartbeat facts and allow-lists; create one (its private key is shown once), disable or
enable it."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy import func, select
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.admin.base import AdminForm, SecureModelView, actor
from app.extensions import db
from app.models import Job, JobStatus, Role, ScanAgent
from app.scan import agentwire
from app.services.discovery import agentruns, agents


class AgentForm(AdminForm):
    name = StringField(
        "Name",
        validators=[DataRequired(), Length(max=32)],
        description="Lowercase letters, digits, dashes: dmz, branch-berlin. The agent "
        "consumes the queue scan.<name>.",
    )
    allowed_ranges = TextAreaField(
        "Allow-list",
        validators=[Length(max=20_000)],
        description="Addresses, CIDR blocks or ranges this agent may scan, one per line. "
        "Tasks of this agent must stay inside; the agent enforces its own copy too.",
    )
    description = TextAreaField("Description", validators=[Length(max=2000)])
    max_rate = StringField(
        "Rate cap (new connections a second)",
        validators=[Optional(), Length(max=20)],
        default="0",
        description="Over all the shards this agent runs at once; 0: no cap. A task's own "
        "rate cap lowers it for that task; the agent host's CW_AGENT_MAX_RATE is a ceiling "
        "this cannot raise.",
    )
    max_in_flight = StringField(
        "Connections in flight",
        validators=[Optional(), Length(max=20)],
        default="0",
        description="Over all the shards this agent runs at once; 0: no cap. A task's "
        "concurrency lowers it for that task; the agent host's CW_AGENT_MAX_IN_FLIGHT is a "
        "ceiling this cannot raise.",
    )


class LimitsForm(AdminForm):
    max_rate = AgentForm.max_rate
    max_in_flight = AgentForm.max_in_flight


def _in_flight(view: Any, context: Any, model: ScanAgent, name: str) -> str:
    sent = db.session.execute(
        select(func.count())
        .select_from(Job)
        .where(
            Job.kind == agentruns.KIND,
            Job.status == JobStatus.RUNNING,
            Job.payload["agent"].as_string() == model.name,
        )
    ).scalar_one()
    return f"{sent} (agent says {model.in_flight} of {model.capacity})"


def _limits(view: Any, context: Any, model: ScanAgent, name: str) -> Markup:
    rate, in_flight = agents.effective_limits(model)
    return Markup(
        '{}, {} <a class="btn btn-sm btn-outline-secondary" href="{}">Change</a><br>'
        '<small class="text-muted">console: {}, {}; host ceiling: {}, {}</small>'
    ).format(
        agents.describe_cap(rate, "/s"),
        agents.describe_cap(in_flight, "in flight"),
        url_for(".limits_view", id=model.id),
        agents.describe_cap(model.max_rate, "/s"),
        agents.describe_cap(model.max_in_flight, "in flight"),
        agents.describe_cap(model.host_max_rate, "/s"),
        agents.describe_cap(model.host_max_in_flight, "in flight"),
    )


def _state(view: Any, context: Any, model: ScanAgent, name: str) -> Markup:
    state = agents.status_text(model)
    badge = "success" if state == "online" else "danger" if state == "disabled" else "warning"
    return Markup('<span class="badge badge-{}">{}</span>').format(badge, state)


def _toggle(view: Any, context: Any, model: ScanAgent, name: str) -> Markup:
    action, label, css = (
        ("disable", "Disable", "btn-outline-danger")
        if model.enabled
        else ("enable", "Enable", "btn-outline-secondary")
    )
    return Markup(
        '<form method="post" action="{}" style="display: inline">'
        '<input type="hidden" name="csrf_token" value="{}">'
        '<input type="hidden" name="id" value="{}">'
        '<button class="btn btn-sm {}" type="submit">{}</button></form>'
    ).format(url_for(f".{action}_view"), generate_csrf(), model.id, css, label)


class ScanAgentView(SecureModelView):
    """Agents are created here and disabled, never edited or deleted (tasks name them)."""

    roles = (Role.MRAO,)
    can_edit = False
    can_delete = False
    record_noun = "Agent"
    search_hint = "Search by name, host or allow-list"
    empty_text = (
        "No scanning agents yet. An agent scans from inside a network zone with broker "
        "credentials and its own key only; tasks choose it in their Agent field."
    )
    column_list = (
        "name",
        "state",
        "host",
        "version",
        "last_seen_at",
        "in_flight",
        "limits",
        "allowed_ranges",
        "enabled",
        "toggle",
    )
    column_details_list = (
        "name",
        "description",
        "state",
        "host",
        "version",
        "last_seen_at",
        "in_flight",
        "limits",
        "allowed_ranges",
        "key",
        "enabled",
        "created_at",
    )
    column_labels = {
        "name": "Agent",
        "state": "Status now",
        "host": "Host name",
        "version": "Agent version",
        "enabled": "Takes shards",
        "description": "About",
        "last_seen_at": "Last seen",
        "in_flight": "In-flight shards",
        "limits": "Caps in force",
        "allowed_ranges": "Allow-list",
        "toggle": "",
        "key": "Public key (SHA-256)",
        "created_at": "Created",
    }
    column_searchable_list = ("name", "host", "allowed_ranges")
    column_sortable_list = ("name", "host", "last_seen_at", "enabled")
    column_default_sort = "name"
    column_formatters = {
        "state": _state,
        "in_flight": _in_flight,
        "limits": _limits,
        "toggle": _toggle,
        "allowed_ranges": lambda v, c, m, n: ", ".join(m.allowed_ranges.splitlines()),
    }
    column_formatters_detail = {
        "state": _state,
        "in_flight": _in_flight,
        "limits": _limits,
        "key": lambda v, c, m, n: agentwire.key_fingerprint(m.public_key),
        "allowed_ranges": lambda v, c, m, n: ", ".join(m.allowed_ranges.splitlines()),
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ScanAgent, **kwargs)

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        form = AgentForm()
        if request.method == "POST" and form.validate():
            created = self.run_service(
                form,
                lambda: agents.create_agent(
                    actor=actor(),
                    name=form.name.data or "",
                    allowed_ranges=form.allowed_ranges.data or "",
                    description=form.description.data or "",
                    max_rate=form.max_rate.data or "0",
                    max_in_flight=form.max_in_flight.data or "0",
                ),
            )
            if created:
                return self.render(
                    "admin/discovery/agent_key.html",
                    agent=created.agent,
                    private_key=created.private_key_pem.decode("ascii"),
                    fingerprint=agentwire.key_fingerprint(created.agent.public_key),
                    queue=agents.queue_name(created.agent.name),
                )
        return self.render("admin/discovery/agent_form.html", form=form)

    @expose("/limits/", methods=("GET", "POST"))
    def limits_view(self) -> Any:
        """The agent's caps over all the shards it runs (audited as agent.limits)."""
        agent_id = request.values.get("id", "")
        agent = db.session.get(ScanAgent, int(agent_id)) if agent_id.isdecimal() else None
        if agent is None:
            flash("No such agent.", "error")
            return redirect(url_for(".index_view"))
        form = LimitsForm(
            data={"max_rate": f"{agent.max_rate:g}", "max_in_flight": str(agent.max_in_flight)}
            if request.method == "GET"
            else None
        )
        if request.method == "POST" and form.validate():
            done = self.run_service(
                form,
                lambda: agents.set_limits(
                    actor=actor(),
                    agent_id=agent.id,
                    max_rate=form.max_rate.data or "0",
                    max_in_flight=form.max_in_flight.data or "0",
                ),
            )
            if done:
                rate, in_flight = agents.effective_limits(done)
                flash(
                    f"Agent '{done.name}' caps saved; in force from its next shard: "
                    f"{agents.describe_cap(rate, '/s')}, "
                    f"{agents.describe_cap(in_flight, 'in flight')}.",
                    "success",
                )
                return redirect(url_for(".index_view"))
        return self.render("admin/discovery/agent_limits.html", form=form, agent=agent)

    def _set(self, enabled: bool) -> Any:
        agent_id = request.form.get("id", "")
        if not agent_id.isdecimal():
            flash("No such agent.", "error")
            return redirect(url_for(".index_view"))
        done = self.run_service(
            None, lambda: agents.set_enabled(actor=actor(), agent_id=int(agent_id), enabled=enabled)
        )
        if done:
            flash(f"Agent '{done.name}' {'enabled' if enabled else 'disabled'}.", "success")
        return redirect(url_for(".index_view"))

    @expose("/disable/", methods=("POST",))
    def disable_view(self) -> Any:
        return self._set(False)

    @expose("/enable/", methods=("POST",))
    def enable_view(self) -> Any:
        return self._set(True)
