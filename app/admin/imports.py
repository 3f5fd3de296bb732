"""Certificates > Import: upload ZIPs, bundles or single files into an organization or
department, follow the job, download each file's fate as CSV."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, redirect, request, stream_with_context, url_for
from flask_admin import expose
from wtforms import MultipleFileField, SelectField
from wtforms.validators import InputRequired

from app.admin.base import AdminForm, SecureView, actor, current_scope
from app.admin.choices import parse_target, target_choices
from app.downloads import content_disposition
from app.extensions import db
from app.ids import parse_id
from app.models import Job, JobStatus
from app.services.errors import NotFound
from app.services.imports import imports
from app.services.imports.findings import LABELS

# Results shown on the import's page; the CSV has them all.
SHOWN_RESULTS = 200


class ImportForm(AdminForm):
    target = SelectField("Into", validators=[InputRequired()], validate_choice=False)
    files = MultipleFileField(
        "Files",
        description="ZIP archives of .cer/.crt/.pem/.der/.p7b/.p7c files, PEM bundles, "
        "PKCS#7 bundles or single certificates; several at once.",
    )


class ImportView(SecureView):
    field_map = {"files": "files", "department": "target"}

    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        form = ImportForm()
        form.target.choices = target_choices()
        if form.validate_on_submit():
            org_id, dept_id = parse_target(form.target.data)
            uploads = [
                imports.Upload(f.filename or "", f.read())
                for f in request.files.getlist(form.files.name)
                if f and f.filename
            ]
            record = self.run_service(
                form,
                lambda: imports.start_import(
                    actor=actor(),
                    organization_id=org_id,
                    department_id=dept_id,
                    uploads=uploads,
                ),
            )
            if record:
                return redirect(url_for(".details", id=record.id))
        return self.render(
            "admin/imports/index.html",
            form=form,
            limits=imports.limits(),
            max_upload=imports.max_upload_bytes(),
            recent=imports.list_imports(actor=actor(), limit=20),
        )

    def _record(self) -> Any:
        import_id = parse_id(request.args.get("id"))
        if import_id is None:
            abort(404)
        try:
            return imports.get_import(actor=actor(), import_id=import_id)
        except NotFound:
            db.session.commit()  # the denied attempt stays in the audit log
            abort(404)

    @expose("/details/")
    def details(self) -> Any:
        record = self._record()
        job = db.session.get(Job, record.job_id) if record.job_id else None
        return self.render(
            "admin/imports/details.html",
            record=record,
            job=job,
            running=job is not None and job.status in (JobStatus.PENDING, JobStatus.RUNNING),
            results=imports.shown_results(import_id=record.id, limit=SHOWN_RESULTS),
            shown=SHOWN_RESULTS,
            finding_labels=LABELS,
            findings=imports.findings_of_import(import_id=record.id, scope=current_scope()),
        )

    @expose("/download/")
    def download(self) -> Any:
        record = self._record()
        lines = imports.results_csv(actor=actor(), import_id=record.id)
        return Response(
            stream_with_context(lines),
            mimetype="text/csv",
            headers={"Content-Disposition": content_disposition(f"import-{record.id}.csv")},
        )
