"""Reports > Validity Planner: what the 200/100/47-day caps on TLS certificates will cost,
per organization and month, with the certificates nobody renews automatically."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_admin import expose

from app.admin.base import SecureView, actor, escape_formula
from app.downloads import attachment
from app.reports.planner import CAPS, plan_csv, plan_figure
from app.services.errors import DomainError
from app.services.reports import planner


def _months() -> int:
    raw = request.args.get("months", "36")
    return int(raw) if raw.isdigit() and len(raw) < 4 else 0


class ValidityPlannerView(SecureView):
    @expose("/")
    def index(self) -> Any:
        months = _months()
        error = ""
        try:
            result = planner.validity_plan(actor=actor(), months=months)
        except DomainError as exc:
            error, months = exc.message, 36
            result = planner.validity_plan(actor=actor(), months=months)
        totals = [
            (
                org,
                sum(result.plan.renewals.get((org, m, "today"), 0) for m in result.plan.months),
                sum(result.plan.renewals.get((org, m, "caps"), 0) for m in result.plan.months),
                sum(result.plan.manual.get((org, m), 0) for m in result.plan.months),
            )
            for org in result.plan.organizations
        ]
        return self.render(
            "admin/planner.html",
            result=result,
            months=months,
            error=error,
            totals=totals,
            figure=plan_figure(result.plan),
            caps=CAPS[1:],
        )

    @expose("/csv/")
    def csv_view(self) -> Any:
        result = planner.validity_plan(actor=actor(), months=_months() or 36)
        return attachment(
            plan_csv(result.plan, escape=escape_formula).encode(),
            filename="validity-plan.csv",
            mimetype="text/csv",
        )
