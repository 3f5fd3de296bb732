"""Webhooks: where webhook notices go, and delivering their messages.

A webhook message is durable work like an outbox row: a POST of its JSON body, signed with
HMAC-SHA256 under the hook's secret and a timestamp (app.notices.signing), made by the
webhook actor. A 2xx answer sends it; anything else (refused, timed out, 3xx, 4xx, 5xx) is
logged in the hook's attempt log and retried after CW_WEBHOOK_RETRY_SECONDS, doubled each
time up to an hour, until CW_WEBHOOK_MAX_ATTEMPTS attempts failed: then it is failed (the
dead letter) and an admin may resend it. Redirects are not followed (a redirect is a
failure), so a signed body never goes anywhere but the configured URL.

The signing secret is generated here, shown once, and stored sealed under the
key-encryption keys (CW_KEK) like CA keys.
"""

from __future__ import annotations

import functools
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.models import (
    Admin,
    NotificationDelivery,
    NotificationRule,
    NotificationWebhook,
    Organization,
    WebhookAttempt,
    WebhookMessage,
    WebhookMessageStatus,
)
from app.models.types import utcnow
from app.notices import signing
from app.pki import keystore
from app.services import audit
from app.services.errors import Conflict, NotFound, ValidationFailed
from app.services.notifications import compose
from app.services.notifications.rules import live_rules
from app.services.platform import dispatch
from app.services.platform.jobs import after_commit
from app.services.scope import Actor, Scope, require_actor, scope_of
from app.version import __version__

TIMEOUT = 10
SENDING_LEASE = timedelta(minutes=2)
MAX_BACKOFF = timedelta(hours=1)
AUDIT_FIELDS = ("name", "url", "enabled", "organization_id")


def _keks() -> keystore.KeyEncryptionKeys:
    return keystore.parse_keks(str(current_app.config["CW_KEK"]))


def seal_secret(secret: str) -> bytes:
    return keystore.seal(secret.encode(), _keks())


def secret_of(hook: NotificationWebhook) -> str:
    return keystore.unseal(hook.sealed_secret, _keks()).decode()


# --- managing hooks --------------------------------------------------------------------------


def visible_webhooks_clause(scope: Scope) -> ColumnElement[bool] | None:
    """MRAO: all. RAO/DRAO: the hooks of organizations they see (they attach them to rules);
    only an organization's RAO (or an MRAO) edits them."""
    if scope.is_master:
        return None
    return NotificationWebhook.organization_id.in_(sorted(scope.visible_org_ids))


def get_webhook(*, actor: Actor, webhook_id: int, edit: bool = False) -> NotificationWebhook:
    scope = scope_of(require_actor(actor))
    hook = db.session.get(NotificationWebhook, webhook_id)
    if hook is None:
        raise NotFound("No such webhook.")
    if not (scope.is_master or hook.organization_id in scope.visible_org_ids):
        raise audit.denied(
            actor=actor, what="webhook", object_type="NotificationWebhook", object_id=hook.id
        )
    if edit and not scope.manages_org(hook.organization_id):  # a DRAO's organization's hook
        raise NotFound("No such webhook.")
    return hook


def check_url(url: str) -> str:
    """An http(s) URL without credentials.

    Raises:
        ValidationFailed: names the problem.
    """
    url = url.strip()
    parts = urlsplit(url)
    problem = ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "Give an http:// or https:// URL with a host name."
    elif parts.username or parts.password:
        problem = "Put no credentials in the URL: the HMAC signature authenticates each POST."
    elif len(url) > 2048 or any(ord(ch) < 33 for ch in url):
        problem = "The URL is too long or contains spaces or control characters."
    if problem:
        raise ValidationFailed({"url": [problem]})
    return url


def _check(actor: Actor, name: str, url: str, organization_id: int | None) -> tuple[str, str]:
    scope = scope_of(require_actor(actor))
    errors: dict[str, list[str]] = {}
    name = " ".join(name.split())
    if not name or len(name) > 128:
        errors["name"] = ["Name the webhook (at most 128 characters)."]
    try:
        url = check_url(url)
    except ValidationFailed as exc:
        errors.update(exc.errors)
    if organization_id is None:
        if not scope.is_master:
            errors["organization_id"] = ["Choose the organization the webhook belongs to."]
    elif db.session.get(Organization, organization_id) is None or not scope.manages_org(
        organization_id
    ):
        errors["organization_id"] = ["That organization is outside your scope."]
    if errors:
        raise ValidationFailed(errors)
    return name, url


def create_webhook(
    *, actor: Actor, name: str, url: str, organization_id: int | None = None
) -> tuple[NotificationWebhook, str]:
    """Add a hook; returns it and its signing secret (shown once, then only sealed)."""
    actor = require_actor(actor)
    name, url = _check(actor, name, url, organization_id)
    secret = signing.new_secret()
    hook = NotificationWebhook(
        name=name,
        url=url,
        sealed_secret=seal_secret(secret),
        enabled=True,
        organization_id=organization_id,
        created_by_id=actor.id,
    )
    db.session.add(hook)
    db.session.flush()
    audit.record(
        action="notification_webhook.create",
        actor=actor,
        object_type="NotificationWebhook",
        object_id=hook.id,
        label=hook.name,
        after=audit.snapshot(hook, AUDIT_FIELDS),
        organization_id=organization_id,
    )
    return hook, secret


def update_webhook(
    *,
    actor: Actor,
    webhook_id: int,
    name: str,
    url: str,
    enabled: bool,
    rotate_secret: bool = False,
) -> tuple[NotificationWebhook, str | None]:
    """Edit a hook; with rotate_secret, a new secret (returned, shown once) replaces the old."""
    hook = get_webhook(actor=actor, webhook_id=webhook_id, edit=True)
    name, url = _check(actor, name, url, hook.organization_id)
    before = audit.snapshot(hook, AUDIT_FIELDS)
    hook.name, hook.url, hook.enabled = name, url, bool(enabled)
    secret = None
    if rotate_secret:
        secret = signing.new_secret()
        hook.sealed_secret = seal_secret(secret)
    after = audit.snapshot(hook, AUDIT_FIELDS)
    changed = [k for k in after if after[k] != before[k]]
    audit.record(
        action="notification_webhook.update",
        actor=actor,
        object_type="NotificationWebhook",
        object_id=hook.id,
        label=hook.name,
        before={k: before[k] for k in changed},
        after={k: after[k] for k in changed},
        message="signing secret replaced" if rotate_secret else "",
        organization_id=hook.organization_id,
    )
    return hook, secret


def delete_webhook(*, actor: Actor, webhook_id: int) -> None:
    """Remove a hook no live rule uses (its messages and log go with it).

    Raises:
        Conflict: rules still post to it (named).
    """
    hook = get_webhook(actor=actor, webhook_id=webhook_id, edit=True)
    users = [r.name for r in rules_using(hook.id)]
    if users:
        raise Conflict(f"'{hook.name}' is used by the rules: {', '.join(sorted(users))}.")
    before = audit.snapshot(hook, AUDIT_FIELDS)
    audit.record(
        action="notification_webhook.delete",
        actor=actor,
        object_type="NotificationWebhook",
        object_id=hook.id,
        label=hook.name,
        before=before,
        organization_id=hook.organization_id,
    )
    message_ids = select(WebhookMessage.id).where(WebhookMessage.webhook_id == hook.id)
    db.session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.webhook_message_id.in_(message_ids))
        .values(webhook_message_id=None, error=f"webhook '{hook.name}' deleted")
    )
    db.session.execute(
        WebhookAttempt.__table__.delete().where(WebhookAttempt.webhook_id == hook.id)
    )
    db.session.execute(
        WebhookMessage.__table__.delete().where(WebhookMessage.webhook_id == hook.id)
    )
    db.session.delete(hook)


# --- delivering messages --------------------------------------------------------------------

_deliver: list[Callable[[int, int], None]] = []


def register_deliverer(fn: Callable[[int, int], None]) -> None:
    _deliver[:] = [fn]
    compose.register_webhook_sender(fn)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx answer is returned as an error, not followed


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, secret: str, *, now: int | None = None) -> int:
    """POST the body, signed; the HTTP status (any, 2xx or not).

    Raises:
        OSError: the connection failed or timed out (URLError included).
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Certwright/{__version__}",
        **signing.signed_headers(secret, now if now is not None else int(time.time()), body),
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310  (http(s) only: check_url)
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read(65536)
        exc.close()
        return int(exc.code)


def backoff(failed_attempts: int) -> timedelta:
    first = int(current_app.config["CW_WEBHOOK_RETRY_SECONDS"])
    return min(MAX_BACKOFF, timedelta(seconds=first * 2 ** max(0, failed_attempts - 1)))


def deliver(message_id: int, attempt: int) -> str:
    """One POST of a queued message: "sent", "retry", "failed" or "skipped" (not queued, or
    this attempt already taken by another message)."""
    now = utcnow()
    claimed = db.session.execute(
        update(WebhookMessage)
        .where(
            WebhookMessage.id == message_id,
            WebhookMessage.status == WebhookMessageStatus.QUEUED,
            WebhookMessage.attempts == attempt,
        )
        .values(attempts=WebhookMessage.attempts + 1, next_attempt_at=now + SENDING_LEASE)
    )
    db.session.commit()
    if claimed.rowcount != 1:
        return "skipped"
    message = db.session.get(WebhookMessage, message_id)
    if message is None:
        return "skipped"
    hook = message.webhook
    started = time.monotonic()
    status: int | None = None
    error = ""
    if not hook.enabled:
        error = "the webhook is disabled"
    else:
        try:
            status = post(hook.url, message.body.encode(), secret_of(hook))
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    ok = not error
    db.session.add(
        WebhookAttempt(
            message_id=message.id,
            webhook_id=hook.id,
            attempt=message.attempts,
            at=now,
            status_code=status,
            ok=ok,
            error=error[:2000],
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    )
    if ok:
        message.status, message.sent_at, message.error, message.next_attempt_at = (
            WebhookMessageStatus.SENT,
            utcnow(),
            "",
            None,
        )
        outcome = "sent"
    elif message.attempts >= int(current_app.config["CW_WEBHOOK_MAX_ATTEMPTS"]):
        message.status, message.next_attempt_at = WebhookMessageStatus.FAILED, None
        message.error = f"gave up after {message.attempts} attempts; last: {error}"[:2000]
        outcome = "failed"
    else:
        message.next_attempt_at = utcnow() + backoff(message.attempts)
        message.dispatched_at = None
        message.error = f"attempt {message.attempts} failed: {error}"[:2000]
        outcome = "retry"
    db.session.commit()
    return outcome


def dispatch_due(now: datetime | None = None, restarted: bool = False) -> int:
    """Scheduler pass: a message for each queued webhook message that is due (after its
    backoff, or whose message was lost): app.services.platform.dispatch."""
    if not _deliver:
        return 0
    return dispatch.dispatch_due(
        WebhookMessage,
        WebhookMessageStatus.QUEUED,
        _deliver[0],
        now=now or utcnow(),
        restarted=restarted,
    )


def resend(*, actor: Admin, message_id: int) -> WebhookMessage:
    """Queue a failed webhook message again with a fresh set of attempts.

    Raises:
        NotFound: not visible. Conflict: it is not failed.
    """
    message = db.session.get(WebhookMessage, message_id)
    if message is None:
        raise NotFound("No such webhook message.")
    get_webhook(actor=actor, webhook_id=message.webhook_id)
    if message.status != WebhookMessageStatus.FAILED:
        raise Conflict(f"Webhook message #{message.id} is {message.status.value}, not failed.")
    before = {"status": message.status.value, "attempts": message.attempts, "error": message.error}
    now = utcnow()
    message.status, message.attempts, message.next_attempt_at = WebhookMessageStatus.QUEUED, 0, now
    message.error = f"resent by {actor.login} after: {message.error}"[:2000]
    message.dispatched_at = now if _deliver else None
    db.session.flush()
    if _deliver:
        after_commit(functools.partial(_deliver[0], message.id, 0))
    audit.record(
        action="webhook_message.resend",
        actor=actor,
        object_type="WebhookMessage",
        object_id=message.id,
        label=message.webhook.name,
        before=before,
        after={"status": message.status.value, "attempts": 0, "error": message.error},
        organization_id=message.webhook.organization_id,
    )
    return message


def rules_using(hook_id: int) -> list[NotificationRule]:
    return [
        r for r in db.session.execute(live_rules()).scalars() if hook_id in (r.webhook_ids or [])
    ]


def attempt_log(webhook_id: int, limit: int = 200) -> list[WebhookAttempt]:
    """The hook's latest POSTs, newest first (the per-hook delivery log)."""
    return list(
        db.session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.webhook_id == webhook_id)
            .order_by(WebhookAttempt.id.desc())
            .limit(limit)
        ).scalars()
    )
