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

_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:;*?<>|]+')
MAX_NAME = 150


def safe_filename(name: str, *, fallback: str = "download") -> str:
    """`name` as a file name: wildcards read 'star', separators and controls become '_'."""
    text = unicodedata.normalize("NFC", name).replace("*", "star")
    text = _UNSAFE.sub("_", text).strip(" ._")
    return text[:MAX_NAME] or fallback


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
