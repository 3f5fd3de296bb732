"""Every environment variable, declared once (SETTINGS) and parsed here, the only os.environ reader; no Flask config."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final


def is_flask_command() -> bool:
    """Is this process a `flask --app wsgi ...` command? (Flask sets FLASK_RUN_FROM_CLI for
    every command it runs; it is Flask's variable, not a setting of ours.)"""
    return os.environ.get("FLASK_RUN_FROM_CLI") == "true"


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take."""


SettingValue = str | int | float | bool


@dataclass(frozen=True)
class Setting:
    """One environment variable: its type, default and meaning (the README's table is
    rendered from these declarations; tests/unit/test_settings.py keeps the two equal).

    ``shown_default`` is the README's Default column when the default is not a plain value
    (generated secrets, values derived from other settings). ``in_app`` settings are copied
    into the Flask config; the others are read where they act (gunicorn.conf.py, the
    Makefile, the bootstrap and admin commands) and kept out of it, first-admin passwords
    above all.
    """

    name: str
    type: type[SettingValue]
    default: SettingValue
    meaning: str
    shown_default: str = ""
    in_app: bool = True
    minimum: int | None = None
    maximum: int | None = None

    @property
    def documented_default(self) -> str:
        if self.shown_default:
            return self.shown_default
        if self.type is bool:
            return "on" if self.default else "off"
        if self.default == "":
            return "unset"
        return f"`{self.default}`" if self.type is str else str(self.default)

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        value = (os.environ if environ is None else environ).get(self.name)
        return value is not None and value.strip() != ""

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        """The variable's value, parsed; the default when unset or empty.

        Raises:
            SettingError: the value is not of the setting's type (a typo such as
                SESSION_COOKIE_SECURE=ture fails the start instead of meaning "off").
        """
        if not self.is_set(environ):
            return self.default
        raw = (os.environ if environ is None else environ)[self.name].strip()
        if self.type is bool:
            folded = raw.lower()
            if folded in _TRUE:
                return True
            if folded in _FALSE:
                return False
            raise SettingError(f"{self.name}={raw!r}: expected 1/0, true/false, yes/no or on/off")
        if self.type is int or self.type is float:
            try:
                number = self.type(raw)
            except ValueError:
                kind = "an integer" if self.type is int else "a number"
                raise SettingError(f"{self.name}={raw!r}: expected {kind}") from None
            if self.minimum is not None and number < self.minimum:
                raise SettingError(f"{self.name}={raw!r}: must be at least {self.minimum}")
            if self.maximum is not None and number > self.maximum:
                raise SettingError(f"{self.name}={raw!r}: must be at most {self.maximum}")
            return number
        return raw


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

# Every environment variable Certwright reads, declared once. Order = the README's table.
SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        "DATABASE_URL",
        str,
        "",
        "`postgresql://user:pass@host/db` for PostgreSQL (psycopg 3)",
        shown_default="SQLite file `instance/certwright.db`",
    ),
    Setting(
        "BROKER_URL",
        str,
        "",
        "`redis://host:6379/0` or `amqp://user:pass@host:5672/` (dramatiq's Redis and "
        "RabbitMQ brokers)",
        shown_default="unset: embedded worker",
    ),
    Setting(
        "SECRET_KEY",
        str,
        "",
        "signs session cookies; set the same value on every web process",
        shown_default="generated once into `instance/secret_key`",
    ),
    Setting(
        "CW_KEK",
        str,
        "",
        "key-encryption keys for CA private keys: comma-separated Fernet keys, first one encrypts",
        shown_default="generated once into `instance/kek`",
    ),
    Setting(
        "CW_AUDIT_KEY",
        str,
        "",
        "HMAC key chaining the audit log",
        shown_default="generated once into `instance/audit_key`",
    ),
    Setting(
        "CW_BASE_URL",
        str,
        "http://127.0.0.1:5000",
        "public URL of the console: links in mail, and CRL/OCSP/CA issuer URLs in "
        "certificates unless `CW_PKI_URL` is set (see *Which URL goes into certificates* "
        "below)",
        shown_default="`http://127.0.0.1:$PORT`, else the URL the server recorded in "
        "`instance/base_url`",
    ),
    Setting(
        "CW_PKI_URL",
        str,
        "",
        "plain `http://` URL certificates name for their CRL, OCSP and CA-issuer locations "
        "(`/pki/` must be served there; see *Which URL goes into certificates* below)",
        shown_default="`CW_BASE_URL`; required when that is an `https://` URL",
    ),
    Setting(
        "PORT",
        int,
        5000,
        "where `make run` and gunicorn listen (on 127.0.0.1)",
        in_app=False,
        minimum=0,
    ),
    Setting(
        "CW_BIND",
        str,
        "",
        "gunicorn's full bind address instead of 127.0.0.1:`PORT`, e.g. `0.0.0.0:8443`",
        shown_default="`127.0.0.1:$PORT`",
        in_app=False,
    ),
    Setting(
        "CW_WEB_WORKERS",
        int,
        2,
        "gunicorn processes with a broker (embedded mode uses 1)",
        in_app=False,
        minimum=1,
    ),
    Setting("CW_WEB_THREADS", int, 8, "threads per gunicorn process", in_app=False, minimum=1),
    Setting(
        "CW_FORWARDED_ALLOW_IPS",
        str,
        "127.0.0.1",
        "addresses gunicorn trusts to set X-Forwarded-Proto (gunicorn's `forwarded_allow_ips`)",
        in_app=False,
    ),
    Setting(
        "CW_OCSP_ACCESS_LOG",
        bool,
        False,
        "on: gunicorn's access log also gets a line for every OCSP answer; by default only "
        "OCSP requests that fail (status other than 200) are logged, since a busy responder "
        "answers thousands a second",
        in_app=False,
    ),
    Setting(
        "CW_EMBEDDED_WORKER",
        bool,
        True,
        "off: the `make run` web process runs no in-process worker and scheduler (jobs wait "
        "for one)",
        in_app=False,
    ),
    Setting(
        "CW_WORKER_PROCESSES",
        int,
        2,
        "`make worker` processes",
        in_app=False,
        minimum=1,
    ),
    Setting(
        "CW_WORKER_THREADS",
        int,
        4,
        "threads of each `make worker` process and of the embedded worker",
        in_app=False,
        minimum=1,
    ),
    Setting(
        "CW_INSTANCE_DIR",
        str,
        "",
        "where the SQLite file, the generated secrets and the recorded base URL live",
        shown_default="`./instance`",
        in_app=False,
    ),
    Setting(
        "CW_ADMIN_LOGIN",
        str,
        "admin",
        "login of the first MRAO (bootstrap only)",
        in_app=False,
    ),
    Setting(
        "CW_ADMIN_PASSWORD",
        str,
        "",
        "password of the first MRAO (bootstrap only)",
        shown_default="generated and printed once",
        in_app=False,
    ),
    Setting(
        "CW_ADMIN_EMAIL",
        str,
        "admin@example.com",
        "e-mail address of the first MRAO (bootstrap only)",
        in_app=False,
    ),
    Setting(
        "CW_ORG_NAME",
        str,
        "My Organization",
        "name of the first organization (bootstrap only)",
        in_app=False,
    ),
    Setting(
        "CW_ORG_COUNTRY",
        str,
        "US",
        "ISO 3166 country of the first organization (bootstrap only)",
        in_app=False,
    ),
    Setting(
        "CW_ORG_CITY",
        str,
        "",
        "city of the first organization (bootstrap only; without it and `CW_ORG_STATE` the first sign-in asks, since SSL certificates need one of them)",
        in_app=False,
    ),
    Setting(
        "CW_ORG_STATE",
        str,
        "",
        "state or province of the first organization (bootstrap only)",
        in_app=False,
    ),
    Setting(
        "CW_NEW_ADMIN_PASSWORD",
        str,
        "",
        "password of `flask --app wsgi admin create` when `--password` is not given",
        shown_default="prompted",
        in_app=False,
    ),
    Setting("SMTP_HOST", str, "", "SMTP relay for mail", shown_default="unset: outbox only"),
    Setting("SMTP_PORT", int, 25, "port of the SMTP relay", minimum=1),
    Setting("SMTP_USER", str, "", "SMTP login (with `SMTP_PASSWORD`)"),
    Setting("SMTP_PASSWORD", str, "", "SMTP password"),
    Setting("SMTP_STARTTLS", bool, False, "upgrade the SMTP connection with STARTTLS"),
    Setting("SMTP_SSL", bool, False, "connect to the SMTP relay over TLS (SMTPS)"),
    Setting("MAIL_FROM", str, "certwright@localhost", "sender address of every message"),
    Setting(
        "CW_MAIL_MAX_ATTEMPTS",
        int,
        8,
        "SMTP delivery attempts before a message is marked failed",
        minimum=1,
    ),
    Setting(
        "CW_MAIL_RETRY_SECONDS",
        int,
        60,
        "wait after the first failed delivery; doubled after each further failure, at most an hour",
        minimum=1,
    ),
    Setting(
        "CW_NOTIFY_DIGEST_HOUR",
        int,
        6,
        "hour of the day (UTC, 0-23) from which the daily notification digests go out "
        "(`docs/notifications.md`)",
        minimum=0,
        maximum=23,
    ),
    Setting(
        "CW_NOTIFY_SWEEP_SECONDS",
        int,
        3600,
        "seconds between sweeps of the inventory for due expiry notices (also run after every "
        "discovery run)",
        minimum=60,
    ),
    Setting(
        "CW_REPORT_KEEP_DAYS",
        int,
        7,
        "days a generated report stays downloadable before it is deleted (`docs/reports.md`)",
        minimum=1,
    ),
    Setting(
        "CW_REPORT_CHUNK_ROWS",
        int,
        20_000,
        "ids per chunk of a generated report: each chunk is one job, so more workers finish "
        "a large report sooner",
        minimum=100,
    ),
    Setting(
        "CW_REPORT_MAIL_MAX_BYTES",
        int,
        5_000_000,
        "largest scheduled report mailed as an attachment; a larger one is mailed as a signed, "
        "expiring download link (0: always a link)",
        minimum=0,
    ),
    Setting(
        "CW_REPORT_LINK_HOURS",
        int,
        72,
        "hours a mailed report download link works (at most until the report is deleted, "
        "`CW_REPORT_KEEP_DAYS`)",
        minimum=1,
    ),
    Setting(
        "CW_WEBHOOK_MAX_ATTEMPTS",
        int,
        8,
        "webhook POST attempts before a webhook message is marked failed",
        minimum=1,
    ),
    Setting(
        "CW_WEBHOOK_RETRY_SECONDS",
        int,
        30,
        "wait after the first failed webhook POST; doubled after each further failure, at most "
        "an hour",
        minimum=1,
    ),
    Setting(
        "SESSION_COOKIE_SECURE",
        bool,
        False,
        "`1`: the console's session cookie goes over HTTPS only (`0`: also over plain HTTP)",
        shown_default="on when `CW_BASE_URL` is an `https://` URL, else off",
    ),
    Setting(
        "CW_PROXY_HOPS",
        int,
        0,
        "number of trusted reverse proxies (X-Forwarded-For/Proto/Host)",
        minimum=0,
    ),
    Setting(
        "CW_LOGIN_MAX_FAILURES",
        int,
        5,
        "failed sign-ins of one login from one address before each further failure makes the next attempt from there wait (30 s, doubling, at most `CW_LOGIN_LOCK_MINUTES`; answered 429 with `Retry-After`); accounts are never locked by failures (`docs/authorization.md`)",
        minimum=1,
    ),
    Setting(
        "CW_LOGIN_LOCK_MINUTES",
        int,
        15,
        "the longest wait the sign-in throttle imposes",
        minimum=1,
    ),
    Setting(
        "CW_LOGIN_IP_MAX_FAILURES",
        int,
        20,
        "failed sign-ins from one address over all logins before the same progressive wait applies to that address",
        minimum=1,
    ),
    Setting(
        "CW_JOB_STALE_SECONDS",
        int,
        45,
        "a running job without a heartbeat this long is retried (its worker died)",
        minimum=1,
    ),
    Setting(
        "CW_DB_LOCK_TIMEOUT",
        int,
        5,
        "seconds a web request waits for a database lock or connection before it answers 503 with `Retry-After` (background work waits longer; `docs/authorization.md`)",
        minimum=1,
    ),
    Setting(
        "CW_EXPORT_MAX_ROWS",
        int,
        100_000,
        "rows a console CSV export streams at most; a capped file ends with a line saying so",
        minimum=1,
    ),
    Setting(
        "CW_WORKER_STALE_SECONDS",
        int,
        10,
        "a worker process whose heartbeat (every second) is this old died: its running jobs are retried and its fetched messages sent to the other workers at the scheduler's next pass",
        minimum=2,
    ),
    Setting("CW_SCHEDULER_INTERVAL", int, 5, "seconds between scheduler passes", minimum=1),
    Setting(
        "CW_REDIS_NAMESPACE",
        str,
        "",
        "prefix of dramatiq's Redis keys (default `dramatiq`): deployments sharing one Redis database each set their own, or use their own database number in `BROKER_URL`",
        shown_default="`dramatiq`",
        in_app=False,
    ),
    Setting(
        "CW_CONTROL_SOCKET",
        str,
        "",
        "gunicorn's control socket (for `gunicornc -s`): a path, or `off`; each instance gets its own by default",
        shown_default="`$CW_INSTANCE_DIR/gunicorn.ctl`",
        in_app=False,
    ),
    Setting(
        "CW_SCAN_DENY",
        str,
        "",
        "addresses, CIDR blocks or ranges no discovery task may scan, comma separated, on "
        "top of the built-in deny list (`docs/discovery.md`)",
    ),
    Setting(
        "CW_SCAN_RESOLVER",
        str,
        "",
        "DNS server discovery asks for the A and AAAA records of task host names (`host`, "
        "`host:port` or `[v6]:port`; `docs/discovery.md`)",
        shown_default="unset: the system resolver",
    ),
    Setting(
        "CW_ACME_RESOLVER",
        str,
        "",
        "DNS server ACME validation asks for the addresses of names (`host` or `host:port`; "
        "`docs/acme.md`)",
        shown_default="unset: the system resolver",
    ),
    Setting(
        "CW_ACME_HTTP01_PORT",
        int,
        80,
        "port ACME http-01 validation connects to; RFC 8555 §8.3 says 80: change it for tests "
        "only (as pebble's httpPort)",
        minimum=1,
    ),
    Setting(
        "CW_ACME_CAA_IDENTITIES",
        str,
        "",
        "issuer domain names of this CA in CAA records (RFC 8659), comma separated: when "
        "set, ACME validation refuses names whose CAA records allow other CAs only, or this "
        "CA only for other accounts or validation methods (RFC 8657)",
        shown_default="unset: CAA not checked",
    ),
    Setting(
        "CW_ACME_ORDERS_PER_HOUR",
        int,
        300,
        "new ACME orders one account may make in any hour; more are refused with "
        "rateLimited and Retry-After (0: no limit)",
        minimum=0,
    ),
    Setting(
        "CW_ACME_TLSALPN01_PORT",
        int,
        443,
        "port ACME tls-alpn-01 validation connects to; RFC 8737 §3 says 443: change it for "
        "tests only (as pebble's tlsPort)",
        minimum=1,
    ),
    Setting(
        "CW_ACME_NONCE_STORE",
        str,
        "",
        "where used ACME nonces are kept so that no web process accepts one twice: a "
        "`redis://` URL, or `database` (`docs/acme.md`)",
        shown_default="unset: `BROKER_URL`'s Redis when it is one, else the database",
    ),
    Setting(
        "CW_SCAN_MAX_ADDRESSES",
        int,
        65_536,
        "most addresses plus host names one discovery task may cover",
        minimum=1,
    ),
    Setting(
        "CW_AGENT_OFFLINE_SECONDS",
        int,
        60,
        "a scanning agent without a heartbeat this long is shown offline and gets no new shards",
        minimum=5,
    ),
    Setting(
        "CW_AGENT_WAIT_SECONDS",
        int,
        600,
        "how long a shard of a task bound to an offline agent waits for it before failing "
        "with the reason (it never runs elsewhere)",
        minimum=1,
    ),
    Setting(
        "CW_AGENT_MAX_SKEW_SECONDS",
        int,
        300,
        "signed agent messages older or newer than this (by their timestamp) are rejected; "
        "accepted ones are remembered twice as long, so a replay is rejected too",
        minimum=10,
    ),
    Setting(
        "CW_AGENT_NAME",
        str,
        "",
        "agent hosts only, for `dramatiq app.agent.process`: the agent's name (it consumes "
        "`scan.<name>`; `flask --app wsgi agent run` takes it on its command line instead)",
    ),
    Setting(
        "CW_AGENT_BROKER",
        str,
        "",
        "agent hosts only: the broker URL the agent uses (redis://... or amqp://...)",
    ),
    Setting("CW_AGENT_KEY", str, "", "agent hosts only: the file holding the agent's private key"),
    Setting(
        "CW_AGENT_ALLOW",
        str,
        "",
        "agent hosts only: comma-separated addresses, CIDR blocks or ranges the agent may scan "
        "(its own allow-list: shards outside it are refused)",
    ),
    Setting(
        "CW_AGENT_CAPACITY",
        int,
        2,
        "agent hosts only: shards the agent takes at once (match `--threads`)",
        minimum=1,
    ),
    Setting(
        "CW_AGENT_HEARTBEAT_SECONDS",
        float,
        10.0,
        "agent hosts only: seconds between the agent's heartbeats",
        minimum=1,
    ),
    Setting(
        "CW_AGENT_MAX_RATE",
        float,
        0.0,
        "agent hosts only: this host's ceiling on new connections a second over all the "
        "shards the agent runs (0: none); the console's cap for the agent and a task's cap "
        "can only lower it",
        minimum=0,
        maximum=1_000_000,
    ),
    Setting(
        "CW_AGENT_MAX_IN_FLIGHT",
        int,
        0,
        "agent hosts only: this host's ceiling on connections in flight over all the shards "
        "the agent runs (0: none); the console's cap for the agent and a task's concurrency "
        "can only lower it",
        minimum=0,
        maximum=100_000,
    ),
    Setting(
        "CW_HYGIENE_SWEEP_SECONDS",
        int,
        300,
        "seconds between hygiene sweeps: key, signature and pkilint checks of every "
        "certificate not checked yet (also run after every import)",
        minimum=10,
    ),
    Setting(
        "CW_IMPORT_MAX_UPLOAD_BYTES",
        int,
        256 * 1024 * 1024,
        "bytes one certificate import may upload in all (the console's uploads are also "
        "bounded by its 64 MiB request size)",
        minimum=1,
    ),
    Setting(
        "CW_IMPORT_MAX_MEMBERS",
        int,
        200_000,
        "members a ZIP archive given to an import may hold; a larger one is refused whole",
        minimum=1,
    ),
    Setting(
        "CW_IMPORT_MAX_TOTAL_BYTES",
        int,
        1024 * 1024 * 1024,
        "bytes the members of one imported ZIP may inflate to in all; past it the archive is "
        "refused whole",
        minimum=1,
    ),
    Setting(
        "CW_IMPORT_MAX_FILE_BYTES",
        int,
        4 * 1024 * 1024,
        "bytes one imported file (or ZIP member, inflated) may have; a larger one is skipped",
        minimum=1,
    ),
    Setting(
        "CW_IMPORT_MAX_RATIO",
        int,
        100,
        "compression ratio (inflated / compressed) above which a ZIP member is skipped "
        "unread as a likely bomb",
        minimum=1,
    ),
    Setting(
        "CW_OCSP_CACHE_SECONDS",
        float,
        5.0,
        "seconds within which a revocation shows in OCSP answers (each web process checks "
        "for new revocations this often) and an `unknown` answer is reused (`docs/pki.md`)",
        shown_default="5",
    ),
    Setting(
        "CW_CUSTOMER_URI",
        str,
        "certwright",
        "the customer URI REST API calls send in the `customerUri` header (shown under About; "
        "`docs/api.md`)",
    ),
    Setting(
        "CW_API_RATE_LIMIT",
        int,
        600,
        "REST API calls a minute per API administrator (0: no limit); past it 429 with "
        "`Retry-After`",
        minimum=0,
    ),
    Setting(
        "CW_API_MAX_BODY",
        int,
        128 * 1024,
        "largest REST API request body in bytes (413 above it)",
        minimum=1,
    ),
    Setting(
        "CW_API_REPLAY_SECONDS",
        int,
        600,
        "an identical enroll from the same API administrator within this many seconds gets "
        "the first answer again (0: only with an `Idempotency-Key`)",
        minimum=0,
    ),
    Setting(
        "CW_DCV_NAMESERVERS",
        str,
        "",
        "name servers (`ip[:port],...`) for domain control validation lookups",
        shown_default="unset: the system resolver",
    ),
)
SETTING: Final[dict[str, Setting]] = {s.name: s for s in SETTINGS}


def setting(name: str) -> Any:
    """The value of the declared setting ``name`` from the environment (or its default)."""
    return SETTING[name].read()


def settings_table() -> str:
    """The README's configuration table, rendered from SETTINGS."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    lines += [f"| `{s.name}` | {s.documented_default} | {s.meaning} |" for s in SETTINGS]
    return "\n".join(lines) + "\n"
