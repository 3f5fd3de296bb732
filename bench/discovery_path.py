"""Certwright's full discovery path, timed against its references on the loopback bed.

Run by bench/discovery.py as a child process (DATABASE_URL and BROKER_URL are chosen before
`app` is imported); the bed (bench/discovery_bed.py serve) is already listening.

Set-up (not timed): a fresh database built by the Alembic migrations; through the services
an MRAO, an organization, an assignment rule (subject O equals "Bench Corp A" -> that
organization), a task over the bed's addresses plus its SNI names (host overrides) with
the rule attached, and a task over an empty /16.

Timed, per round (REPEATS of each of our runs):
  * TLS: discovery_runs.start_run() + commit, with 2 `dramatiq app.actors` worker
    processes on the scan queue, until the run is Successful, each run on a fresh task
    after the previous run's certificates and endpoints were deleted (a first discovery
    every time); the bare loop and nmap ssl-cert before the first, between, and after the
    last. Then, not timed: every bed endpoint is stored with its certificate, certificates
    are deduplicated, the rule's assignments are there, and the run's counters agree.
  * Sweep: the empty /16 through the same path with 2 worker processes, then with 1;
    `nmap -sT` over the same range before the first and after the last run of each.
CPU seconds of every party (workers, PostgreSQL backends, Redis, the bed, the reference
processes) and of the whole machine are read from /proc for each timed window.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import discovery_checks
from bench.discovery_bed import NMAP_TLS, ORG_A, addresses, run_nmap, sni_name
from bench.harness import (
    REPO,
    cpu_seconds,
    database_backends,
    machine_busy_seconds,
    migrate,
    process_tree,
    start_dramatiq,
    stop,
    wait_for_workers,
)

SWEEP_RANGE = "127.77.0.0/16"
POLL_SECONDS = 0.01  # how often the run's status is read while timing
# nmap -sT over the empty /16: as the issue gives it (-n: no reverse DNS; nmap first
# pings every address, then connects), and with -Pn (connects only, the same work as a
# Certwright sweep: the stricter comparison).
NMAP_SWEEPS = {"nmap -sT": ("-sT", "-n"), "nmap -sT -Pn": ("-sT", "-n", "-Pn")}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Window:
    """CPU seconds used during a timed window: by each named group of pids, by waited-for
    children of this process (the references), and by the whole machine."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start = {name: cpu_seconds(pids) for name, pids in groups.items()}
        self.machine0, self.children0 = machine_busy_seconds(), children_cpu()
        self.t0 = time.perf_counter()

    def close(self, **more: list[int]) -> dict[str, Any]:
        seconds = time.perf_counter() - self.t0
        used = {
            # a backend that appeared during the window counts from its start
            name: cpu_seconds(sorted(set(pids) | set(more.get(name, [])))) - self.start[name]
            for name, pids in self.groups.items()
        }
        used["reference"] = children_cpu() - self.children0
        used["machine"] = machine_busy_seconds() - self.machine0
        used["other"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
        return {"seconds": seconds, "cpu": {k: round(v, 2) for k, v in used.items()}}


def make_world(count: int, names: int, port: int, concurrency: int) -> dict[str, Any]:
    from app.extensions import db
    from app.models import Role
    from app.services.accounts import admins
    from app.services.discovery import rules, tasks
    from app.services.scope import SYSTEM
    from app.services.structure import orgs

    mrao = admins.create_admin(
        actor=SYSTEM,
        login="bench",
        email="bench@bench.example",
        role=Role.MRAO,
        password="a-long-timing-password-1",
    )
    org = orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name="Bench", country="DE"))
    db.session.flush()
    rule = rules.save_rule(
        actor=mrao,
        data=rules.RuleData(
            name="Corp A to Bench",
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": ORG_A}],
            organization_id=org.id,
        ),
    )
    hosts = addresses(count)
    named = min(names, count)
    sweep = tasks.create_task(
        actor=mrao,
        data=tasks.TaskData(
            name="Empty /16",
            ranges=SWEEP_RANGE,
            ports=str(port),
            connect_timeout=3,
            handshake_timeout=5,
            concurrency=concurrency,
        ),
    )
    db.session.commit()
    return {
        "admin_id": mrao.id,
        "org_id": org.id,
        "rule_id": rule.id,
        "sweep_task_id": sweep.id,
        "ranges": "\n".join([f"{hosts[0]}-{hosts[-1]}", *(sni_name(i) for i in range(named))]),
        "overrides": "\n".join(f"{sni_name(i)} = {hosts[i]}" for i in range(named)),
        "port": port,
        "concurrency": concurrency,
        "count": count,
        "names": named,
    }


def settle() -> None:
    """VACUUM ANALYZE, untimed: the previous run's deletes and inserts are cleaned up now
    rather than by autovacuum inside the next timed window."""
    from sqlalchemy import text

    from app.extensions import db

    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def fresh_tls_task(world: dict[str, Any], round_no: int) -> int:
    """A new task over the bed, after removing what earlier rounds discovered, so that
    every round is a first discovery (every certificate new)."""
    from sqlalchemy import delete

    from app.extensions import db
    from app.models import Admin, Certificate, CertOrigin, Endpoint
    from app.services.discovery import tasks

    db.session.execute(delete(Endpoint))
    db.session.execute(delete(Certificate).where(Certificate.origin == CertOrigin.DISCOVERED))
    task = tasks.create_task(
        actor=db.session.get(Admin, world["admin_id"]),
        data=tasks.TaskData(
            name=f"TLS bed, round {round_no}",
            ranges=world["ranges"],
            ports=str(world["port"]),
            host_overrides=world["overrides"],
            connect_timeout=3,
            handshake_timeout=5,
            concurrency=world["concurrency"],
            rule_ids=[world["rule_id"]],
        ),
    )
    db.session.commit()
    settle()
    return task.id


def timed_scan(
    world: dict[str, Any], task_id: int, pids: dict[str, list[int]], timeout: float
) -> dict[str, Any]:
    """start_run + commit until the run has ended; then its row and shard timings."""
    from sqlalchemy import select, text

    from app.extensions import db
    from app.models import Admin, Job, RunStatus, ScanRun, ScanShard
    from app.services.discovery import runs

    admin = db.session.get(Admin, world["admin_id"])
    # this process's own backend (polling the run's status) is not Certwright's work
    mine = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    backends = [pid for pid in database_backends() if pid != mine]
    window = Window({**pids, "database": backends, "bench": [os.getpid(), mine]})
    wall0 = time.time()
    sizing = {"shard_size": world["shard_size"]} if world.get("shard_size") else {}
    run = runs.start_run(actor=admin, task_id=task_id, **sizing)
    db.session.commit()
    run_id = run.id
    committed = time.perf_counter() - window.t0
    status = select(ScanRun.status).where(ScanRun.id == run_id)
    while time.perf_counter() - window.t0 < timeout:
        ended = db.session.execute(status).scalar_one()
        db.session.commit()
        if ended != RunStatus.RUNNING:
            break
        time.sleep(POLL_SECONDS)
    figures = window.close(database=[p for p in database_backends() if p != mine])
    run = db.session.get(ScanRun, run_id)
    timeline = [
        (round(a.timestamp() - wall0, 3), round(b.timestamp() - wall0, 3), n)
        for a, b, n in db.session.execute(
            select(Job.started_at, Job.finished_at, Job.attempts)
            .join(ScanShard, ScanShard.job_id == Job.id)
            .where(ScanShard.run_id == run_id)
            .order_by(Job.started_at)
        )
        if a is not None and b is not None
    ]
    first = min((t[0] for t in timeline), default=None)
    last = max((t[1] for t in timeline), default=None)
    return {
        **figures,
        "run_id": run_id,
        "status": run.status.value,
        "message": run.message,
        "shards": run.shards_total,
        "targets": run.targets_total,
        "targets_done": run.targets_done,
        "tls_endpoints": run.tls_endpoints,
        "certificates": run.certificates,
        "new_certificates": run.new_certificates,
        "assigned": run.assigned,
        "outcomes": (run.counts or {}).get("outcomes", {}),
        "commit_seconds": round(committed, 3),
        "first_claim_seconds": first,
        "last_finish_seconds": last,
        "finished_at_seconds": round(run.finished_at.timestamp() - wall0, 3),
        # per shard: claimed, finished (seconds after start_run), attempts
        "shard_timeline": timeline,
    }


def bare_reference(world: dict[str, Any], concurrency: int) -> dict[str, Any]:
    window = Window({})
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.discovery_bed", "bare"),
            *("--count", str(world["count"]), "--names", str(world["names"])),
            *("--port", str(world["port"]), "--concurrency", str(concurrency)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    figures = window.close()
    out = json.loads(done.stdout)
    return {**figures, **out, "complete": out["handshakes"] == out["endpoints"]}


def nmap_reference(
    targets: list[str] | str, port: int, options: tuple[str, ...], expect: int, marker: str
) -> dict[str, Any]:
    window = Window({})
    _, xml, _ = run_nmap(targets, port, options)
    figures = window.close()
    found = xml.count(marker)
    return {**figures, "found": found, "expected": expect, "complete": found == expect}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--names", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="our runs per round and kind")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--bare-concurrency", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=0, help="override start_run's")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--poll-ms", type=int, default=50)
    parser.add_argument("--bed-pid", type=int, required=True)
    parser.add_argument("--redis-pid", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log-dir", required=True)
    args = parser.parse_args()

    from app import create_app
    from app.extensions import db

    app = create_app()
    results: dict[str, Any] = {"rounds": []}
    logs = Path(args.log_dir)
    with app.app_context():
        migrate()
        world = make_world(args.count, args.names, args.port, args.concurrency)
        world["shard_size"] = args.shard_size
        results["world"] = world
        bed = process_tree(args.bed_pid)
        redis = [args.redis_pid] if args.redis_pid else []

        def workers(processes: int) -> Any:
            proc = start_dramatiq(
                processes,
                args.threads,
                logs / f"dramatiq-{processes}.log",
                queue="scan",
                poll_ms=args.poll_ms,
            )
            wait_for_workers(processes, proc)
            return proc

        hosts = addresses(args.count)
        sweep_marker = '<state state="closed" reason="conn-refused"'
        for round_no in range(1, args.rounds + 1):
            # Each of our runs sits between two measurements of each reference; other load
            # only slows a measurement down, so the report takes the fastest of each kind.
            entry: dict[str, Any] = {"round": round_no, "tls": [], "sweep": {}}
            refs: dict[str, list[dict[str, Any]]] = {"bare": [], "nmap ssl-cert": []}
            proc = workers(2)
            try:
                pids = {"workers": process_tree(proc.pid), "redis": redis, "bed": bed}
                for repeat in range(args.repeats + 1):
                    if repeat:
                        task_id = fresh_tls_task(world, round_no * 100 + repeat)
                        result = timed_scan(world, task_id, pids, args.timeout)
                        result["verified"] = discovery_checks.verify_tls(world, task_id, result)
                        entry["tls"].append(result)
                    refs["bare"].append(bare_reference(world, args.bare_concurrency))
                    refs["nmap ssl-cert"].append(
                        nmap_reference(
                            hosts, args.port, NMAP_TLS, args.count, '<script id="ssl-cert"'
                        )
                    )
                entry["tls_references"] = refs
                for processes in () if args.skip_sweep else (2, 1):
                    if processes == 1:
                        stop(proc)
                        proc = workers(1)
                        pids = {"workers": process_tree(proc.pid), "redis": redis, "bed": bed}
                    settle()
                    group: dict[str, Any] = {"runs": []}
                    group["references"] = {name: [] for name in NMAP_SWEEPS}
                    for repeat in range(args.repeats + 1):
                        if repeat:
                            result = timed_scan(world, world["sweep_task_id"], pids, args.timeout)
                            result["verified"] = discovery_checks.verify_sweep(result)
                            group["runs"].append(result)
                        if repeat in (0, args.repeats):  # nmap -sT takes 2-4 s: twice
                            for name, options in NMAP_SWEEPS.items():
                                group["references"][name].append(
                                    nmap_reference(
                                        SWEEP_RANGE, args.port, options, 65536, sweep_marker
                                    )
                                )
                    entry["sweep"][processes] = group
            finally:
                stop(proc)
            print(json.dumps(entry, default=str), file=sys.stderr, flush=True)
            results["rounds"].append(entry)
        db.session.remove()
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
