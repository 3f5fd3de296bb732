"""Public PKI endpoints: CRLs (CDP), the OCSP responder and CA certificates (AIA)."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Blueprint, Response, abort, request

from app.downloads import attachment
from app.extensions import csrf, db
from app.models import CertificateAuthority
from app.pki import ocsp as pki_ocsp
from app.pki.errors import OcspRequestError
from app.services.ca import ocsp

bp = Blueprint("pki", __name__, url_prefix="/pki")
csrf.exempt(bp)  # RFC 6960 POSTs come from relying parties, not from our forms

OCSP_MAX = 16 * 1024


def _ca(ca_id: int) -> CertificateAuthority:
    authority = db.session.get(CertificateAuthority, ca_id)
    if authority is None:
        abort(404)
    return authority


@bp.get("/crl/<int:ca_id>.crl")
def crl(ca_id: int) -> Any:
    authority = _ca(ca_id)
    if authority.crl_der is None:
        abort(404)
    response = attachment(
        authority.crl_der, filename=f"ca{ca_id}.crl", mimetype="application/pkix-crl"
    )
    if authority.crl_this_update:
        response.last_modified = authority.crl_this_update
    return response


@bp.get("/ca/<int:ca_id>.cer")
def ca_certificate(ca_id: int) -> Any:
    """DER (RFC 5280 §4.2.2.1 caIssuers: a single DER certificate, application/pkix-cert)."""
    return attachment(
        _ca(ca_id).cert_der, filename=f"ca{ca_id}.cer", mimetype="application/pkix-cert"
    )


@bp.get("/ca/<int:ca_id>.pem")
def ca_certificate_pem(ca_id: int) -> Any:
    pem = x509.load_der_x509_certificate(_ca(ca_id).cert_der).public_bytes(Encoding.PEM)
    return attachment(pem, filename=f"ca{ca_id}.pem", mimetype="application/x-pem-file")


def _ocsp_response(der: bytes) -> Response:
    response = Response(der, mimetype="application/ocsp-response")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.post("/ocsp/<int:ca_id>")
@bp.post("/ocsp")
def ocsp_post(ca_id: int | None = None) -> Any:
    body = request.get_data(cache=False)
    if len(body) > OCSP_MAX:
        return _ocsp_response(pki_ocsp.malformed_response())
    return _ocsp_response(ocsp.answer(body))


@bp.get("/ocsp/<int:ca_id>/<path:encoded>")
def ocsp_get(ca_id: int, encoded: str) -> Any:
    try:
        der = pki_ocsp.decode_get_path(encoded)
    except OcspRequestError:
        return _ocsp_response(pki_ocsp.malformed_response())
    return _ocsp_response(ocsp.answer(der))
