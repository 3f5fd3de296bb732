"""Issue 17 benchmark (a): discovery on a silent network.

A scanner network namespace routes 10.99.0.0/16 to a peer namespace over a veth pair; the
peer does not forward, so every SYN to the /16 is dropped without an answer (what a
firewall's DROP does). The scan path a worker runs (``python -m app.scan``: parse, shard,
sweep_shard) sweeps the /16 on port 443 with 1 s connect timeouts inside the scanner
namespace. Every target ends by timing out, so the fastest possible scan takes

    bound = targets x timeout / concurrency

and the target is: time within 15% of that bound (ratio bound/time >= 0.87). A second
figure scans with a rate cap below concurrency / timeout: time within 15% of targets / rate.

    sudo .venv/bin/python -m bench.discovery_silent [--concurrency C] [--json FILE]
    sudo .venv/bin/python -m bench.discovery_silent --smoke     # does every part work? (CI)

Needs root and iproute2 (`ip netns`, veth); the namespaces are removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench.harness import REPO, log, machine

WITHIN = 0.15


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def silent_zone(prefix: str) -> Iterator[str]:
    """A scanner namespace whose route to ``prefix`` leads to a peer that drops it all."""
    tag = f"cws{os.getpid() % 100_000}"
    scanner, sink = f"{tag}-scan", f"{tag}-sink"
    ip("netns", "add", scanner)
    try:
        ip("netns", "add", sink)
        try:
            ip("link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
            ip("link", "set", f"{tag}a", "netns", scanner)
            ip("link", "set", f"{tag}b", "netns", sink)
            ip("-n", scanner, "addr", "add", "192.168.77.1/30", "dev", f"{tag}a")
            ip("-n", sink, "addr", "add", "192.168.77.2/30", "dev", f"{tag}b")
            for ns, dev in ((scanner, f"{tag}a"), (sink, f"{tag}b"), (scanner, "lo")):
                ip("-n", ns, "link", "set", dev, "up")
            ip("-n", scanner, "route", "add", prefix, "via", "192.168.77.2")
            subprocess.run(
                ["ip", "netns", "exec", sink, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
                check=True,
            )
            yield scanner
        finally:
            ip("netns", "del", sink)
    finally:
        ip("netns", "del", scanner)


def scan(
    namespace: str, ranges: str, timeout: float, concurrency: int, rate: float
) -> dict[str, Any]:
    command = [
        *("ip", "netns", "exec", namespace, sys.executable, "-m", "app.scan", ranges),
        *("--ports", "443", "--connect-timeout", str(timeout)),
        *("--connect-concurrency", str(concurrency), "--tls-concurrency", "16"),
        *("--shard-size", "1000000", "--rate", str(rate)),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    wall = time.perf_counter() - started
    summary: dict[str, Any] = json.loads(done.stderr.strip().splitlines()[-1])
    summary["wall_seconds"] = round(wall, 3)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a /22 at 0.5 s: does it run?")
    parser.add_argument("--concurrency", type=int, default=2048)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("needs root and iproute2 (ip netns)", file=sys.stderr)
        return 2
    if args.smoke:
        ranges, timeout, concurrency = "10.99.0.0/22", 0.5, 256
    else:
        ranges, timeout, concurrency = "10.99.0.0/16", 1.0, args.concurrency
    figures: dict[str, Any] = {"machine": machine(), "ranges": ranges, "timeout": timeout}
    with silent_zone("10.99.0.0/16") as namespace:
        log(f"silent {ranges}: {concurrency} in flight, {timeout:g} s connect timeout")
        free = scan(namespace, ranges, timeout, concurrency, 0.0)
        targets = int(free["targets"])
        bound = targets * timeout / concurrency
        rate = concurrency / timeout / 2  # half what concurrency allows: the cap decides
        log(f"silent {ranges}: rate cap {rate:g} connections a second")
        capped = scan(namespace, ranges, timeout, concurrency, rate)
    rate_bound = targets / rate + timeout  # the last connects still wait their timeout
    rows = [
        ("(a) silent range, concurrency bound", free, bound),
        ("(a) silent range, rate cap bound", capped, rate_bound),
    ]
    figures["runs"] = []
    for label, run, expected in rows:
        ratio = expected / run["seconds"]
        ok = run["outcomes"] == {"timeout": targets} and ratio >= 1 - WITHIN
        print(
            f"{label}: {targets:,} targets in {run['seconds']:.2f} s "
            f"({run['targets_per_second']:,} a second); bound {expected:.2f} s, "
            f"ratio {ratio:.3f} (>= {1 - WITHIN:.2f}) {'PASS' if ok else 'FAIL'}"
        )
        figures["runs"].append(
            {
                "label": label,
                **run,
                "bound": round(expected, 3),
                "ratio": round(ratio, 3),
                "pass": ok,
            }
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
