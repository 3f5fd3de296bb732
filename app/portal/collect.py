"""The collection link mailed to requesters: certificate downloads without signing in."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template

from app.downloads import attachment, certificate_filename
from app.extensions import db
from app.models import Certificate
from app.pki.formats import FORMAT_LABELS
from app.services.certificates import inventory
from app.services.errors import DomainError

bp = Blueprint("collect", __name__)


@bp.get("/collect/<int:cert_id>/<token>")
def page(cert_id: int, token: str) -> Any:
    try:
        inventory.collect(certificate_id=cert_id, token=token, fmt="x509CO")
    except DomainError:
        abort(404)
    cert = db.session.get(Certificate, cert_id)
    return render_template("portal/collect.html", cert=cert, token=token, formats=FORMAT_LABELS)


@bp.get("/collect/<int:cert_id>/<token>/<fmt>")
def download(cert_id: int, token: str, fmt: str) -> Any:
    try:
        result = inventory.collect(certificate_id=cert_id, token=token, fmt=fmt)
    except DomainError:
        abort(404)
    cert = db.session.get(Certificate, cert_id)
    return attachment(
        result.content,
        filename=certificate_filename(cert.common_name if cert else None, fmt),
        mimetype=result.mime_type,
    )
