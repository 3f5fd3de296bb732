"""SCM-compatible REST API v1 under /api (docs/api.md, contract: shared/api/scm-rest-v1.md):
one module per SCM service, all on the blueprint of app/api/scm/base.py."""

from __future__ import annotations

from flask import Response

from app.api.scm import (
    acme,
    admin,
    dcv,
    domain,
    imports,
    organization,
    person,
    report,
    smime,
    ssl,
)
from app.api.scm.base import ApiError, bp, route
from app.api.scm.openapi import doc_bp

__all__ = [
    "acme",
    "admin",
    "bp",
    "dcv",
    "doc_bp",
    "domain",
    "imports",
    "organization",
    "person",
    "report",
    "smime",
    "ssl",
]


@route("/", methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
@route("/<path:unknown>", methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
def unknown_operation(unknown: str = "") -> Response:
    """Anything under /api that is no operation of the contract (after authentication)."""
    raise ApiError(404, -1, f"No such operation: /api/{unknown.rstrip('/')}")
