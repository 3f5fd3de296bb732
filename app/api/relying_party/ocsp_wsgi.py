"""The OCSP routes as a WSGI layer in front of Flask: the same answers, without Flask's
per-request machinery (routing, sessions, login, CSRF, hooks), which cost more than
answering from the pre-produced response cache.

It takes exactly the requests app/api/relying_party/endpoints.py routes to the responder:

    POST /pki/ocsp  and  POST /pki/ocsp/<int:ca_id>      body = DER OCSPRequest
    GET  /pki/ocsp/<int:ca_id>/<path:encoded>             RFC 6960 Appendix A.1

and answers them with the same status, body and headers. Anything else, anything
unusual (no Content-Length, a body over MAX_CONTENT_LENGTH, merged slashes, non-ASCII)
and any error goes to Flask unchanged, so Flask's behaviour stays the reference.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from app.api.relying_party.endpoints import OCSP_MAX
from app.pki import ocsp as pki_ocsp
from app.pki.errors import OcspRequestError
from app.services.ca import ocsp

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_POST = re.compile(r"/pki/ocsp(?:/[0-9]+)?")
_GET = re.compile(r"/pki/ocsp/[0-9]+/([^/].*)")


# Set by gunicorn.conf.py in each worker: its post_request hook uncorks every connection.
# Under another gunicorn configuration nothing would, and a corked answer would wait for
# the kernel's 200 ms ceiling, so cork() does nothing there.
_UNCORK_HOOKED = False


def enable_cork() -> None:
    global _UNCORK_HOOKED
    _UNCORK_HOOKED = True


def cork(environ: dict[str, Any]) -> None:
    """Under gunicorn.conf.py, hold back the response's segments until its post_request
    hook uncorks the socket: gunicorn writes the headers and the body with two send()s
    (TCP_NODELAY), which made two segments of a ~1 KB answer, and on loopback or a LAN
    each segment costs both ends more than producing a cached answer."""
    sock = environ.get("gunicorn.socket")
    if _UNCORK_HOOKED and sock is not None and hasattr(socket, "TCP_CORK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)


def uncork(sock: socket.socket | None) -> None:
    """Send what cork() held back (a no-op on a socket that was not corked)."""
    if sock is not None and hasattr(socket, "TCP_CORK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)


class OcspFastPath:
    """WSGI middleware: wrap ``app.wsgi_app`` with it (create_app does)."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp, headers: Iterable[tuple[str, str]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.max_content_length = app.config.get("MAX_CONTENT_LENGTH")
        # What Flask sends with the route's Response: its own headers, the app's security
        # headers (after_request) and Vary: Cookie (Flask-Login reads the session).
        self.headers = [
            ("Content-Type", "application/ocsp-response"),
            ("Cache-Control", "no-cache"),
            *headers,
            ("Vary", "Cookie"),
        ]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = self._request_der(environ)
        if request is None:
            return self.wsgi_app(environ, start_response)
        try:
            with self.app.app_context():
                der = ocsp.answer(request) if request else pki_ocsp.malformed_response()
        except Exception:
            # Flask answers errors (logging, error pages): hand it the request as it came.
            if environ["REQUEST_METHOD"] == "POST":
                environ["wsgi.input"] = io.BytesIO(request)
            return self.wsgi_app(environ, start_response)
        start_response("200 OK", [*self.headers, ("Content-Length", str(len(der)))])
        cork(environ)
        return [der]

    def _request_der(self, environ: dict[str, Any]) -> bytes | None:
        """The DER request for a route we answer (b"" for malformed), None for Flask."""
        path = environ.get("PATH_INFO", "")
        if "//" in path or path.endswith("/") or not path.isascii():
            return None
        method = environ.get("REQUEST_METHOD")
        if method == "POST" and _POST.fullmatch(path):
            body = self._body(environ)
            if body is None or len(body) > OCSP_MAX:
                return None if body is None else b""
            return body
        if method == "GET" and (match := _GET.fullmatch(path)):
            try:
                return pki_ocsp.decode_get_path(match.group(1)) or b""
            except OcspRequestError:
                return b""
        return None

    def _body(self, environ: dict[str, Any]) -> bytes | None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None  # absent or chunked: Flask's request handling decides
        if length < 0 or (self.max_content_length is not None and length > self.max_content_length):
            return None
        stream = environ["wsgi.input"]
        chunks, left = [], length
        while left > 0:
            chunk = stream.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
