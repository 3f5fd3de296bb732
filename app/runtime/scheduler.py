"""The scheduler loop: fires due schedules and recovers lost jobs (embedded, or the standalone
`flask --app wsgi scheduler` process)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask

from app.runtime.heartbeat import Heartbeat

log = logging.getLogger(__name__)


class SchedulerLoop(threading.Thread):
    """Fires due schedules and recovers lost jobs every CW_SCHEDULER_INTERVAL seconds."""

    def __init__(self, app: Flask) -> None:
        super().__init__(name="cw-scheduler", daemon=True)
        self.app = app
        self.stopping = threading.Event()

    def tick(self) -> dict[str, Any]:
        from app.extensions import db
        from app.services.platform import scheduling

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


def run_scheduler_forever(app: Flask) -> None:
    """The standalone scheduler process (`flask --app wsgi scheduler`)."""
    Heartbeat(app, kind="scheduler").start()
    loop = SchedulerLoop(app)
    interval = float(app.config["CW_SCHEDULER_INTERVAL"])
    log.info("scheduler running every %.0f s", interval)
    while True:
        loop.tick()
        time.sleep(interval)
