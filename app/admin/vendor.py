"""Browser assets outside /static: third-party files served from their installed Python
packages (no CDN: the console works on closed networks; plotly.min.js comes from the
plotly wheel), and /favicon.ico, which browsers ask for on every site."""

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


FAVICON = Path(__file__).resolve().parent.parent / "static" / "favicon.svg"


@bp.get("/favicon.ico")
def favicon() -> Response:
    # Pages name the SVG icon with <link rel="icon">; this answers browsers that ask anyway.
    return send_file(FAVICON, mimetype="image/svg+xml", max_age=ONE_YEAR)


@bp.app_template_global("plotly_url")
def plotly_url() -> str:
    return url_for("assets.plotly_js", version=PLOTLY_VERSION)
