"""Two agents in two network zones (the issue's real check): each zone is a pair of
network namespaces joined by a veth pair, a scanner side where the agent runs and a
network side holding the zone's addresses and a real TLS server; the addresses exist only
inside the zone, so the central workers (in the root namespace) cannot reach them. The
agents reach the broker over a private Redis on a unix socket, with no database. In zone B
an nftables DROP rule makes half of its range silent: those targets time out.

Needs root, iproute2 and nftables (`make test` installs nftables); the namespaces are
removed by the fixture whatever happens."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, Endpoint, RunStatus, ScanAgent
from app.services.discovery import agents, tasks
from tests.factories import make_admin
from tests.processes import PY, Proc, app_env, describe, wait_until
from tests.services.conftest import IN_CI, Stack
from tests.services.test_agents import start_run, wait_run
from tests.tlsbed.certs import issue, make_name

PORT = 8443
SERVE = """
import asyncio, ssl, sys
host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
async def hold(reader, writer):
    try:
        await asyncio.wait_for(reader.read(1024), 10)
    except Exception:
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(hold, host, port, ssl=ctx)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def tools_missing() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = [t for t in ("ip", "nft", "redis-server") if shutil.which(t) is None]
    return f"missing {', '.join(missing)}" if missing else ""


@contextlib.contextmanager
def zone(tag: str, subnet: int) -> Iterator[tuple[str, str]]:
    """(scanner namespace, network namespace) joined by a veth pair; the network side
    holds 10.<subnet>.0.2 and .10-.13; the scanner side 10.<subnet>.0.1."""
    scan_ns, net_ns = f"{tag}-s", f"{tag}-n"
    made: list[str] = []
    try:
        for ns in (scan_ns, net_ns):
            run("ip", "netns", "add", ns)
            made.append(ns)
        run("ip", "link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
        run("ip", "link", "set", f"{tag}a", "netns", scan_ns)
        run("ip", "link", "set", f"{tag}b", "netns", net_ns)
        run("ip", "-n", scan_ns, "addr", "add", f"10.{subnet}.0.1/24", "dev", f"{tag}a")
        run("ip", "-n", net_ns, "addr", "add", f"10.{subnet}.0.2/24", "dev", f"{tag}b")
        for host in range(10, 14):
            run("ip", "-n", net_ns, "addr", "add", f"10.{subnet}.0.{host}/32", "dev", f"{tag}b")
        for ns, dev in ((scan_ns, f"{tag}a"), (net_ns, f"{tag}b"), (scan_ns, "lo"), (net_ns, "lo")):
            run("ip", "-n", ns, "link", "set", dev, "up")
        yield scan_ns, net_ns
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server on a unix socket: reachable from every namespace (a file), unlike
    127.0.0.1, which is each namespace's own."""
    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "777",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert server.poll() is None and time.monotonic() < deadline, (
                "redis-server did not start"
            )
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        server.terminate()
        server.wait(10)


def test_two_agents_scan_two_zones_one_partly_silent(
    pg: Flask, pg_url: str, stack_logs: Path, private_redis: str
) -> None:
    problem = tools_missing()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and the zone test cannot run: {problem}")
        pytest.skip(problem)
    tag = f"cwz{os.getpid() % 10000}"
    admin = make_admin(f"mrao-{secrets.token_hex(3)}")
    names = {"a": f"zone-a-{secrets.token_hex(2)}", "b": f"zone-b-{secrets.token_hex(2)}"}
    subnets = {"a": 171, "b": 172}
    leaves = {z: issue(make_name(f"{z}.zones.test", "Zone Inc")) for z in names}
    keys, task_ids = {}, {}
    for z, name in names.items():
        created = agents.create_agent(
            actor=admin, name=name, allowed_ranges=f"10.{subnets[z]}.0.0/24"
        )
        keys[z] = stack_logs / f"{name}.key"
        keys[z].write_bytes(created.private_key_pem)
        task_ids[z] = tasks.create_task(
            actor=admin,
            data=tasks.TaskData(
                name=f"Zone {z} {secrets.token_hex(2)}",
                ranges=f"10.{subnets[z]}.0.10-10.{subnets[z]}.0.13",
                ports=str(PORT),
                connect_timeout=1,
                handshake_timeout=5,
                agent=name,
            ),
        ).id
    db.session.commit()
    for z, leaf in leaves.items():
        (stack_logs / f"{z}.crt").write_bytes(leaf.pem)
        (stack_logs / f"{z}.pem").write_bytes(leaf.key_pem)

    stack = Stack(pg_url, private_redis, stack_logs, {"CW_AGENT_OFFLINE_SECONDS": 10})
    with contextlib.ExitStack() as stack_of:
        zones = {z: stack_of.enter_context(zone(f"{tag}{z}", subnets[z])) for z in names}
        # Zone B drops what reaches .12 and .13: they are silent, not refused.
        _, b_net = zones["b"]
        for rule in (
            "add table inet cw",
            "add chain inet cw input { type filter hook input priority 0 ; }",
            f"add rule inet cw input ip daddr {{ 10.172.0.12, 10.172.0.13 }} tcp dport {PORT} drop",
        ):
            run("ip", "netns", "exec", b_net, "nft", rule)
        procs = []
        for z in names:
            scan_ns, net_ns = zones[z]
            server = stack_of.enter_context(
                Proc(
                    f"tls-{z}",
                    [
                        "ip",
                        "netns",
                        "exec",
                        net_ns,
                        PY,
                        "-c",
                        SERVE,
                        f"10.{subnets[z]}.0.10",
                        str(PORT),
                        str(stack_logs / f"{z}.crt"),
                        str(stack_logs / f"{z}.pem"),
                    ],
                    env=app_env(),
                    logs=stack_logs,
                )
            )
            wait_until(
                lambda s=server: "ready" in s.log(), timeout=30, what=f"zone {z}'s TLS server"
            )
            agent = stack_of.enter_context(
                Proc(
                    f"agent-{z}",
                    [
                        "ip",
                        "netns",
                        "exec",
                        scan_ns,
                        PY,
                        "-m",
                        "flask",
                        "--app",
                        "wsgi",
                        "agent",
                        "run",
                        names[z],
                        "--broker",
                        private_redis,
                        "--key",
                        str(keys[z]),
                        "--allow",
                        f"10.{subnets[z]}.0.0/24",
                        "--heartbeat",
                        "1",
                    ],
                    env=app_env(CW_INSTANCE_DIR=stack_logs / f"agent-{z}"),
                    logs=stack_logs,
                )
            )
            procs += [server, agent]
        central = stack_of.enter_context(stack.workers("central-zones", processes=1, threads=4))
        why = describe(central, *procs)
        # The root namespace, where the central workers run, holds no zone address and no
        # link into a zone (a sandbox may still answer any TCP connect itself, so no probe).
        root = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        assert "10.171.0." not in root and "10.172.0." not in root and tag not in root
        wait_until(
            lambda: (
                len(
                    [
                        seen
                        for (seen,) in db.session.execute(
                            select(ScanAgent.last_seen_at).where(ScanAgent.name.in_(names.values()))
                        ).all()
                        if seen is not None
                    ]
                )
                == 2
                and not db.session.rollback()
            ),
            timeout=60,
            what="heartbeats of both agents",
            why=why,
        )
        run_ids = {z: start_run(stack, task_ids[z]) for z in names}
        ended = {z: wait_run(run_ids[z], why) for z in names}
    for z, scan in ended.items():
        assert scan.status == RunStatus.SUCCESSFUL, (z, scan.message)
        assert scan.targets_done == 4 and scan.tls_endpoints == 1, (z, scan.message)
        fingerprint = hashlib.sha256(leaves[z].der).hexdigest()
        cert = db.session.execute(
            select(Certificate).where(Certificate.fingerprint == fingerprint)
        ).scalar_one()
        endpoint = db.session.execute(
            select(Endpoint).where(
                Endpoint.task_id == task_ids[z], Endpoint.ip == f"10.{subnets[z]}.0.10"
            )
        ).scalar_one()
        assert endpoint.certificate_id == cert.id
    outcomes_a = ended["a"].counts["outcomes"]
    outcomes_b = ended["b"].counts["outcomes"]
    assert outcomes_a.get("refused") == 3 and "timeout" not in outcomes_a, outcomes_a
    assert outcomes_b.get("timeout") == 2 and outcomes_b.get("refused") == 1, outcomes_b
    assert (
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(tag)
        == 0
    )
