"""Console: the Dashboard (admin index) with the welcome panel and scoped counts."""

from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for
from flask_admin import AdminIndexView, expose
from flask_login import current_user
from sqlalchemy import func, select

from app.admin.base import SecureMixin, current_scope
from app.extensions import db
from app.models import (
    Admin,
    CertType,
    Delegation,
    DelegationStatus,
    Department,
    Domain,
    Job,
    JobStatus,
    Organization,
)
from app.reports import charts
from app.services.accounts import admins
from app.services.reports import dashboard
from app.services.scope import department_clause, organization_clause
from app.services.structure import domains


def _count(model: Any, clause: Any) -> int:
    query = select(func.count()).select_from(model)
    if clause is not None:
        query = query.where(clause)
    return int(db.session.execute(query).scalar_one())


class DashboardView(SecureMixin, AdminIndexView):
    @expose("/")
    def index(self) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        scope = current_scope()
        delegation_clause = None if scope.is_master else domains.delegation_clause(scope)
        pending_clause = Delegation.status == DelegationStatus.REQUESTED
        if delegation_clause is not None:
            pending_clause = pending_clause & delegation_clause
        counts = {
            "Organizations": _count(Organization, organization_clause(scope)),
            "Departments": _count(Department, department_clause(scope)),
            "Domains": _count(Domain, domains.visible_domains_clause(scope)),
            "Delegations awaiting approval": _count(Delegation, pending_clause),
            "Administrators": _count(Admin, admins.visible_admins_clause(scope)),
        }
        running = (
            _count(Job, Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
            if scope.is_master
            else None
        )
        return self.render(
            "admin/dashboard.html",
            counts=counts,
            running=running,
            me=current_user,
            show_welcome=not current_user.welcome_dismissed,
            overview=(summary := dashboard.certificate_overview(actor=current_user)),
            charts=self._charts(summary),
        )

    def _list_url(self, endpoint: str, filter_name: str | None = None, value: str = "") -> str:
        """The list a chart element summarises (filtered), if the admin may open it."""
        view = next(
            (v for v in self.admin._views if getattr(v, "endpoint", None) == endpoint), None
        )
        if view is None or not view.is_accessible():
            return ""
        if filter_name is None:
            return url_for(f"{endpoint}.index_view")
        for index, flt in enumerate(view._filters or []):
            if flt.name == filter_name:
                return url_for(
                    f"{endpoint}.index_view", **{f"flt0_{view.get_filter_arg(index, flt)}": value}
                )
        return url_for(f"{endpoint}.index_view")

    def _charts(self, summary: dashboard.Overview) -> dict[str, Any]:
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
        by_key = [charts.Bar(k, n) for k, n in sorted(summary.by_key.items())]
        expiring = charts.expiry_bars(summary.expiring, [self._list_url("ssl_certs")] * 3)
        return {
            "cw-chart-status": charts.bar_figure("Certificates by status", by_status),
            "cw-chart-expiring": charts.bar_figure("Expiring soon", expiring),
            "cw-chart-type": charts.bar_figure("Certificates by type", by_type),
            "cw-chart-key": charts.donut_figure("Keys", by_key),
        }
