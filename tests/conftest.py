"""Shared fixtures: an app on a migrated database, a test client, the stub worker.

The database is built by running the Alembic migrations (so the migrations are tested):
once per session into a template SQLite file, copied for every test.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

# Before anything imports app.*: test instance folder, embedded broker.
_INSTANCE = tempfile.mkdtemp(prefix="cw-test-instance-")
os.environ["CW_INSTANCE_DIR"] = _INSTANCE
os.environ.pop("BROKER_URL", None)
os.environ.pop("DATABASE_URL", None)

from flask import Flask, has_app_context  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from app import create_app, ensure_console  # noqa: E402
from app.config import TestConfig, engine_options  # noqa: E402
from app.extensions import db  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def make_config(url: str, **overrides: Any) -> TestConfig:
    return TestConfig(
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(url),
        MIGRATIONS_DIR=str(ROOT / "migrations"),
        SECRET_KEY="test-secret-key",
        CW_AUDIT_KEY="test-audit-key",
        CW_BASE_URL="http://certwright.test",
        **overrides,
    )


def migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(make_config(url))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


TIER_ORDER = {"services": 1, "browser": 2}


@pytest.hookimpl(trylast=True)  # after the tiers' own hooks have added their markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fast tiers first: unit and integration, then services, then the browser."""
    items.sort(
        key=lambda item: max((TIER_ORDER.get(m.name, 0) for m in item.iter_markers()), default=0)
    )


class IsolatedClient(FlaskClient):
    """Each request runs on its own thread, so in its own app context, g and DB session,
    exactly as in production (the test's own app context would otherwise be reused and
    leak g: the signed-in user, the CSRF token). The test's session is committed before
    and expired after each request so both sides see each other's writes."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        if not has_app_context():  # a redirect followed from inside the request thread
            return super().open(*args, **kwargs)
        db.session.commit()
        kwargs.setdefault("buffered", True)  # streamed bodies are read inside the request
        with ThreadPoolExecutor(max_workers=1) as pool:
            response = pool.submit(super().open, *args, **kwargs).result()
        db.session.expire_all()
        return response


@pytest.fixture
def app(template_db: Path, tmp_path: Path) -> Iterator[Flask]:
    path = tmp_path / "test.db"
    shutil.copy(template_db, path)
    app = create_app(make_config(f"sqlite:///{path}"))
    app.test_client_class = IsolatedClient
    ensure_console(app)  # as a server process does when it starts (gunicorn.conf.py)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


# The PostgreSQL tier (-m services): a server this URL reaches, where the tests may create
# and drop databases. Absent, those tests skip; with CI=true they fail instead.
POSTGRES_URL = os.environ.get("CW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_app() -> Iterator[Flask]:
    """An app on a fresh PostgreSQL database built by the migrations, dropped afterwards."""
    import uuid

    import psycopg

    name = f"cw_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        url = f"{url}/{name}"
        try:
            migrate(url)
            app = create_app(make_config(url))
            with app.app_context():
                yield app
                db.session.remove()
                db.engine.dispose()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def stub_worker(app: Flask) -> Iterator[Any]:
    """A real dramatiq worker on the stub broker, running actors in this process."""
    import dramatiq

    from app.runtime.broker import APP_CONTEXT, broker

    APP_CONTEXT.bind(app)
    _forget_earlier_messages(broker)
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield worker
    db.session.rollback()  # the worker signs off on stop: let its write through (SQLite)
    worker.stop()
    # dramatiq's Worker adds a middleware to the broker and never removes it.
    broker.middleware[:] = [
        m for m in broker.middleware if getattr(m, "worker", None) is not worker
    ]
    broker.flush_all()


def _forget_earlier_messages(broker: Any) -> None:
    """Empty every stub queue, including the count of messages an earlier test's worker took
    and handed back when it stopped: the stub broker re-queues them without marking the taken
    copy done, so ``join`` (and with it ``drain``) would wait for it for ever."""
    broker.flush_all()
    for queue in broker.queues.values():
        with queue.all_tasks_done:
            queue.unfinished_tasks = len(queue.queue)
            queue.all_tasks_done.notify_all()


def drain(worker: Any) -> None:
    """Run every queued message (including ones that actors queue) to completion."""
    from app.runtime.broker import broker

    db.session.commit()
    for _ in range(50):
        for queue in [q for q in broker.queues if not q.endswith((".DQ", ".XQ"))]:
            broker.join(queue, fail_fast=True)
        worker.join()
        if all(broker.queues[q].unfinished_tasks == 0 for q in broker.queues):
            break
    db.session.expire_all()


CSRF_RE = re.compile(
    r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"|value="([^"]+)" name="csrf_token"'
)


def csrf_token(client: FlaskClient, url: str) -> str:
    html = client.get(url).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


def login(client: FlaskClient, login: str, password: str) -> Any:
    token = csrf_token(client, "/login")
    return client.post("/login", data={"csrf_token": token, "login": login, "password": password})
