"""The fast scan of a shard: TCP connect sweep, then TLS handshakes on open ports.

Results and progress arrive in SweepBatch objects at least every ``batch_interval`` seconds
(or every ``batch_size`` results), so a caller persists in batches and is asked
``should_stop()`` between them. ``sweep_shard`` is the asyncio API; ``run_shard`` runs the
sweep on its own thread and calls ``on_batch`` on the caller's thread, so slow persistence
never stalls handshakes (a blocked loop would turn live servers into false timeouts).
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import resource
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.scan.addresses import DEFAULT_DENY, DenyEntry, find_denied, iter_ports
from app.scan.caps import SharedCap
from app.scan.engine import Reactor
from app.scan.errors import ScanInputError, TargetSpecError
from app.scan.probe import ErrorKind, ProbeResult, make_client_context
from app.scan.resolve import Lookup, lookup_addresses, resolve_host_names
from app.scan.shards import Shard, Target, iter_targets
from app.scan.starttls import Protocol, protocol_map

RESERVED_FDS = 128
BatchCallback = Callable[["SweepBatch"], Awaitable[None] | None]


@dataclass(frozen=True)
class SweepOptions:
    """Knobs of one sweep (a discovery task's timeouts and concurrency).

    ``connect_concurrency`` bounds TCP connects in flight, ``tls_concurrency`` handshakes in
    flight (both shrink to fit RLIMIT_NOFILE). Results are always returned for ports that
    accepted TCP and for host-name targets; refused / timed-out / unreachable IP targets
    are only counted unless ``report_closed`` is set (an empty /16 would otherwise be 65,536
    rows of nothing). ``dataclasses.asdict`` / ``SweepOptions(**data)`` serialise it.

    ``protocols`` overrides the protocol a port is scanned as (``(port, protocol)`` pairs,
    port 0 for every other port; app.scan.starttls). ``rate`` caps new connections per
    second (0: no cap), so a scan over a WAN link never floods it.
    """

    connect_timeout: float = 3.0
    handshake_timeout: float = 5.0
    connect_concurrency: int = 1024
    tls_concurrency: int = 128
    report_closed: bool = False
    batch_size: int = 256
    batch_interval: float = 1.0
    resolve_timeout: float = 5.0
    protocols: tuple[tuple[int, str], ...] = ()
    rate: float = 0.0

    def __post_init__(self) -> None:
        # JSON turns the pairs into lists; keep the frozen value hashable and comparable.
        pairs = tuple((int(port), str(name)) for port, name in self.protocols)
        object.__setattr__(self, "protocols", pairs)
        problems = self.problems()
        if problems:
            raise ScanInputError(problems)

    def problems(self) -> list[str]:
        messages = []
        for name in ("connect_timeout", "handshake_timeout", "batch_interval", "resolve_timeout"):
            if not 0 < getattr(self, name) <= 300:
                messages.append(f"{name.replace('_', ' ')} must be between 0 and 300 seconds")
        for name in ("connect_concurrency", "tls_concurrency", "batch_size"):
            if not 1 <= getattr(self, name) <= 100_000:
                messages.append(f"{name.replace('_', ' ')} must be between 1 and 100,000")
        if not 0 <= self.rate <= 1_000_000:
            messages.append("rate must be between 0 (no cap) and 1,000,000 connections a second")
        known = {p.value for p in Protocol}
        for port, name in self.protocols:
            if name not in known or not 0 <= port <= 65535:
                messages.append(f"protocol override {port} = {name} is not a port and protocol")
        return messages


@dataclass(frozen=True, slots=True)
class SweepProgress:
    """Counts so far. ``in_flight`` credits targets still running with the share of their
    timeout already spent (Reactor.in_flight_credit); ``estimate`` is the fraction done."""

    targets_total: int
    targets_done: int
    open_ports: int
    tls_endpoints: int
    elapsed: float
    in_flight: float = 0.0

    @property
    def estimate(self) -> float:
        if self.targets_total <= 0:
            return 1.0
        return min(1.0, (self.targets_done + self.in_flight) / self.targets_total)


class Throttle:
    """A rate cap (new connections a second, 0 = none) that may change during a sweep:
    a worker sharing a task's cap with the task's other running shards sets ``rate`` from
    its own thread between batches; the sweep reads it before every burst of connects.
    ``shared`` (caps.SharedCap) adds caps shared with the process's other sweeps."""

    def __init__(self, rate: float = 0.0, shared: SharedCap | None = None) -> None:
        self.rate = rate
        # Caps over every sweep of the process as well (a scanning agent's own limits):
        # the sweep also waits for these, so the lower of the two holds.
        self.shared = shared


@dataclass(frozen=True)
class SweepBatch:
    """Results since the previous batch (may be empty) and the progress so far."""

    results: tuple[ProbeResult, ...]
    progress: SweepProgress


@dataclass(frozen=True)
class SweepSummary:
    """How a sweep ended: final progress, outcome counts ("tls" or an ErrorKind value)."""

    progress: SweepProgress
    counts: tuple[tuple[str, int], ...]
    stopped: bool

    @property
    def count_by_outcome(self) -> dict[str, int]:
        return dict(self.counts)


@dataclass
class _Tally:
    """Per-sweep counters; ``finish`` is on the hot path (a refused port costs one call)."""

    total: int
    report_closed: bool
    batch_size: int
    wakeup: asyncio.Event
    protocol_of: Callable[[int], Protocol] = field(default=lambda port: Protocol.TLS)
    host_remaining: dict[tuple[str, int], int] = field(default_factory=dict)
    results: list[ProbeResult] = field(default_factory=list)
    counts: dict[ErrorKind | None, int] = field(default_factory=dict)
    done: int = 0
    open_ports: int = 0
    tls: int = 0

    def record(self, result: ProbeResult) -> None:
        """A result produced outside the reactor (name resolution)."""
        self.counts[result.error] = self.counts.get(result.error, 0) + 1
        self.results.append(result)

    def finish(self, target: Target, kind: ErrorKind | None, result: ProbeResult | None) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if result is not None:  # the port accepted TCP
            self.open_ports += 1
            if kind is None:
                self.tls += 1
        elif self.report_closed or target.host_name is not None:
            protocol = self.protocol_of(target.port)
            result = ProbeResult(
                target.ip, target.port, target.host_name, error=kind, protocol=protocol
            )
        if result is not None:
            self.results.append(result)
            if len(self.results) >= self.batch_size:
                self.wakeup.set()
        if target.host_name is None:
            self.done += 1
            return
        key = (target.host_name, target.port)
        left = self.host_remaining.get(key, 1) - 1
        self.host_remaining[key] = left
        if left <= 0:
            self.done += 1

    def progress(self, elapsed: float, in_flight: float = 0.0) -> SweepProgress:
        return SweepProgress(
            self.total, self.done, self.open_ports, self.tls, elapsed, round(in_flight, 3)
        )


def fit_descriptor_limit(options: SweepOptions) -> tuple[int, int]:
    """(connect, tls) concurrency that fits the process's open-file soft limit.

    A sweep holds at most connect + 2 x tls sockets (TLS backlog included); RESERVED_FDS stay
    free for the rest of the worker (database, broker, logs). Workers that want more should
    raise RLIMIT_NOFILE at start-up (``python -m app.scan`` does).
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = max(48, (soft if soft != resource.RLIM_INFINITY else 1 << 20) - RESERVED_FDS)
    tls = max(1, min(options.tls_concurrency, budget // 4))
    return max(1, min(options.connect_concurrency, budget - 2 * tls)), tls


async def _run(
    targets: Iterator[Target],
    tally: _Tally,
    options: SweepOptions,
    on_batch: BatchCallback | None,
    should_stop: Callable[[], bool] | None,
    context: ssl.SSLContext | None,
    throttle: Throttle | None = None,
) -> SweepSummary:
    loop = asyncio.get_running_loop()
    cap = throttle or Throttle(options.rate)
    started = loop.time()
    connect_limit, tls_limit = fit_descriptor_limit(options)
    reactor = Reactor(
        targets,
        context=context or make_client_context(),
        connect_timeout=options.connect_timeout,
        handshake_timeout=options.handshake_timeout,
        connect_concurrency=connect_limit,
        tls_concurrency=tls_limit,
        finish=tally.finish,
        on_idle=tally.wakeup.set,
        protocol_of=tally.protocol_of,
        rate=lambda: cap.rate,
        shared=cap.shared,
    )
    stopped = False
    reactor.start()
    try:
        while True:
            timer = loop.call_later(options.batch_interval, tally.wakeup.set)
            try:
                await tally.wakeup.wait()
            finally:
                timer.cancel()
            tally.wakeup.clear()
            if reactor.failure is not None:
                raise reactor.failure
            if not stopped and should_stop is not None and should_stop():
                stopped = True
                reactor.stop()
            finished = reactor.idle
            credit = 0.0 if finished else reactor.in_flight_credit()
            progress = tally.progress(loop.time() - started, credit)
            results, tally.results = tally.results, []
            size = options.batch_size
            for offset in range(0, max(len(results), 1), size):
                batch = SweepBatch(tuple(results[offset : offset + size]), progress)
                if on_batch is not None:
                    outcome = on_batch(batch)
                    if inspect.isawaitable(outcome):
                        await outcome
            if finished:
                break
    finally:
        reactor.close_all()
    counts = tuple(
        sorted(("tls" if kind is None else kind.value, n) for kind, n in tally.counts.items())
    )
    return SweepSummary(tally.progress(loop.time() - started), counts, stopped)


async def sweep_targets(
    targets: Sequence[Target],
    options: SweepOptions | None = None,
    *,
    on_batch: BatchCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    context: ssl.SSLContext | None = None,
) -> SweepSummary:
    """Probe explicit targets, one progress unit each (e.g. "re-check these endpoints").

    No resolution or deny-list screening happens here: callers pass literal addresses.
    """
    options = options or SweepOptions()
    tally = _Tally(
        len(targets),
        options.report_closed,
        options.batch_size,
        asyncio.Event(),
        protocol_map(options.protocols),
    )
    return await _run(iter(targets), tally, options, on_batch, should_stop, context)


async def sweep_shard(
    shard: Shard,
    options: SweepOptions | None = None,
    *,
    on_batch: BatchCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    context: ssl.SSLContext | None = None,
    deny: Sequence[DenyEntry] = DEFAULT_DENY,
    lookup: Lookup = lookup_addresses,
    throttle: Throttle | None = None,
) -> SweepSummary:
    """Scan every target of ``shard``; host names are resolved first (overrides win).

    Only what the shard lists is contacted; host-name addresses in ``deny`` are reported
    as ``denied`` and skipped, a name without addresses as ``unresolved`` (``ip`` is "").
    ``should_stop`` (e.g. ``event.is_set``) is asked between batches; on True in-flight
    probes are dropped and the summary says ``stopped``.

    The deny list is enforced again here, so a shard message that was altered (or built
    without parse_target_spec) cannot reach a denied address.

    Raises:
        TargetSpecError: a block of the shard overlaps ``deny``; nothing was contacted.
        OSError: the process cannot open sockets at all (the shard should be retried).
    """
    denied = [
        f"shard {shard.index}: {block.describe()} includes denied addresses ({entry.describe()})"
        for block in shard.blocks
        if (entry := find_denied(block, deny)) is not None
    ]
    if denied:
        raise TargetSpecError(denied)
    options = options or SweepOptions()
    tally = _Tally(
        shard.target_count,
        options.report_closed,
        options.batch_size,
        asyncio.Event(),
        protocol_map(options.protocols),
    )
    resolutions = await resolve_host_names(
        shard.host_names,
        overrides=dict(shard.host_overrides),
        deny=deny,
        timeout=options.resolve_timeout,
        lookup=lookup,
    )
    ports = list(iter_ports(shard.ports))
    for name, resolution in resolutions.items():
        for port in ports:
            if resolution.addresses:
                tally.host_remaining[(name, port)] = len(resolution.addresses)
            else:
                tally.done += 1
            if not resolution.addresses and not resolution.denied:
                unresolved = ErrorKind.UNRESOLVED
                protocol = tally.protocol_of(port)
                tally.record(
                    ProbeResult(
                        "", port, name, error=unresolved, detail=resolution.error, protocol=protocol
                    )
                )
            for address in resolution.denied:
                denied_result = ProbeResult(
                    address, port, name, error=ErrorKind.DENIED, protocol=tally.protocol_of(port)
                )
                tally.record(denied_result)
    resolved = {name: r.addresses for name, r in resolutions.items()}
    targets = iter_targets(shard, resolved)
    return await _run(targets, tally, options, on_batch, should_stop, context, throttle)


@dataclass(frozen=True)
class _Outcome:
    summary: SweepSummary | None = None
    error: BaseException | None = None


def run_shard(
    shard: Shard,
    options: SweepOptions | None = None,
    *,
    on_batch: Callable[[SweepBatch], Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    deny: Sequence[DenyEntry] = DEFAULT_DENY,
    lookup: Lookup = lookup_addresses,
    throttle: Throttle | None = None,
) -> SweepSummary:
    """Blocking sweep_shard for worker processes (e.g. a dramatiq actor).

    The sweep runs on a private thread and event loop; ``on_batch`` and ``should_stop`` run
    on the calling thread (safe for a database session). If ``on_batch`` raises, the sweep is
    stopped and the exception propagates.
    """
    items: queue.SimpleQueue[SweepBatch | _Outcome] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        try:
            summary = asyncio.run(
                sweep_shard(
                    shard,
                    options,
                    on_batch=items.put,
                    should_stop=stop.is_set,
                    deny=deny,
                    lookup=lookup,
                    throttle=throttle,
                )
            )
            items.put(_Outcome(summary=summary))
        except BaseException as exc:  # handed to the calling thread
            items.put(_Outcome(error=exc))

    thread = threading.Thread(target=work, name=f"sweep-shard-{shard.index}", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _Outcome):
                if item.error is not None:
                    raise item.error
                assert item.summary is not None
                return item.summary
            if on_batch is not None:
                on_batch(item)
            if should_stop is not None and should_stop():
                stop.set()
    finally:
        stop.set()
        thread.join()
