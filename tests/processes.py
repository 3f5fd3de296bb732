"""Real processes for the services and browser tiers: the app's own commands (flask,
dramatiq, gunicorn) started with a log file, and always stopped, with a timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
T = TypeVar("T")

# Settings of the test process that must not leak into a child (each test says its own).
_OWN = ("CW_", "BROKER_URL", "DATABASE_URL", "SECRET_KEY", "PYTEST_", "FLASK_")


def app_env(**settings: object) -> dict[str, str]:
    """The environment of an app process: this one's, minus our settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN)}
    env.update(
        SECRET_KEY="test-secret-key",  # the keys of tests.conftest.make_config
        CW_AUDIT_KEY="test-audit-key",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update({k: str(v) for k, v in settings.items() if v is not None})
    return env


def flask(
    *args: str, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `flask --app wsgi ARGS` to completion; its output is kept for the assertion."""
    return subprocess.run(
        [PY, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def flask_ok(*args: str, env: Mapping[str, str], timeout: float = 60) -> str:
    done = flask(*args, env=env, timeout=timeout)
    assert done.returncode == 0, (
        f"flask {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


class Proc:
    """A long-running child in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], *, env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} (pid {self.pid}) log ---\n{text[-tail:]}"

    def children(self) -> list[int]:
        """Pids of this process's direct children (dramatiq's worker processes)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may contain spaces, so split after ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                found.append(int(entry.name))
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing gets to clean up."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (a graceful stop), then SIGKILL to the group if it does not end in time."""
        try:
            if self.alive():
                self.popen.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=timeout)
            # Leftovers of the group (a worker process whose parent was killed).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        finally:
            self._log.close()


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    every: float = 0.2,
    why: Callable[[], str] | None = None,
) -> T:
    """Poll probe() until it returns something truthy; after timeout fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = why() if why else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def describe(*procs: Any) -> Callable[[], str]:
    """For wait_until(why=...): the logs of the processes involved."""
    return lambda: "\n".join(p.log() for p in procs)
