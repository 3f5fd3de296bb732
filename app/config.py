"""The Flask Config classes and the values derived from settings for them; no environment reads here."""

from __future__ import annotations

from cryptography.fernet import Fernet

from app.base_url import resolve_base_url, resolve_pki_url
from app.instance import instance_dir, persistent_secret
from app.settings import SETTING, SETTINGS, SettingError, setting


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


def acme_nonce_store(value: str, broker_url: str) -> str:
    """Where used ACME nonces go (CW_ACME_NONCE_STORE): a Redis URL, or "database". Unset:
    the Redis of BROKER_URL when it is one, else the database.

    Raises:
        SettingError: neither a redis://, rediss:// or unix:// URL nor "database".
    """
    value = value.strip()
    if not value:
        return broker_url if broker_url and broker_kind(broker_url) == "redis" else "database"
    if value == "database" or value.startswith(("redis://", "rediss://", "unix://")):
        return value
    raise SettingError(
        f"CW_ACME_NONCE_STORE={value!r}: expected a redis://, rediss:// or unix:// URL, or database"
    )


def database_url() -> str:
    url = str(setting("DATABASE_URL"))
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
        for declared in SETTINGS:
            if declared.in_app:
                setattr(self, declared.name, declared.read())
        self.SECRET_KEY = self.SECRET_KEY or persistent_secret("secret_key")
        self.SQLALCHEMY_DATABASE_URI = database_url()
        self.SQLALCHEMY_ENGINE_OPTIONS = engine_options(self.SQLALCHEMY_DATABASE_URI)
        # Key-encryption keys for CA private keys: "primary,older,...". Rotate by
        # prepending a new key and running `flask --app wsgi ca rotate-kek`.
        self.CW_KEK = self.CW_KEK or persistent_secret(
            "kek", lambda: Fernet.generate_key().decode()
        )
        # HMAC key that chains the audit log (tamper evidence).
        self.CW_AUDIT_KEY = self.CW_AUDIT_KEY or persistent_secret("audit_key")
        self.CW_BASE_URL, self.CW_BASE_URL_SOURCE = resolve_base_url()
        self.CW_PKI_URL = resolve_pki_url(self.CW_BASE_URL, self.CW_BASE_URL_SOURCE)
        if not SETTING["SESSION_COOKIE_SECURE"].is_set():
            # Behind HTTPS the plain-HTTP listener of /pki/ must not carry a session.
            self.SESSION_COOKIE_SECURE = self.CW_BASE_URL.lower().startswith("https://")
        acme_nonce_store(self.CW_ACME_NONCE_STORE, self.BROKER_URL)  # a bad value stops the start

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
    return {
        # Connections idle for a while are pinged at checkout (app/unavailable.py), not
        # every checkout.
        "pool_pre_ping": False,
        "pool_size": 10,
        "max_overflow": 20,
        # An unreachable server fails fast (a web request then answers 503), not after the
        # operating system's TCP timeout.
        "connect_args": {"connect_timeout": int(setting("CW_DB_LOCK_TIMEOUT"))},
    }


class TestConfig(Config):
    """Used by the test suite: same code paths, faster hashing, CSRF kept on."""

    TESTING = True

    def __init__(self, **overrides: object) -> None:
        super().__init__()
        self.CW_ARGON2_FAST = True
        self.SERVER_NAME = None
        if "CW_BASE_URL" in overrides:
            self.CW_BASE_URL_SOURCE = "the test configuration"
        for key, value in overrides.items():
            setattr(self, key, value)
