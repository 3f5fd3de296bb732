"""gunicorn settings for `make run` and for scale-out web processes.

BROKER_URL unset (one machine): one web process that also runs the embedded dramatiq
worker and the scheduler. BROKER_URL set: CW_WEB_WORKERS processes, web only.
"""

import os

from gunicorn.glogging import Logger

embedded = not os.environ.get("BROKER_URL")
bind = os.environ.get("CW_BIND", f"127.0.0.1:{os.environ.get('PORT', '5000')}")
workers = 1 if embedded else int(os.environ.get("CW_WEB_WORKERS", "2"))
threads = int(os.environ.get("CW_WEB_THREADS", "8"))
worker_class = "gthread"
# A listening socket per worker (SO_REUSEPORT): the kernel spreads new connections over
# the workers. With one shared socket, whichever worker wakes first accepts a burst of
# keep-alive connections and keeps them, so one process served everything while the
# other idled (docs/benchmarks.md, OCSP).
reuse_port = True
timeout = 120
accesslog = "-"
log_ocsp = os.environ.get("CW_OCSP_ACCESS_LOG", "0") == "1"


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
forwarded_allow_ips = os.environ.get("CW_FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker):
    from app.api.relying_party.ocsp_wsgi import enable_cork
    from app.pki import status_lint
    from app.runtime.context import freeze_startup_objects

    enable_cork()  # post_request below uncorks what the OCSP fast path corks
    # Build pkilint's OCSP and CRL validators now, not inside the first OCSP answer.
    status_lint.warm_up()

    if embedded and os.environ.get("CW_EMBEDDED_WORKER", "1") != "0":
        from app.runtime.embedded import Embedded

        Embedded(worker.wsgi, threads=int(os.environ.get("CW_WORKER_THREADS", "4"))).start()
    freeze_startup_objects()


def post_request(worker, req, environ, resp):
    # The OCSP fast path corks its answers (app/api/relying_party/ocsp_wsgi.py): one segment, not two.
    from app.api.relying_party.ocsp_wsgi import uncork

    uncork(environ.get("gunicorn.socket"))
