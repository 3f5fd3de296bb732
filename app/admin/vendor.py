"""Third-party browser assets served from their installed Python packages (no CDN: the
console works on closed networks). plotly.min.js comes from the plotly wheel."""

from __future__ import annotations

from pathlib import Path

import plotly
from flask import Blueprint, Response, send_file, url_for

bp = Blueprint("assets", __name__)

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_VERSION = plotly.__version__
ONE_YEAR = 365 * 24 * 3600


@bp.get("/assets/plotly-<version>.min.js")
def plotly_js(version: str) -> Response:
    # The version in the URL busts caches on upgrade; any version serves the installed file.
    return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=ONE_YEAR)


@bp.app_template_global("plotly_url")
def plotly_url() -> str:
    return url_for("assets.plotly_js", version=PLOTLY_VERSION)
