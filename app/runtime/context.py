"""Actors run inside a Flask app context: the dramatiq middleware that builds the app once per
process, warms pkilint, and starts the process heartbeat."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from flask import Flask

from app.runtime.heartbeat import Heartbeat


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
        self.parent_pid = os.getppid()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        app = self.ensure_app()
        # Build pkilint's validators (about a second) now rather than inside the first
        # issuance batch of every process.
        from app.pki import lint, status_lint

        lint.warm_up()
        status_lint.warm_up()  # CRLs and OCSP responses are linted too
        if self.owns_process:
            freeze_startup_objects()
            ParentWatch(self.parent_pid).start()
        # A standalone `dramatiq` worker process announces itself and heartbeats its jobs.
        if not getattr(worker, "cw_embedded", False):
            self.heartbeat = Heartbeat(app, kind="worker")
            self.heartbeat.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # A graceful stop lets the running messages finish (their jobs keep heartbeating
        # meanwhile) and hands the fetched ones back to the broker, so recovery need not
        # send them again: sign off once that is done. A process killed before then (a
        # supervisor's stop timeout) leaves its row to go stale, and recovery takes over.
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


class ParentWatch(threading.Thread):
    """In a `dramatiq` worker process: when the `dramatiq` parent dies (SIGKILL, out of
    memory), stop this process gracefully rather than work on as an orphan nobody
    supervises. Its log lines went to the parent through a pipe: from then on they go to
    the stderr it inherited (the journal under systemd), and the SIGTERM that dramatiq's
    own handler turns into a graceful stop hands back the fetched messages, lets the
    running ones finish and signs off."""

    def __init__(self, parent_pid: int, *, every: float = 0.5) -> None:
        super().__init__(name="cw-parent-watch", daemon=True)
        self.parent_pid = parent_pid
        self.every = every

    def run(self) -> None:
        while os.getppid() == self.parent_pid:
            time.sleep(self.every)
        orphaned_logging()
        logging.getLogger(__name__).warning(
            "the dramatiq parent process (pid %d) is gone: stopping worker process %d",
            self.parent_pid,
            os.getpid(),
        )
        os.kill(os.getpid(), signal.SIGTERM)


def orphaned_logging() -> None:
    """Point this process's output from the dead parent's pipe back at its own stderr."""
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream not in (
            sys.__stdout__,
            sys.__stderr__,
        ):
            handler.setStream(sys.__stderr__)


def freeze_startup_objects() -> None:
    """Move everything built at start-up (the app, SQLAlchemy's mappers, pkilint's
    validators) out of the garbage collector's sight: full collections then scan only what
    the work allocates. Issuing a batch spent 6% of its CPU re-scanning those objects."""
    gc.collect()
    gc.freeze()
