"""What every benchmark here needs: the machine it runs on, a private Redis, the app's
environment, child processes (our dramatiq workers, the benchmark's own pieces) and CPU
accounting from /proc for the processes of a timed window."""

from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")


def app_env(work: Path, **settings: str) -> dict[str, str]:
    """The environment of the app's processes in a benchmark: fresh keys, an instance
    directory under ``work``, the repository on the path, plus ``settings``."""
    from cryptography.fernet import Fernet

    return dict(
        os.environ,
        CW_KEK=Fernet.generate_key().decode(),
        CW_AUDIT_KEY=secrets.token_urlsafe(32),
        SECRET_KEY=secrets.token_urlsafe(32),
        CW_INSTANCE_DIR=str(work / "instance"),
        CW_BASE_URL="http://127.0.0.1:5000",
        PYTHONPATH=str(REPO),
        **settings,
    )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    import cryptography

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} x {model}",
        "memory_gib": memory,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "load_average": os.getloadavg(),
    }


def idle_fraction(seconds: float = 1.0) -> float:
    """How much of the machine nobody used over ``seconds`` (before we start)."""
    busy = machine_busy_seconds()
    time.sleep(seconds)
    return max(0.0, 1 - (machine_busy_seconds() - busy) / seconds / (os.cpu_count() or 1))


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """A private redis-server on a unix socket (other users of a shared Redis cannot take
    our messages), unless BENCH_REDIS_URL names one to use."""
    if os.environ.get("BENCH_REDIS_URL"):
        return None, os.environ["BENCH_REDIS_URL"]
    sock = work / "redis.sock"
    server = subprocess.Popen(
        [
            *("redis-server", "--port", "0", "--unixsocket", str(sock)),
            *("--save", "", "--appendonly", "no", "--dir", str(work)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)
    return server, f"unix://{sock}"


def run_child(module: str, args: list[str], env: dict[str, str], timeout: float, log: Path) -> None:
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed, see {log}:\n{log.read_text()[-3000:]}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the given processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def machine_busy_seconds() -> float:
    """CPU seconds all processors spent not idle since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def process_tree(root: int) -> list[int]:
    """root and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def database_backends() -> list[int]:
    """PostgreSQL backend pids serving this database (none on SQLite)."""
    from sqlalchemy import text

    from app.extensions import db

    if db.engine.dialect.name != "postgresql":
        return []
    pids = db.session.execute(
        text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    ).scalars()
    result = list(pids)
    db.session.commit()
    return result


def migrate() -> None:
    from flask_migrate import upgrade

    upgrade(directory=str(REPO / "migrations"))


def start_dramatiq(
    processes: int,
    threads: int,
    log: Path,
    queue: str | tuple[str, ...] = "issuance",
    poll_ms: int = 200,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """``new_session=False``: a process group of its own (stop() still ends it all) in the
    caller's session, so with the kernel's autogroups it shares the CPU with the caller's
    other processes by nice value rather than as a session of its own."""
    dramatiq = Path(sys.executable).with_name("dramatiq")
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                str(dramatiq),
                "app.actors",
                # dedicated workers for one queue, as README "Scale-out" recommends for
                # issuance-heavy deployments (CPU-bound: one thread per process)
                "--queues",
                *((queue,) if isinstance(queue, str) else queue),
                "--processes",
                str(processes),
                "--threads",
                str(threads),
            ],
            cwd=REPO,
            # an idle worker polls every poll_ms (dedicated workers: 50, README "Scale-out")
            env={**os.environ, "dramatiq_worker_timeout": str(poll_ms)},
            stdout=out,
            stderr=subprocess.STDOUT,
            **({"start_new_session": True} if new_session else {"process_group": 0}),
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_for_workers(processes: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    """Until every worker process of ``proc`` has announced itself (rows of processes
    stopped earlier do not count)."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import WorkerHeartbeat

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the dramatiq workers exited during start-up")
        alive = db.session.execute(
            select(func.count())
            .select_from(WorkerHeartbeat)
            .where(
                WorkerHeartbeat.kind == "worker", WorkerHeartbeat.pid.in_(process_tree(proc.pid))
            )
        ).scalar_one()
        db.session.commit()
        if alive >= processes:
            return
        time.sleep(0.1)
    raise RuntimeError("the dramatiq workers did not start in time")
