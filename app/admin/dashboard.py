"""Console: the Dashboard (admin index) with the welcome panel and scoped counts."""

from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for
from flask_admin import AdminIndexView, expose
from flask_login import current_user
from wtforms import IntegerField, StringField
from wtforms.validators import Length
from wtforms.widgets import HiddenInput

from app.admin import display
from app.admin.base import AdminForm, SecureMixin
from app.models import CertType
from app.models.types import utcnow
from app.reports import charts
from app.services.certificates import risks
from app.services.reports import dashboard
from app.services.structure import orgs


class LocationForm(AdminForm):
    org_id = IntegerField(widget=HiddenInput())
    city = StringField("City", validators=[Length(max=128)])
    state = StringField("State / province", validators=[Length(max=128)])


WIDE = (
    "cw-chart-timeline",
    "cw-chart-requests",
    "cw-chart-pending",
    "cw-chart-discovery",
)  # charts drawn twice as wide
# Rows of the laptop grid: narrow charts take a quarter, wide ones half.
ORDER = (
    "cw-chart-expiring",
    "cw-chart-status",
    "cw-chart-timeline",
    "cw-chart-requests",
    "cw-chart-pending",
    "cw-chart-type",
    "cw-chart-key",
    "cw-chart-issuer",
    "cw-chart-signature",
    "cw-chart-origin",
    "cw-chart-delegations",
    "cw-chart-discovery",
)
DELEGATION_COLOURS = {"Requested": "#ffc107", "Approved": "#28a745", "Rejected": "#dc3545"}


class DashboardView(SecureMixin, AdminIndexView):
    @expose("/")
    def index(self) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        data = dashboard.page(actor=current_user)
        steps = data.steps
        return self.render(
            "admin/dashboard.html",
            counts=data.headline,
            running=data.running,
            me=current_user,
            show_welcome=not current_user.welcome_dismissed,
            steps=steps,
            location_form=LocationForm() if steps.org_without_location else None,
            links=self._step_links(),
            overview=data.overview,
            charts=self._ordered(self._charts(data)),
            risks=self._risks(data.risks),
            types=list(CertType),
            wide=WIDE,
        )

    @staticmethod
    def _ordered(drawn: dict[str, Any]) -> dict[str, Any]:
        return {key: drawn[key] for key in ORDER if key in drawn}

    def _step_links(self) -> dict[str, str]:
        """Where each welcome step is done, for the steps this admin may take."""
        wanted = {
            "organization": ("organization", "index_view"),
            "domain": ("domain", "create_view"),
            "delegation": ("delegation", "create_view"),
            "ca": ("cas", "create_view"),
            "profile": ("profiles", "create_view"),
            "request": ("ssl_requests", "create_view"),
            "certificates": ("ssl_certs", "index_view"),
        }
        links = {}
        for step, (endpoint, page) in wanted.items():
            view = next(
                (v for v in self.admin._views if getattr(v, "endpoint", None) == endpoint), None
            )
            if view is not None and view.is_accessible():
                if page == "create_view" and getattr(view, "can_create", True) is not True:
                    continue
                links[step] = url_for(f"{endpoint}.{page}")
        return links

    @expose("/first-location/", methods=("POST",))
    def location_view(self) -> Any:
        """The welcome asks where the bootstrap organization is (SSL subjects need it)."""
        form = LocationForm()
        if form.validate_on_submit():
            self.run_service(
                None,
                lambda: orgs.set_location(
                    actor=current_user,
                    org_id=form.org_id.data or 0,
                    city=form.city.data or "",
                    state=form.state.data or "",
                ),
                success=lambda org: f"Organization '{org.name}' is in {org.city or org.state}.",
            )
        return redirect(url_for(".index"))

    def _list_url(self, endpoint: str, filter_name: str | None = None, value: str = "") -> str:
        """The list a chart element summarises (filtered), if the admin may open it."""
        return self._filtered_url(endpoint, [(filter_name, value)] if filter_name else [])

    def _filtered_url(self, endpoint: str, filters: list[tuple[str, str]]) -> str:
        """The list filtered by every (filter name, value), if the admin may open it; a
        filter the list lacks leaves no link (a wider list would not be what was counted)."""
        view = next(
            (v for v in self.admin._views if getattr(v, "endpoint", None) == endpoint), None
        )
        if view is None or not view.is_accessible():
            return ""
        args = {}
        for position, (name, value) in enumerate(filters):
            found = next(
                ((index, flt) for index, flt in enumerate(view._filters or []) if flt.name == name),
                None,
            )
            if found is None:
                return ""
            args[f"flt{position}_{view.get_filter_arg(*found)}"] = value
        return url_for(f"{endpoint}.index_view", **args)

    def _charts(self, data: dashboard.Page) -> dict[str, Any]:
        summary = data.overview
        statuses = ("Issued", "Expired", "Revoked", "Replaced", "External")
        by_status = [
            charts.Bar(
                s,
                summary.by_status.get(s, 0),
                self._list_url("ssl_certs", "Status", s),
                charts.STATUS_COLOURS[s],
            )
            for s in statuses
        ]
        by_type = [
            charts.Bar(t.label, summary.by_type.get(t, 0), self._list_url(f"{t.value}_certs"))
            for t in CertType
        ]

        def links(filter_name: str, values: Any) -> dict[str, str]:
            return {v: self._list_url("ssl_certs", filter_name, v) for v in values if v}

        by_key = [
            charts.Bar(k, n, self._list_url("ssl_certs", "Key type", k) if k != "unknown" else "")
            for k, n in sorted(summary.by_key.items())
        ]
        expiring = charts.expiry_bars(
            summary.expiring,
            [self._list_url("ssl_certs", "Expires", f"{a}-{b}") for a, b in charts.EXPIRY_WINDOWS],
        )
        by_origin = [
            charts.Bar(o, summary.by_origin.get(o, 0), self._list_url("ssl_certs", "Origin", o))
            for o in ("Issued", "Discovered", "Imported")
        ]
        timeline = charts.timeline_figure(
            summary.expiring_weeks,
            utcnow().date(),
            [
                self._list_url("ssl_certs", "Expires in week", f"{a}-{b}")
                for a, b in charts.week_windows()
            ],
        )
        delegations = [
            charts.Bar(
                label,
                count,
                self._list_url("delegation", "Status", label),
                DELEGATION_COLOURS.get(label, "#6c757d"),
            )
            for label, count in data.delegations.items()
        ]
        return {
            "cw-chart-status": charts.bar_figure("Certificates by status", by_status),
            "cw-chart-requests": self._requests_chart(data.months),
            "cw-chart-pending": self._pending_chart(data.pending),
            "cw-chart-timeline": timeline,
            "cw-chart-delegations": charts.bar_figure("Domain delegations", delegations),
            "cw-chart-expiring": charts.bar_figure("Expiring soon", expiring),
            "cw-chart-type": charts.bar_figure("Certificates by type", by_type),
            "cw-chart-key": charts.donut_figure("Keys", by_key),
            "cw-chart-issuer": charts.bar_figure(
                "By issuer",
                charts.top_bars(summary.by_issuer, links("Issuer", summary.by_issuer)),
            ),
            "cw-chart-signature": charts.donut_figure(
                "Signature algorithms",
                charts.top_bars(
                    summary.by_signature, links("Signature algorithm", summary.by_signature)
                ),
            ),
            "cw-chart-origin": charts.bar_figure("By origin", by_origin),
            "cw-chart-discovery": self._discovery_chart(data.trend),
        }

    def _requests_chart(self, months: list[dashboard.MonthCounts]) -> dict[str, Any]:
        """Requests made and certificates issued per month (every type the admin holds;
        the bars open the SSL lists of that month, as the other charts do)."""
        labels = [m.month.strftime("%b %Y") for m in months]
        keys = [m.month.strftime("%Y-%m") for m in months]
        requested = [
            charts.Bar(label, m.requested, self._list_url("ssl_requests", "Requested", key))
            for label, key, m in zip(labels, keys, months, strict=True)
        ]
        issued = [
            charts.Bar(
                label,
                m.issued,
                self._filtered_url("ssl_certs", [("Origin", "Issued"), ("Added", key)]),
            )
            for label, key, m in zip(labels, keys, months, strict=True)
        ]
        return charts.series_figure(
            "Requests vs issued, by month",
            labels,
            [
                charts.Series("Requested", "#6c757d", requested),
                charts.Series("Issued", "#28a745", issued),
            ],
        )

    def _pending_chart(self, pending: dict[CertType, list[int]]) -> dict[str, Any]:
        """Requests awaiting approval by type, stacked by how long they have waited; each
        piece opens that type's request list filtered to Requested and that wait."""
        types = list(CertType)
        series = [
            charts.Series(
                label,
                charts.PENDING_AGE_COLOURS[i],
                [
                    charts.Bar(
                        t.label,
                        pending[t][i],
                        self._filtered_url(
                            f"{t.value}_requests",
                            [("Status", "Requested"), ("Waiting", charts.age_key(start, end))],
                        ),
                    )
                    for t in types
                ],
            )
            for i, ((start, end), label) in enumerate(
                zip(charts.PENDING_AGES, charts.PENDING_AGE_LABELS, strict=True)
            )
        ]
        return charts.series_figure(
            "Pending approvals, by type and wait", [t.label for t in types], series, stacked=True
        )

    def _discovery_chart(self, trend: list[dashboard.RunTrend]) -> dict[str, Any]:
        zone = display.admin_zone()
        points = [
            charts.RunPoint(
                label=f"{run.task_name} {run.finished_at.astimezone(zone):%m-%d %H:%M}",
                url=self._list_url("network_assets", "Task", str(run.task_id)),
                tls_endpoints=run.tls_endpoints,
                certificates=run.certificates,
                flagged=run.flagged,
            )
            for run in trend
        ]
        return charts.discovery_trend_figure(points)

    def _risks(self, found: dict[str, dict[CertType, int]]) -> list[dict[str, Any]]:
        """The top-risks table: per risk, the count by type, each opening that type's
        list filtered by the risk."""
        rows = []
        for code, per_type in found.items():
            cells = [
                (
                    t,
                    per_type[t],
                    self._filtered_url(f"{t.value}_certs", [("Risk", code)]),
                )
                for t in CertType
            ]
            rows.append(
                {
                    "code": code,
                    "label": risks.RISKS[code],
                    "cells": cells,
                    "total": sum(per_type.values()),
                }
            )
        return rows
