"""The collection link mailed to requesters: certificate downloads without signing in."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, render_template

from app.extensions import db
from app.models import Certificate
from app.pki.formats import DownloadFormat
from app.services import certificates
from app.services.errors import DomainError

bp = Blueprint("collect", __name__)

FORMAT_LABELS = [
    ("x509", "PEM: certificate, intermediates and root"),
    ("x509CO", "PEM: certificate only"),
    ("x509IO", "PEM: intermediates and root only"),
    ("x509IOR", "PEM: root and intermediates only (reversed)"),
    ("pemia", "PEM: certificate and intermediates (no root)"),
    ("base64", "PKCS#7, base64"),
    ("bin", "PKCS#7, binary"),
    ("cer", "DER certificate (.cer)"),
]
assert {f for f, _ in FORMAT_LABELS} <= {f.value for f in DownloadFormat}


@bp.get("/collect/<int:cert_id>/<token>")
def page(cert_id: int, token: str) -> Any:
    try:
        certificates.collect(certificate_id=cert_id, token=token, fmt="x509CO")
    except DomainError:
        abort(404)
    cert = db.session.get(Certificate, cert_id)
    return render_template("collect.html", cert=cert, token=token, formats=FORMAT_LABELS)


@bp.get("/collect/<int:cert_id>/<token>/<fmt>")
def download(cert_id: int, token: str, fmt: str) -> Any:
    try:
        result = certificates.collect(certificate_id=cert_id, token=token, fmt=fmt)
    except DomainError:
        abort(404)
    cert = db.session.get(Certificate, cert_id)
    name = (cert.common_name if cert else "certificate").replace("*", "star").replace("/", "_")
    return Response(
        result.content,
        mimetype=result.mime_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{result.extension}"'},
    )
