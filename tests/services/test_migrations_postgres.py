"""The migrations are the schema on PostgreSQL: no drift from the models, and they go
down to an empty database and up again."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import create_engine, inspect

from app import create_app
from app.extensions import db
from tests.conftest import make_config
from tests.processes import ROOT, app_env, flask, flask_ok
from tests.services.conftest import POSTGRES, create_database, drop_database, need


def tables(url: str) -> set[str]:
    engine = create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_migrated_database_matches_the_models(pg_url: str, logs: Path) -> None:
    # pg_url was built by `flask db upgrade` on an empty database.
    env = app_env(DATABASE_URL=pg_url, CW_INSTANCE_DIR=logs / "instance")
    assert flask_ok("db", "current", env=env).strip().endswith("(head)")
    done = flask("db", "check", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No new upgrade operations detected." in done.stdout + done.stderr


def test_migrations_downgrade_to_empty_and_upgrade_again(service_status) -> None:
    from flask_migrate import check, downgrade, upgrade

    need(service_status, "PostgreSQL", POSTGRES)
    name = f"cw_t_{secrets.token_hex(4)}_rt"
    url = create_database(name)
    sa_url = "postgresql+psycopg://" + url.split("://", 1)[1]
    app = create_app(make_config(sa_url))
    migrations = str(ROOT / "migrations")
    try:
        with app.app_context():
            upgrade(directory=migrations)
            assert {"organizations", "jobs", "audit_events", "alembic_version"} <= tables(url)
            downgrade(directory=migrations, revision="base")
            assert tables(url) <= {"alembic_version"}
            upgrade(directory=migrations)
            check(directory=migrations)  # exits non-zero on drift
            db.engine.dispose()
    finally:
        drop_database(name)
