"""File downloads for every front door: one Content-Disposition (RFC 6266) and file-name rule.

A name shown to the browser comes from data (a certificate's common name, an organization),
so it may hold quotes, CR/LF, path separators or non-ASCII. The plain ``filename`` gets a
safe ASCII fallback; ``filename*`` (RFC 8187 UTF-8 encoding) carries the real name when it
is not plain ASCII.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from flask import Response

from app.pki.formats import DownloadFormat

_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:;*?<>|]+')
MAX_NAME = 150


def safe_filename(name: str, *, fallback: str = "download") -> str:
    """`name` as a file name: wildcards read 'star', separators and controls become '_'."""
    text = unicodedata.normalize("NFC", name).replace("*", "star")
    text = _UNSAFE.sub("_", text).strip(" ._")
    return text[:MAX_NAME] or fallback


# A certificate's files are named by what they hold, so that downloading several formats of
# one certificate never overwrites a file (docs/pki.md, "Download file names"). certbot's
# fullchain.pem is the certificate and its intermediates, what a TLS server sends.
CERTIFICATE_SUFFIXES: dict[str, str] = {
    DownloadFormat.X509CO: ".pem",
    DownloadFormat.PEMCO: ".pem",
    DownloadFormat.X509: "-chain.pem",
    DownloadFormat.PEM: "-chain.pem",
    DownloadFormat.PEMIA: "-fullchain.pem",
    DownloadFormat.X509IO: "-intermediates.pem",
    DownloadFormat.X509IOR: "-intermediates-reversed.pem",
    DownloadFormat.BASE64: ".p7b",
    DownloadFormat.BIN: ".p7c",  # DER PKCS#7 certs-only, RFC 5751 section 3.2.2
    DownloadFormat.CER: ".cer",
    "p12": ".p12",
}


def certificate_filename(common_name: str | None, fmt: str) -> str:
    """`www.example.test-fullchain.pem`: the certificate's name, then what the file holds.

    `fmt` is a download format (any case, as SCM spells it) or "p12"."""
    base = common_name or "certificate"
    folded = {str(k).lower(): v for k, v in CERTIFICATE_SUFFIXES.items()}
    return safe_filename(base, fallback="certificate") + folded.get(fmt.lower(), ".bin")


def content_disposition(filename: str) -> str:
    """``attachment; filename="..."`` plus ``filename*`` when the name is not plain ASCII."""
    name = safe_filename(filename)
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


def attachment(content: bytes, *, filename: str, mimetype: str) -> Response:
    """A download response: the bytes, their type and a safe Content-Disposition."""
    return Response(
        content, mimetype=mimetype, headers={"Content-Disposition": content_disposition(filename)}
    )
