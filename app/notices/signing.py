"""Signatures: the HMAC on a webhook body, and the tokens in links mailed to recipients.

Webhooks (the scheme Stripe and Slack use): the receiver gets ``X-Certwright-Timestamp`` (Unix
seconds) and ``X-Certwright-Signature: v1=<hex>``, where hex is HMAC-SHA256 under the hook's
secret of ``"<timestamp>." + body``. It recomputes the HMAC over the raw body, compares in
constant time, and refuses timestamps older than a few minutes (a replayed request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Certwright-Signature"
TIMESTAMP_HEADER = "X-Certwright-Timestamp"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A webhook signing secret: 32 random bytes, url-safe base64."""
    return "whsec_" + secrets.token_urlsafe(32)


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: webhook_signature(secret, timestamp, body),
    }


def verify_webhook(
    secret: str,
    *,
    timestamp: str,
    signature: str,
    body: bytes,
    now: int,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: the signature matches the body and the timestamp is recent."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = webhook_signature(secret, int(timestamp), body)
    return hmac.compare_digest(expected, signature.strip())


def link_token(key: bytes, purpose: str, object_id: int) -> str:
    """A token that proves a link was mailed by us for ``purpose`` on ``object_id``."""
    mac = hmac.new(key, f"certwright:{purpose}:{object_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def check_link_token(key: bytes, purpose: str, object_id: int, token: str) -> bool:
    return hmac.compare_digest(link_token(key, purpose, object_id), token)
