"""When the database cannot answer a web request: short lock waits for requests, and a 503
with Retry-After instead of a 500.

A web request waits at most ``CW_DB_LOCK_TIMEOUT`` seconds for a database lock (SQLite's
busy timeout, PostgreSQL's ``lock_timeout``) and for a PostgreSQL connection; workers, the
scheduler and the command line keep waiting as long as before (30 s on SQLite, no limit on
PostgreSQL locks), since their work is not a person staring at a page.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from flask import Flask, Response, current_app, has_request_context
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.extensions import db

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
BACKGROUND_SQLITE_BUSY_MS = 30_000  # as set at connect (app/__init__.py)

# SQLite: another connection holds the lock, or the file cannot be reached.
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk i/o error",
)
# PostgreSQL SQLSTATEs meaning "not now": class 08 (connection), lock_not_available (our
# lock_timeout), query_canceled, serialization and deadlock failures, admin/crash shutdown,
# cannot_connect_now, too_many_connections.
_PG_UNAVAILABLE = {"55P03", "57014", "40001", "40P01", "57P01", "57P02", "57P03", "53300"}


def is_unavailable(exc: BaseException) -> bool:
    """Is this error the database being busy or out of reach (worth retrying), rather than a
    bug or a bad query?"""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    if type(orig).__module__.startswith("sqlite3"):
        return str(orig).lower().startswith(_SQLITE_UNAVAILABLE)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None:  # psycopg: a failed or lost connection carries no SQLSTATE
        return True
    return str(sqlstate).startswith("08") or sqlstate in _PG_UNAVAILABLE


def unavailable_response() -> Response:
    body = (
        "<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1>"
        f"<p>The database is busy or out of reach. Try again in {RETRY_AFTER_SECONDS} seconds.</p>"
    )
    response = Response(body, status=503, mimetype="text/html")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def register(app: Flask) -> None:
    """Answer 503 + Retry-After for an unavailable database (other errors stay errors)."""

    def handle(exc: Exception) -> Response:
        if not is_unavailable(exc):
            raise exc
        log.warning("database unavailable, answered 503: %s", str(exc).splitlines()[0])
        with contextlib.suppress(SQLAlchemyError):  # the connection may be gone
            db.session.rollback()
        return unavailable_response()

    app.register_error_handler(OperationalError, handle)
    app.register_error_handler(DBAPIError, handle)
    app.register_error_handler(PoolTimeout, handle)


def request_lock_timeout() -> float | None:
    """Seconds a web request may wait for a lock; None outside a request."""
    if not has_request_context():
        return None
    return float(current_app.config.get("CW_DB_LOCK_TIMEOUT", RETRY_AFTER_SECONDS))


# A PostgreSQL connection checked in less than this ago is handed out as it is; an older
# one is pinged first (SELECT 1) and replaced when dead. pool_pre_ping pinged on every
# checkout: a round trip on every web request and every worker message, on connections
# used a moment before. A server restart inside this window costs the request that finds
# its connection dead a 503 (above), and the pool then replaces its older connections.
PING_IDLE_SECONDS = 10.0


@event.listens_for(Engine, "connect")
def _fresh(dbapi_connection: Any, record: Any) -> None:
    record.info["cw_used_at"] = time.monotonic()


@event.listens_for(Engine, "checkin")
def _checked_in(dbapi_connection: Any, record: Any) -> None:
    record.info["cw_used_at"] = time.monotonic()


@event.listens_for(Engine, "checkout", insert=True)
def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Before any other checkout work (insert=True): a dead connection raises
    DisconnectionError, which makes the pool discard it and try another."""
    if not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    used = record.info.get("cw_used_at")
    if used is not None and time.monotonic() - used < PING_IDLE_SECONDS:
        return
    try:
        before = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.execute("SELECT 1")
        finally:
            dbapi_connection.autocommit = before
    except Exception as exc:
        raise DisconnectionError(f"the connection did not answer a ping: {exc}") from exc
    record.info["cw_used_at"] = time.monotonic()


@event.listens_for(Engine, "checkout")
def _lock_wait(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Set the connection's lock wait for who is using it (a request, or background work);
    only when it changes, so a web process's connections are set once."""
    seconds = request_lock_timeout()
    if record.info.get("cw_lock_wait", "unset") == seconds:
        return
    module = type(dbapi_connection).__module__
    cursor = dbapi_connection.cursor()
    try:
        if module.startswith("sqlite3"):
            ms = BACKGROUND_SQLITE_BUSY_MS if seconds is None else int(seconds * 1000)
            cursor.execute(f"PRAGMA busy_timeout={ms}")
        elif module.startswith("psycopg"):
            ms = 0 if seconds is None else int(seconds * 1000)
            cursor.execute(f"SET lock_timeout = {ms}")
            dbapi_connection.commit()  # a session-level setting, not undone by the pool's reset
        else:
            return
    finally:
        cursor.close()
    record.info["cw_lock_wait"] = seconds
