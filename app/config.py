"""Configuration classes; every setting can be overridden from the environment."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent


def instance_dir() -> Path:
    """The writable instance folder (SQLite file, generated secrets)."""
    path = Path(os.environ.get("CW_INSTANCE_DIR", BASE_DIR / "instance"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def persistent_secret(name: str, make: object = None) -> str:
    """Return the secret stored in instance/<name>, generating it once (mode 0600).

    Several processes may start at once (web + workers): the value is written to a private
    temporary file and hard-linked into place, which is atomic and fails if another
    process won; then everyone reads the winner's complete file.
    """
    path = instance_dir() / name
    if path.exists():
        return path.read_text().strip()
    value = str(make() if callable(make) else secrets.token_urlsafe(48))
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        os.link(temp, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        os.unlink(temp)
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def broker_kind(url: str) -> str:
    if not url:
        return "embedded"
    if url.startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    if url.startswith(("amqp://", "amqps://")):
        return "rabbitmq"
    raise ValueError(
        f"BROKER_URL must start with redis:// or amqp://, not {url.split(':', 1)[0]}://"
    )


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return f"sqlite:///{instance_dir() / 'certwright.db'}"
    # Accept the common 'postgres://' / 'postgresql://' spellings; we ship psycopg 3.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Config:
    """Production-ish defaults for `make run`; read once in create_app()."""

    TESTING = False

    def __init__(self) -> None:
        self.SECRET_KEY = os.environ.get("SECRET_KEY") or persistent_secret("secret_key")
        self.SQLALCHEMY_DATABASE_URI = database_url()
        self.SQLALCHEMY_ENGINE_OPTIONS = engine_options(self.SQLALCHEMY_DATABASE_URI)
        self.BROKER_URL = os.environ.get("BROKER_URL", "").strip()
        # Key-encryption keys for CA private keys: "primary,older,...". Rotate by
        # prepending a new key and running `flask --app wsgi ca rotate-kek`.
        self.CW_KEK = os.environ.get("CW_KEK") or persistent_secret(
            "kek", lambda: Fernet.generate_key().decode()
        )
        # HMAC key that chains the audit log (tamper evidence).
        self.CW_AUDIT_KEY = os.environ.get("CW_AUDIT_KEY") or persistent_secret("audit_key")
        self.CW_BASE_URL = os.environ.get("CW_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
        self.SMTP_HOST = os.environ.get("SMTP_HOST", "")
        self.SMTP_PORT = env_int("SMTP_PORT", 25)
        self.SMTP_USER = os.environ.get("SMTP_USER", "")
        self.SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
        self.SMTP_STARTTLS = env_bool("SMTP_STARTTLS", False)
        self.SMTP_SSL = env_bool("SMTP_SSL", False)
        self.MAIL_FROM = os.environ.get("MAIL_FROM", "certwright@localhost")
        self.SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
        self.CW_LOGIN_MAX_FAILURES = env_int("CW_LOGIN_MAX_FAILURES", 5)
        self.CW_LOGIN_LOCK_MINUTES = env_int("CW_LOGIN_LOCK_MINUTES", 15)
        self.CW_LOGIN_IP_MAX_FAILURES = env_int("CW_LOGIN_IP_MAX_FAILURES", 20)
        self.CW_JOB_STALE_SECONDS = env_int("CW_JOB_STALE_SECONDS", 45)
        self.CW_SCHEDULER_INTERVAL = env_int("CW_SCHEDULER_INTERVAL", 5)
        # REST API (docs/api.md): the customerUri scripts send, calls per minute per API
        # administrator (0: no limit), the largest request body, how long an enroll's
        # answer is replayed for a retry with the same body (0: only Idempotency-Key).
        self.CW_CUSTOMER_URI = os.environ.get("CW_CUSTOMER_URI", "certwright").strip()
        self.CW_API_RATE_LIMIT = env_int("CW_API_RATE_LIMIT", 600)
        self.CW_API_MAX_BODY = env_int("CW_API_MAX_BODY", 128 * 1024)
        self.CW_API_REPLAY_SECONDS = env_int("CW_API_REPLAY_SECONDS", 600)
        # Name servers for DCV lookups ("ip[:port],..."); empty: the system resolver.
        self.CW_DCV_NAMESERVERS = os.environ.get("CW_DCV_NAMESERVERS", "").strip()

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_NAME = "certwright_session"
    PERMANENT_SESSION_LIFETIME = 8 * 3600
    WTF_CSRF_TIME_LIMIT = 8 * 3600
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    FLASK_ADMIN_FLUID_LAYOUT = True
    MAX_CONTENT_LENGTH = 64 * 1024 * 1024
    CW_PASSWORD_MIN_LENGTH = 12


def engine_options(url: str) -> dict[str, object]:
    if url.startswith("sqlite"):
        # Threads of one process share the file; wait for locks instead of failing.
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


class TestConfig(Config):
    """Used by the test suite: same code paths, faster hashing, CSRF kept on."""

    TESTING = True

    def __init__(self, **overrides: object) -> None:
        super().__init__()
        self.CW_ARGON2_FAST = True
        self.SERVER_NAME = None
        for key, value in overrides.items():
            setattr(self, key, value)
