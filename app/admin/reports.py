"""Reports > Run a report: pick a type, filters and a format; follow the job; download.
Reports > Account Structure downloads at once (XML)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, request, stream_with_context, url_for
from flask_admin import expose
from sqlalchemy import select
from wtforms import BooleanField, DateField, SelectField, StringField
from wtforms.validators import Length, Optional

from app.admin.base import AdminForm, SecureView, actor, select_choices
from app.admin.choices import parse_target, target_choices
from app.downloads import content_disposition
from app.extensions import db
from app.ids import parse_id
from app.models import CertificateProfile
from app.services.errors import DomainError, NotFound
from app.services.reports import account_structure, catalog, generation
from app.services.reports.catalog import Filters

FORMATS = [("csv", "CSV"), ("xml", "XML"), ("html", "HTML (one self-contained page)")]


class ReportForm(AdminForm):
    report_type = SelectField(
        "Report", choices=select_choices((t.key, t.title) for t in catalog.TYPES.values())
    )
    fmt = SelectField("Format", choices=select_choices(FORMATS))
    bom = BooleanField("CSV for Excel (UTF-8 byte order mark)")
    date_from = DateField("From", validators=[Optional()])
    date_to = DateField("To (included)", validators=[Optional()])
    date_field = SelectField("Dates apply to", validate_choice=False)
    target = SelectField("Organization / department", validate_choice=False)
    status = SelectField("Status", validate_choice=False)
    profile = SelectField("Profile", validate_choice=False)
    issuer = StringField("Issuer contains", validators=[Optional(), Length(max=255)])


def _profiles() -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(CertificateProfile.id, CertificateProfile.name).order_by(CertificateProfile.name)
    )
    return [("", "any")] + [(str(i), n) for i, n in rows]


class ReportsView(SecureView):
    field_map = {
        "type": "report_type",
        "format": "fmt",
        "organization_id": "target",
        "department_id": "target",
        "profile_id": "profile",
    }

    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        form = ReportForm()
        fields = sorted({f for t in catalog.TYPES.values() for f in t.date_fields})
        statuses = sorted({s for t in catalog.TYPES.values() for s in t.statuses})
        form.date_field.choices = select_choices(
            [("", "the report's first"), *((f, f) for f in fields)]
        )
        form.status.choices = select_choices([("", "any"), *((s, s) for s in statuses)])
        form.target.choices = select_choices([("", "everything you may see"), *target_choices()])
        form.profile.choices = select_choices(_profiles())
        if form.validate_on_submit():
            org_id, dept_id = parse_target(form.target.data) if form.target.data else (None, None)
            filters = Filters(
                date_from=form.date_from.data,
                date_to=form.date_to.data,
                date_field=form.date_field.data or "",
                organization_id=org_id,
                department_id=dept_id,
                status=form.status.data or "",
                profile_id=parse_id(form.profile.data),
                issuer=(form.issuer.data or "").strip(),
            )
            report = self.run_service(
                form,
                lambda: generation.start_report(
                    actor=actor(),
                    report_type=form.report_type.data,
                    fmt=form.fmt.data,
                    filters=filters,
                    bom=bool(form.bom.data),
                ),
                success=lambda r: f"Report #{r.id} started.",
            )
            if report:
                return redirect(url_for(".index"))
        reports = generation.visible_reports(actor=actor())
        return self.render(
            "admin/reports/index.html",
            form=form,
            reports=reports,
            progress=generation.progress,
            types=catalog.TYPES,
            running=any(r.status in generation.ACTIVE for r in reports),
            keep_days=generation.keep_days(),
        )

    def _report_id(self) -> int:
        report_id = parse_id(request.values.get("id"))
        if report_id is None:
            abort(404)
        return report_id

    @expose("/download/")
    def download(self) -> Any:
        try:
            result = generation.download(actor=actor(), report_id=self._report_id())
            db.session.commit()
        except NotFound:
            db.session.commit()  # the denied attempt stays in the audit log
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return redirect(url_for(".index"))
        return Response(
            stream_with_context(result.chunks),
            mimetype=result.mimetype,
            headers={"Content-Disposition": content_disposition(result.filename)},
        )

    @expose("/view/")
    def view(self) -> Any:
        """A finished report's charts (drawn by the console's script from data-figure
        attributes: no inline script) with its facts and download link."""
        report_id = self._report_id()
        found = self.run_service(
            None, lambda: generation.get_report(actor=actor(), report_id=report_id)
        )
        if not found:
            abort(404)
        return self.render(
            "admin/reports/view.html",
            report=found,
            title=catalog.report_type(found.report_type).title,
            figures=generation.figures(found) if found.status == "done" else [],
        )

    @expose("/cancel/", methods=("POST",))
    def cancel(self) -> Any:
        report_id = self._report_id()
        self.run_service(
            None,
            lambda: generation.cancel_report(actor=actor(), report_id=report_id),
            success=f"Report #{report_id} cancelled.",
        )
        return redirect(url_for(".index"))

    @expose("/account-structure/")
    def structure(self) -> Any:
        chunks = account_structure.account_structure_xml(actor=actor())
        db.session.commit()
        return Response(
            chunks,
            mimetype="application/xml",
            headers={"Content-Disposition": content_disposition("account-structure.xml")},
        )
