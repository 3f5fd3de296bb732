"""The download link mailed with a scheduled report too large to attach: the signed token
is the authority (one report, until the link's expiry), no sign-in (docs/reports.md)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, stream_with_context

from app.downloads import content_disposition
from app.extensions import db
from app.services.errors import NotFound
from app.services.reports import schedules

bp = Blueprint("report_links", __name__)


@bp.route("/reports/link/<int:report_id>/<int:expires>/<token>")
def download(report_id: int, expires: int, token: str) -> Any:
    try:
        result = schedules.download_by_link(report_id=report_id, expires=expires, token=token)
        db.session.commit()
    except NotFound as exc:
        db.session.rollback()
        abort(Response(exc.message + "\n", status=404, mimetype="text/plain"))
    return Response(
        stream_with_context(result.chunks),
        mimetype=result.mimetype,
        headers={
            "Content-Disposition": content_disposition(result.filename),
            "Cache-Control": "no-store",
        },
    )
