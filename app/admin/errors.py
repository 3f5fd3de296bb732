"""Console error pages: 403 and 404 in the console's layout, saying what to do next.

Machine-facing paths (the relying-party endpoints under /pki/, JSON status endpoints) keep
short plain answers; the end-user portal has its own page. Everything else a person may
reach in a browser gets the console's navigation, so the way back is one click away."""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template, request
from flask_admin import Admin as Console
from flask_login import current_user
from werkzeug.exceptions import HTTPException

PAGES = {
    403: (
        "You may not open this page",
        "Your role or your organizations and departments do not include it. An MRAO can "
        "grant the privilege under Admins; until then, choose a page you may use from the menu.",
    ),
    404: (
        "Page not found",
        "Nothing is at this address: the link may be mistyped, or the record was deleted or "
        "lies outside your organizations. Use the menu, or search the list you came from.",
    ),
}


# The end-user portal's front doors (app/portal/): registration, self-service, collection.
PORTAL_PATHS = ("/collect/", "/enroll/", "/portal/")


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and not request.accept_mimetypes.accept_html


def init_error_pages(app: Flask, console: Console) -> None:
    def page(exc: HTTPException) -> Any:
        code = exc.code or 500
        title, explanation = PAGES[code]
        if request.path.startswith("/pki/") or _wants_json():
            return {"error": title}, code
        if request.path.startswith(PORTAL_PATHS):
            # End users: the portal's own page, never the console's menu or sign-in.
            return (
                render_template(
                    "portal/error.html",
                    title=title,
                    collection=request.path.startswith("/collect/"),
                ),
                code,
            )
        return (
            console.index_view.render(
                "admin/error.html",
                code=code,
                title=title,
                explanation=explanation,
                path=request.path,
                signed_in=current_user.is_authenticated,
            ),
            code,
        )

    app.register_error_handler(403, page)
    app.register_error_handler(404, page)
