"""Issue 4 benchmark: Certwright's network discovery against nmap and a bare handshake loop.

One run on this machine, everything on 127.0.0.0/8:

  * a loopback bed (bench/discovery_bed.py): COUNT TLS endpoints on distinct addresses
    from 127.20.0.1, mixed RSA-2048 / ECDSA P-256 certificates, leaf + intermediate chains
    and self-signed leaves, one certificate per four addresses, and NAMES of them also
    answering an SNI name with a certificate of their own;
  * TLS: Certwright's full scan path (start_run -> shards as dramatiq messages -> two
    `dramatiq app.actors` worker processes -> results stored and assigned by a rule, until
    the run is Successful) over the bed's addresses and SNI names, against a bare asyncio
    handshake loop over the same targets (64 in flight: the fastest of 32 to 512 here) and
    `nmap --script ssl-cert` over the addresses, each measured right before and right
    after the run (the faster is the reference);
  * sweep: an empty /16 (127.77.0.0/16, nothing listens) through the same full path with
    two worker processes and with one, against `nmap -sT` over the same range.

Workers are dedicated scan workers as README "Scale-out" describes them:
`dramatiq app.actors --queues scan --threads 1` with dramatiq_worker_timeout=50.

    .venv/bin/python -m bench.discovery [--rounds R] [--json FILE]
    .venv/bin/python -m bench.discovery --smoke     # does every part work? (CI)

It prints endpoints (or addresses) per second, ratios, PASS/FAIL per target, CPU-normalised
figures and how much CPU other processes used in each window, and exits 0. Needs
PostgreSQL (BENCH_POSTGRES_URL; it creates and drops its own database), redis-server (a
private one on a unix socket) and nmap (Debian: apt-get install nmap).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    POSTGRES,
    REPO,
    app_env,
    idle_fraction,
    log,
    machine,
    run_child,
    start_redis,
)

TLS_VS_NMAP = 2.0  # at least 2x nmap ssl-cert on the TLS endpoints
TLS_VS_BARE = 0.75  # at least 75% of the bare handshake loop
SWEEP_VS_NMAP = 1.0  # the empty /16 no slower than nmap -sT
SWEEP_SPEEDUP = 1.6  # one worker process -> two


def start_bed(
    work: Path, count: int, names: int, port: int, processes: int
) -> subprocess.Popen[bytes]:
    """The bed's server processes; returns once every one is listening."""
    ready = work / "bed.log"
    bed = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.discovery_bed", "serve"),
            *("--count", str(count), "--names", str(names), "--port", str(port)),
            *("--processes", str(processes)),
        ],
        cwd=REPO,
        stdout=ready.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while ready.read_text().count("ready ") < processes:
        if time.monotonic() > deadline or bed.poll() is not None:
            raise SystemExit(f"the bed did not start:\n{ready.read_text()[-2000:]}")
        time.sleep(0.1)
    return bed


def best(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The faster of the before/after measurements: other load only slows a reference
    down, so the faster is the better estimate (and the stricter one for the ratio)."""
    return min(samples, key=lambda s: s["seconds"])


def _cpu_text(cpu: dict[str, float], *names: str) -> str:
    parts = [f"{name} {cpu[name]:.2f}" for name in names if cpu.get(name)]
    return ", ".join(parts) + f"; other processes {cpu['other']:.1f} CPU-s"


def ours_cpu(run: dict[str, Any]) -> float:
    return float(run["cpu"]["workers"] + run["cpu"]["database"] + run["cpu"]["redis"])


def report_round(entry: dict[str, Any], world: dict[str, Any]) -> list[dict[str, Any]]:
    """Print one round; return its verdicts. Each figure is the fastest of its kind in the
    round (ours and the references alike); every one of our runs must have verified."""
    verdicts = []
    runs = entry["tls"]
    tls = best(runs)
    endpoints = tls["verified"]["expected"]["endpoints"]
    tls_ok = all(r["verified"]["ok"] for r in runs)
    rate = endpoints / tls["seconds"] if tls_ok else 0.0
    bare = best(entry["tls_references"]["bare"])
    nmap = best(entry["tls_references"]["nmap ssl-cert"])
    bare_rate = bare["endpoints"] / bare["seconds"]
    nmap_rate = world["count"] / nmap["seconds"]
    # CPU-normalised: endpoints per CPU-second of the scanning side only (the bed serves
    # all three alike and is reported apart)
    cpu_rate = endpoints / ours_cpu(tls)
    bare_cpu = bare["endpoints"] / bare["cpu"]["reference"]
    nmap_cpu = world["count"] / nmap["cpu"]["reference"]
    print(f"\nRound {entry['round']}")
    print(f"{'TLS bed (fastest of each)':44} {'per s':>7} {'seconds':>8} {'CPU-norm.':>10}")
    for name, r, s, c in (
        ("Certwright full path, 2 worker processes", rate, tls["seconds"], cpu_rate),
        ("bare asyncio handshake loop", bare_rate, bare["seconds"], bare_cpu),
        ("nmap ssl-cert (addresses only)", nmap_rate, nmap["seconds"], nmap_cpu),
    ):
        print(f"{name:44} {r:7.0f} {s:8.2f} {c:10.0f}")
    for label, ref_rate, ref_cpu, target in (
        ("TLS: Certwright / nmap ssl-cert", nmap_rate, nmap_cpu, TLS_VS_NMAP),
        ("TLS: Certwright / bare loop", bare_rate, bare_cpu, TLS_VS_BARE),
    ):
        ratio = rate / ref_rate
        verdict = "PASS" if ratio >= target and tls_ok else "FAIL"
        verdicts.append({"target": label, "ratio": ratio, "verdict": verdict})
        print(
            f"  {label:40} {ratio:5.2f} (target {target:.2f}) {verdict}"
            f"   CPU-normalised {cpu_rate / ref_cpu:5.2f}"
        )
    for name, samples in (
        ("Certwright", runs),
        ("bare", entry["tls_references"]["bare"]),
        ("nmap", entry["tls_references"]["nmap ssl-cert"]),
    ):
        print(
            f"  {name} runs: "
            + ", ".join(f"{x['seconds']:.2f} s (other {x['cpu']['other']:.1f})" for x in samples)
        )
    print(
        f"  Certwright's fastest: {tls['shards']} shards, first claimed after "
        f"{tls['first_claim_seconds']} s, last finished after {tls['last_finish_seconds']} s; "
        f"CPU: {_cpu_text(tls['cpu'], 'workers', 'database', 'redis', 'bed')}"
    )
    for name, ref in (("bare", bare), ("nmap", nmap)):
        print(f"  {name}'s fastest: CPU {_cpu_text(ref['cpu'], 'reference', 'bed')}")
    failed = sorted({k for r in runs for k, v in r["verified"]["checks"].items() if not v})
    print(
        f"  verified ({len(runs)} runs): "
        + ("all checks passed" if not failed else "FAILED " + ", ".join(failed))
        + f" ({tls['verified']['stored_endpoints']} endpoints, "
        f"{tls['verified']['certificates']} certificates, {tls['verified']['assigned']} assigned)"
    )

    sweeps = entry["sweep"]
    if not sweeps:
        return verdicts
    print(f"\n{'empty /16 (65,536 addresses; fastest)':44} {'per s':>7} {'seconds':>8}")
    fastest = {}
    for processes in ("2", "1"):
        group = sweeps[processes]
        ok = all(r["verified"]["ok"] for r in group["runs"])
        s = fastest[processes] = best(group["runs"])
        s["all_ok"] = ok
        print(
            f"{f'Certwright full path, {processes} worker process' + 'es' * (processes == '2'):44} "
            f"{65536 / s['seconds'] if ok else 0:7.0f} {s['seconds']:8.2f}   "
            f"({s['shards']} shards; first claimed after {s['first_claim_seconds']} s; "
            f"CPU: {_cpu_text(s['cpu'], 'workers', 'database', 'redis')})"
            + ("" if ok else " VERIFY FAILED")
        )
        print(
            "    runs: "
            + ", ".join(
                f"{x['seconds']:.2f} s (other {x['cpu']['other']:.1f})" for x in group["runs"]
            )
        )
        for name, samples in group["references"].items():
            ref = best(samples)
            print(
                f"{f'  {name} (next to the {processes}-process runs)':44} "
                f"{65536 / ref['seconds']:7.0f} {ref['seconds']:8.2f}   "
                f"(CPU: {_cpu_text(ref['cpu'], 'reference')})"
            )
    two, one = fastest["2"], fastest["1"]
    nmap_st = best(sweeps["2"]["references"]["nmap -sT"])
    nmap_pn = best(sweeps["2"]["references"]["nmap -sT -Pn"])
    for label, ratio, target in (
        (
            "sweep: nmap -sT time / Certwright time",
            nmap_st["seconds"] / two["seconds"],
            SWEEP_VS_NMAP,
        ),
        (
            "sweep: 1 -> 2 worker processes speed-up",
            one["seconds"] / two["seconds"],
            SWEEP_SPEEDUP,
        ),
    ):
        ok = two["all_ok"] and one["all_ok"]
        verdict = "PASS" if ratio >= target and ok else "FAIL"
        verdicts.append({"target": label, "ratio": ratio, "verdict": verdict})
        print(f"  {label:40} {ratio:5.2f} (target {target:.2f}) {verdict}")
    print(
        f"  (against nmap -sT -Pn, connects only: {nmap_pn['seconds'] / two['seconds']:.2f}; "
        f"CPU of our processes for the sweep: 2 processes {ours_cpu(two):.2f} s, "
        f"1 process {ours_cpu(one):.2f} s: speed-up CPU-normalised "
        f"{one['seconds'] / two['seconds'] * ours_cpu(one) / ours_cpu(two):.2f})"
    )
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="TLS endpoints (addresses)")
    parser.add_argument("--names", type=int, default=100, help="of them also with an SNI name")
    parser.add_argument("--port", type=int, default=9443)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="our runs of each kind a round")
    parser.add_argument("--threads", type=int, default=1, help="dramatiq --threads")
    parser.add_argument("--concurrency", type=int, default=256, help="the task's concurrency")
    parser.add_argument("--bare-concurrency", type=int, default=64)
    parser.add_argument("--bed-processes", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=0, help="experiments: shard size")
    parser.add_argument("--skip-sweep", action="store_true", help="experiments: TLS only")
    parser.add_argument(
        "--poll-ms", type=int, default=50, help="dramatiq_worker_timeout of the workers"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny bed, one run of each kind: checks that every part works (CI)",
    )
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    if args.smoke:
        args.count, args.names, args.rounds, args.repeats = 64, 8, 1, 1
    if shutil.which("nmap") is None:
        raise SystemExit("nmap is needed (Debian: apt-get install nmap)")

    info = machine()
    info["idle_before"] = round(idle_fraction(), 2)
    log(f"machine: {info['cpu']}, load {info['load_average']}, idle {info['idle_before']:.0%}")
    work = Path(tempfile.mkdtemp(prefix="cw-disc-bench-"))
    database = f"cw_disc_bench_{os.getpid()}"
    env = app_env(work, DATABASE_URL=f"{POSTGRES.rsplit('/', 1)[0]}/{database}")
    import psycopg

    admin = psycopg.connect(POSTGRES, autocommit=True)
    admin.execute(f'CREATE DATABASE "{database}"')
    redis_server, redis_url = start_redis(work)
    env["BROKER_URL"] = redis_url
    bed = None
    try:
        log(f"bed: {args.count} TLS endpoints from 127.20.0.1 port {args.port}, {args.names} SNI")
        bed = start_bed(work, args.count, args.names, args.port, args.bed_processes)
        log(f"full path on PostgreSQL {database}, Redis {redis_url}; {args.rounds} round(s)")
        run_child(
            "bench.discovery_path",
            [
                *("--count", str(args.count), "--names", str(args.names)),
                *("--port", str(args.port), "--rounds", str(args.rounds)),
                *("--repeats", str(args.repeats)),
                *("--threads", str(args.threads), "--concurrency", str(args.concurrency)),
                *("--bare-concurrency", str(args.bare_concurrency)),
                *("--shard-size", str(args.shard_size), "--poll-ms", str(args.poll_ms)),
                *(["--skip-sweep"] if args.skip_sweep else []),
                *("--bed-pid", str(bed.pid)),
                *("--redis-pid", str(redis_server.pid if redis_server else 0)),
                *("--out", str(work / "discovery.json"), "--log-dir", str(work)),
            ],
            env,
            timeout=1800,
            log=work / "discovery-path.log",
        )
        results = json.loads((work / "discovery.json").read_text())
        results["postgres"] = admin.execute("SHOW server_version").fetchone()[0]
    finally:
        if bed is not None and bed.poll() is None:
            os.killpg(bed.pid, signal.SIGTERM)
            bed.wait(20)
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(10)
    results["machine"] = info
    results["nmap"] = subprocess.run(
        ["nmap", "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    print(f"\nCertwright discovery benchmark, {info['date']}")
    print(
        f"{info['cpu']}, {info['memory_gib']} GiB, Python {info['python']}, PostgreSQL "
        f"{results['postgres']}, {results['nmap']}; machine idle before: {info['idle_before']:.0%}"
    )
    world = results["world"]
    print(
        f"bed: {world['count']} addresses + {world['names']} SNI names; task concurrency "
        f"{world['concurrency']}, dramatiq --threads {args.threads}"
    )
    results["verdicts"] = [report_round(e, world) for e in results["rounds"]]
    if len(results["verdicts"]) > 1:
        print(f"\nOver {len(results['verdicts'])} rounds:")
        for i, first in enumerate(results["verdicts"][0]):
            ratios = sorted(v[i]["ratio"] for v in results["verdicts"])
            passed = sum(v[i]["verdict"] == "PASS" for v in results["verdicts"])
            print(
                f"  {first['target']:40} {ratios[0]:.2f} to {ratios[-1]:.2f}, "
                f"median {ratios[len(ratios) // 2]:.2f}; PASS in {passed} of {len(ratios)}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if args.keep:
        log(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
