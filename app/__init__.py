"""Certwright: the application factory. No I/O here beyond reading configuration."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, abort, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Config


def create_app(config: Any = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_object(config if config is not None else Config())
    logging.basicConfig(
        level=app.config.get("LOG_LEVEL", logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    hops = int(app.config["CW_PROXY_HOPS"])
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    register_extensions(app)
    register_actors()
    register_routing(app)
    register_blueprints(app)
    register_request_hooks(app)
    register_fast_paths(app)
    register_cli(app)
    return app


def register_extensions(app: Flask) -> None:
    from app.admin.auth import init_login
    from app.extensions import csrf, db, login_manager, migrate

    db.init_app(app)
    migrate.init_app(
        app,
        db,
        directory=str(app.config.get("MIGRATIONS_DIR", "migrations")),
        render_as_batch=True,
        compare_type=True,
    )
    login_manager.init_app(app)
    csrf.init_app(app)
    init_login(app)


def register_actors() -> None:
    import app.actors  # noqa: F401  (registers job kinds and mail delivery)


def register_routing(app: Flask) -> None:
    """Every `<int:...>` route takes ids of at most 63 bits (app/ids.py); set before any route."""
    from app.ids import IdConverter

    app.url_map.converters["int"] = IdConverter


def register_blueprints(app: Flask) -> None:
    from app.admin.auth import bp as auth_bp
    from app.admin.vendor import bp as assets_bp
    from app.api.acme.endpoints import bp as acme_bp
    from app.api.relying_party.endpoints import bp as pki_bp
    from app.api.scm import bp as scm_bp
    from app.api.scm import doc_bp as scm_doc_bp
    from app.portal.collect import bp as collect_bp
    from app.portal.home import bp as portal_home_bp
    from app.portal.notices import bp as notices_bp
    from app.portal.register import bp as register_bp
    from app.portal.report_links import bp as report_links_bp
    from app.portal.selfservice import bp as selfservice_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(assets_bp)
    app.register_blueprint(pki_bp)
    app.register_blueprint(acme_bp)
    app.register_blueprint(collect_bp)
    app.register_blueprint(notices_bp)
    app.register_blueprint(scm_bp)
    # The same API under /private/api, authenticated by TLS client certificate (docs/api.md).
    app.register_blueprint(scm_bp, name="scm_private", url_prefix="/private/api")
    app.register_blueprint(scm_doc_bp)
    app.register_blueprint(portal_home_bp)
    app.register_blueprint(register_bp)
    app.register_blueprint(selfservice_bp)
    app.register_blueprint(report_links_bp)
    console = ConsoleOnFirstRequest(app, app.wsgi_app)
    app.extensions["cw_console"] = console
    app.wsgi_app = console  # type: ignore[method-assign]


class ConsoleOnFirstRequest:
    """Builds the admin console (Flask-Admin and every view, about half of what creating the
    app costs) before the process serves its first request instead of in create_app: a
    `flask --app wsgi ...` command serves none and starts faster without it. gunicorn builds
    it when a worker starts (gunicorn.conf.py), so no request waits for it. Flask allows
    blueprints until its first request, which only begins after this has run."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.built = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self.built:
            return
        with self._lock:
            if not self.built:
                from app.admin import init_console

                init_console(self.app)
                self.built = True

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.ensure()
        return self.wsgi_app(environ, start_response)


def ensure_console(app: Flask) -> None:
    """Build the console now (a server process at start, a test, `flask routes`)."""
    app.extensions["cw_console"].ensure()


# Content-Security-Policy of every page: scripts only from our own origin (no inline
# script, no eval: the console's behaviour is in app/static/js, chart data sits in data
# attributes). style-src keeps 'unsafe-inline' because code we do not write sets inline
# styles: Plotly adds <style> rules while drawing, and Flask-Admin's form.js and select2
# build elements with style attributes. Our own styles are in app/static/css/console.css.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

# Sent with every response (after_request below, and the OCSP fast path).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
)


def register_request_hooks(app: Flask) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from app import unavailable
    from app.extensions import db
    from app.services import audit

    unavailable.register(app)

    @app.before_request
    def _refuse_nul() -> None:
        # No input of ours may hold NUL; PostgreSQL text cannot store it (a 500 otherwise).
        fields = (*request.args.listvalues(), *request.form.listvalues())
        if "\x00" in request.path or any("\x00" in v for vs in fields for v in vs):
            abort(400, "A parameter holds a NUL character.")

    @app.before_request
    def _audit_source() -> None:
        request.environ["cw.audit"] = audit.push_source(ip=request.remote_addr or "", label="")

    @app.teardown_request
    def _audit_source_reset(exc: BaseException | None) -> None:
        token = request.environ.pop("cw.audit", None)
        if token is not None:
            audit.pop_source(token)

    @app.teardown_request
    def _write_denials(exc: BaseException | None) -> None:
        # Denied cross-scope attempts of this request (the refused work was rolled back).
        try:
            audit.commit_denials()
        except SQLAlchemyError:
            logging.getLogger(__name__).exception("could not record denied access attempts")
            db.session.rollback()

    from app.admin.display import live, local_time

    app.jinja_env.globals["local_time"] = local_time
    app.jinja_env.globals["live_status"] = live

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS:
            response.headers.setdefault(name, value)
        if request.path.startswith(("/admin", "/login", "/enroll", "/portal")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def register_fast_paths(app: Flask) -> None:
    """The OCSP responder answers in front of Flask (app/api/relying_party/ocsp_wsgi.py): a responder
    serves thousands of requests a second, and Flask's per-request work outweighs it."""
    from app.api.relying_party.ocsp_wsgi import OcspFastPath

    app.wsgi_app = OcspFastPath(app, app.wsgi_app, SECURITY_HEADERS)  # type: ignore[method-assign]


def register_cli(app: Flask) -> None:
    from app.cli import register

    register(app)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
