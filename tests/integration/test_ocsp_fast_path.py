"""The OCSP fast path (app/api/relying_party/ocsp_wsgi.py) answers exactly as the Flask routes do.

Each request is sent twice, through the whole app (fast path in front) and through
Flask alone (the wrapped WSGI app), and the answers are compared: status, headers,
and the body (or, for signatures made fresh, what the response says).
"""

from __future__ import annotations

import base64
import io
import os
import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from flask import request_started
from sqlalchemy import text
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.api.relying_party.ocsp_wsgi import OcspFastPath
from app.extensions import db
from app.services.ca import ocsp
from tests.integration.test_pki_http import issued  # noqa: F401  (fixture)


def request_der(issued, *, serial=None, nonce=None, algorithm=None):  # noqa: F811
    leaf = x509.load_der_x509_certificate(issued["cert"].der)
    ca = x509.load_der_x509_certificate(issued["issuing"].cert_der)
    builder = x509_ocsp.OCSPRequestBuilder()
    if serial is None:
        builder = builder.add_certificate(leaf, ca, algorithm or hashes.SHA1())
    else:
        req = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, hashes.SHA1()).build()
        builder = builder.add_certificate_by_hash(
            req.issuer_name_hash, req.issuer_key_hash, serial, hashes.SHA1()
        )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def both(app, **request):
    """(fast path answer, Flask answer) as (status, headers, body)."""
    answers = []
    for wsgi in (app.wsgi_app, app.wsgi_app.wsgi_app):
        assert isinstance(app.wsgi_app, OcspFastPath)
        environ = EnvironBuilder(**request).get_environ()
        body, status, headers = run_wsgi_app(wsgi, environ, buffered=True)
        answers.append((status, sorted(headers.to_wsgi_list()), b"".join(body)))
    return answers


def summary(der):
    response = x509_ocsp.load_der_ocsp_response(der)
    if response.response_status != x509_ocsp.OCSPResponseStatus.SUCCESSFUL:
        return (response.response_status,)
    nonce = [e.value.nonce for e in response.extensions if isinstance(e.value, x509.OCSPNonce)]
    return (
        response.response_status,
        response.serial_number,
        response.certificate_status,
        response.hash_algorithm.name,
        nonce,
    )


def get_path(issued, der):  # noqa: F811
    encoded = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    return f"/pki/ocsp/{issued['issuing'].id}/{encoded}"


def test_cached_answers_are_byte_identical(app, issued):  # noqa: F811
    ca_id = issued["issuing"].id
    started = []
    with request_started.connected_to(lambda sender, **kw: started.append(1), app):
        both(app, path=f"/pki/ocsp/{ca_id}", method="POST", data=request_der(issued))
    assert started == [1]  # only the Flask-only call ran Flask's request machinery
    for der in (request_der(issued), request_der(issued, algorithm=hashes.SHA256())):
        for request in (
            {"path": f"/pki/ocsp/{ca_id}", "method": "POST", "data": der},
            {"path": "/pki/ocsp", "method": "POST", "data": der},
            {"path": get_path(issued, der), "method": "GET"},
            # base64url, unquoted "/" and "+" in the path: tolerated the same way
            {"path": get_path(issued, der).replace("%2F", "/").replace("%2B", "+")},
        ):
            fast, flask = both(app, **request)
            assert fast == flask
            assert fast[0] == "200 OK" and summary(fast[2])[2] == x509_ocsp.OCSPCertStatus.GOOD


def test_nonce_unknown_and_malformed_answers_match(app, issued):  # noqa: F811
    ca_id = issued["issuing"].id
    nonce = request_der(issued, nonce=os.urandom(16))
    for request in (
        {"path": f"/pki/ocsp/{ca_id}", "method": "POST", "data": nonce},  # signed fresh
        {"path": get_path(issued, nonce)},
        {"path": f"/pki/ocsp/{ca_id}", "method": "POST", "data": request_der(issued, serial=7)},
        {"path": "/pki/ocsp", "method": "POST", "data": b"garbage"},
        {"path": "/pki/ocsp", "method": "POST", "data": b""},
        {"path": "/pki/ocsp", "method": "POST", "data": b"0" * (16 * 1024 + 1)},  # > OCSP_MAX
        {"path": f"/pki/ocsp/{ca_id}/not*base64"},
        {"path": f"/pki/ocsp/{ca_id}/="},
    ):
        (fs, fh, fb), (s, h, b) = both(app, **request)
        assert (fs, fh) == (s, h) and summary(fb) == summary(b), request["path"][:40]
        if summary(b)[0] == x509_ocsp.OCSPResponseStatus.SUCCESSFUL and request.get("data"):
            assert len(summary(b)[4]) in (0, 1)


@pytest.mark.parametrize(
    "request_",
    [
        {"path": "/pki/ocsp/1", "method": "GET"},  # 405 from Flask
        {"path": "/pki/ocsp/1/abc", "method": "HEAD"},
        {"path": "/pki/ocsp/1/abc", "method": "PUT"},
        {"path": "/pki/ocsp/", "method": "POST", "data": b"x"},  # 404
        {"path": "/pki/ocsp/1/abc/", "method": "GET"},
        {"path": "/pki/ocsp/1//abc", "method": "GET"},  # merged-slash redirect
        {"path": "/pki/ocsp/x1", "method": "POST", "data": b"x"},
        {"path": "/pki/crl/1.crl", "method": "GET"},
    ],
)
def test_other_requests_are_flasks(app, issued, request_):  # noqa: F811
    fast, flask = both(app, **request_)
    assert fast == flask


def test_a_database_error_is_answered_by_flask(app, issued):  # noqa: F811
    """On a cache miss the responder reads the inventory; if that fails, Flask handles the
    request again from the start (its error handling, its logs), as without the fast path."""
    url, der = f"/pki/ocsp/{issued['issuing'].id}", request_der(issued)
    ocsp.forget()
    db.session.execute(text("ALTER TABLE certificates RENAME TO certificates_gone"))
    db.session.commit()
    try:
        with pytest.raises(Exception, match="no such table: certificates") as excinfo:
            app.test_client().post(url, data=der)
        assert "full_dispatch_request" in [entry.name for entry in excinfo.traceback]
    finally:
        db.session.rollback()
        db.session.execute(text("ALTER TABLE certificates_gone RENAME TO certificates"))
        db.session.commit()


def test_under_gunicorn_an_answer_leaves_in_one_piece_when_the_request_ends(
    app,
    issued,  # noqa: F811
    monkeypatch,
):
    """gunicorn sends headers and body with two send()s on a TCP_NODELAY socket: the fast
    path corks the connection and gunicorn.conf.py's post_request hook uncorks it, so
    the answer goes out as one segment, and only then."""
    import runpy
    import select
    import socket
    from types import SimpleNamespace

    monkeypatch.setenv("CW_EMBEDDED_WORKER", "0")  # read when gunicorn loads its settings
    hooks = runpy.run_path(os.path.join(os.path.dirname(app.root_path), "gunicorn.conf.py"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as gunicorn does
        der = request_der(issued)
        environ = EnvironBuilder(
            method="POST", path="/pki/ocsp", data=der, content_type="application/ocsp-request"
        ).get_environ()
        environ["gunicorn.socket"] = server
        # Not under gunicorn.conf.py (nothing would uncork): no cork.
        monkeypatch.setattr("app.api.relying_party.ocsp_wsgi._UNCORK_HOOKED", False)
        run_wsgi_app(app.wsgi_app, dict(environ, **{"wsgi.input": io.BytesIO(der)}))
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
        monkeypatch.setattr("app.runtime.context.freeze_startup_objects", lambda: None)
        # What each gunicorn worker runs after loading us (its `wsgi` is the app).
        hooks["post_worker_init"](SimpleNamespace(wsgi=app))
        body, status, _ = run_wsgi_app(app.wsgi_app, environ, buffered=True)
        assert status == "200 OK"
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 1
        server.sendall(b"HTTP/1.1 200 OK\r\n\r\n")  # what gunicorn writes: headers, then body
        server.sendall(b"".join(body))
        assert select.select([client], [], [], 0.05)[0] == []  # held back while corked
        hooks["post_request"](None, None, environ, None)
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
        assert select.select([client], [], [], 5)[0] == [client]
        received = b""
        while len(received) < 19 + len(b"".join(body)):
            received += client.recv(65536)
        assert received == b"HTTP/1.1 200 OK\r\n\r\n" + b"".join(body)


@pytest.mark.parametrize("log_ocsp", ["0", "1"])
def test_gunicorn_logs_every_request_but_answered_ocsp_ones(tmp_path, monkeypatch, log_ocsp):
    """gunicorn.conf.py's logger skips the access line of each OCSP answer (status 200)
    unless CW_OCSP_ACCESS_LOG=1; the console, and OCSP requests that failed, are logged."""
    import datetime as dt
    import runpy
    from types import SimpleNamespace

    from gunicorn.config import Config

    monkeypatch.setenv("CW_OCSP_ACCESS_LOG", log_ocsp)
    conf = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "..", "gunicorn.conf.py"))
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    logger = conf["logger_class"](cfg)

    def request(method, path, status):
        environ = {
            "REQUEST_METHOD": method,
            "RAW_URI": path,
            "PATH_INFO": path,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
        }
        resp = SimpleNamespace(status=status, status_code=int(status[:3]), sent=5, headers=[])
        logger.access(resp, SimpleNamespace(headers=[]), environ, dt.timedelta(milliseconds=2))

    try:
        request("POST", "/pki/ocsp", "200 OK")
        request("GET", "/pki/ocsp/2/MFMwUTBPME0wSzAJBgUrDgMCGgUABBQ", "200 OK")
        request("GET", "/admin/", "200 OK")
        request("POST", "/pki/ocsp/9", "500 INTERNAL SERVER ERROR")
    finally:
        for handler in [*logger.access_log.handlers, *logger.error_log.handlers]:
            handler.close()
    lines = (tmp_path / "access.log").read_text().splitlines()
    logged = [line.split('"')[1] for line in lines]
    ocsp_answers = [
        "POST /pki/ocsp HTTP/1.1",
        "GET /pki/ocsp/2/MFMwUTBPME0wSzAJBgUrDgMCGgUABBQ HTTP/1.1",
    ]
    assert logged == (ocsp_answers if log_ocsp == "1" else []) + [
        "GET /admin/ HTTP/1.1",
        "POST /pki/ocsp/9 HTTP/1.1",
    ]
