"""Process runtime: the app context for actors, heartbeats, the embedded worker and the
scheduler loop. Used by dramatiq worker processes, the web process and the scheduler."""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from flask import Flask
from sqlalchemy import delete

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0


class AppContextMiddleware(Middleware):
    """Runs every message inside a Flask app context; builds the app once per process."""

    def __init__(self) -> None:
        self.app: Flask | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self.owns_process = False

    def bind(self, app: Flask) -> None:
        self.app = app

    def ensure_app(self) -> Flask:
        with self._lock:
            if self.app is None:
                from app import create_app

                self.app = create_app()
            return self.app

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Only `dramatiq` worker processes emit this (not the embedded or a test worker):
        # the process is ours to tune.
        self.owns_process = True

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        app = self.ensure_app()
        # Build pkilint's validators (about a second) now rather than inside the first
        # issuance batch of every process.
        from app.pki import lint

        lint.warm_up()
        if self.owns_process:
            freeze_startup_objects()
        # A standalone `dramatiq` worker process announces itself and heartbeats its jobs.
        if not getattr(worker, "cw_embedded", False):
            self.heartbeat = Heartbeat(app, kind="worker")
            self.heartbeat.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # dramatiq hands the messages this process had fetched back to the broker on a
        # graceful stop, so recovery need not send them again: sign off.
        heartbeat = getattr(self, "heartbeat", None)
        if heartbeat is not None and not getattr(worker, "cw_embedded", False):
            heartbeat.sign_off()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        ctx = self.ensure_app().app_context()
        ctx.push()
        self._local.ctx = ctx

    def _pop(self) -> None:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            return
        from app.extensions import db

        try:
            db.session.remove()
        finally:
            ctx.pop()
            self._local.ctx = None

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._pop()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._pop()


def freeze_startup_objects() -> None:
    """Move everything built at start-up (the app, SQLAlchemy's mappers, pkilint's
    validators) out of the garbage collector's sight: full collections then scan only what
    the work allocates. Issuing a batch spent 6% of its CPU re-scanning those objects."""
    gc.collect()
    gc.freeze()


class Heartbeat(threading.Thread):
    """Every few seconds: 'this process is alive' and 'these jobs are still running'."""

    def __init__(self, app: Flask, *, kind: str) -> None:
        super().__init__(name=f"cw-heartbeat-{kind}", daemon=True)
        self.app = app
        self.kind = kind
        self.ident_str = f"{socket.gethostname()}:{os.getpid()}:{kind}"
        self.stopping = threading.Event()
        # Well inside CW_JOB_STALE_SECONDS: a job whose heartbeat is older than that is
        # taken from its process, so a live one must never get near it between beats.
        stale = float(app.config["CW_JOB_STALE_SECONDS"])
        self.interval = max(0.5, min(HEARTBEAT_SECONDS, stale / 3))

    def beat(self) -> None:
        from app.broker import BROKER_URL, broker_kind
        from app.extensions import db
        from app.models import WorkerHeartbeat
        from app.models.types import utcnow
        from app.services import jobs

        with self.app.app_context():
            try:
                row = db.session.get(WorkerHeartbeat, self.ident_str)
                now = utcnow()
                if row is None:
                    db.session.add(
                        WorkerHeartbeat(
                            id=self.ident_str,
                            kind=self.kind,
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            broker=broker_kind(BROKER_URL),
                            started_at=now,
                            seen_at=now,
                        )
                    )
                else:
                    row.seen_at = now
                db.session.commit()
                jobs.heartbeat(jobs.RUNNING.snapshot())
            except Exception:
                log.exception("heartbeat failed")
                db.session.rollback()
            finally:
                db.session.remove()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.beat()
            self.stopping.wait(self.interval)

    def sign_off(self) -> None:
        """A graceful stop: no more beats, and the row goes. A process that dies leaves its
        row to go stale, which tells recovery to send its fetched messages again."""
        from app.extensions import db
        from app.models import WorkerHeartbeat

        self.stopping.set()
        if self.is_alive():
            self.join(timeout=self.interval + 5)
        with self.app.app_context():
            try:
                db.session.execute(
                    delete(WorkerHeartbeat).where(WorkerHeartbeat.id == self.ident_str)
                )
                db.session.commit()
            except Exception:
                log.exception("heartbeat sign-off failed")
                db.session.rollback()
            finally:
                db.session.remove()


class SchedulerLoop(threading.Thread):
    """Fires due schedules and recovers lost jobs every CW_SCHEDULER_INTERVAL seconds."""

    def __init__(self, app: Flask) -> None:
        super().__init__(name="cw-scheduler", daemon=True)
        self.app = app
        self.stopping = threading.Event()

    def tick(self) -> dict[str, Any]:
        from app.extensions import db
        from app.services import scheduling

        with self.app.app_context():
            try:
                return scheduling.tick()
            except Exception:
                log.exception("scheduler tick failed")
                db.session.rollback()
                return {}
            finally:
                db.session.remove()

    def run(self) -> None:
        interval = float(self.app.config["CW_SCHEDULER_INTERVAL"])
        while not self.stopping.is_set():
            self.tick()
            self.stopping.wait(interval)


class Embedded:
    """The in-process worker and scheduler for the one-machine setup (BROKER_URL unset)."""

    def __init__(self, app: Flask, *, threads: int = 4, scheduler: bool = True) -> None:
        from app.broker import APP_CONTEXT, broker

        APP_CONTEXT.bind(app)
        self.app = app
        self.worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=200)
        self.worker.cw_embedded = True  # type: ignore[attr-defined]
        self.heartbeat = Heartbeat(app, kind="embedded")
        self.scheduler = SchedulerLoop(app) if scheduler else None

    def start(self) -> Embedded:
        from app.extensions import db
        from app.services import scheduling

        self.worker.start()
        self.heartbeat.start()
        with self.app.app_context():
            scheduling.resend_pending()  # the in-memory queue starts empty
            db.session.remove()
        if self.scheduler is not None:
            self.scheduler.start()
        return self

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stopping.set()
        self.worker.stop()  # hands back what it had fetched, after the running jobs end
        self.heartbeat.sign_off()
        broker = self.worker.broker
        broker.middleware[:] = [
            m for m in broker.middleware if getattr(m, "worker", None) is not self.worker
        ]


def run_scheduler_forever(app: Flask) -> None:
    """The standalone scheduler process (`flask --app wsgi scheduler`)."""
    Heartbeat(app, kind="scheduler").start()
    loop = SchedulerLoop(app)
    interval = float(app.config["CW_SCHEDULER_INTERVAL"])
    log.info("scheduler running every %.0f s", interval)
    while True:
        loop.tick()
        time.sleep(interval)
