"""Silent networks: targets that drop SYNs (tests/tlsbed/farm.py silent_listeners, no root
needed) or accept and never answer TLS. A silent range takes targets x timeout /
concurrency, the progress estimate advances with time rather than in steps one timeout
long, and a rate cap holds new connections a second under the cap."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.scan.shards import Shard, split_into_shards
from app.scan.sweep import SweepBatch, SweepOptions, Throttle, sweep_shard
from app.scan.targets import parse_target_spec
from tests.tlsbed.farm import ServerFarm, free_port, silent_listeners

SILENT = [f"127.0.13.{i}" for i in range(1, 41)]


def shard_of(ranges: str, ports: str) -> Shard:
    (shard,) = split_into_shards(parse_target_spec(ranges, ports), 100_000)
    return shard


def sweep(shard: Shard, options: SweepOptions, **kwargs: object) -> tuple[list[SweepBatch], float]:
    batches: list[SweepBatch] = []
    started = time.monotonic()
    asyncio.run(sweep_shard(shard, options, on_batch=batches.append, **kwargs))  # type: ignore[arg-type]
    return batches, time.monotonic() - started


def test_a_silent_range_takes_targets_times_timeout_over_concurrency() -> None:
    port = free_port(SILENT)
    options = SweepOptions(
        connect_timeout=0.5,
        handshake_timeout=0.5,
        connect_concurrency=10,
        tls_concurrency=10,
        batch_interval=0.1,
    )
    with silent_listeners(SILENT, port):
        batches, elapsed = sweep(shard_of(f"{SILENT[0]}-{SILENT[-1]}", str(port)), options)
    bound = len(SILENT) * 0.5 / 10  # 2.0 s: four waves of ten connects timing out
    assert bound * 0.97 <= elapsed <= bound * 1.3, elapsed
    final = batches[-1].progress
    assert final.targets_done == 40 and final.open_ports == 0 and final.in_flight == 0
    # The estimate tracks time on a silent range; the count of finished targets alone
    # would sit at 0% for the first whole timeout, then jump by a quarter.
    checked = 0
    for batch in batches[:-1]:
        progress = batch.progress
        if 0.2 < progress.elapsed < bound - 0.2:
            assert abs(progress.estimate - progress.elapsed / bound) < 0.1, progress
            checked += 1
    assert checked >= 8
    early = [b.progress for b in batches if 0.2 < b.progress.elapsed < 0.45]
    assert early and all(p.targets_done == 0 and p.estimate > 0.05 for p in early)


def test_a_listener_that_never_answers_tls_is_credited_while_it_waits() -> None:
    host = "127.0.13.60"
    port = free_port([host])
    options = SweepOptions(connect_timeout=1, handshake_timeout=1.0, batch_interval=0.1)
    with ServerFarm() as farm:
        farm.add_silent(host, port)
        batches, elapsed = sweep(shard_of(host, str(port)), options)
    assert 1.0 <= elapsed < 1.5
    middle = [b.progress for b in batches if 0.3 < b.progress.elapsed < 0.8]
    assert middle and all(abs(p.in_flight - p.elapsed) < 0.15 for p in middle), middle
    assert batches[-1].results[0].error == "handshake_timeout"


def test_a_rate_cap_holds_new_connections_a_second_and_may_change() -> None:
    # Nothing listens on these ports: every connect is refused at once, so only the cap
    # sets the pace.
    host = "127.0.13.70"
    port = free_port([host])
    shard = shard_of(host, f"{port}-{port + 299}")
    _, capped = sweep(shard, SweepOptions(rate=200, batch_interval=0.1))
    assert 1.35 <= capped <= 2.0, capped  # 300 connects at 200 a second
    _, free = sweep(shard, SweepOptions(batch_interval=0.1))
    assert free < 0.5
    throttle = Throttle(50)

    def faster(batch: SweepBatch) -> None:
        throttle.rate = 1000  # a worker re-reading its share of the task's cap

    started = time.monotonic()
    options = SweepOptions(batch_interval=0.1)
    asyncio.run(sweep_shard(shard, options, on_batch=faster, throttle=throttle))
    changed = time.monotonic() - started
    assert 0.1 <= changed < 1.0, changed  # 300 at 50 a second would take 6 s


@pytest.mark.parametrize("rate", [-1, 2_000_000])
def test_a_rate_outside_the_bounds_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be between 0"):
        SweepOptions(rate=rate)
