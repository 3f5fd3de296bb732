"""The public URLs this instance embeds: the base URL (CW_BASE_URL, else the bind address or
the recorded URL) and the PKI URL certificates name (CW_PKI_URL); no Flask config."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from app.instance import instance_dir
from app.settings import SETTING, SettingError, setting

BASE_URL_FILE: Final = "base_url"
PKI_URL_FILE: Final = "pki_url"


def bind_address() -> str:
    """Where gunicorn listens: CW_BIND, else 127.0.0.1:PORT."""
    return str(setting("CW_BIND")) or f"127.0.0.1:{setting('PORT')}"


def url_of_bind(bind: str) -> str | None:
    """The http URL a bind address serves: "127.0.0.1:6050" -> "http://127.0.0.1:6050".
    All interfaces (0.0.0.0, ::) name this host; a Unix socket or fd has no URL (None)."""
    if bind.startswith(("unix:", "fd://")) or "/" in bind:
        return None
    host, sep, port = bind.rpartition(":")
    if not sep:
        host, port = bind, "8000"  # gunicorn's own default port for a bare host
    host = host.strip("[]")
    if not port.isdigit():
        return None
    if host in ("", "0.0.0.0", "::"):  # noqa: S104  (reading a bind address, not binding)
        host = socket.getfqdn()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def recorded_base_url() -> str | None:
    return _recorded(BASE_URL_FILE)


def _recorded(name: str) -> str | None:
    path = instance_dir() / name
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def resolve_base_url() -> tuple[str, str]:
    """The public URL of this instance and where it came from, in this order: CW_BASE_URL;
    CW_BIND or PORT when set (a serving process: `PORT=6050 make run`); the URL the last
    server recorded in the instance folder (a command run from another terminal without
    PORT); http://127.0.0.1:5000."""
    if SETTING["CW_BASE_URL"].is_set():
        return str(setting("CW_BASE_URL")).rstrip("/"), "CW_BASE_URL"
    for name in ("CW_BIND", "PORT"):
        if SETTING[name].is_set():
            url = url_of_bind(bind_address())
            if url is not None:
                return url, name
    recorded = recorded_base_url()
    if recorded is not None:
        return recorded, f"recorded by the server in {instance_dir() / BASE_URL_FILE}"
    return str(SETTING["CW_BASE_URL"].default), "default"


def resolve_pki_url(base_url: str, base_source: str) -> str:
    """CW_PKI_URL, checked (checked_pki_url); unset, the PKI URL the server recorded beside
    the base URL when the base URL is that recorded one (a command run from another
    terminal names what the server names), else "" (certificates name the base URL).

    Raises:
        SettingError: as checked_pki_url.
    """
    if SETTING["CW_PKI_URL"].is_set():
        return checked_pki_url(str(setting("CW_PKI_URL")), base_url)
    if base_source.startswith("recorded"):
        return checked_pki_url(_recorded(PKI_URL_FILE) or "", base_url)
    return checked_pki_url("", base_url)


def checked_pki_url(value: str, base_url: str) -> str:
    """CW_PKI_URL as certificates will name it ("" when unset: CW_BASE_URL is used).

    Relying parties fetch CRLs, OCSP answers and CA certificates over plain HTTP (RFC 5280
    §4.2.1.13 and §4.2.2.1; the CA/Browser Forum's profiles allow only http there, and a
    TLS connection to learn whether a TLS certificate is revoked goes in a circle), so the
    URL is http:// and is required when the console's own URL is https://.

    Raises:
        SettingError: an https:// console URL without CW_PKI_URL, or a CW_PKI_URL that is
            not a plain http:// URL with a host (no query or fragment).
    """
    value = value.strip()
    if not value:
        if base_url.lower().startswith("https://"):
            raise SettingError(
                f"CW_BASE_URL is {base_url}, an https:// URL: set CW_PKI_URL to the plain "
                "http:// URL where this instance's /pki/ is served (for example "
                f"http://{urlsplit(base_url).hostname}). Certificates name it for their CRL, "
                "OCSP and CA-issuer locations, which relying parties fetch over plain HTTP."
            )
        return ""
    parts = urlsplit(value)
    if parts.scheme.lower() != "http" or not parts.hostname or parts.query or parts.fragment:
        raise SettingError(
            f"CW_PKI_URL={value!r}: expected a plain http:// URL with a host and no query "
            "(relying parties fetch CRLs, OCSP answers and CA certificates over plain HTTP; "
            "https is not allowed there)"
        )
    return value.rstrip("/")


def record_base_url(url: str, pki_url: str = "") -> Path:
    """Write the URL this server embeds into the instance folder (atomically), and its PKI
    URL beside it (none: the file removed), so that commands run without the server's
    environment embed the same ones."""
    _record(PKI_URL_FILE, pki_url)
    return _record(BASE_URL_FILE, url)


def _record(name: str, url: str) -> Path:
    path = instance_dir() / name
    if not url:
        path.unlink(missing_ok=True)
        return path
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(url + "\n")
    os.chmod(temp, 0o644)
    os.replace(temp, path)
    return path
