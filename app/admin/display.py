"""How the console shows values: times in the admin's zone, enums by label, JSON compactly."""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, request
from flask_admin.model import typefmt
from flask_login import current_user
from markupsafe import Markup


def admin_zone() -> ZoneInfo:
    name = (
        getattr(current_user, "timezone", "UTC")
        if current_user and current_user.is_authenticated
        else "UTC"
    )
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(value: datetime | None, *, seconds: bool = False) -> str:
    """An aware UTC time in the signed-in admin's time zone: '2026-11-27 11:23 CET'."""
    if value is None:
        return ""
    local = value.astimezone(admin_zone())
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def _authority(scheme: str, netloc: str) -> str:
    host = netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme.lower())
    return host[: -len(default)] if default and host.endswith(default) else host


def base_url_mismatch() -> tuple[str, str]:
    """("reached", "configured") when this request came in under another host (or port)
    than CW_BASE_URL, whose URLs go into certificates and mail; ("", "") when they agree."""
    configured = str(current_app.config["CW_BASE_URL"])
    parts = urlsplit(configured)
    if _authority(request.scheme, request.host) == _authority(parts.scheme, parts.netloc):
        return "", ""
    return request.host_url.rstrip("/"), configured


def _datetime(view: Any, value: datetime, name: str) -> str:
    return local_time(value)


def _enum(view: Any, value: enum.Enum, name: str) -> str:
    return str(getattr(value, "label", value.value))


def compact_json(value: Any, limit: int = 160) -> Markup:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return Markup('<code title="{}">{}</code>').format(text, short)


# Discovery: an endpoint's health flags and handshake error kinds, as people read them.
FLAG_LABELS = {
    "self_signed_leaf": "Self-signed leaf",
    "incomplete_chain": "Incomplete chain",
    "misordered_chain": "Misordered chain",
    "hostname_mismatch": "Host name mismatch",
    "expired": "Expired",
    "not_yet_valid": "Not yet valid",
    "weak_key": "Weak key",
    "sha1_signature": "SHA-1 signature",
    "legacy_tls": "Legacy TLS (1.0/1.1)",
}
ERROR_LABELS = {
    "not_tls": "Not TLS",
    "handshake_failure": "Handshake failure",
    "handshake_timeout": "Handshake timeout",
    "reset": "Connection reset",
    "refused": "Connection refused",
    "timeout": "Connect timeout",
    "unreachable": "Unreachable",
    "unresolved": "Host name not resolved",
    "denied": "Denied address",
    "starttls_failure": "STARTTLS refused",
}


FORMATTERS = dict(typefmt.BASE_FORMATTERS)
FORMATTERS.update({type(None): typefmt.empty_formatter, datetime: _datetime, enum.Enum: _enum})
DETAIL_FORMATTERS = dict(typefmt.DETAIL_FORMATTERS)
DETAIL_FORMATTERS.update({datetime: _datetime, enum.Enum: _enum})
DETAIL_FORMATTERS[datetime] = lambda view, value, name: local_time(value, seconds=True)
EXPORT_FORMATTERS = dict(typefmt.EXPORT_FORMATTERS)
EXPORT_FORMATTERS.update(
    {
        datetime: lambda view, value, name: value.isoformat(),
        enum.Enum: lambda view, value, name: value.value,
    }
)


STATUS_BADGE = {
    "Issued": "success",
    "Revoked": "danger",
    "Expired": "secondary",
    "Replaced": "info",
    "External": "dark",
    "Requested": "warning",
    "Approved": "primary",
    "Declined": "secondary",
    "Failed": "danger",
}


def badge(text: str) -> Markup:
    return Markup('<span class="badge badge-{}">{}</span>').format(
        STATUS_BADGE.get(text, "light"), text
    )


# RFC 4514 string order: the most specific attribute first.
_DN_ORDER = ("CN", "OU", "O", "L", "ST", "C")
_DN_SPECIAL = str.maketrans({c: "\\" + c for c in ',+"\\<>;='})


def dn_string(subject: dict[str, str] | None) -> str:
    """A subject stored as {"CN": .., "O": ..} as people read it: 'CN=www, O=Acme, C=DE'."""
    if not subject:
        return ""
    keys = [k for k in _DN_ORDER if subject.get(k)] + [
        k for k in subject if k not in _DN_ORDER and subject.get(k)
    ]
    return ", ".join(f"{k}={str(subject[k]).translate(_DN_SPECIAL)}" for k in keys)


def dn(text: str) -> Markup:
    """A distinguished name in a cell that wraps at any character (they get long)."""
    return Markup('<span class="cw-dn">{}</span>').format(text)


def article(label: str) -> str:
    """'a' or 'an' before a certificate type: an SSL, a Client, a Device, a Code Signing."""
    first = label[:1]
    spoken_vowel = first.lower() in "aeiou" or (label[:2].isupper() and first in "FHLMNRSX")
    return "an" if spoken_vowel else "a"


def live(url: str, item_id: int, state: dict[str, Any]) -> Markup:
    """A status that updates itself in place (app/static/js/console.js polls `url`)."""
    links = Markup("").join(
        Markup('<a class="cw-live-link" href="{}">{}</a>').format(link["href"], link["label"])
        for link in state.get("links", [])
    )
    text = (
        Markup('<span class="ml-2 cw-live-text">{}</span>').format(state["text"])
        if state.get("text")
        else ""
    )
    return Markup(
        '<span class="cw-live" data-cw-live="{}" data-cw-id="{}" data-cw-final="{}" '
        'data-cw-state="{}"><span class="badge badge-{} cw-live-state">{}</span>{}{}</span>'
    ).format(
        url,
        item_id,
        "1" if state.get("final") else "0",
        state["state"],
        state.get("badge", "light"),
        state["state"],
        text,
        links,
    )
