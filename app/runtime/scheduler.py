"""The scheduler loop: fires due schedules and recovers lost jobs (embedded, or the standalone
`flask --app wsgi scheduler` process)."""

from __future__ import annotations

import logging
import signal
import threading
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
    """The standalone scheduler process (`flask --app wsgi scheduler`).

    SIGTERM (systemctl stop, a container stop) and SIGINT (Ctrl-C) end it after the pass
    under way, and it signs off: About stops listing it at once instead of when its
    heartbeat would have gone stale.
    """
    heartbeat = Heartbeat(app, kind="scheduler")
    heartbeat.start()
    loop = SchedulerLoop(app)
    interval = float(app.config["CW_SCHEDULER_INTERVAL"])

    def stop(signum: int, frame: Any) -> None:
        log.info("scheduler stopping (%s)", signal.Signals(signum).name)
        loop.stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("scheduler running every %.0f s", interval)
    try:
        while not loop.stopping.is_set():
            loop.tick()
            loop.stopping.wait(interval)
    finally:
        heartbeat.sign_off()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("scheduler stopped and signed off")
