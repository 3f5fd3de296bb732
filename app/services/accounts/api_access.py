"""REST API callers: API administrators authenticated on every call, their source networks,
the sign-in throttle on counters of their own, and the per-administrator rate limit.

An API call carries ``login``, ``password`` and ``customerUri`` (SCM's header style). Only
administrators of kind API authenticate there, and they never sign in to the console, so a
script's credentials open nothing a person uses. Failures go through the console's
throttle (app/services/accounts/sessions.py) on counters keyed ``api:<address>``: a broken
script slows down further API attempts from its own address, never a person's sign-in.

A password is checked with argon2id once, then remembered for VERIFIED_SECONDS as an HMAC
under a key that lives only in this process (never the password), tied to the account's
current hash: a changed password, a disabled account or a new network list takes effect on
the next call. Without it every call would cost one argon2id verification (tens of ms at
the production parameters) and scripts would be slower than the signing they ask for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import unquote

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import (
    Admin,
    AdminKind,
    ApiRateWindow,
    Certificate,
    CertOrigin,
    CertStatus,
    CertType,
)
from app.models.types import utcnow
from app.services import audit
from app.services.accounts.passwords import (
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from app.services.accounts.sessions import (
    SignInRefused,
    ThrottlePolicy,
    blocked_until,
    check_throttle,
    count_failure,
    duration,
    raise_if_blocked,
)
from app.services.errors import DomainError

UNKNOWN_USER = "Unknown user"
VERIFIED_SECONDS = 300
_VERIFIED_MAX = 4096
RATE_WINDOW_SECONDS = 60

_process_key = secrets.token_bytes(32)
_verified: OrderedDict[tuple[int, str], tuple[bytes, float]] = OrderedDict()
_verified_lock = threading.Lock()


class ApiRateLimited(DomainError):
    """The API administrator made more calls in this window than CW_API_RATE_LIMIT."""

    status = 429

    def __init__(self, retry_after: int, limit: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"Too many API calls: at most {limit} a minute for this account. Try again in {duration(retry_after)}."
        )


def normalize_networks(values: Sequence[str]) -> list[str] | None:
    """Source networks in CIDR form ('10.0.0.0/8', '2001:db8::/32'; an address is a /32 or
    /128); an empty list means any address (None).

    Raises:
        DomainError: a value that is not an IP network.
    """
    networks = []
    for raw in values:
        text = raw.strip()
        if not text:
            continue
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError as exc:
            raise DomainError(
                f"'{text}' is not an IP network (for example 10.1.0.0/16 or 192.0.2.7).",
                field="api_networks",
            ) from exc
    return sorted(set(networks)) or None


def address_allowed(admin: Admin, ip: str) -> bool:
    if not admin.api_networks:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in admin.api_networks)


def _digest(password: str) -> bytes:
    return hmac.new(
        _process_key, password.encode("utf-8", "surrogatepass"), hashlib.sha256
    ).digest()


def _password_matches(admin: Admin, password: str) -> bool:
    key = (admin.id, admin.password_hash)
    digest = _digest(password)
    now = time.monotonic()
    with _verified_lock:
        hit = _verified.get(key)
    if hit is not None and hit[1] > now and hmac.compare_digest(hit[0], digest):
        return True
    if not verify_password(admin.password_hash, password):
        return False
    if needs_rehash(admin.password_hash):
        admin.password_hash = hash_password(password)
        key = (admin.id, admin.password_hash)
    with _verified_lock:
        _verified[key] = (digest, now + VERIFIED_SECONDS)
        _verified.move_to_end(key)
        while len(_verified) > _VERIFIED_MAX:
            _verified.popitem(last=False)
    return True


def _account_unless_throttled(
    login: str, address: str, now: datetime, policy: ThrottlePolicy
) -> Admin | None:
    """The account named ``login`` (None if there is none), after the throttle check,
    which comes first: a throttled address learns nothing. The throttle is read in the
    statement that loads the account, one round trip on every call.

    Raises:
        SignInThrottled: this address must wait (for this login, or for any).
    """
    if not login:
        check_throttle(login, address, now, policy)
        return None
    row = db.session.execute(
        select(Admin, blocked_until(login, address, now, policy)).where(Admin.login == login[:64])
    ).one_or_none()
    if row is None:  # no such login: the throttle on its own
        check_throttle(login, address, now, policy)
        return None
    raise_if_blocked(row[1], now)
    admin: Admin = row[0]
    return admin


def authenticate(*, login: str, password: str, customer_uri: str, ip: str) -> Admin:
    """The API administrator these headers name, checked under the throttle.

    Every refusal is "Unknown user" (what SCM answers) after the same work; the reason is
    in the audit log (Account Activity) with the address. The caller commits either way.

    Raises:
        SignInThrottled: this address failed too often (for this login, or for any); nothing
            was checked.
        SignInRefused: unknown login, wrong password or customer URI, not an API account,
            disabled, or calling from outside the account's source networks.
    """
    policy = ThrottlePolicy.from_config()
    now = utcnow()
    address = f"api:{ip}"
    admin = _account_unless_throttled(login, address, now, policy)
    if admin is not None and admin.kind == AdminKind.API:
        matches = _password_matches(admin, password)
    else:  # the same argon2id work for a login that is missing or not an API account
        verify_password(dummy_hash(), password)
        matches = False
    expected_uri = str(current_app.config["CW_CUSTOMER_URI"])
    reason = ""
    if admin is None:
        reason = "unknown login"
    elif admin.kind != AdminKind.API:
        reason = "not an API administrator"
    elif not matches:
        reason = "bad password"
    elif not hmac.compare_digest(customer_uri.encode(), expected_uri.encode()):
        reason = f"wrong customerUri {customer_uri[:64]!r}"
    elif not admin.active:
        reason = "account disabled"
    elif not address_allowed(admin, ip):
        reason = f"address {ip} is outside the account's source networks"
    if not reason:
        return admin  # type: ignore[return-value]
    wait = count_failure(login, address, now, policy)
    if wait:
        reason += f"; the next API call from {ip or 'this address'} waits {duration(int(wait.total_seconds()))}"
    audit.record(
        action="signin.failure",
        actor=admin if admin is not None else (login[:64] or "anonymous"),
        object_type="Admin" if admin is not None else "",
        object_id=admin.id if admin is not None else "",
        label=admin.login if admin is not None else "",
        message=f"REST API: {reason}",
    )
    raise SignInRefused(UNKNOWN_USER)


def _presented_certificate(text: str) -> bytes | None:
    """The DER of the PEM a TLS-terminating proxy forwarded (URL-escaped, as nginx's
    $ssl_client_escaped_cert, or with its newlines folded into spaces); None if unreadable."""
    pem = unquote(text).strip()
    if "-----BEGIN CERTIFICATE-----" not in pem:
        return None
    _, _, rest = pem.partition("-----BEGIN CERTIFICATE-----")
    body, _, _ = rest.partition("-----END CERTIFICATE-----")
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except ValueError:
        return None


def authenticate_certificate(
    *, login: str, customer_uri: str, certificate: str, ip: str, peer: str, proxied: bool
) -> Admin:
    """The API administrator a TLS client certificate authenticates (contract §0.2 variant:
    ``/private/api`` with ``login`` and ``customerUri`` only; docs/api.md).

    The TLS-terminating proxy verified the handshake (the caller holds the key) and forwards
    the certificate; it is believed only from a proxy on this host (the connection's own
    address is loopback and CW_PROXY_HOPS declares proxies). The certificate must be a
    client certificate Certwright issued, valid now, whose request this API administrator
    made itself and which names the administrator's e-mail address: nobody else can make
    one stand for the account, and revoking it ends its use.

    Raises:
        SignInThrottled, SignInRefused: as authenticate().
    """
    policy = ThrottlePolicy.from_config()
    now = utcnow()
    address = f"api:{ip}"
    check_throttle(login, address, now, policy)
    admin = None
    if login:
        admin = db.session.execute(
            select(Admin).where(Admin.login == login[:64])
        ).scalar_one_or_none()
    der = _presented_certificate(certificate)
    cert = None
    if der is not None:
        cert = db.session.execute(
            select(Certificate).where(Certificate.fingerprint == hashlib.sha256(der).hexdigest())
        ).scalar_one_or_none()
    expected_uri = str(current_app.config["CW_CUSTOMER_URI"])
    reason = ""
    try:
        from_proxy = proxied and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        from_proxy = False
    if not from_proxy:
        reason = "a client certificate is only taken from a TLS proxy on this host"
    elif der is None:
        reason = "no client certificate"
    elif admin is None:
        reason = "unknown login"
    elif admin.kind != AdminKind.API:
        reason = "not an API administrator"
    elif not hmac.compare_digest(customer_uri.encode(), expected_uri.encode()):
        reason = f"wrong customerUri {customer_uri[:64]!r}"
    elif (
        cert is None
        or cert.origin != CertOrigin.ISSUED
        or cert.cert_type != CertType.CLIENT
        or cert.request is None
        or cert.request.requester_id != admin.id
        or admin.email.lower() not in [s.lower() for s in cert.sans]
    ):
        reason = "the client certificate was not issued by Certwright to this API administrator"
    elif cert.status != CertStatus.ISSUED or not cert.not_before <= now < cert.not_after:
        reason = f"the client certificate is {cert.status.value.lower()}"
    elif not admin.active:
        reason = "account disabled"
    elif not address_allowed(admin, ip):
        reason = f"address {ip} is outside the account's source networks"
    if not reason:
        return admin  # type: ignore[return-value]
    wait = count_failure(login, address, now, policy)
    if wait:
        reason += f"; the next API call from {ip or 'this address'} waits {duration(int(wait.total_seconds()))}"
    audit.record(
        action="signin.failure",
        actor=admin if admin is not None else (login[:64] or "anonymous"),
        object_type="Admin" if admin is not None else "",
        object_id=admin.id if admin is not None else "",
        label=admin.login if admin is not None else "",
        message=f"REST API (client certificate): {reason}",
    )
    raise SignInRefused(UNKNOWN_USER)


def count_call(*, admin: Admin) -> bool:
    """Count one call of this API administrator in the current minute; False when the limit
    is off (nothing counted, nothing written).

    Raises:
        ApiRateLimited: past CW_API_RATE_LIMIT calls this minute (0 turns the limit off).
    """
    limit = int(current_app.config["CW_API_RATE_LIMIT"])
    if limit <= 0:
        return False
    now = time.time()
    window = int(now // RATE_WINDOW_SECONDS)
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ApiRateWindow).values(admin_id=admin.id, window=window, calls=1)
    calls = db.session.execute(
        statement.on_conflict_do_update(
            index_elements=["admin_id", "window"],
            set_={"calls": ApiRateWindow.calls + 1},
        ).returning(ApiRateWindow.calls)
    ).scalar_one()
    if calls == 1:  # a new window: the account's older ones are history
        db.session.execute(
            delete(ApiRateWindow).where(
                ApiRateWindow.admin_id == admin.id, ApiRateWindow.window < window
            )
        )
    if calls > limit:
        retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
        raise ApiRateLimited(retry_after, limit)
    return True
