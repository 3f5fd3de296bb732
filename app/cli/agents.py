"""Command line for scanning agents: create one (its key written to a file once), disable
or enable it, and run the agent process itself (which needs no database)."""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.cli.core import commit_or_fail, fail
from app.extensions import db
from app.models import ScanAgent
from app.services.scope import SYSTEM
from app.settings import setting

agent_cli = AppGroup("agent", help="Scanning agents (one per network zone).")


@agent_cli.command("create")
@click.argument("name")
@click.option("--allow", "allow", multiple=True, required=True, help="a range it may scan")
@click.option("--key-out", type=click.Path(dir_okay=False), required=True, help="key file")
@click.option("--description", default="")
def create(name: str, allow: tuple[str, ...], key_out: str, description: str) -> None:
    """Create an agent; its private key is written to --key-out (mode 0600), once."""
    from app.scan import agentwire
    from app.services.discovery import agents

    path = Path(key_out)
    if path.exists():
        fail(f"{path} exists; the key is written only to a new file")
    created = commit_or_fail(
        lambda: agents.create_agent(
            actor=SYSTEM, name=name, allowed_ranges="\n".join(allow), description=description
        )
    )
    assert isinstance(created, agents.NewAgent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(created.private_key_pem)
    click.echo(
        f"agent {created.agent.name} created; key written to {path} "
        f"(public key SHA-256 {agentwire.key_fingerprint(created.agent.public_key)})"
    )


def _set(name: str, enabled: bool) -> None:
    from app.services.discovery import agents

    agent = db.session.execute(select(ScanAgent).where(ScanAgent.name == name)).scalar_one_or_none()
    if agent is None:
        fail(f"no agent '{name}'")
    assert agent is not None
    agent_id = agent.id
    commit_or_fail(lambda: agents.set_enabled(actor=SYSTEM, agent_id=agent_id, enabled=enabled))
    click.echo(f"agent {name} {'enabled' if enabled else 'disabled'}")


@agent_cli.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Disable an agent: it gets no shards and what it sends is rejected."""
    _set(name, False)


@agent_cli.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    _set(name, True)


@agent_cli.command("limits")
@click.argument("name")
@click.option(
    "--max-rate", required=True, help="new connections a second over all its shards (0: none)"
)
@click.option(
    "--max-in-flight", required=True, help="connections in flight over all its shards (0: none)"
)
def limits(name: str, max_rate: str, max_in_flight: str) -> None:
    """Set an agent's caps (as Discovery > Agents does; audited as agent.limits). The agent
    applies them from its next shard, below its host's own ceilings."""
    from app.services.discovery import agents

    agent = db.session.execute(select(ScanAgent).where(ScanAgent.name == name)).scalar_one_or_none()
    if agent is None:
        fail(f"no agent '{name}'")
    assert agent is not None
    agent_id = agent.id
    done = commit_or_fail(
        lambda: agents.set_limits(
            actor=SYSTEM, agent_id=agent_id, max_rate=max_rate, max_in_flight=max_in_flight
        )
    )
    rate, in_flight = agents.effective_limits(done)
    click.echo(
        f"agent {name}: caps {agents.describe_cap(done.max_rate, '/s')}, "
        f"{agents.describe_cap(done.max_in_flight, 'in flight')}; in force with the host's "
        f"ceilings it last reported: {agents.describe_cap(rate, '/s')}, "
        f"{agents.describe_cap(in_flight, 'in flight')}"
    )


@agent_cli.command("run")
@click.argument("name")
@click.option("--broker", "broker_url", required=True, help="redis://... or amqp://...")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False))
@click.option("--allow", "allow", multiple=True, required=True, help="a range it may scan (repeat)")
@click.option("--threads", default=2, show_default=True, help="shards scanned at once")
@click.option(
    "--namespace",
    default=lambda: str(setting("CW_REDIS_NAMESPACE")) or "dramatiq",
    help="Redis key prefix (the central CW_REDIS_NAMESPACE)",
)
@click.option("--heartbeat", default=10.0, show_default=True, help="seconds between heartbeats")
@click.option(
    "--max-rate",
    type=float,
    default=lambda: float(setting("CW_AGENT_MAX_RATE")),
    help="this host's ceiling on new connections a second over all its shards (0: none; "
    "default CW_AGENT_MAX_RATE); the console can only lower it",
)
@click.option(
    "--max-in-flight",
    type=int,
    default=lambda: int(setting("CW_AGENT_MAX_IN_FLIGHT")),
    help="this host's ceiling on connections in flight over all its shards (0: none; "
    "default CW_AGENT_MAX_IN_FLIGHT); the console can only lower it",
)
def run(
    name: str,
    broker_url: str,
    key_file: str,
    allow: tuple[str, ...],
    threads: int,
    namespace: str,
    heartbeat: float,
    max_rate: float,
    max_in_flight: int,
) -> None:
    """Run the agent NAME: scan shards of its queue inside its own allow-list. Needs no
    database: only the broker URL, its key file and --allow."""
    from app.agent.process import serve
    from app.agent.runner import load_config

    try:
        config = load_config(
            name=name,
            key_file=key_file,
            allow=allow,
            capacity=threads,
            heartbeat=heartbeat,
            max_rate=max_rate,
            max_in_flight=max_in_flight,
        )
        serve(config, broker_url=broker_url, namespace=namespace, threads=threads)
    except ValueError as exc:
        fail(str(exc))


COMMANDS = (agent_cli,)
