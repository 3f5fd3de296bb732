"""Process heartbeats: 'this process is alive, these jobs are still running'; a graceful stop
signs off."""

from __future__ import annotations

import logging
import os
import socket
import threading

from flask import Flask
from sqlalchemy import delete

log = logging.getLogger(__name__)


HEARTBEAT_SECONDS = 5.0


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
        from app.config import broker_kind
        from app.extensions import db
        from app.models import WorkerHeartbeat
        from app.models.types import utcnow
        from app.services.platform import jobs

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
                            broker=broker_kind(self.app.config["BROKER_URL"]),
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
