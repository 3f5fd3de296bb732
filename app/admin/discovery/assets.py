"""Console: Discovery > Network Assets (per-task summaries and chart, the discovered
endpoints with their certificates and health flags, details with the presented chain,
bulk Assign To)."""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import BaseSQLAFilter, BooleanEqualFilter, FilterEqual
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import SelectField

from app.admin import display
from app.admin.base import (
    AdminForm,
    SecureModelView,
    actor,
    current_scope,
    per_request,
    select_choices,
)
from app.admin.choices import parse_target, target_choices
from app.admin.display import ERROR_LABELS, FLAG_LABELS
from app.extensions import db
from app.ids import parse_ids
from app.models import CertType, DiscoveryTask, Endpoint
from app.reports import figures
from app.scan.starttls import Protocol
from app.services.certificates import inventory
from app.services.discovery import endpoints, results
from app.services.errors import DomainError, NotFound
from app.services.scope import Scope

STATE_BADGE = {"Managed": "success", "Assigned": "primary", "Not assigned": "warning"}


def visible_task_choices() -> list[tuple[int, str]]:
    query = select(DiscoveryTask.id, DiscoveryTask.name).order_by(DiscoveryTask.name)
    ids = endpoints.visible_task_ids(current_scope())
    if ids is not None:
        query = query.where(DiscoveryTask.id.in_(sorted(ids) or [-1]))
    return [(task_id, name) for task_id, name in db.session.execute(query)]


class InventoryStateFilter(BaseSQLAFilter):
    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.filter(endpoints.inventory_state_clause(value))

    def operation(self) -> str:
        return "is"

    def validate(self, value: Any) -> bool:
        return value in endpoints.INVENTORY_STATES


def _flags(view: Any, context: Any, model: Endpoint, name: str) -> Markup:
    badges = [
        Markup('<span class="badge badge-danger cw-flag" data-flag="{}">{}</span>').format(
            flag, FLAG_LABELS[flag]
        )
        for flag in model.flags
    ]
    if model.error:
        badges.append(
            Markup('<span class="badge badge-secondary cw-error" title="{}">{}</span>').format(
                model.error_detail, ERROR_LABELS.get(model.error, model.error)
            )
        )
    return Markup(" ").join(badges) if badges else Markup('<span class="text-muted">none</span>')


def _state(view: Any, context: Any, model: Endpoint, name: str) -> Markup:
    state = endpoints.inventory_state(model.certificate)
    if not state:
        return Markup("")
    return Markup('<span class="badge badge-{}">{}</span>').format(STATE_BADGE[state], state)


def _task(view: Any, context: Any, model: Endpoint, name: str) -> str:
    # Once per request, not per row (a list page or an export of thousands of rows).
    if "cw_visible_tasks" not in g:
        g.cw_visible_tasks = endpoints.visible_task_ids(current_scope())
    visible = g.cw_visible_tasks
    return model.task.name if visible is None or model.task_id in visible else ""


def _cert(attr: str) -> Any:
    def show(view: Any, context: Any, model: Endpoint, name: str) -> Any:
        cert = model.certificate
        if cert is None:
            return ""
        value = getattr(cert, attr)
        if attr.startswith("not_"):  # the day in the list, the full time on hover
            day = value.astimezone(display.admin_zone()).strftime("%Y-%m-%d")
            return Markup('<span title="{}">{}</span>').format(display.local_time(value), day)
        return value

    return show


def _key(view: Any, context: Any, model: Endpoint, name: str) -> str:
    cert = model.certificate
    if cert is None:
        return ""
    return cert.key_type or cert.key_algorithm


def _export_cert(attr: str) -> Any:
    """A certificate column as plain text for exports (times in ISO 8601, UTC)."""

    def value(view: Any, context: Any, model: Endpoint, name: str) -> Any:
        cert = model.certificate
        if cert is None:
            return ""
        found = getattr(cert, attr)
        return found.isoformat() if hasattr(found, "isoformat") else found

    return value


EXPORT_FORMATTERS = {
    "common_name": _export_cert("common_name"),
    "not_before": _export_cert("not_before"),
    "not_after": _export_cert("not_after"),
    "key": _key,
    "signature_algorithm": _export_cert("signature_algorithm"),
    "issuer": _export_cert("issuer_dn"),
    "fingerprint": _export_cert("fingerprint"),
    "state": lambda v, c, m, n: endpoints.inventory_state(m.certificate),
    "flags": lambda v, c, m, n: ", ".join(FLAG_LABELS[f] for f in m.flags),
    "error": lambda v, c, m, n: ERROR_LABELS.get(m.error, m.error) if m.error else "",
    "task": _task,
    "last_seen_at": lambda v, c, m, n: m.last_seen_at.isoformat(),
}


class AssignForm(AdminForm):
    target = SelectField("Assign to", validate_choice=False)


class NetworkAssetView(SecureModelView):
    """Every endpoint a scan found, joined to the certificate it presented."""

    can_create = False
    can_edit = False
    can_delete = False
    named_filter_urls = True
    column_list = (
        "ip",
        "host_name",
        "port",
        "protocol",
        "common_name",
        "not_before",
        "not_after",
        "key",
        "signature_algorithm",
        "state",
        "tls_version",
        "flags",
        "task",
    )
    record_noun = "Endpoint"

    def empty_actions(self) -> list[tuple[str, str]]:
        return [("Open Network Discovery Tasks", url_for("discovery_tasks.index_view"))]

    empty_text = (
        "Nothing found on the network yet: the endpoints that discovery tasks find appear "
        "here with their certificates and health."
    )
    search_hint = "Search by IP address or host name"
    column_labels = {
        "ip": "IP",
        "port": "Port",
        "protocol": "Protocol",
        "task": "Found by task",
        "host_name": "Host name",
        "common_name": "CN",
        "not_before": "Valid from",
        "not_after": "Valid to",
        "key": "Key",
        "signature_algorithm": "Signature",
        "state": "Inventory state",
        "tls_version": "TLS",
        "flags": "Health",
        "last_seen_at": "Last seen",
    }
    column_formatters = {
        "common_name": _cert("common_name"),
        "not_before": _cert("not_before"),
        "not_after": _cert("not_after"),
        "key": _key,
        "signature_algorithm": _cert("signature_algorithm"),
        "state": _state,
        "flags": _flags,
        "task": _task,
    }
    column_sortable_list = (
        "ip",
        "port",
        "protocol",
        "host_name",
        ("common_name", "certificate.common_name"),
        ("not_after", "certificate.not_after"),
        "tls_version",
    )
    column_default_sort = [("ip", False), ("port", False)]
    column_searchable_list = ("ip", "host_name")
    # Exports (CSV, JSON) hold what the list shows, as plain values, with the same scope,
    # filters, search and sort as the list they were asked from.
    can_export = True
    export_types = ["csv", "json"]
    column_export_list = (
        "ip",
        "host_name",
        "port",
        "protocol",
        "common_name",
        "not_before",
        "not_after",
        "key",
        "signature_algorithm",
        "issuer",
        "fingerprint",
        "state",
        "tls_version",
        "cipher",
        "flags",
        "error",
        "task",
        "last_seen_at",
    )
    column_formatters_export = EXPORT_FORMATTERS
    details_template = "admin/discovery/endpoint_details.html"
    list_template = "admin/discovery/assets_list.html"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Endpoint, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        return endpoints.visible_endpoints_clause(scope)

    def get_query(self) -> Any:
        # Every row shows its certificate: load them with the page (one query, not one a
        # row; Flask-Admin joins the task itself), which also lets an export stream without
        # going back to the database.
        return super().get_query().options(selectinload(Endpoint.certificate))

    def get_filters(self) -> Any:
        states = [(s, s) for s in endpoints.INVENTORY_STATES]
        errors = [(k, v) for k, v in ERROR_LABELS.items() if k in results.KEPT_ERRORS]
        return [
            FilterEqual(Endpoint.task_id, "Task", options=per_request(visible_task_choices)),
            InventoryStateFilter(Endpoint.certificate_id, "Inventory state", options=states),
            *(BooleanEqualFilter(getattr(Endpoint, f), label) for f, label in FLAG_LABELS.items()),
            FilterEqual(Endpoint.error, "Handshake error", options=errors),
            FilterEqual(
                Endpoint.protocol, "Protocol", options=[(p.value, p.value) for p in Protocol]
            ),
            FilterEqual(Endpoint.certificate_id, "Certificate id"),
        ]

    # --- the summary and chart above the list ------------------------------------------
    def render(self, template: str, **kwargs: Any) -> Any:
        if template == self.list_template:
            kwargs.update(self._summaries())
        return super().render(template, **kwargs)

    def _summaries(self) -> dict[str, Any]:
        tasks = [db.session.get(DiscoveryTask, task_id) for task_id, _ in visible_task_choices()]
        rows = [(t, endpoints.task_summary(t.id)) for t in tasks if t is not None]
        chosen = request.args.get("chart", "")
        chart_task = next((t for t, _ in rows if str(t.id) == chosen), None)
        if chart_task is None:
            latest = endpoints.latest_runs([t.id for t, _ in rows])
            ran = sorted(latest.values(), key=lambda run: run.id, reverse=True)
            chart_task = next((t for t, _ in rows if ran and t.id == ran[0].task_id), None)
        figure = None
        if chart_task is not None:
            zone = display.admin_zone()
            figure = figures.scan_history_figure(
                figures.scan_points(endpoints.history_rows(chart_task.id)),
                title=f"{chart_task.name}: certificates per scan",
                zone=zone,
                zone_name=zone.key,
            )
        return {"summaries": rows, "chart_task": chart_task, "figure": figure}

    # --- details -------------------------------------------------------------------
    @expose("/details/")
    def details_view(self) -> Any:
        endpoint = self.get_one(request.args.get("id"))
        if endpoint is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        cert = endpoint.certificate
        cert_url = None
        if cert is not None and cert.cert_type is not None:
            try:
                inventory.get_certificate(actor=actor(), certificate_id=cert.id)
                if cert.organization_id is not None:
                    cert_url = url_for(f"{cert.cert_type.value}_certs.details_view", id=cert.id)
            except NotFound:
                cert_url = None
        return self.render(
            self.details_template,
            endpoint=endpoint,
            cert=cert,
            chain=endpoints.presented_chain(endpoint),
            state=endpoints.inventory_state(cert),
            assigned_by=endpoints.assigned_by(actor=actor(), certificate=cert) if cert else "",
            task_name=_task(self, None, endpoint, "task"),
            cert_url=cert_url,
            flag_labels=FLAG_LABELS,
            error_label=ERROR_LABELS.get(endpoint.error, endpoint.error),
            install=inventory.install_state(cert) if cert else "",
        )

    # --- Assign To ---------------------------------------------------------------------
    @action("assign", "Assign To")
    def action_assign(self, ids: list[str]) -> Any:
        return redirect(url_for(".assign_view", ids=",".join(ids)))

    @expose("/assign/", methods=("GET", "POST"))
    def assign_view(self) -> Any:
        ids = parse_ids(request.values.get("ids"))
        chosen = [e for e in (self.get_one(i) for i in ids) if e is not None]
        if not chosen:
            flash("Choose the endpoints whose certificates to assign.", "error")
            return redirect(url_for(".index_view"))
        scope = current_scope()
        form = AssignForm()
        form.target.choices = select_choices(
            (value, label)
            for value, label in target_choices()
            if scope.may(CertType.SSL, *parse_target(value))
        )
        if form.validate_on_submit():
            org_id, dept_id = parse_target(form.target.data or "")
            try:
                result = endpoints.assign_endpoints(
                    actor=actor(),
                    endpoint_ids=[e.id for e in chosen],
                    organization_id=org_id,
                    department_id=dept_id,
                )
                db.session.commit()
                where = next(
                    (c.label for c in form.target.choices if c.value == form.target.data), ""
                ).removesuffix(" (whole organization)")
                message = f"{result.assigned} certificate(s) assigned to {where}."
                if result.managed:
                    message += f" {result.managed} managed certificate(s) keep the place their request gave them."
                flash(message, "success")
                return redirect(url_for(".index_view"))
            except DomainError as exc:
                db.session.rollback()
                form.target.errors = [exc.message]
        return self.render(
            "admin/discovery/assign.html",
            form=form,
            endpoints=chosen,
            ids=",".join(str(e.id) for e in chosen),
        )
