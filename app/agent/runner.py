"""The agent's work: check a shard against the local allow-list, sweep it, send signed
batches, a final summary, and heartbeats. Broker-agnostic: ``send`` puts one envelope on
the central results queue."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.scan import agentwire, shards, sweep
from app.scan.addresses import DEFAULT_DENY, AddressBlock
from app.scan.caps import SharedCap
from app.scan.errors import ScanInputError, TargetSpecError
from app.version import __version__

log = logging.getLogger("certwright.agent")
Send = Callable[[dict[str, Any]], None]


@dataclass
class AgentConfig:
    name: str
    key: Ed25519PrivateKey
    allowed: tuple[AddressBlock, ...]
    capacity: int = 2
    heartbeat_seconds: float = 10.0
    host: str = field(default_factory=socket.gethostname)
    # This host's own ceilings over all the shards it runs (0: none): new connections a
    # second and connections in flight. The console's caps for the agent, carried by shard
    # messages, can only lower them.
    max_rate: float = 0.0
    max_in_flight: int = 0


CANCEL_MEMORY = 24 * 3600.0  # seconds a cancelled shard id is remembered
MAX_RATE = 1_000_000.0  # the bounds of a task's rate cap and concurrency (app.scan.sweep)
MAX_IN_FLIGHT = 100_000


def lower_cap(local: float, given: float) -> float:
    """The stricter of two caps where 0 means none."""
    if not local:
        return given
    if not given:
        return local
    return min(local, given)


def load_config(
    *,
    name: str,
    key_file: str,
    allow: Sequence[str],
    capacity: int = 2,
    heartbeat: float = 10.0,
    max_rate: float = 0.0,
    max_in_flight: int = 0,
) -> AgentConfig:
    """Raises: ValueError: a bad name, key file, allow-list entry or cap (the text says
    which)."""
    if not name or not all(c.isalnum() or c == "-" for c in name) or name != name.lower():
        raise ValueError(f"agent name {name!r}: lowercase letters, digits and dashes")
    try:
        with open(key_file, "rb") as handle:
            pem = handle.read()
    except OSError as exc:
        raise ValueError(f"cannot read the key file {key_file}: {exc.strerror}") from None
    try:
        key = agentwire.load_private_key(pem)
        allowed = agentwire.parse_allow_list(allow)
    except agentwire.EnvelopeError as exc:
        raise ValueError(str(exc)) from None
    if not allowed:
        raise ValueError("give at least one --allow range: the agent scans nothing else")
    if not 0 <= max_rate <= MAX_RATE:
        raise ValueError(
            f"--max-rate {max_rate:g}: between 0 (no cap) and {MAX_RATE:,.0f} new connections "
            "a second"
        )
    if not 0 <= max_in_flight <= MAX_IN_FLIGHT:
        raise ValueError(
            f"--max-in-flight {max_in_flight}: between 0 (no cap) and {MAX_IN_FLIGHT:,} connections"
        )
    return AgentConfig(
        name,
        key,
        allowed,
        max(1, capacity),
        max(1.0, heartbeat),
        max_rate=float(max_rate),
        max_in_flight=int(max_in_flight),
    )


class Agent:
    """One agent process: runs shards (from any number of worker threads) and beats."""

    def __init__(self, config: AgentConfig, send: Send) -> None:
        self.config = config
        self._send = send
        self._lock = threading.Lock()
        self.in_flight = 0
        self.deny = (*DEFAULT_DENY, *agentwire.complement(config.allowed))
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        # The agent's own caps over every shard it runs; the host's ceilings until a shard
        # message brings the console's (which only lower them).
        self.limits = SharedCap(config.max_rate, config.max_in_flight)
        # Shard job ids the central side cancelled (job id -> when we heard), kept a day:
        # a cancel may arrive before the shard's own message is taken from the queue.
        self._cancelled: dict[int, float] = {}

    def envelope(self, kind: str, shard: int, body: dict[str, Any]) -> dict[str, Any]:
        return agentwire.sign(
            self.config.key,
            agent=self.config.name,
            kind=kind,
            shard=shard,
            ts=time.time(),
            body=body,
        )

    def send(self, kind: str, shard: int, body: dict[str, Any]) -> None:
        self._send(self.envelope(kind, shard, body))

    # --- heartbeats --------------------------------------------------------------------

    def heartbeat(self) -> None:
        with self._lock:
            in_flight = self.in_flight
        self.send(
            "heartbeat",
            0,
            {
                "host": self.config.host,
                "version": __version__,
                "in_flight": in_flight,
                "capacity": self.config.capacity,
                "pid": os.getpid(),
                "ceilings": {
                    "rate": self.config.max_rate,
                    "in_flight": self.config.max_in_flight,
                },
            },
        )

    def start_heartbeats(self) -> None:
        def beat() -> None:
            while not self._stop.is_set():
                try:
                    self.heartbeat()
                except Exception:  # the broker may be down for a moment: beat again later
                    log.exception("heartbeat not sent")
                self._stop.wait(self.config.heartbeat_seconds)

        self._beat = threading.Thread(target=beat, name="agent-heartbeat", daemon=True)
        self._beat.start()

    def stop(self) -> None:
        self._stop.set()

    # --- shards ------------------------------------------------------------------------

    def refusal(self, shard: shards.Shard) -> str | None:
        """Why this agent will not scan the shard (None: it will)."""
        left = agentwire.outside(shard.blocks, self.config.allowed)
        if left:
            return (
                f"{agentwire.describe_blocks(left[:5])} is outside this agent's local "
                f"allow-list ({agentwire.describe_blocks(self.config.allowed)})"
            )
        return None

    # --- cancellation ----------------------------------------------------------------

    def cancel(self, job_ids: Sequence[int]) -> None:
        now = time.monotonic()
        with self._lock:
            for job_id in job_ids:
                self._cancelled[int(job_id)] = now
            if len(self._cancelled) > 1000:
                self._cancelled = {
                    k: t for k, t in self._cancelled.items() if now - t < CANCEL_MEMORY
                }

    def is_cancelled(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def control(self, body: Any) -> str:
        """A message of the control queue scan.<name>.control: ``{"cancel": [job ids]}``
        (the central side cancelled these shards' run). What happened, for the log."""
        ids = body.get("cancel") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            return f"ignored: not a control message: {str(body)[:200]}"
        self.cancel(ids)
        return f"cancel shard jobs {', '.join(f'#{i}' for i in ids)}"

    def apply_limits(self, given: Any) -> tuple[float, int]:
        """Set the agent's caps from a shard message's ``agent_limits`` (the console's caps
        for this agent), never above this host's own ceilings. (rate, in flight) in force.

        Raises:
            ValueError: the caps are not numbers within bounds.
        """
        given = given if isinstance(given, dict) else {}
        rate, in_flight = given.get("rate", 0) or 0, given.get("in_flight", 0) or 0
        if (
            isinstance(rate, bool)
            or isinstance(in_flight, bool)
            or not isinstance(rate, int | float)
            or not isinstance(in_flight, int)
            or not 0 <= rate <= MAX_RATE
            or not 0 <= in_flight <= MAX_IN_FLIGHT
        ):
            raise ValueError(f"agent limits {given!r} are not caps")
        effective = (
            lower_cap(self.config.max_rate, float(rate)),
            int(lower_cap(self.config.max_in_flight, in_flight)),
        )
        self.limits.configure(*effective)
        return effective

    def run_shard(self, message: dict[str, Any]) -> str:
        """Scan one shard message and report it; what happened (for the log)."""
        job_id, lease = int(message["shard"]), str(message["lease"])
        try:
            shard = shards.Shard.from_dict(message["spec"])
            options = sweep.SweepOptions(**message["options"])
            self.apply_limits(message.get("agent_limits"))
        except (ScanInputError, TypeError, KeyError, ValueError) as exc:
            self.send("refused", job_id, {"lease": lease, "reason": f"malformed shard: {exc}"})
            return "refused (malformed)"
        reason = self.refusal(shard)
        if reason is not None:
            log.warning("shard job #%s refused: %s", job_id, reason)
            self.send("refused", job_id, {"lease": lease, "reason": reason})
            return "refused"
        if self.is_cancelled(job_id):  # cancelled while the message waited in the queue
            self.send("done", job_id, _stopped_before_start(lease))
            return "cancelled before it started"
        with self._lock:
            self.in_flight += 1
        batches = 0

        def on_batch(batch: sweep.SweepBatch) -> None:
            nonlocal batches
            progress = batch.progress
            self.send(
                "batch",
                job_id,
                {
                    "lease": lease,
                    "seq": batches,
                    "results": [r.to_dict() for r in batch.results],
                    "progress": {
                        "targets_done": progress.targets_done,
                        "in_flight": progress.in_flight,
                        "tls_endpoints": progress.tls_endpoints,
                        "estimate": progress.estimate,
                    },
                },
            )
            batches += 1

        try:
            summary = sweep.run_shard(
                shard,
                options,
                on_batch=on_batch,
                deny=self.deny,
                throttle=sweep.Throttle(options.rate, shared=self.limits),
                should_stop=lambda: self.is_cancelled(job_id),
            )
        except TargetSpecError as exc:
            self.send("refused", job_id, {"lease": lease, "reason": "; ".join(exc.messages)})
            return "refused (denied)"
        finally:
            with self._lock:
                self.in_flight -= 1
        self.send(
            "done",
            job_id,
            {
                "lease": lease,
                "batches": batches,
                "summary": {
                    "targets_done": summary.progress.targets_done,
                    "tls_endpoints": summary.progress.tls_endpoints,
                    "counts": summary.count_by_outcome,
                    "stopped": summary.stopped,
                },
            },
        )
        if summary.stopped:
            log.info("shard job #%s stopped: its run was cancelled", job_id)
            return f"cancelled after {summary.progress.targets_done} targets"
        return f"{summary.progress.targets_done} targets, {summary.progress.tls_endpoints} TLS"


def _stopped_before_start(lease: str) -> dict[str, Any]:
    return {
        "lease": lease,
        "batches": 0,
        "summary": {"targets_done": 0, "tls_endpoints": 0, "counts": {}, "stopped": True},
    }
