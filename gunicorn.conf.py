"""gunicorn settings for `make run` and for scale-out web processes.

BROKER_URL unset (one machine): one web process that also runs the embedded dramatiq
worker and the scheduler. BROKER_URL set: CW_WEB_WORKERS processes, web only. Every
variable read here is declared in app/settings.py (SETTINGS).
"""

import errno
import os
import socket
import sys

from gunicorn.glogging import Logger

from app.base_url import bind_address, record_base_url, resolve_base_url, resolve_pki_url
from app.instance import instance_dir
from app.settings import setting

embedded = not setting("BROKER_URL")
bind = bind_address()
workers = 1 if embedded else setting("CW_WEB_WORKERS")
threads = setting("CW_WEB_THREADS")
worker_class = "gthread"
# With a broker: a listening socket per worker (SO_REUSEPORT): the kernel spreads new
# connections over the workers. With one shared socket, whichever worker wakes first accepts
# a burst of keep-alive connections and keeps them, so one process served everything while
# the other idled (docs/benchmarks.md, OCSP).
# Embedded (`make run`): one process, so nothing to spread, and SO_REUSEPORT would let a
# second `make run` on the same port start a second server, with another database, that the
# kernel hands half the connections to. Without it the port is this server's alone.
reuse_port = not embedded
timeout = 120
# gunicorn's control socket (for gunicornc) defaults to one path per user
# ($XDG_RUNTIME_DIR/gunicorn.ctl, else ~/.gunicorn/gunicorn.ctl): a second gunicorn on the
# host took it over, and whichever stopped first deleted it. Each instance gets its own in
# its instance folder (gunicornc -s instance/gunicorn.ctl); CW_CONTROL_SOCKET names another
# path, or "off" disables it.
_control = str(setting("CW_CONTROL_SOCKET")).strip()
if _control.lower() in ("off", "0", "no", "false"):
    control_socket_disable = True
else:
    control_socket = os.path.abspath(_control or str(instance_dir() / "gunicorn.ctl"))
accesslog = "-"
log_ocsp = setting("CW_OCSP_ACCESS_LOG")
embedded_worker = embedded and setting("CW_EMBEDDED_WORKER")
worker_threads = setting("CW_WORKER_THREADS")


class AccessLog(Logger):
    """gunicorn's logger, except that an OCSP answer (status 200 under /pki/ocsp) gets no
    access line unless CW_OCSP_ACCESS_LOG=1: a busy responder answers thousands a second,
    and writing a line each cost about a third of its capacity (docs/benchmarks.md).
    Every other request, and every OCSP request that was not answered 200, is logged."""

    def access(self, resp, req, environ, request_time):
        if (
            not log_ocsp
            and resp.status_code == 200
            and environ.get("PATH_INFO", "").startswith("/pki/ocsp")
        ):
            return
        super().access(resp, req, environ, request_time)


logger_class = AccessLog
forwarded_allow_ips = setting("CW_FORWARDED_ALLOW_IPS")


def busy_addresses(addresses):
    """The TCP (host, port) addresses among gunicorn's binds that another process listens on.

    Bound the way gunicorn binds (SO_REUSEADDR, no SO_REUSEPORT), so a listener that set
    SO_REUSEPORT itself (an older Certwright, a scale-out gunicorn) is found too."""
    busy = []
    for address in addresses:
        if not isinstance(address, tuple):
            continue  # a Unix socket or an inherited descriptor
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    busy.append(address)
    return busy


def control_socket_answers(path):
    """Does a server listen on this control socket (a stale file from a crash does not)?"""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def on_starting(server):
    """Refuse to start, in embedded mode, when the port is taken (gunicorn alone would retry
    for five seconds and then say "Can't connect"), and when another server answers on this
    one's control socket (a second server in the same instance folder would take it over
    silently); not on a re-exec (USR2) or socket activation, where the old master or
    systemd holds them."""
    if "GUNICORN_FD" in os.environ or "LISTEN_FDS" in os.environ:
        return
    busy = busy_addresses(server.cfg.address) if embedded else []
    if busy:
        host, port = busy[0][:2]
        server.log.error(
            "port in use: %s:%s already has a server (another `make run`?). Stop it, or "
            "choose another port: PORT=%s make run",
            host,
            port,
            int(port) + 1,
        )
        sys.exit(1)
    path = None if server.cfg.control_socket_disable else server.cfg.control_socket
    if path and control_socket_answers(path):
        server.log.error(
            "control socket in use: %s already answers for another server (a second server "
            "in this instance folder?). Give this one its own: CW_CONTROL_SOCKET=<path>, or "
            "CW_CONTROL_SOCKET=off",
            path,
        )
        sys.exit(1)


def when_ready(server):
    # Record the URLs this server embeds in certificates and mail (instance/base_url and
    # instance/pki_url), so a `flask --app wsgi ...` command run from another terminal
    # without PORT and CW_PKI_URL embeds them too.
    url, source = resolve_base_url()
    pki = resolve_pki_url(url, source)
    path = record_base_url(url, pki)
    if pki:
        server.log.info(
            "Mail will name %s (from %s; recorded in %s); certificates name %s for their CRL, "
            "OCSP and CA issuer (from CW_PKI_URL)",
            url,
            source,
            path,
            pki,
        )
    else:
        server.log.info(
            "Certificates and mail will name %s (from %s; recorded in %s)", url, source, path
        )


def post_worker_init(worker):
    from app import ensure_console
    from app.api.relying_party.ocsp_wsgi import enable_cork
    from app.pki import status_lint
    from app.runtime.context import freeze_startup_objects

    enable_cork()  # post_request below uncorks what the OCSP fast path corks
    ensure_console(worker.wsgi)  # built now, not by the first request (app/__init__.py)
    # Build pkilint's OCSP and CRL validators now, not inside the first OCSP answer.
    status_lint.warm_up()

    if embedded_worker:
        from app.runtime.embedded import Embedded

        Embedded(worker.wsgi, threads=worker_threads).start()
    freeze_startup_objects()


def post_request(worker, req, environ, resp):
    # The OCSP fast path corks its answers (app/api/relying_party/ocsp_wsgi.py): one segment, not two.
    from app.api.relying_party.ocsp_wsgi import uncork

    uncork(environ.get("gunicorn.socket"))
