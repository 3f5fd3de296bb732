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
    Delegation,
    DelegationStatus,
    Department,
    Domain,
    Job,
    JobStatus,
    Organization,
)
from app.services import accounts, domains
from app.services.scope import department_clause, organization_clause


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
            "Administrators": _count(Admin, accounts.visible_admins_clause(scope)),
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
        )
