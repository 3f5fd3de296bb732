"""A locked or unreachable database answers 503 with Retry-After within seconds, not a 500
after 30 s; other database errors stay errors."""

from __future__ import annotations

import sqlite3
import time

import pytest
from flask import Flask
from sqlalchemy.exc import OperationalError

from app import create_app
from app.extensions import db
from tests.conftest import csrf_token, make_config
from tests.factories import PASSWORD, make_admin


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.status_code
    assert response.headers["Retry-After"] == "5"
    assert "Try again" in response.get_data(as_text=True)


def test_a_locked_sqlite_database_answers_503_within_the_lock_timeout(app, client):
    make_admin("mrao")
    app.config["CW_DB_LOCK_TIMEOUT"] = 1
    token = csrf_token(client, "/login")
    path = db.engine.url.database
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing (an issuance batch)
    try:
        started = time.monotonic()
        response = client.post(
            "/login", data={"csrf_token": token, "login": "mrao", "password": PASSWORD}
        )
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_unavailable(response)
    assert elapsed < 4, elapsed
    # Once the lock is gone the same request works, on the same pooled connections.
    response = client.post(
        "/login", data={"csrf_token": token, "login": "mrao", "password": PASSWORD}
    )
    assert response.status_code == 302


def unreachable_app(url: str) -> Flask:
    app = create_app(make_config(url, CW_DB_LOCK_TIMEOUT=1))
    app.testing = True
    return app


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/certwright",  # connection refused
        "sqlite:////nonexistent-directory/certwright.db",  # unable to open database file
    ],
)
def test_an_unreachable_database_answers_503(url):
    app = unreachable_app(url)
    started = time.monotonic()
    for path in ("/pki/crl/1.crl", "/collect/1/token"):
        assert_unavailable(app.test_client().get(path))
    assert time.monotonic() - started < 8


def test_other_database_errors_are_not_disguised_as_503(tmp_path):
    app = unreachable_app(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: a real bug
    with pytest.raises(OperationalError, match="no such table"):
        app.test_client().get("/pki/crl/1.crl")


def test_a_postgresql_connection_idle_for_a_while_is_pinged_and_a_dead_one_replaced(
    postgres_app, monkeypatch
):
    """pool_pre_ping pinged on every checkout; now a connection used a moment ago is handed
    out as it is, and one idle longer than PING_IDLE_SECONDS is pinged first: when its
    server process is gone the pool replaces it and the work goes on."""
    from sqlalchemy import text

    from app import unavailable
    from app.extensions import db

    def backend() -> int:
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        db.session.commit()
        return int(pid)

    first = backend()
    second = backend()
    assert second == first  # the same pooled connection, reused at once

    # Its server process dies while it sits in the pool, idle "for a while".
    import psycopg

    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (first,))
    monkeypatch.setattr(unavailable, "PING_IDLE_SECONDS", 0.0)
    replaced = backend()
    assert replaced != first
    assert db.session.execute(text("SELECT 1")).scalar_one() == 1
    db.session.commit()
