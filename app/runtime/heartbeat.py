"""Process heartbeats: 'this process is alive, these jobs are still running'; a graceful stop
signs off."""

from __future__ import annotations

import logging
import threading

from flask import Flask

log = logging.getLogger(__name__)


HEARTBEAT_SECONDS = 1.0


def beat_interval(app: Flask) -> float:
    """Seconds between beats: one, and at least five beats inside CW_WORKER_STALE_SECONDS
    and three inside CW_JOB_STALE_SECONDS, so that a live process is never near either."""
    worker_stale = float(app.config["CW_WORKER_STALE_SECONDS"])
    job_stale = float(app.config["CW_JOB_STALE_SECONDS"])
    return max(0.2, min(HEARTBEAT_SECONDS, worker_stale / 5, job_stale / 3))


class Heartbeat(threading.Thread):
    """Every second: 'this process is alive' and 'these jobs are still running'."""

    def __init__(self, app: Flask, *, kind: str) -> None:
        from app.services.platform import processes

        super().__init__(name=f"cw-heartbeat-{kind}", daemon=True)
        self.app = app
        self.kind = kind
        self.ident_str = processes.heartbeat_id(kind)
        self.stopping = threading.Event()
        self.interval = beat_interval(app)

    def beat(self) -> None:
        from app.config import broker_kind
        from app.extensions import db
        from app.services.platform import jobs, processes

        with self.app.app_context():
            try:
                processes.beat(
                    ident=self.ident_str,
                    kind=self.kind,
                    broker=broker_kind(self.app.config["BROKER_URL"]),
                )
                db.session.commit()  # the process row first: job rows never delay it
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
        row to go stale, which tells recovery to take back its jobs and send its fetched
        messages again."""
        from app.extensions import db
        from app.services.platform import processes

        self.stopping.set()
        if self.is_alive():
            self.join(timeout=self.interval + 5)
        with self.app.app_context():
            try:
                processes.sign_off(self.ident_str)
                db.session.commit()
            except Exception:
                log.exception("heartbeat sign-off failed")
                db.session.rollback()
            finally:
                db.session.remove()
