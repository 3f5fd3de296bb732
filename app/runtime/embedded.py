"""The one-machine setup (BROKER_URL unset): an in-process dramatiq worker, heartbeat and
scheduler inside the web process, and the pick-up of jobs that command-line processes
handed to it."""

from __future__ import annotations

import logging
import threading

import dramatiq
from flask import Flask

from app.runtime.heartbeat import Heartbeat
from app.runtime.scheduler import SchedulerLoop

log = logging.getLogger(__name__)

# How often the embedded worker looks for jobs handed to it by other processes (a
# `flask --app wsgi cert approve` next to `make run`): one indexed query on the jobs table.
PICKUP_SECONDS = 0.5


class Pickup(threading.Thread):
    """Sends to this process's in-memory queue the jobs that other processes created
    without a worker of their own (app.services.platform.jobs.set_handoff)."""

    def __init__(self, app: Flask, *, interval: float = PICKUP_SECONDS) -> None:
        super().__init__(name="cw-pickup", daemon=True)
        self.app = app
        self.interval = interval
        self.stopping = threading.Event()

    def pass_once(self) -> int:
        from app.extensions import db
        from app.services.platform import scheduling

        with self.app.app_context():
            try:
                return scheduling.pick_up_handed_off()
            except Exception:
                log.exception("picking up handed-off jobs failed")
                db.session.rollback()
                return 0
            finally:
                db.session.remove()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.pass_once()
            self.stopping.wait(self.interval)


class Embedded:
    """The in-process worker and scheduler for the one-machine setup (BROKER_URL unset)."""

    def __init__(self, app: Flask, *, threads: int = 4, scheduler: bool = True) -> None:
        from app.runtime.broker import APP_CONTEXT, broker

        APP_CONTEXT.bind(app)
        self.app = app
        self.worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=200)
        self.worker.cw_embedded = True  # type: ignore[attr-defined]
        self.heartbeat = Heartbeat(app, kind="embedded")
        self.scheduler = SchedulerLoop(app) if scheduler else None
        self.pickup = Pickup(app)

    def start(self) -> Embedded:
        from app.extensions import db
        from app.services.platform import scheduling

        self.worker.start()
        self.heartbeat.start()
        with self.app.app_context():
            scheduling.resend_pending()  # the in-memory queue starts empty
            db.session.remove()
        self.pickup.start()
        if self.scheduler is not None:
            self.scheduler.start()
        return self

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stopping.set()
        self.pickup.stopping.set()
        if self.pickup.is_alive():
            self.pickup.join(timeout=5)
        self.worker.stop()  # hands back what it had fetched, after the running jobs end
        self.heartbeat.sign_off()
        broker = self.worker.broker
        broker.middleware[:] = [
            m for m in broker.middleware if getattr(m, "worker", None) is not self.worker
        ]
