"""Certwright: the application factory. No I/O here beyond reading configuration."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Config, env_int


def create_app(config: Any = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_object(config if config is not None else Config())
    logging.basicConfig(
        level=app.config.get("LOG_LEVEL", logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    hops = env_int("CW_PROXY_HOPS", 0)
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    register_extensions(app)
    register_actors()
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


def register_blueprints(app: Flask) -> None:
    from app.admin import init_console
    from app.admin.auth import bp as auth_bp
    from app.admin.vendor import bp as assets_bp
    from app.api.relying_party.endpoints import bp as pki_bp
    from app.api.scm import bp as scm_bp
    from app.api.scm import doc_bp as scm_doc_bp
    from app.portal.collect import bp as collect_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(assets_bp)
    app.register_blueprint(pki_bp)
    app.register_blueprint(collect_bp)
    app.register_blueprint(scm_bp)
    app.register_blueprint(scm_doc_bp)
    init_console(app)


# Sent with every response (after_request below, and the OCSP fast path).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
)


def register_request_hooks(app: Flask) -> None:
    from app.services import audit

    @app.before_request
    def _audit_source() -> None:
        request.environ["cw.audit"] = audit.push_source(ip=request.remote_addr or "", label="")

    @app.teardown_request
    def _audit_source_reset(exc: BaseException | None) -> None:
        token = request.environ.pop("cw.audit", None)
        if token is not None:
            audit.pop_source(token)

    from app.admin.display import local_time

    app.jinja_env.globals["local_time"] = local_time

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS:
            response.headers.setdefault(name, value)
        if request.path.startswith(("/admin", "/login")):
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
