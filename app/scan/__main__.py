"""Command line sweep for operators and benchmarks: ``python -m app.scan --help``.

Runs the same path a worker runs (parse -> shards -> sweep_shard) and prints a summary,
optionally with one JSON line per result. ``--processes N`` spreads the shards over N
worker processes the way N dramatiq workers would.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from app.scan import settings
from app.scan.errors import ScanInputError
from app.scan.shards import Shard, count_shards, split_into_shards
from app.scan.sweep import SweepBatch, SweepOptions, sweep_shard
from app.scan.targets import parse_target_spec


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run_one(job: tuple[dict[str, Any], dict[str, Any], bool]) -> tuple[dict[str, int], int]:
    shard_data, option_data, print_results = job
    _raise_nofile()
    shard = Shard.from_dict(shard_data)
    options = SweepOptions(**option_data)

    def show(batch: SweepBatch) -> None:
        for result in batch.results:
            line = result.to_dict()
            line["chain"] = len(result.chain)
            print(json.dumps(line), flush=True)

    summary = asyncio.run(sweep_shard(shard, options, on_batch=show if print_results else None))
    return summary.count_by_outcome, summary.progress.targets_done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.scan", description=__doc__)
    parser.add_argument("ranges", help="range text, e.g. '127.10.0.0/22, ::1'")
    parser.add_argument("--ports", default=settings.PORTS)
    parser.add_argument("--connect-timeout", type=float, default=settings.CONNECT_TIMEOUT)
    parser.add_argument("--handshake-timeout", type=float, default=settings.HANDSHAKE_TIMEOUT)
    parser.add_argument("--connect-concurrency", type=int, default=1024)
    parser.add_argument("--tls-concurrency", type=int, default=128)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="new connections a second (0: no cap)"
    )
    parser.add_argument("--shard-size", type=int, default=65_536)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--max-addresses", type=int, default=1 << 20)
    parser.add_argument("--report-closed", action="store_true")
    parser.add_argument("--results", action="store_true", help="print one JSON line per result")
    args = parser.parse_args(argv)
    try:
        spec = parse_target_spec(args.ranges, args.ports, max_addresses=args.max_addresses)
        options = SweepOptions(
            connect_timeout=args.connect_timeout,
            handshake_timeout=args.handshake_timeout,
            connect_concurrency=args.connect_concurrency,
            tls_concurrency=args.tls_concurrency,
            report_closed=args.report_closed,
            rate=args.rate,
        )
    except ScanInputError as exc:
        print("\n".join(exc.messages), file=sys.stderr)
        return 2
    option_data = dataclasses.asdict(options)
    shards = split_into_shards(spec, args.shard_size)
    jobs = [(shard.to_dict(), option_data, args.results) for shard in shards]
    started = time.perf_counter()
    if args.processes > 1:
        with multiprocessing.get_context("fork").Pool(args.processes) as pool:
            outcomes = pool.map(_run_one, jobs, chunksize=1)
    else:
        outcomes = [_run_one(job) for job in jobs]
    elapsed = time.perf_counter() - started
    counts: Counter[str] = Counter()
    done = 0
    for shard_counts, shard_done in outcomes:
        counts.update(shard_counts)
        done += shard_done
    summary = {
        "targets": spec.target_count,
        "done": done,
        "shards": count_shards(spec, args.shard_size),
        "processes": args.processes,
        "seconds": round(elapsed, 3),
        "targets_per_second": round(done / elapsed) if elapsed else None,
        "outcomes": dict(sorted(counts.items())),
    }
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
