"""The migrations are the schema on SQLite too: no drift from the models, and they go down
to an empty database and up again (batch mode). PostgreSQL: tests/services."""

from __future__ import annotations

import shutil
from pathlib import Path

from flask_migrate import check, downgrade, upgrade
from sqlalchemy import inspect

from app import create_app
from app.extensions import db
from tests.conftest import ROOT, make_config

MIGRATIONS = str(ROOT / "migrations")


def test_migrated_sqlite_database_matches_the_models(template_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "check.db"
    shutil.copy(template_db, path)  # built by the migrations
    app = create_app(make_config(f"sqlite:///{path}"))
    with app.app_context():
        try:
            check(directory=MIGRATIONS)  # raises on any difference
        finally:
            db.engine.dispose()


def test_sqlite_migrations_downgrade_to_empty_and_upgrade_again(
    template_db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "roundtrip.db"
    shutil.copy(template_db, path)
    app = create_app(make_config(f"sqlite:///{path}"))
    with app.app_context():
        try:
            downgrade(directory=MIGRATIONS, revision="base")
            assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
            upgrade(directory=MIGRATIONS)
            assert "organizations" in inspect(db.engine).get_table_names()
            check(directory=MIGRATIONS)
        finally:
            db.engine.dispose()
