"""The sweep engine over shards: outcomes, progress, batches, host names, stop, no leaks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from app.scan.errors import ScanInputError
from app.scan.probe import ErrorKind, ProbeResult
from app.scan.shards import Shard, split_into_shards
from app.scan.sweep import (
    SweepBatch,
    SweepOptions,
    SweepSummary,
    run_shard,
    sweep_shard,
    sweep_targets,
)
from app.scan.targets import parse_target_spec
from tests.tlsbed.certs import Pki
from tests.tlsbed.farm import Endpoints, ServerFarm, free_port, loopback_hosts, server_context

FAST = SweepOptions(connect_timeout=1, handshake_timeout=0.5, batch_interval=0.1)


def open_fds() -> int:
    """Sockets this process holds (what a scan could leak). Files are not counted: a test
    database of an earlier test may be opened or closed meanwhile by a thread it left."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def settles_to(before: int) -> bool:
    """Descriptor count back to ``before`` (the in-process servers close their side late)."""
    deadline = time.monotonic() + 3
    while open_fds() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    return open_fds() <= before


def one_shard(ranges: str, ports: str, **kwargs: object) -> Shard:
    spec = parse_target_spec(ranges, ports, **kwargs)  # type: ignore[arg-type]
    [shard] = split_into_shards(spec, 1 << 20)
    return shard


def collect(
    shard: Shard, options: SweepOptions = FAST, **kwargs: object
) -> tuple[SweepSummary, list[SweepBatch]]:
    batches: list[SweepBatch] = []
    summary = asyncio.run(sweep_shard(shard, options, on_batch=batches.append, **kwargs))  # type: ignore[arg-type]
    return summary, batches


def results_of(batches: list[SweepBatch]) -> list[ProbeResult]:
    return [result for batch in batches for result in batch.results]


def test_a_block_of_mixed_endpoints(endpoints: Endpoints) -> None:
    before = open_fds()
    shard = one_shard("127.0.10.1-127.0.10.14, ::1", str(endpoints.port))
    summary, batches = collect(shard)
    assert summary.count_by_outcome == {
        "tls": 10,  # rsa ec missing self expired sni tls12 misordered legacy ::1
        "not_tls": 2,
        "handshake_timeout": 1,
        "reset": 1,
        "refused": 1,
    }
    assert summary.progress.targets_total == summary.progress.targets_done == 15
    assert summary.progress.open_ports == 14 and summary.progress.tls_endpoints == 10
    assert not summary.stopped
    reported = {r.ip: r for r in results_of(batches)}
    assert endpoints.closed not in reported  # closed ports are only counted by default
    assert reported[endpoints.http].error is ErrorKind.NOT_TLS
    assert reported["::1"].tls_version == "TLSv1.3"
    progress = [batch.progress.targets_done for batch in batches]
    assert progress == sorted(progress) and progress[-1] == 15
    assert settles_to(before)


def test_report_closed_and_small_batches(endpoints: Endpoints) -> None:
    shard = one_shard("127.0.10.8-127.0.10.11", str(endpoints.port))
    options = SweepOptions(handshake_timeout=0.3, report_closed=True, batch_size=1)
    summary, batches = collect(shard, options)
    kinds = sorted(str(r.error) for r in results_of(batches))
    assert kinds == ["handshake_timeout", "not_tls", "not_tls", "refused"]
    assert all(len(b.results) <= 1 for b in batches)
    assert len([b for b in batches if b.results]) == 4
    assert summary.progress.targets_done == 4


def test_several_ports_per_address(endpoints: Endpoints) -> None:
    closed_port = free_port([endpoints.ec])
    shard = one_shard(endpoints.ec, f"{endpoints.port},{closed_port}")
    summary, _ = collect(shard)
    assert summary.count_by_outcome == {"tls": 1, "refused": 1}
    assert summary.progress.targets_total == 2


def test_host_names_use_overrides_sni_and_count_once(endpoints: Endpoints) -> None:
    shard = one_shard(
        "alpha.test, multi.test",
        str(endpoints.port),
        host_overrides={"alpha.test": [endpoints.sni], "multi.test": [endpoints.ec, "::1"]},
    )
    summary, batches = collect(shard)
    results = sorted(results_of(batches), key=lambda r: (r.host_name or "", r.ip))
    assert [(r.host_name, r.ip, r.error) for r in results] == [
        ("alpha.test", endpoints.sni, None),
        ("multi.test", endpoints.ec, None),
        ("multi.test", "::1", None),
    ]
    assert summary.progress.targets_total == summary.progress.targets_done == 2


def test_unresolved_and_denied_names_are_reported_not_contacted(endpoints: Endpoints) -> None:
    async def lookup(name: str) -> list[str]:
        if name == "meta.test":
            return ["169.254.169.254"]
        if name == "half.test":
            return ["fe80::1", endpoints.ec]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    shard = one_shard("gone.test, meta.test, half.test", str(endpoints.port))
    summary, batches = collect(shard, lookup=lookup)
    outcomes = sorted((r.host_name, r.ip, str(r.error)) for r in results_of(batches))
    assert outcomes == [
        ("gone.test", "", "unresolved"),
        ("half.test", endpoints.ec, "None"),
        ("half.test", "fe80::1", "denied"),
        ("meta.test", "169.254.169.254", "denied"),
    ]
    assert summary.count_by_outcome == {"tls": 1, "denied": 2, "unresolved": 1}
    assert summary.progress.targets_done == summary.progress.targets_total == 3


def test_async_batch_callback_is_awaited(endpoints: Endpoints) -> None:
    seen: list[int] = []

    async def persist(batch: SweepBatch) -> None:
        await asyncio.sleep(0)
        seen.extend(1 for _ in batch.results)

    shard = one_shard("127.0.10.1-127.0.10.2", str(endpoints.port))
    asyncio.run(sweep_shard(shard, FAST, on_batch=persist))
    assert sum(seen) == 2


@pytest.fixture
def many_listeners(pki: Pki) -> Iterator[tuple[list[str], int]]:
    hosts = loopback_hosts(200, "127.0.11.1")
    port = free_port(hosts)
    context = server_context([pki.ec_leaf, pki.intermediate])
    with ServerFarm() as farm:
        for host in hosts:
            farm.add_tls(host, port, context)
        yield hosts, port


def test_two_hundred_tls_listeners(many_listeners: tuple[list[str], int]) -> None:
    hosts, port = many_listeners
    before = open_fds()
    shard = one_shard(f"{hosts[0]}-{hosts[-1]}", str(port))
    options = SweepOptions(tls_concurrency=16, connect_concurrency=64, batch_size=50)
    summary, batches = collect(shard, options)
    assert summary.count_by_outcome == {"tls": 200}
    assert {r.ip for r in results_of(batches)} == set(hosts)
    assert all(len(r.chain) == 2 for r in results_of(batches))
    assert settles_to(before)


def test_should_stop_between_batches(endpoints: Endpoints) -> None:
    before = open_fds()
    shard = one_shard("127.0.10.9, 127.0.32.0/22", str(endpoints.port))  # silent + 1024 closed
    calls: list[int] = []

    def should_stop() -> bool:
        calls.append(1)
        return True

    options = SweepOptions(handshake_timeout=30, connect_concurrency=1, batch_interval=0.05)
    started = time.perf_counter()
    summary, _ = collect(shard, options, should_stop=should_stop)
    assert time.perf_counter() - started < 2
    assert summary.stopped and calls == [1]
    assert summary.progress.targets_done < summary.progress.targets_total
    assert settles_to(before)


def test_cancelling_the_task_closes_every_socket(endpoints: Endpoints) -> None:
    before = open_fds()

    async def main() -> None:
        shard = one_shard("127.0.10.9", str(endpoints.port))
        task = asyncio.create_task(sweep_shard(shard, SweepOptions(handshake_timeout=30)))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert settles_to(before)


def test_run_shard_calls_back_on_the_callers_thread(endpoints: Endpoints) -> None:
    shard = one_shard("127.0.10.1-127.0.10.3", str(endpoints.port))
    threads: set[int] = set()
    results: list[ProbeResult] = []

    def persist(batch: SweepBatch) -> None:
        threads.add(threading.get_ident())
        results.extend(batch.results)

    summary = run_shard(shard, FAST, on_batch=persist)
    assert threads == {threading.get_ident()}
    assert summary.count_by_outcome == {"tls": 3} and len(results) == 3


def test_run_shard_stops_and_reraises(endpoints: Endpoints) -> None:
    shard = one_shard("127.0.10.9", str(endpoints.port))
    options = SweepOptions(handshake_timeout=30, batch_interval=0.05)
    summary = run_shard(shard, options, should_stop=lambda: True)
    assert summary.stopped

    def explode(batch: SweepBatch) -> None:
        raise RuntimeError("database is down")

    with pytest.raises(RuntimeError, match="database is down"):
        run_shard(shard, options, on_batch=explode)


def test_closed_ports_are_cheap() -> None:
    shard = one_shard("127.0.48.0/20", "443")
    started = time.perf_counter()
    summary, _ = collect(shard)
    elapsed = time.perf_counter() - started
    assert summary.count_by_outcome == {"refused": 4096}
    assert 4096 / elapsed > 5_000  # ~50,000/s on the 2-core reference machine


def test_explicit_targets(endpoints: Endpoints) -> None:
    from app.scan.shards import Target

    targets = [Target(endpoints.ec, endpoints.port, "ec.test", 4)]
    summary = asyncio.run(sweep_targets(targets, FAST))
    assert summary.count_by_outcome == {"tls": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connect_timeout": 0}, "connect timeout must be between 0 and 300 seconds"),
        ({"tls_concurrency": 0}, "tls concurrency must be between 1 and 100,000"),
    ],
)
def test_options_are_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ScanInputError) as info:
        SweepOptions(**kwargs)  # type: ignore[arg-type]
    assert info.value.messages == (message,)


def test_concurrency_fits_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from app.scan.sweep import fit_descriptor_limit

    options = SweepOptions(connect_concurrency=5_000, tls_concurrency=500)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert fit_descriptor_limit(options) == (896 - 2 * 224, 224)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (100_000, 100_000))
    assert fit_descriptor_limit(options) == (5_000, 500)


def test_a_shard_with_denied_addresses_is_refused_by_the_worker() -> None:
    from app.scan.addresses import AddressBlock, PortRange
    from app.scan.errors import TargetSpecError

    tampered = Shard(7, (AddressBlock(0xA9FEA9FE, 0xA9FEA9FE, 4),), (), (PortRange(80, 80),))
    with pytest.raises(TargetSpecError) as info:
        asyncio.run(sweep_shard(tampered, FAST))
    assert info.value.messages == (
        "shard 7: 169.254.169.254 includes denied addresses "
        "(169.254.0.0/16 (link-local, cloud metadata))",
    )


# --- IPv6 ---------------------------------------------------------------------------


def test_ipv6_host_names_resolve_to_aaaa_records_and_are_scanned(endpoints: Endpoints) -> None:
    from app.scan.resolve import nameserver_lookup
    from tests.dnsbed import dns_server

    records = {"v6only.test": ["::1"], "dual.test": [endpoints.ec, "::1"]}
    with dns_server(records) as dns:
        lookup = nameserver_lookup(dns.address, timeout=2)
        shard = one_shard("v6only.test, dual.test, [::1], missing.test", str(endpoints.port))
        summary, batches = collect(shard, lookup=lookup)
        asked = set(dns.queries)
    found = sorted((r.host_name or "", r.ip, r.error) for r in results_of(batches))
    assert found == [
        ("", "::1", None),
        ("dual.test", "127.0.10.2", None),
        ("dual.test", "::1", None),
        ("missing.test", "", ErrorKind.UNRESOLVED),
        ("v6only.test", "::1", None),
    ]
    assert ("v6only.test", "AAAA") in asked and ("dual.test", "A") in asked
    assert summary.progress.targets_done == summary.progress.targets_total == 4


def test_a_nameserver_address_is_checked() -> None:
    from app.scan.resolve import parse_nameserver

    assert parse_nameserver("10.0.0.53") == ("10.0.0.53", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("::1") == ("::1", 53)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
    with pytest.raises(ValueError, match="is not a DNS server address"):
        parse_nameserver("dns.example")
