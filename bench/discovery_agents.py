"""Issue 17 benchmarks (b) and (c): discovery through scanning agents.

Everything runs the full path: PostgreSQL (a database of its own), a private Redis on a
unix socket, one central `dramatiq app.actors` worker process (queues default, agents,
scan), agents started as `flask --app wsgi agent run` with no database.

(b) silent range over 1 and 2 agents. A scanner network namespace routes 10.99.0.0/16 to
    a peer namespace that drops it all (bench/discovery_silent.py's zone); agents run
    inside the scanner namespace (the broker is a unix socket, reachable from there). Two
    tasks, the two halves of the work, 1 s connect timeouts: first both on one agent, then
    one on each of two agents (each agent scans one shard at a time). Target: the two
    agents finish >= 1.8x faster.
(c) the TLS bed (bench/discovery_bed.py, COUNT endpoints on 127.20.0.x) scanned by a task
    bound to an agent (results come back as signed broker messages and are stored by the
    central worker) against the same task on Auto (the central worker scans): both with 4
    shards in flight. Target: agent time <= direct time / 0.9.

    sudo .venv/bin/python -m bench.discovery_agents [--json FILE]
    sudo .venv/bin/python -m bench.discovery_agents --smoke     # does every part work?

Needs root and iproute2 for (b) (`--skip-silent` runs (c) only), PostgreSQL
(BENCH_POSTGRES_URL) and redis-server.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.discovery import start_bed
from bench.discovery_silent import silent_zone
from bench.harness import (
    POSTGRES,
    REPO,
    app_env,
    cpu_seconds,
    log,
    machine,
    process_tree,
    start_redis,
    stop,
)

SPEEDUP = 1.8
VS_DIRECT = 0.9


def proc(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        return subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.contextmanager
def agent(
    name: str, key: Path, allow: str, broker: str, work: Path, threads: int, netns: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """An agent process with no database in its environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CW_", "DATABASE_URL", "BROKER_URL", "SECRET_KEY"))
    }
    env["CW_INSTANCE_DIR"] = str(work / f"agent-{name}")
    prefix = ["ip", "netns", "exec", netns] if netns else []
    child = proc(
        [
            *prefix,
            *(sys.executable, "-m", "flask", "--app", "wsgi", "agent", "run", name),
            *("--broker", broker, "--key", str(key), "--allow", allow),
            *("--threads", str(threads), "--heartbeat", "1"),
        ],
        env,
        work / f"agent-{name}.log",
    )
    try:
        yield child
    finally:
        stop(child)


def wait_online(names: list[str], timeout: float = 60) -> None:
    from sqlalchemy import select

    from app.extensions import db
    from app.models import ScanAgent
    from app.services.discovery import agents

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = db.session.execute(select(ScanAgent).where(ScanAgent.name.in_(names))).scalars()
        online = [a.name for a in rows if agents.is_online(a)]
        db.session.rollback()
        if len(online) == len(names):
            return
        time.sleep(0.2)
    raise SystemExit(f"agents {names} did not come online")


def timed_runs(task_ids: list[int], timeout: float = 1800) -> dict[str, Any]:
    """Start every task's run at once; seconds until all ended, and their outcome."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import RunStatus, ScanRun
    from app.services.discovery import runs
    from app.services.scope import SYSTEM

    started = time.perf_counter()
    run_ids = [runs.start_run(actor=SYSTEM, task_id=t).id for t in task_ids]
    db.session.commit()
    deadline = time.monotonic() + timeout
    while True:
        rows = db.session.execute(select(ScanRun).where(ScanRun.id.in_(run_ids))).scalars().all()
        if all(r.status != RunStatus.RUNNING for r in rows):
            seconds = time.perf_counter() - started
            result = {
                "seconds": round(seconds, 2),
                "shards": shard_timeline(run_ids),
                "ok": all(r.status == RunStatus.SUCCESSFUL for r in rows),
                "targets": sum(r.targets_done for r in rows),
                "tls_endpoints": sum(r.tls_endpoints for r in rows),
                "messages": [r.message for r in rows],
            }
            db.session.rollback()
            return result
        db.session.rollback()
        if time.monotonic() > deadline:
            raise SystemExit("runs did not end in time")
        time.sleep(0.1)


def shard_timeline(run_ids: list[int]) -> list[tuple[float, float, float]]:
    """Per shard, seconds after its run started: when its job started (sent to the agent
    or taken by a worker), when the central side recorded it done, and when the run ended
    (where a run's time goes: dispatch, scan, the wait for the last batches)."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Job, ScanRun, ScanShard

    rows = db.session.execute(
        select(ScanRun.started_at, ScanRun.finished_at, Job.started_at, ScanShard.finished_at)
        .join(ScanShard, ScanShard.run_id == ScanRun.id)
        .join(Job, Job.id == ScanShard.job_id)
        .where(ScanRun.id.in_(run_ids))
        .order_by(ScanShard.id)
    ).all()

    def after(start: Any, at: Any) -> float:
        return round((at - start).total_seconds(), 2) if at and start else -1.0

    return [(after(r0, j), after(r0, s), after(r0, r1)) for r0, r1, j, s in rows]


def set_agent(task_id: int, agent_name: str) -> None:
    from app.extensions import db
    from app.models import DiscoveryTask

    db.session.get(DiscoveryTask, task_id).agent = agent_name
    db.session.commit()


def make_task(name: str, ranges: str, port: int, agent_name: str, **knobs: Any) -> int:
    from app.extensions import db
    from app.services.discovery import tasks
    from app.services.scope import SYSTEM

    task = tasks.create_task(
        actor=SYSTEM,
        data=tasks.TaskData(name=name, ranges=ranges, ports=str(port), agent=agent_name, **knobs),
    )
    db.session.commit()
    return int(task.id)


def make_agent(name: str, allow: str, work: Path) -> Path:
    from app.extensions import db
    from app.services.discovery import agents
    from app.services.scope import SYSTEM

    created = agents.create_agent(actor=SYSTEM, name=name, allowed_ranges=allow)
    db.session.commit()
    key = work / f"{name}.key"
    key.write_bytes(created.private_key_pem)
    return key


def bench_silent(work: Path, broker: str, prefix_len: int, rounds: int) -> dict[str, Any]:
    """(b): the two halves of 10.99.0.0/(prefix_len-1) on one agent, then on two."""
    whole = ipaddress.ip_network(f"10.99.0.0/{prefix_len - 1}")
    halves = [str(n) for n in whole.subnets(prefixlen_diff=1)]
    keys = {n: make_agent(n, str(whole), work) for n in ("silent-1", "silent-2")}
    knobs = {"connect_timeout": 1.0, "handshake_timeout": 2.0, "concurrency": 256}
    task_ids = [make_task(f"silent {h}", h, 443, "silent-1", **knobs) for h in halves]
    results: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    with silent_zone("10.99.0.0/16") as scanner, contextlib.ExitStack() as agents_running:
        for name, key in keys.items():
            agents_running.enter_context(agent(name, key, str(whole), broker, work, 1, scanner))
        wait_online(list(keys))
        for _ in range(rounds):
            for count in ("1", "2"):
                set_agent(task_ids[1], "silent-1" if count == "1" else "silent-2")
                figure = timed_runs(task_ids)
                figure["load_average"] = os.getloadavg()
                results[count].append(figure)
                log(f"(b) {count} agent(s): {figure['seconds']} s, ok {figure['ok']}")
    one = min(r["seconds"] for r in results["1"])
    two = min(r["seconds"] for r in results["2"])
    ok = all(r["ok"] for group in results.values() for r in group)
    return {
        "addresses": whole.num_addresses,
        "runs": results,
        "one_agent_seconds": one,
        "two_agents_seconds": two,
        "speedup": round(one / two, 2),
        "verdict": "PASS" if ok and one / two >= SPEEDUP else "FAIL",
    }


def database_pids() -> list[int]:
    """The PostgreSQL backends serving this benchmark's database (the server is local)."""
    from sqlalchemy import text

    from app.extensions import db

    rows = db.session.execute(
        text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    ).all()
    db.session.rollback()
    return [int(pid) for (pid,) in rows]


def cpu_by_part(parts: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each part's process tree, and of the database's backends."""
    cpu = {name: cpu_seconds(process_tree(pid)) for name, pid in parts.items()}
    cpu["database"] = cpu_seconds(database_pids())
    return cpu


def bench_bed(work: Path, broker: str, count: int, rounds: int, central_pid: int) -> dict[str, Any]:
    """(c): the TLS bed through an agent against the direct path, with the CPU seconds
    each part spent per run (central worker, agent, bed, database backends)."""
    port = 9443
    bed = start_bed(work, count, 0, port, 2)
    try:
        last = ipaddress.ip_address("127.20.0.1") + count - 1
        ranges = f"127.20.0.1-{last}"
        key = make_agent("bed", "127.20.0.0/16", work)
        knobs = {"connect_timeout": 3.0, "handshake_timeout": 5.0, "concurrency": 128}
        direct = make_task("bed direct", ranges, port, "Auto", **knobs)
        through = make_task("bed agent", ranges, port, "bed", **knobs)
        results: dict[str, list[dict[str, Any]]] = {"direct": [], "agent": []}
        with agent("bed", key, "127.20.0.0/16", broker, work, 4) as agent_proc:
            wait_online(["bed"])
            parts = {"central": central_pid, "agent": agent_proc.pid, "bed": bed.pid}
            for _ in range(rounds):
                for label, task_id in (("direct", direct), ("agent", through)):
                    before = cpu_by_part(parts)
                    figure = timed_runs([task_id])
                    after = cpu_by_part(parts)
                    # database: backends come and go, so only a lower bound
                    figure["cpu"] = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
                    figure["load_average"] = os.getloadavg()
                    results[label].append(figure)
                    log(
                        f"(c) {label}: {figure['seconds']} s, {figure['tls_endpoints']} TLS, "
                        f"CPU s {figure['cpu']}, shards (started, done, run ended) "
                        f"{figure['shards']}"
                    )
    finally:
        stop(bed)  # SIGTERM, then SIGKILL after 20 s (a loaded machine can be that slow)
    best_direct = min(r["seconds"] for r in results["direct"])
    best_agent = min(r["seconds"] for r in results["agent"])
    ok = all(r["ok"] and r["tls_endpoints"] == count for g in results.values() for r in g)
    ratio = best_direct / best_agent
    return {
        "endpoints": count,
        "runs": results,
        "direct_seconds": best_direct,
        "agent_seconds": best_agent,
        "ratio": round(ratio, 2),
        "verdict": "PASS" if ok and ratio >= VS_DIRECT else "FAIL",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--prefix", type=int, default=19, help="(b): the halves' prefix length")
    parser.add_argument("--count", type=int, default=2000, help="(c): TLS endpoints")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-silent", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    if args.smoke:
        args.prefix, args.count, args.rounds = 24, 64, 1
    silent = not args.skip_silent and os.geteuid() == 0 and shutil.which("ip") is not None
    info = machine()
    log(f"machine: {info['cpu']}, load {info['load_average']}")
    work = Path(tempfile.mkdtemp(prefix="cw-agents-bench-"))
    database = f"cw_agents_bench_{os.getpid()}"
    env = app_env(
        work,
        DATABASE_URL=f"{POSTGRES.rsplit('/', 1)[0]}/{database}",
        CW_AGENT_OFFLINE_SECONDS="30",
    )
    import psycopg

    admin = psycopg.connect(POSTGRES, autocommit=True)
    admin.execute(f'CREATE DATABASE "{database}"')
    redis_server, redis_url = start_redis(work)
    env["BROKER_URL"] = redis_url
    results: dict[str, Any] = {"machine": info}
    central = None
    try:
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        os.environ.update(env)
        from app import create_app

        app = create_app()
        central = proc(
            [
                str(Path(sys.executable).with_name("dramatiq")),
                *("app.actors", "--queues", "default", "agents", "scan"),
                *("--processes", "1", "--threads", "4"),
            ],
            {**env, "dramatiq_worker_timeout": "50"},
            work / "central.log",
        )
        with app.app_context():
            if silent:
                results["b"] = bench_silent(work, redis_url, args.prefix, args.rounds)
            results["c"] = bench_bed(work, redis_url, args.count, args.rounds, central.pid)
    finally:
        if central is not None:
            stop(central)
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(10)
    results["load_average_after"] = os.getloadavg()
    print(f"\nCertwright discovery through agents, {info['date']}, {info['cpu']}")
    print(f"load average before {info['load_average']}, after {results['load_average_after']}")
    if "b" in results:
        b = results["b"]
        print(
            f"(b) silent {b['addresses']:,} addresses, 1 s timeouts: one agent "
            f"{b['one_agent_seconds']} s, two agents {b['two_agents_seconds']} s, speed-up "
            f"{b['speedup']} (target {SPEEDUP}) {b['verdict']}"
        )
    else:
        print("(b) skipped (--skip-silent, or no root or iproute2)")
    c = results["c"]
    print(
        f"(c) TLS bed {c['endpoints']} endpoints: direct {c['direct_seconds']} s, through an "
        f"agent {c['agent_seconds']} s, ratio {c['ratio']} (target {VS_DIRECT}) {c['verdict']}"
    )
    for label in ("direct", "agent"):
        for run in c["runs"][label]:
            per = {k: f"{1000 * v / max(1, c['endpoints']):.2f}" for k, v in run["cpu"].items()}
            print(f"    {label}: {run['seconds']} s, CPU ms per endpoint {per}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
