"""Certificate import over the REST API (a Certwright extension beside the contract's SSL
service, docs/api.md and docs/imports.md): a script uploads what it holds, as an admin
does on Certificates > Import and `flask --app wsgi cert import` does.

- ``POST /api/ssl/v1/import?orgId=N`` — multipart/form-data, one or more parts named
  ``file`` (a ZIP, PEM or PKCS#7 bundle, or a single certificate) → ``202`` with
  ``{"importId": id}`` and ``Location`` of the import. ``orgId`` may name a department
  (its API id, as everywhere in this API).
- ``GET /api/ssl/v1/import/{importId}`` → its state: status (pending, running, done,
  failed), progress, the per-fate counts and the message.
- ``GET /api/ssl/v1/import/{importId}/results`` → the per-file result CSV, the same bytes
  as the console's download.

The body limit of these calls is CW_IMPORT_MAX_UPLOAD_BYTES, not CW_API_MAX_BODY (base.py).
"""

from __future__ import annotations

from flask import Response, request, url_for

from app.api.scm.base import (
    ApiError,
    Codes,
    actor,
    answer,
    call,
    commit,
    query_int,
    route,
    split_org_id,
)
from app.downloads import content_disposition
from app.extensions import db
from app.models import Department, Job, JobStatus
from app.services.imports import imports

STATUS = {
    JobStatus.PENDING: "pending",
    JobStatus.RUNNING: "running",
    JobStatus.DONE: "done",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "failed",
}


def _not_found(import_id: int) -> tuple[int, str]:
    return (-1, f"Import '{import_id}' not found.")


@route("/ssl/v1/import", methods=["POST"])
def start_import() -> Response:
    org_value = query_int("orgId", minimum=1)
    if org_value is None:
        raise ApiError(400, -1023, "orgId is required: the organization (or department) to "
                       "import into.")  # fmt: skip
    org_id, dept_id = split_org_id(org_value)
    if dept_id is not None:
        dept = db.session.get(Department, dept_id)
        org_id = dept.organization_id if dept is not None else None
    if org_id is None:
        raise ApiError(404, -1023, f"Organization '{org_value}' not found.")
    if request.mimetype != "multipart/form-data":
        raise ApiError(
            400, -1601, "Send the files as multipart/form-data, one part named 'file' each."
        )
    uploads = [
        imports.Upload(part.filename or "", part.read())
        for part in request.files.getlist("file")
        if part is not None
    ]
    if not uploads:
        raise ApiError(400, -1601, "No part named 'file': choose at least one file to import.")
    record = call(
        lambda: imports.start_import(
            actor=actor(), organization_id=org_id, department_id=dept_id, uploads=uploads
        ),
        Codes(not_found=(-1023, f"Organization '{org_value}' not found.")),
    )
    commit()
    location = url_for(
        f"{request.blueprint}.import_state", import_id=record.id, _external=True
    ).rstrip("/")
    return answer({"importId": record.id}, status=202, headers={"Location": location})


@route("/ssl/v1/import/<int:import_id>", methods=["GET"])
def import_state(import_id: int) -> Response:
    record = call(
        lambda: imports.get_import(actor=actor(), import_id=import_id),
        Codes(not_found=_not_found(import_id)),
    )
    job = db.session.get(Job, record.job_id) if record.job_id is not None else None
    status = STATUS.get(job.status, "pending") if job is not None else "pending"
    return answer(
        {
            "importId": record.id,
            "status": status,
            "progress": job.progress if job is not None else 0,
            "files": list(record.files),
            "bytes": record.total_bytes,
            "counts": {k: int(v) for k, v in (record.counts or {}).items()},
            "message": record.message or (job.message if job is not None else ""),
            "created": record.created_at.isoformat(),
            "finished": record.finished_at.isoformat() if record.finished_at else None,
        }
    )


@route("/ssl/v1/import/<int:import_id>/results", methods=["GET"])
def import_results(import_id: int) -> Response:
    rows = call(
        lambda: "".join(imports.results_csv(actor=actor(), import_id=import_id)),
        Codes(not_found=_not_found(import_id)),
    )
    return Response(
        rows.encode("utf-8"),
        mimetype="text/csv",
        headers={"Content-Disposition": content_disposition(f"import-{import_id}.csv")},
    )
