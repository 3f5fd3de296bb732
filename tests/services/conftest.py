"""The services tier: real PostgreSQL, Redis and RabbitMQ, real worker and scheduler processes.

Every test here is marked `services`. Each service is probed once per session: when one
is missing the tests that need it skip with the reason, except under CI=true, where they
fail. A run gets its own PostgreSQL database (built by `flask db upgrade`, dropped at the
end), its own empty Redis database number (flushed) and its own RabbitMQ virtual host.
Addresses can be changed with CW_TEST_POSTGRES, CW_TEST_REDIS and CW_TEST_AMQP.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.extensions import db
from tests.conftest import IsolatedClient, login, make_config
from tests.factories import PASSWORD, make_admin
from tests.processes import PY, Proc, app_env, flask_ok

POSTGRES = os.environ.get("CW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("CW_TEST_REDIS", "redis://127.0.0.1:6379")
AMQP = os.environ.get("CW_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.services)


# --- is each service there? --------------------------------------------------------------


def _probe_postgres() -> None:
    import psycopg

    psycopg.connect(POSTGRES, connect_timeout=3).close()


def _probe_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def _named_vhost() -> bool:
    """CW_TEST_AMQP names a virtual host of its own (amqp://host:5672/cw_x)."""
    return urlsplit(AMQP).path.strip("/") != ""


def _probe_rabbitmq() -> None:
    import pika

    base = AMQP if _named_vhost() else AMQP + "/%2F"
    params = pika.URLParameters(base + "?connection_attempts=1&socket_timeout=3")
    pika.BlockingConnection(params).close()


@pytest.fixture(scope="session")
def service_status() -> dict[str, str]:
    """service name -> why it is unusable ('' when it answers)."""
    status = {}
    for name, probe in (
        ("PostgreSQL", _probe_postgres),
        ("Redis", _probe_redis),
        ("RabbitMQ", _probe_rabbitmq),
    ):
        try:
            probe()
            status[name] = ""
        except Exception as exc:
            status[name] = f"{type(exc).__name__}: {str(exc) or repr(exc)}"[:300]
    return status


def need(status: dict[str, str], name: str, where: str) -> None:
    problem = status[name]
    if not problem:
        return
    message = f"{name} is not reachable at {where}: {problem}"
    if IN_CI:
        pytest.fail(f"CI=true and the services tier cannot run: {message}", pytrace=False)
    pytest.skip(f"services tier: {message}")


# --- PostgreSQL ----------------------------------------------------------------------------


def _admin_connection() -> Any:
    import psycopg

    return psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)


def database_url(name: str) -> str:
    """The app's DATABASE_URL for database `name` on the test server."""
    parts = urlsplit(POSTGRES)
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_database(name: str) -> str:
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def drop_database(name: str) -> None:
    with _admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Process logs and instance folders of this run (kept by pytest for a look after)."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def pg_url(service_status: dict[str, str], run_id: str, logs: Path) -> Iterator[str]:
    """A fresh database for this run, schema built by `flask db upgrade`; dropped after."""
    need(service_status, "PostgreSQL", POSTGRES)
    name = f"cw_t_{run_id}"
    url = create_database(name)
    try:
        flask_ok("db", "upgrade", env=app_env(DATABASE_URL=url, CW_INSTANCE_DIR=logs / "instance"))
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def pg_app(pg_url: str) -> Iterator[Flask]:
    """The app in this process on the run's PostgreSQL database (to arrange and to look)."""
    sa_url = "postgresql+psycopg://" + pg_url.split("://", 1)[1]
    app = create_app(make_config(sa_url))
    app.test_client_class = IsolatedClient
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def pg(pg_app: Flask) -> Iterator[Flask]:
    """An app context on the run's database for one test."""
    with pg_app.app_context():
        yield pg_app
        db.session.remove()


@pytest.fixture
def mrao_client(pg: Flask) -> FlaskClient:
    """A test client signed in as a fresh MRAO of the run's database."""
    name = f"mrao-{secrets.token_hex(3)}"
    make_admin(name)
    client = pg.test_client()
    assert login(client, name, PASSWORD).status_code == 302
    return client


# --- brokers -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(service_status: dict[str, str]) -> Iterator[str]:
    """An empty Redis database number of its own (flushed before and after): the one
    CW_TEST_REDIS names (redis://host:6379/5), else a free one of 1-15."""
    need(service_status, "Redis", REDIS)
    import redis

    named = urlsplit(REDIS).path.strip("/")
    if named.isdecimal():
        url = REDIS.rstrip("/")
        client = redis.Redis.from_url(url, socket_timeout=3)
        try:
            client.flushdb()
            yield url
        finally:
            client.flushdb()
            client.close()
        return
    chosen = None
    for number in sorted(range(1, 16), key=lambda _: secrets.randbelow(1000)):
        client = redis.Redis.from_url(f"{REDIS}/{number}", socket_timeout=3)
        try:
            if client.dbsize() == 0:
                chosen = number
                break
        finally:
            client.close()
    if chosen is None:
        pytest.fail("no empty Redis database number (1-15) to run the services tier in")
    url = f"{REDIS}/{chosen}"
    client = redis.Redis.from_url(url, socket_timeout=3)
    try:
        client.flushdb()
        yield url
    finally:
        client.flushdb()
        client.close()


def purge_queues(url: str) -> None:
    """Empty the app's queues (those that exist) in the vhost of url."""
    import pika

    from app.runtime.broker import broker

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for queue in sorted(broker.get_declared_queues()):
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                channel = connection.channel()
                try:
                    channel.queue_declare(name, passive=True)
                    channel.queue_purge(name)
                    channel.close()
                except pika.exceptions.ChannelClosedByBroker:
                    pass  # no such queue yet
    finally:
        connection.close()


@pytest.fixture(scope="session")
def amqp_url(service_status: dict[str, str], run_id: str) -> Iterator[str]:
    """A RabbitMQ virtual host of its own: the one CW_TEST_AMQP names (its app queues
    purged before and after), else one made and removed with rabbitmqctl."""
    need(service_status, "RabbitMQ", AMQP)
    if _named_vhost():
        url = AMQP.rstrip("/")
        purge_queues(url)
        try:
            yield url
        finally:
            purge_queues(url)
        return
    ctl = shutil.which("rabbitmqctl")
    user = urlsplit(AMQP).username or "guest"
    vhost = f"cw_t_{run_id}"
    if ctl is None or os.geteuid() != 0:
        # Without rabbitmqctl: the shared '/' vhost, its app queues purged before and after.
        url = AMQP + "/%2F"
        purge_queues(url)
        try:
            yield url
        finally:
            purge_queues(url)
        return

    def ctl_run(*args: str) -> None:
        subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60)

    ctl_run("add_vhost", vhost)
    try:
        ctl_run("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"{AMQP}/{vhost}"
    finally:
        ctl_run("delete_vhost", vhost)


# --- app processes -------------------------------------------------------------------------


WORKER_QUEUES = ("default", "issuance", "keygen", "mail", "scan", "acme", "agents")


@dataclass
class Stack:
    """Builds the environment and commands of app processes for one test."""

    db_url: str
    broker_url: str
    logs: Path
    settings: dict[str, object]

    def env(self, **more: object) -> dict[str, str]:
        return app_env(
            DATABASE_URL=self.db_url,
            BROKER_URL=self.broker_url,
            CW_INSTANCE_DIR=self.logs / "instance",
            **{**self.settings, **more},
        )

    def workers(self, name: str, *, processes: int = 1, threads: int = 2) -> Proc:
        args = [PY, "-m", "dramatiq", "app.actors"]
        args += ["--processes", str(processes), "--threads", str(threads)]
        # Every queue but the hygiene sweep's: the run's database keeps what earlier tests
        # stored, and pkilint over all of it would take these workers' threads.
        args += ["--queues", *WORKER_QUEUES]
        return Proc(name, args, env=self.env(), logs=self.logs)

    def scheduler(self, name: str) -> Proc:
        return Proc(
            name, [PY, "-m", "flask", "--app", "wsgi", "scheduler"], env=self.env(), logs=self.logs
        )

    def flask(self, *args: str, timeout: float = 90) -> str:
        return flask_ok(*args, env=self.env(), timeout=timeout)


@pytest.fixture
def stack_logs(logs: Path, request: pytest.FixtureRequest) -> Path:
    path = logs / request.node.name[:60]
    path.mkdir(exist_ok=True)
    return path
