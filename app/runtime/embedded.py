"""The one-machine setup (BROKER_URL unset): an in-process dramatiq worker, heartbeat and
scheduler inside the web process."""

from __future__ import annotations

import dramatiq
from flask import Flask

from app.runtime.heartbeat import Heartbeat
from app.runtime.scheduler import SchedulerLoop


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

    def start(self) -> Embedded:
        from app.extensions import db
        from app.services.platform import scheduling

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
