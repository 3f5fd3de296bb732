"""The portal's front page: what an end user can do here."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

bp = Blueprint("portal_home", __name__)


@bp.get("/portal/")
def index() -> Any:
    return render_template("portal/home.html")
