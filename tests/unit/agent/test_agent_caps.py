"""An agent's own caps over all the shards it runs (issue 17 §3): new connections a second
and connections in flight, the lower of the console's (carried by each shard message) and
the host's ceilings (CW_AGENT_MAX_RATE, CW_AGENT_MAX_IN_FLIGHT), which a message cannot
raise. Measured on the listening side: real sockets on 127.31.x.x that accept, never answer
the TLS handshake (so each connection stays open for the handshake timeout) and record
when each connection came and went."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.agent.runner import Agent, AgentConfig
from app.scan import agentwire
from app.scan.shards import split_into_shards
from app.scan.sweep import SweepOptions
from app.scan.targets import parse_target_spec

ZONE_A = [f"127.31.7.{i}" for i in range(1, 41)]
ZONE_B = [f"127.31.8.{i}" for i in range(1, 41)]
PORTS = range(5300, 5400)  # this worktree's port range


@dataclass
class Tally:
    """What the listening side saw: accept times, and the most connections open at once."""

    accepted: list[float] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0


@contextmanager
def mute_listeners(hosts: list[str]) -> Iterator[tuple[int, Tally]]:
    """Listeners on every host (one common port of PORTS) that accept, read and never
    answer. Each loop reads the ends of connections before accepting new ones, so a
    connection the scanner closed before opening the next is never counted as open."""
    tally = Tally()
    for port in PORTS:
        listeners = []
        try:
            for host in hosts:
                sock = socket.socket()
                listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
        except OSError:
            for sock in listeners:
                sock.close()
            continue
        break
    else:
        raise RuntimeError("no port of 5300-5399 is free on every host")
    selector = selectors.DefaultSelector()
    for sock in listeners:
        sock.listen(256)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, "listener")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            ready = selector.select(0.05)
            for key, _ in ready:
                if key.data == "listener":
                    continue
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                while True:
                    try:
                        data = conn.recv(65536)
                    except BlockingIOError:
                        break
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(conn)
                        conn.close()
                        tally.open_now -= 1
                        break
            for key, _ in ready:
                if key.data != "listener":
                    continue
                listener = key.fileobj
                assert isinstance(listener, socket.socket)
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ, "conn")
                    tally.accepted.append(time.monotonic())
                    tally.open_now += 1
                    tally.most_open = max(tally.most_open, tally.open_now)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, tally
    finally:
        stop.set()
        thread.join()
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()


def make_agent(*, max_rate: float = 0.0, max_in_flight: int = 0) -> tuple[Agent, list[Any]]:
    sent: list[Any] = []
    config = AgentConfig(
        name="caps",
        key=Ed25519PrivateKey.generate(),
        allowed=agentwire.parse_allow_list(["127.31.0.0/16"]),
        capacity=2,
        max_rate=max_rate,
        max_in_flight=max_in_flight,
    )
    return Agent(config, sent.append), sent


def shard_message(job: int, hosts: list[str], port: int, **limits: Any) -> dict[str, Any]:
    (shard,) = split_into_shards(parse_target_spec(f"{hosts[0]}-{hosts[-1]}", str(port)), 10_000)
    options = SweepOptions(
        connect_timeout=1.0,
        handshake_timeout=0.3,
        connect_concurrency=100,
        tls_concurrency=100,
        batch_interval=0.2,
    )
    message = {"shard": job, "lease": f"lease-{job}", "spec": shard.to_dict()}
    message["options"] = asdict(options)
    if limits:
        message["agent_limits"] = limits
    return message


def run_two_shards(agent: Agent, port: int, **limits: Any) -> float:
    """Two shards at once, as an agent with two worker threads runs them."""
    started = time.monotonic()
    threads = [
        threading.Thread(target=agent.run_shard, args=(shard_message(i, hosts, port, **limits),))
        for i, hosts in ((1, ZONE_A), (2, ZONE_B))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return time.monotonic() - started


def most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def done_summaries(sent: list[Any]) -> list[dict[str, Any]]:
    return [e["body"]["summary"] for e in sent if e["kind"] == "done"]


def test_the_host_ceiling_caps_the_rate_over_all_shards_and_a_message_cannot_raise_it() -> None:
    agent, sent = make_agent(max_rate=20)
    with mute_listeners(ZONE_A + ZONE_B) as (port, tally):
        # The console (through the shard message) asks for 1,000 a second: the host says 20.
        elapsed = run_two_shards(agent, port, rate=1000, in_flight=0)
    assert len(tally.accepted) == 80
    # 80 connections at 20 a second over both shards: about 4 s (a bucket of 2 tokens).
    assert elapsed >= 3.7, elapsed
    assert most_in_a_second(tally.accepted) <= 22, most_in_a_second(tally.accepted)
    assert [s["targets_done"] for s in done_summaries(sent)] == [40, 40]
    assert agent.limits.held == 0


def test_the_console_cap_lowers_the_rate_below_the_host_ceiling() -> None:
    agent, _ = make_agent(max_rate=500)
    with mute_listeners(ZONE_A + ZONE_B) as (port, tally):
        elapsed = run_two_shards(agent, port, rate=25, in_flight=0)
    assert len(tally.accepted) == 80
    assert elapsed >= 80 / 25 - 0.3, elapsed
    assert most_in_a_second(tally.accepted) <= 28, most_in_a_second(tally.accepted)


def test_connections_in_flight_over_all_shards_stay_under_the_lower_cap() -> None:
    # Host ceiling 4, console 50: 4 open at once over both shards; each connection stays
    # open for the 0.3 s handshake timeout, so 80 take about 80 x 0.3 / 4 = 6 s.
    agent, sent = make_agent(max_in_flight=4)
    with mute_listeners(ZONE_A + ZONE_B) as (port, tally):
        elapsed = run_two_shards(agent, port, rate=0, in_flight=50)
    assert len(tally.accepted) == 80
    assert tally.most_open == 4, tally.most_open
    assert elapsed >= 80 * 0.3 / 4 * 0.9, elapsed
    counts = [s["counts"] for s in done_summaries(sent)]
    assert counts == [{"handshake_timeout": 40}, {"handshake_timeout": 40}]
    assert agent.limits.held == 0


def test_the_console_cap_lowers_connections_in_flight_without_a_host_ceiling() -> None:
    agent, _ = make_agent()
    with mute_listeners(ZONE_A + ZONE_B) as (port, tally):
        run_two_shards(agent, port, rate=0, in_flight=6)
    assert len(tally.accepted) == 80
    assert tally.most_open == 6, tally.most_open


@pytest.mark.parametrize(
    "limits",
    [
        {"rate": -1, "in_flight": 0},
        {"rate": 0, "in_flight": "lots"},
        {"rate": 10, "in_flight": 2.5},
    ],
)
def test_caps_that_are_not_caps_refuse_the_shard(limits: dict[str, Any]) -> None:
    agent, sent = make_agent(max_rate=20)
    agent.run_shard(shard_message(1, ZONE_A, 5300, **limits))
    assert [e["kind"] for e in sent] == ["refused"]
    assert "malformed shard: agent limits" in sent[0]["body"]["reason"]
    assert agent.limits.rate == 20  # unchanged


def test_the_host_ceilings_travel_in_heartbeats() -> None:
    agent, sent = make_agent(max_rate=20, max_in_flight=7)
    agent.heartbeat()
    assert sent[0]["kind"] == "heartbeat"
    assert sent[0]["body"]["ceilings"] == {"rate": 20, "in_flight": 7}


def test_a_shard_cancelled_before_it_starts_is_reported_stopped_and_never_scanned() -> None:
    agent, sent = make_agent()
    assert agent.control({"cancel": [7]}) == "cancel shard jobs #7"
    with mute_listeners(ZONE_A) as (port, tally):
        assert agent.run_shard(shard_message(7, ZONE_A, port)) == "cancelled before it started"
    assert tally.accepted == []
    assert [e["kind"] for e in sent] == ["done"]
    assert sent[0]["body"]["summary"]["stopped"] is True


def test_a_cancel_stops_a_running_shard_between_batches() -> None:
    agent, sent = make_agent(max_in_flight=2)  # 40 targets x 0.3 s / 2: 6 s uncancelled
    with mute_listeners(ZONE_A) as (port, _):
        worker = threading.Thread(target=agent.run_shard, args=(shard_message(3, ZONE_A, port),))
        worker.start()
        time.sleep(1.0)
        agent.control({"cancel": [3]})
        cancelled = time.monotonic()
        worker.join(10)
        assert time.monotonic() - cancelled < 1.0
    (done,) = [e for e in sent if e["kind"] == "done"]
    assert done["body"]["summary"]["stopped"] is True
    assert 0 < done["body"]["summary"]["targets_done"] < 40
    assert agent.limits.held == 0 and agent.in_flight == 0


@pytest.mark.parametrize("body", [None, {"cancel": "all"}, {"cancel": [True]}, {"stop": [1]}])
def test_a_control_message_that_is_not_one_is_ignored(body: Any) -> None:
    agent, _ = make_agent()
    assert agent.control(body).startswith("ignored: not a control message")
    assert not agent.is_cancelled(1)
