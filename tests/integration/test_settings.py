"""Each declared setting, set in the environment, takes effect where it acts: the Flask
config a service reads, gunicorn's settings, the Makefile's worker command, the bootstrap
and admin commands, the broker. Three behave end to end here (the scan deny list and cap,
the OCSP cache), since they were once documented but never read."""

from __future__ import annotations

import datetime as dt
import os
import re
import runpy
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp as x509_ocsp
from flask import Flask

from app import create_app
from app.config import Config
from app.extensions import db
from app.models import (
    Admin,
    AdminKind,
    AuditEvent,
    Certificate,
    CertOrigin,
    CertStatus,
    Organization,
    Role,
)
from app.services.accounts import admins
from app.services.ca import ocsp
from app.services.discovery import tasks
from app.services.errors import DomainError
from app.services.scope import SYSTEM
from app.services.structure import dcv
from app.settings import SETTINGS
from tests.conftest import ROOT, csrf_token, login, make_config
from tests.factories import make_org, make_pki
from tests.processes import PY, app_env


def _pki_urls(p: Probe) -> dict[str, str]:
    """The URLs a certificate signed by CA 7 would name, in an app built from the
    environment as it is now."""
    from app.services.ca import signing

    with p.fresh_app():
        return signing.urls(7)


class Probe:
    """What a test needs to observe a setting: the env-built config, a fresh app built
    after the environment was set, gunicorn's settings, the Makefile, the CLI."""

    def __init__(
        self, app: Flask, template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.app = app
        self.template_db = template_db
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch

    def setenv(self, name: str, value: object) -> None:
        self.monkeypatch.setenv(name, str(value))

    def config(self) -> Config:
        return Config()

    def gunicorn(self) -> dict[str, Any]:
        return runpy.run_path(str(ROOT / "gunicorn.conf.py"))

    def make_worker(self) -> str:
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", "worker"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    @contextmanager
    def fresh_app(self) -> Iterator[Flask]:
        """An app on its own copy of the migrated database, configured from the environment
        as it is now (the `app` fixture was built before the test set anything)."""
        path = self.tmp_path / "fresh.db"
        shutil.copy(self.template_db, path)
        fresh = create_app(make_config(f"sqlite:///{path}"))
        with fresh.app_context():
            try:
                yield fresh
            finally:
                db.session.remove()
                db.engine.dispose()

    def cli(self, *args: str) -> str:
        result = self.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output
        return result.output

    def can_sign_in(self, login_name: str, password: str) -> bool:
        response = login(self.app.test_client(), login_name, password)
        return response.status_code == 302 and "/login" not in response.headers["Location"]


def _bootstrapped(probe: Probe) -> tuple[Admin, Organization]:
    probe.cli("bootstrap")
    admin = db.session.query(Admin).one()
    org = db.session.query(Organization).one()
    return admin, org


def _refused_task(probe: Probe, ranges: str) -> str:
    with probe.fresh_app():
        org = make_org("Scanners")
        with pytest.raises(DomainError) as refused:
            tasks.create_task(
                actor=SYSTEM,
                data=tasks.TaskData(name="Probe", ranges=ranges, organization_id=org.id),
            )
        db.session.rollback()
        allowed = tasks.create_task(
            actor=SYSTEM,
            data=tasks.TaskData(name="Fine", ranges="10.9.0.1", organization_id=org.id),
        )
        assert allowed.id
        return str(refused.value)


def _ocsp_status(issuing_der: bytes, serial: int) -> x509_ocsp.OCSPCertStatus:
    """Ask the responder about `serial` of an EC issuing CA (RFC 6960 CertID: hashes of the
    issuer's name and of its public key's BIT STRING, the uncompressed point)."""
    ca = x509.load_der_x509_certificate(issuing_der)
    point = ca.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    request = (
        x509_ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            _hash(ca.subject.public_bytes()), _hash(point), serial, hashes.SHA1()
        )
        .build()
    )
    der = ocsp.answer(request.public_bytes(Encoding.DER))
    db.session.commit()
    return x509_ocsp.load_der_ocsp_response(der).certificate_status


def _hash(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA1())
    digest.update(data)
    return digest.finalize()


def _ocsp_unknown_serial_becomes_good_within(probe: Probe) -> None:
    with probe.fresh_app() as fresh:
        assert fresh.config["CW_OCSP_CACHE_SECONDS"] == 0.2
        ocsp.forget()
        _, issuing, _ = make_pki(key_type="EC-P256")
        serial = 0x5019
        assert _ocsp_status(issuing.cert_der, serial) == x509_ocsp.OCSPCertStatus.UNKNOWN
        now = dt.datetime.now(dt.UTC)
        db.session.add(
            Certificate(
                fingerprint="e" * 64,
                der=b"-",
                origin=CertOrigin.ISSUED,
                status=CertStatus.ISSUED,
                ca_id=issuing.id,
                serial_hex=f"{serial:x}",
                not_before=now,
                not_after=now + dt.timedelta(days=30),
            )
        )
        db.session.commit()
        time.sleep(0.35)  # past 0.2 s; the documented default (5 s) would still say unknown
        assert _ocsp_status(issuing.cert_der, serial) == x509_ocsp.OCSPCertStatus.GOOD
        ocsp.forget()


def _proxy_hops(probe: Probe) -> None:
    with probe.fresh_app() as fresh:
        client = fresh.test_client()
        token = csrf_token(client, "/login")
        client.post(
            "/login",
            data={"csrf_token": token, "login": "nobody", "password": "wrong-password-here"},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
        assert db.session.query(AuditEvent).filter(AuditEvent.ip == "203.0.113.7").count() >= 1


FERNET = Fernet.generate_key().decode()

# name -> (value to set, check). Every declared setting has one (test below).
PROBES: dict[str, tuple[str, Callable[[Probe, str], None]]] = {
    "DATABASE_URL": (
        "postgres://cw@db.example/certwright",
        lambda p, v: _eq(
            p.config().SQLALCHEMY_DATABASE_URI, "postgresql+psycopg://cw@db.example/certwright"
        ),
    ),
    "BROKER_URL": ("redis://127.0.0.1:1/0", lambda p, v: _eq(_broker_class(p, v), "RedisBroker")),
    "SECRET_KEY": ("from-the-environment", lambda p, v: _eq(p.config().SECRET_KEY, v)),
    "CW_KEK": (FERNET, lambda p, v: _eq(p.config().CW_KEK, v)),
    "CW_AUDIT_KEY": ("audit-key-from-env", lambda p, v: _eq(p.config().CW_AUDIT_KEY, v)),
    "CW_BASE_URL": (
        "http://pki.example.net/",
        lambda p, v: _eq(
            (p.config().CW_BASE_URL, p.config().CW_BASE_URL_SOURCE),
            ("http://pki.example.net", "CW_BASE_URL"),
        ),
    ),
    "CW_PKI_URL": (
        "http://crl.example.net/",
        lambda p, v: _eq(
            (p.config().CW_PKI_URL, _pki_urls(p)["ocsp_url"]),
            ("http://crl.example.net", "http://crl.example.net/pki/ocsp/7"),
        ),
    ),
    "PORT": (
        "6050",
        lambda p, v: _eq(
            (p.gunicorn()["bind"], p.config().CW_BASE_URL),
            ("127.0.0.1:6050", "http://127.0.0.1:6050"),
        ),
    ),
    "CW_BIND": (
        "0.0.0.0:8443",
        lambda p, v: _eq(
            (p.gunicorn()["bind"], p.config().CW_BASE_URL),
            ("0.0.0.0:8443", f"http://{socket.getfqdn()}:8443"),
        ),
    ),
    "CW_WEB_WORKERS": ("3", lambda p, v: _eq(_with_broker(p)["workers"], 3)),
    "CW_WEB_THREADS": ("3", lambda p, v: _eq(p.gunicorn()["threads"], 3)),
    "CW_FORWARDED_ALLOW_IPS": (
        "10.0.0.1",
        lambda p, v: _eq(p.gunicorn()["forwarded_allow_ips"], "10.0.0.1"),
    ),
    "CW_OCSP_ACCESS_LOG": ("1", lambda p, v: _eq(p.gunicorn()["log_ocsp"], True)),
    "CW_EMBEDDED_WORKER": ("0", lambda p, v: _eq(p.gunicorn()["embedded_worker"], False)),
    "CW_CONTROL_SOCKET": (
        "/tmp/cw-probe.ctl",
        lambda p, v: _eq(p.gunicorn()["control_socket"], "/tmp/cw-probe.ctl"),
    ),
    "CW_REDIS_NAMESPACE": ("cw-probe", lambda p, v: _eq(_redis_namespace(p), "cw-probe")),
    "CW_WORKER_STALE_SECONDS": ("9", lambda p, v: _eq(p.config().CW_WORKER_STALE_SECONDS, 9)),
    "CW_DB_LOCK_TIMEOUT": ("3", lambda p, v: _eq(p.config().CW_DB_LOCK_TIMEOUT, 3)),
    "CW_EXPORT_MAX_ROWS": ("7", lambda p, v: _eq(p.config().CW_EXPORT_MAX_ROWS, 7)),
    "CW_WORKER_PROCESSES": ("7", lambda p, v: _has(p.make_worker(), "--processes 7 ")),
    "CW_WORKER_THREADS": (
        "3",
        lambda p, v: _eq(
            (p.gunicorn()["worker_threads"], "--threads 3\n" in p.make_worker()), (3, True)
        ),
    ),
    "CW_INSTANCE_DIR": ("", lambda p, v: _instance_dir(p)),
    "CW_ADMIN_LOGIN": ("root-admin", lambda p, v: _eq(_bootstrapped(p)[0].login, v)),
    "CW_ADMIN_PASSWORD": (
        "Bootstrap-Password-42",
        lambda p, v: _eq(p.can_sign_in(_bootstrapped(p)[0].login, v), True),
    ),
    "CW_ADMIN_EMAIL": ("pki@example.org", lambda p, v: _eq(_bootstrapped(p)[0].email, v)),
    "CW_ORG_NAME": ("Example Trust", lambda p, v: _eq(_bootstrapped(p)[1].name, v)),
    "CW_ORG_COUNTRY": ("NL", lambda p, v: _eq(_bootstrapped(p)[1].country, v)),
    "CW_ORG_CITY": ("Utrecht", lambda p, v: _eq(_bootstrapped(p)[1].city, v)),
    "CW_ORG_STATE": ("Utrecht", lambda p, v: _eq(_bootstrapped(p)[1].state, v)),
    "CW_NEW_ADMIN_PASSWORD": ("Tea-Kettle-Password-42", lambda p, v: _new_admin(p, v)),
    "SMTP_HOST": ("smtp.example.net", lambda p, v: _eq(p.config().SMTP_HOST, v)),
    "SMTP_PORT": ("2525", lambda p, v: _eq(p.config().SMTP_PORT, 2525)),
    "SMTP_USER": ("relay-user", lambda p, v: _eq(p.config().SMTP_USER, v)),
    "SMTP_PASSWORD": ("relay-pass", lambda p, v: _eq(p.config().SMTP_PASSWORD, v)),
    "SMTP_STARTTLS": ("on", lambda p, v: _eq(p.config().SMTP_STARTTLS, True)),
    "SMTP_SSL": ("yes", lambda p, v: _eq(p.config().SMTP_SSL, True)),
    "MAIL_FROM": ("pki@example.org", lambda p, v: _eq(p.config().MAIL_FROM, v)),
    "CW_MAIL_MAX_ATTEMPTS": ("3", lambda p, v: _eq(p.config().CW_MAIL_MAX_ATTEMPTS, 3)),
    "CW_MAIL_RETRY_SECONDS": ("7", lambda p, v: _eq(p.config().CW_MAIL_RETRY_SECONDS, 7)),
    "CW_NOTIFY_DIGEST_HOUR": ("9", lambda p, v: _eq(p.config().CW_NOTIFY_DIGEST_HOUR, 9)),
    "CW_HYGIENE_SWEEP_SECONDS": ("60", lambda p, v: _eq(p.config().CW_HYGIENE_SWEEP_SECONDS, 60)),
    "CW_NOTIFY_SWEEP_SECONDS": ("900", lambda p, v: _eq(p.config().CW_NOTIFY_SWEEP_SECONDS, 900)),
    "CW_WEBHOOK_MAX_ATTEMPTS": ("4", lambda p, v: _eq(p.config().CW_WEBHOOK_MAX_ATTEMPTS, 4)),
    "CW_WEBHOOK_RETRY_SECONDS": ("11", lambda p, v: _eq(p.config().CW_WEBHOOK_RETRY_SECONDS, 11)),
    "SESSION_COOKIE_SECURE": ("1", lambda p, v: _eq(p.config().SESSION_COOKIE_SECURE, True)),
    "CW_PROXY_HOPS": ("1", lambda p, v: _proxy_hops(p)),
    "CW_LOGIN_MAX_FAILURES": ("9", lambda p, v: _eq(p.config().CW_LOGIN_MAX_FAILURES, 9)),
    "CW_LOGIN_LOCK_MINUTES": ("9", lambda p, v: _eq(p.config().CW_LOGIN_LOCK_MINUTES, 9)),
    "CW_LOGIN_IP_MAX_FAILURES": ("9", lambda p, v: _eq(p.config().CW_LOGIN_IP_MAX_FAILURES, 9)),
    "CW_JOB_STALE_SECONDS": ("9", lambda p, v: _eq(p.config().CW_JOB_STALE_SECONDS, 9)),
    "CW_SCHEDULER_INTERVAL": ("9", lambda p, v: _eq(p.config().CW_SCHEDULER_INTERVAL, 9)),
    "CW_SCAN_DENY": (
        "10.66.0.0/16",
        lambda p, v: _has(_refused_task(p, "10.66.3.4"), "10.66.0.0/16"),
    ),
    "CW_SCAN_RESOLVER": (
        "[::1]:5353",
        lambda p, v: _eq(p.config().CW_SCAN_RESOLVER, "[::1]:5353"),
    ),
    "CW_ACME_RESOLVER": (
        "127.0.0.1:5353",
        lambda p, v: _eq(p.config().CW_ACME_RESOLVER, "127.0.0.1:5353"),
    ),
    "CW_ACME_HTTP01_PORT": ("5002", lambda p, v: _eq(p.config().CW_ACME_HTTP01_PORT, 5002)),
    "CW_ACME_CAA_IDENTITIES": (
        "pki.example",
        lambda p, v: _eq(p.config().CW_ACME_CAA_IDENTITIES, "pki.example"),
    ),
    "CW_ACME_ORDERS_PER_HOUR": ("5", lambda p, v: _eq(p.config().CW_ACME_ORDERS_PER_HOUR, 5)),
    "CW_ACME_TLSALPN01_PORT": (
        "5003",
        lambda p, v: _eq(p.config().CW_ACME_TLSALPN01_PORT, 5003),
    ),
    "CW_ACME_NONCE_STORE": (
        os.environ.get("CW_TEST_REDIS", "redis://127.0.0.1:6379/5"),
        lambda p, v: _acme_nonces_in_redis(p, v),
    ),
    "CW_SCAN_MAX_ADDRESSES": (
        "16",
        lambda p, v: _has(_refused_task(p, "10.9.0.0/27"), "16"),
    ),
    "CW_OCSP_CACHE_SECONDS": ("0.2", lambda p, v: _ocsp_unknown_serial_becomes_good_within(p)),
    # Their effects: tests/integration/test_imports.py and tests/unit/pki/test_archive.py.
    "CW_IMPORT_MAX_UPLOAD_BYTES": ("7", lambda p, v: _eq(_import_limits(p)[0], 7)),
    "CW_IMPORT_MAX_MEMBERS": ("7", lambda p, v: _eq(_import_limits(p)[1].max_members, 7)),
    "CW_IMPORT_MAX_TOTAL_BYTES": (
        "7",
        lambda p, v: _eq(_import_limits(p)[1].max_total_bytes, 7),
    ),
    "CW_IMPORT_MAX_FILE_BYTES": (
        "7",
        lambda p, v: _eq(_import_limits(p)[1].max_member_bytes, 7),
    ),
    "CW_IMPORT_MAX_RATIO": ("7", lambda p, v: _eq(_import_limits(p)[1].max_ratio, 7)),
    "CW_REPORT_KEEP_DAYS": ("3", lambda p, v: _eq(_report_settings(p), (3, 20_000))),
    "CW_REPORT_CHUNK_ROWS": ("500", lambda p, v: _eq(_report_settings(p), (7, 500))),
    "CW_REPORT_MAIL_MAX_BYTES": ("1234", lambda p, v: _eq(_report_mail_settings(p), (1234, 72))),
    "CW_REPORT_LINK_HOURS": ("5", lambda p, v: _eq(_report_mail_settings(p), (5_000_000, 5))),
    # Scanning agents: what the central workers read, and what an agent host reads through
    # app.settings.setting (app/agent/process.py, no Flask app there).
    "CW_AGENT_OFFLINE_SECONDS": ("30", lambda p, v: _eq(_agent_central(p)[0], 30)),
    "CW_AGENT_WAIT_SECONDS": ("45", lambda p, v: _eq(_agent_central(p)[1], 45)),
    "CW_AGENT_MAX_SKEW_SECONDS": ("90", lambda p, v: _eq(_agent_central(p)[2], 90)),
    "CW_AGENT_NAME": ("dmz-1", lambda p, v: _eq(_agent_host("CW_AGENT_NAME"), "dmz-1")),
    "CW_AGENT_BROKER": (
        "redis://127.0.0.1:1/0",
        lambda p, v: _eq(_agent_host("CW_AGENT_BROKER"), "redis://127.0.0.1:1/0"),
    ),
    "CW_AGENT_KEY": ("/etc/cw/agent.key", lambda p, v: _eq(_agent_host("CW_AGENT_KEY"), v)),
    "CW_AGENT_ALLOW": ("10.0.0.0/8", lambda p, v: _eq(_agent_host("CW_AGENT_ALLOW"), v)),
    "CW_AGENT_CAPACITY": ("4", lambda p, v: _eq(_agent_host("CW_AGENT_CAPACITY"), 4)),
    "CW_AGENT_HEARTBEAT_SECONDS": (
        "2.5",
        lambda p, v: _eq(_agent_host("CW_AGENT_HEARTBEAT_SECONDS"), 2.5),
    ),
    "CW_AGENT_MAX_RATE": ("40", lambda p, v: _agent_ceilings((40.0, 0), CW_AGENT_MAX_RATE=v)),
    "CW_AGENT_MAX_IN_FLIGHT": (
        "12",
        lambda p, v: _agent_ceilings((0.0, 12), CW_AGENT_MAX_IN_FLIGHT=v),
    ),
    "CW_CUSTOMER_URI": ("acme-corp", lambda p, v: _customer_uri(p)),
    "CW_API_RATE_LIMIT": ("2", lambda p, v: _api_rate_limit(p)),
    "CW_API_MAX_BODY": ("64", lambda p, v: _api_max_body(p)),
    "CW_API_REPLAY_SECONDS": ("7", lambda p, v: _eq(p.config().CW_API_REPLAY_SECONDS, 7)),
    "CW_DCV_NAMESERVERS": ("127.0.0.1:5353, 192.0.2.1", lambda p, v: _dcv_nameservers(p)),
}

API_PASSWORD = "the-bot-password-1"


def _api_headers(customer_uri: str = "certwright") -> dict[str, str]:
    with_login = {"login": "probe-bot", "password": API_PASSWORD}
    return {**with_login, "customerUri": customer_uri}


def _api_bot() -> None:
    admins.create_admin(
        actor=SYSTEM,
        login="probe-bot",
        email="bot@example.com",
        role=Role.MRAO,
        password=API_PASSWORD,
        kind=AdminKind.API,
    )
    db.session.commit()


def _customer_uri(probe: Probe) -> None:
    with probe.fresh_app() as fresh:
        _api_bot()
        client = fresh.test_client()
        assert (
            client.get("/api/organization/v1", headers=_api_headers("acme-corp")).status_code == 200
        )
        refused = client.get("/api/organization/v1", headers=_api_headers("certwright"))
        assert refused.status_code == 401, refused.get_data(as_text=True)


def _api_rate_limit(probe: Probe) -> None:
    with probe.fresh_app() as fresh:
        _api_bot()
        client = fresh.test_client()
        codes = [client.get("/api/organization/v1", headers=_api_headers()) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert int(codes[2].headers["Retry-After"]) >= 1


def _api_max_body(probe: Probe) -> None:
    with probe.fresh_app() as fresh:
        _api_bot()
        client = fresh.test_client()
        small = client.post("/api/ssl/v1/enroll", json={"orgId": 1}, headers=_api_headers())
        assert small.status_code != 413
        large = client.post(
            "/api/ssl/v1/enroll", json={"orgId": 1, "comments": "x" * 80}, headers=_api_headers()
        )
        assert large.status_code == 413, large.get_data(as_text=True)


def _dcv_nameservers(probe: Probe) -> None:
    with probe.fresh_app():
        resolver = dcv._resolver()
        assert resolver.nameservers == ["127.0.0.1", "192.0.2.1"]
        assert resolver.nameserver_ports == {"127.0.0.1": 5353}


def _import_limits(p: Probe) -> tuple[int, Any]:
    """What the import service reads (upload bound, archive limits) in an app so set up."""
    from app import create_app
    from app.services.imports import imports

    app = create_app(p.config())
    with app.app_context():
        return imports.max_upload_bytes(), imports.limits()


def _report_settings(p: Probe) -> tuple[int, int]:
    """What the report service reads (days kept, ids per chunk) in an app so set up."""
    from app import create_app
    from app.services.reports import generation

    app = create_app(p.config())
    with app.app_context():
        return generation.keep_days(), generation.chunk_size()


def _report_mail_settings(p: Probe) -> tuple[int, int]:
    """What scheduled reports read (largest attachment, hours a mailed link works)."""
    from app import create_app
    from app.services.reports import schedules

    app = create_app(p.config())
    with app.app_context():
        return schedules.mail_max_bytes(), schedules.link_hours()


def _agent_central(p: Probe) -> tuple[int, int, int]:
    """What the central workers read about agents: seconds without a heartbeat before an
    agent is offline, how long a bound shard waits for it, the signed messages' skew."""
    from flask import current_app

    from app.services.discovery import agents

    app = create_app(p.config())
    with app.app_context():
        return (
            int(agents.offline_after().total_seconds()),
            int(current_app.config["CW_AGENT_WAIT_SECONDS"]),
            int(current_app.config["CW_AGENT_MAX_SKEW_SECONDS"]),
        )


def _agent_host(name: str) -> object:
    """What an agent started by `dramatiq app.agent.process` reads (no app, no database)."""
    from app.settings import setting

    return setting(name)


def _agent_ceilings(expected: tuple[float, int], **setting: str) -> None:
    """An agent started by `dramatiq app.agent.process` (no app, no database) reads its
    host ceilings from the environment and applies them to its caps."""
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.NamedTemporaryFile(suffix=".key") as handle:
        handle.write(key)
        handle.flush()
        code = (
            "from app.agent.process import AGENT; a = AGENT; "
            "print(a.config.max_rate, a.config.max_in_flight, a.limits.rate, a.limits.in_flight); "
            "a.stop()"
        )
        done = subprocess.run(
            [PY, "-c", code],
            cwd=ROOT,
            env=app_env(
                **setting,
                CW_AGENT_NAME="probe",
                CW_AGENT_BROKER="redis://127.0.0.1:1/0",
                CW_AGENT_KEY=handle.name,
                CW_AGENT_ALLOW="10.0.0.0/8",
                CW_AGENT_HEARTBEAT_SECONDS="3600",
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    rate, in_flight = expected
    assert done.stdout.split() == [str(rate), str(in_flight), str(rate), str(in_flight)], (
        done.stdout + done.stderr
    )


def _acme_nonces_in_redis(probe: Probe, url: str) -> None:
    """A fresh app keeps used ACME nonces in that Redis (SET NX): issued ones are the
    self-certifying kind (nothing stored), a used one is a key there, used once."""
    import redis

    from app.acme import jose
    from app.services.acme import nonces

    with probe.fresh_app():
        value = nonces.new_nonce()
        assert len(jose.b64decode(value, what="nonce")) == 40
        assert nonces.use_nonce(value) and not nonces.use_nonce(value)
    client = redis.Redis.from_url(url)
    key = f"dramatiq:acme-used-nonce:{value}"  # CW_REDIS_NAMESPACE unset
    try:
        assert client.exists(key) == 1
    finally:
        client.delete(key)
        client.close()


def _eq(observed: object, expected: object) -> None:
    assert observed == expected


def _has(text: str, part: str) -> None:
    assert part in text, text


def _redis_namespace(probe: Probe) -> str:
    done = subprocess.run(
        [PY, "-c", "from app.runtime.broker import broker; print(broker.namespace)"],
        cwd=ROOT,
        env=app_env(
            BROKER_URL="redis://127.0.0.1:1/0",
            CW_REDIS_NAMESPACE="cw-probe",
            CW_INSTANCE_DIR=probe.tmp_path / "broker-instance",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def _broker_class(probe: Probe, url: str) -> str:
    done = subprocess.run(
        [PY, "-c", "from app.runtime.broker import broker; print(type(broker).__name__)"],
        cwd=ROOT,
        env=app_env(BROKER_URL=url, CW_INSTANCE_DIR=probe.tmp_path / "broker-instance"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _with_broker(probe: Probe) -> dict[str, Any]:
    probe.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    conf = probe.gunicorn()
    assert conf["reuse_port"] is True  # a socket per web process (docs/benchmarks.md)
    return conf


def _instance_dir(probe: Probe) -> None:
    folder = probe.tmp_path / "elsewhere"
    probe.setenv("CW_INSTANCE_DIR", folder)
    config = probe.config()
    assert f"sqlite:///{folder / 'certwright.db'}" == config.SQLALCHEMY_DATABASE_URI
    assert (folder / "kek").read_text() == config.CW_KEK


def _new_admin(probe: Probe, password: str) -> None:
    probe.cli(
        "admin", "create", "--login", "scripted", "--email", "s@example.org", "--role", "MRAO"
    )
    assert probe.can_sign_in("scripted", password)


def test_every_declared_setting_has_a_probe():
    assert set(PROBES) == {s.name for s in SETTINGS}


@pytest.mark.parametrize("name", [s.name for s in SETTINGS])
def test_a_setting_from_the_environment_takes_effect(name, app, template_db, tmp_path, monkeypatch):
    value, check = PROBES[name]
    for other in ("CW_BASE_URL", "PORT", "CW_BIND", "BROKER_URL"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv("CW_INSTANCE_DIR", str(tmp_path / "instance"))
    if value:
        monkeypatch.setenv(name, value)
    check(Probe(app, template_db, tmp_path, monkeypatch), value)


def test_the_makefile_defaults_are_the_declared_ones(monkeypatch):
    for name in ("CW_WORKER_PROCESSES", "CW_WORKER_THREADS"):
        monkeypatch.delenv(name, raising=False)
    command = Probe.make_worker(None)  # type: ignore[arg-type]
    assert re.search(r"--processes 2 --threads 4\n", command), command
