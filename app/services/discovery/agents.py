"""Scanning agents: create one (with its key, shown once), disable or enable it, record its
heartbeats, tell whether it is online, and check a task's targets against its allow-list.

Only an MRAO manages agents. The agent's private key is generated here, handed to the
caller once and never stored: the database keeps the public key only (app.scan.agentwire).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from flask import current_app
from sqlalchemy import select, update

from app.extensions import db
from app.models import Admin, ScanAgent
from app.models.types import utcnow
from app.scan import agentwire, targets
from app.scan.addresses import AddressBlock
from app.services import audit
from app.services.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.services.platform import jobs
from app.services.scope import SYSTEM, Actor

AUTO = "Auto"
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
AGENT_FIELDS = (
    "name",
    "description",
    "allowed_ranges",
    "public_key",
    "enabled",
    "max_rate",
    "max_in_flight",
)
LIMIT_FIELDS = ("max_rate", "max_in_flight")
MAX_RATE = 1_000_000  # the bounds the agent accepts (app.agent.runner)
MAX_IN_FLIGHT = 100_000


def queue_name(name: str) -> str:
    """The queue an agent consumes: only its own shards are sent there."""
    return f"scan.{name}"


def control_queue_name(name: str) -> str:
    """The agent's control queue (cancel messages), which a thread of the agent reads on
    its own so that a cancel never waits behind shards (app.agent.process)."""
    return f"scan.{name}.control"


ControlSender = Callable[[str, dict[str, Any]], None]
_control_sender: ControlSender | None = None


def set_control_sender(fn: ControlSender) -> None:
    """How a control message reaches an agent (set by app.actors.agents)."""
    global _control_sender
    _control_sender = fn


def send_cancel(name: str, job_ids: list[int], run_id: int) -> None:
    """After commit, tell agent ``name`` to stop these shards (their run was cancelled)."""
    if not job_ids:
        return
    if _control_sender is None:
        raise RuntimeError("no sender for agent queues (app.actors.agents is not loaded)")
    send = _control_sender
    body = {"cancel": sorted(job_ids), "run": run_id}
    jobs.after_commit(lambda: send(name, body))


@dataclass(frozen=True)
class NewAgent:
    agent: ScanAgent
    private_key_pem: bytes  # shown or downloaded once; never stored


def _require_master(actor: Actor) -> None:
    if actor is not SYSTEM and not (isinstance(actor, Admin) and actor.is_master):
        raise Forbidden("Only an MRAO manages scanning agents.")


def offline_after() -> timedelta:
    return timedelta(seconds=int(current_app.config["CW_AGENT_OFFLINE_SECONDS"]))


def is_online(agent: ScanAgent, now: datetime | None = None) -> bool:
    return agent.last_seen_at is not None and (now or utcnow()) - agent.last_seen_at <= (
        offline_after()
    )


def status_text(agent: ScanAgent, now: datetime | None = None) -> str:
    """'online', 'offline (never seen)', 'offline (last seen ...)' or 'disabled'."""
    if not agent.enabled:
        return "disabled"
    if is_online(agent, now):
        return "online"
    if agent.last_seen_at is None:
        return "offline (never seen)"
    return f"offline (last seen {agent.last_seen_at:%Y-%m-%d %H:%M:%S} UTC)"


# The widest block one allow-list entry may cover: a /8 of IPv4, a /32 of IPv6 (what a
# large organization's internal network or allocation is; 0.0.0.0/0 is everything).
WIDEST_BLOCK: Final = {4: 1 << 24, 6: 1 << 96}
_WIDEST_SHOWN: Final = "at most a /8 of IPv4 or a /32 of IPv6 per entry"


def allowed_blocks(agent: ScanAgent) -> tuple[AddressBlock, ...]:
    return agentwire.parse_allow_list(agent.allowed_ranges.splitlines())


def _clean_ranges(text: str) -> tuple[str, list[str]]:
    entries = [e for e in re.split(r"[,\s]+", text.strip()) if e]
    if not entries:
        return "", ["List at least one address, CIDR block or range the agent may scan."]
    problems = []
    for entry in entries:
        try:
            blocks = agentwire.parse_allow_list([entry])
        except agentwire.EnvelopeError as exc:
            problems.append(str(exc))
            continue
        if any(block.size > WIDEST_BLOCK[block.version] for block in blocks):
            problems.append(
                f"'{entry}' is wider than an agent may be allowed ({_WIDEST_SHOWN}): an "
                "allow-list names the networks the agent sits in, not the whole address space."
            )
    return "\n".join(entries), problems


def create_agent(
    *,
    actor: Actor,
    name: str,
    allowed_ranges: str,
    description: str = "",
    max_rate: Any = 0,
    max_in_flight: Any = 0,
) -> NewAgent:
    """A new enabled agent and its private key (PEM), which is returned here only.

    Raises:
        Forbidden: the actor is not an MRAO.
        ValidationFailed: a bad or taken name, or a bad allow-list entry.
    """
    _require_master(actor)
    errors: dict[str, list[str]] = {}
    name = name.strip().lower()
    if not NAME.fullmatch(name):
        errors["name"] = [
            "1-32 lowercase letters, digits and dashes, starting and ending with a letter "
            "or digit (the agent's queue is scan.<name>)."
        ]
    elif name == AUTO.lower():
        errors["name"] = ["'auto' means Certwright's own workers; choose another name."]
    elif db.session.execute(select(ScanAgent.id).where(ScanAgent.name == name)).first():
        errors["name"] = [f"An agent named '{name}' already exists."]
    ranges, problems = _clean_ranges(allowed_ranges)
    if problems:
        errors["allowed_ranges"] = problems
    rate, in_flight, limit_errors = _clean_limits(max_rate, max_in_flight)
    errors.update(limit_errors)
    if errors:
        raise ValidationFailed(errors)
    pem, public_key = agentwire.new_key()
    agent = ScanAgent(
        name=name,
        description=description.strip(),
        allowed_ranges=ranges,
        public_key=public_key,
        enabled=True,
        max_rate=rate,
        max_in_flight=in_flight,
        host="",
        version="",
        created_by_id=actor.id,
    )
    db.session.add(agent)
    db.session.flush()
    audit.record(
        action="agent.create",
        actor=actor,
        object_type="ScanAgent",
        object_id=agent.id,
        label=agent.name,
        after=audit.snapshot(agent, AGENT_FIELDS),
    )
    return NewAgent(agent, pem)


def get_agent(*, actor: Actor, agent_id: int) -> ScanAgent:
    _require_master(actor)
    agent = db.session.get(ScanAgent, agent_id)
    if agent is None:
        raise NotFound("No such agent.")
    return agent


def set_enabled(*, actor: Actor, agent_id: int, enabled: bool) -> ScanAgent:
    """Disable (no new shards; its messages are rejected) or enable an agent again.

    Raises:
        Conflict: it is already in that state.
    """
    agent = get_agent(actor=actor, agent_id=agent_id)
    moved = db.session.execute(
        update(ScanAgent)
        .where(ScanAgent.id == agent.id, ScanAgent.enabled.is_(not enabled))
        .values(enabled=enabled)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        raise Conflict(f"Agent '{agent.name}' is already {'enabled' if enabled else 'disabled'}.")
    db.session.expire(agent)
    audit.record(
        action="agent.enable" if enabled else "agent.disable",
        actor=actor,
        object_type="ScanAgent",
        object_id=agent.id,
        label=agent.name,
        before={"enabled": not enabled},
        after={"enabled": enabled},
    )
    return agent


def _clean_limits(max_rate: Any, max_in_flight: Any) -> tuple[float, int, dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    rate, in_flight = 0.0, 0
    try:
        rate = float(str(max_rate).strip() or 0)
        if rate != rate or not 0 <= rate <= MAX_RATE:  # NaN too
            raise ValueError
    except ValueError:
        errors["max_rate"] = [
            f"New connections a second over all the agent's shards: a number between 0 "
            f"(no cap) and {MAX_RATE:,}; {str(max_rate).strip()!r} is not."
        ]
    try:
        text = str(max_in_flight).strip() or "0"
        in_flight = int(text)
        if not 0 <= in_flight <= MAX_IN_FLIGHT:
            raise ValueError
    except ValueError:
        errors["max_in_flight"] = [
            f"Connections in flight over all the agent's shards: a whole number between 0 "
            f"(no cap) and {MAX_IN_FLIGHT:,}; {str(max_in_flight).strip()!r} is not."
        ]
    return rate, in_flight, errors


def set_limits(*, actor: Actor, agent_id: int, max_rate: Any, max_in_flight: Any) -> ScanAgent:
    """Set the agent's caps over all the shards it runs (0: none). They travel with each
    shard it is sent from now on; the agent applies the lower of these and its host's
    own ceilings (CW_AGENT_MAX_RATE, CW_AGENT_MAX_IN_FLIGHT), and a task's caps lower them
    further for that task's shards.

    Raises:
        Forbidden: the actor is not an MRAO.
        ValidationFailed: a cap that is not a number within bounds.
    """
    agent = get_agent(actor=actor, agent_id=agent_id)
    rate, in_flight, errors = _clean_limits(max_rate, max_in_flight)
    if errors:
        raise ValidationFailed(errors)
    before = audit.snapshot(agent, LIMIT_FIELDS)
    agent.max_rate, agent.max_in_flight = rate, in_flight
    db.session.flush()
    audit.record(
        action="agent.limits",
        actor=actor,
        object_type="ScanAgent",
        object_id=agent.id,
        label=agent.name,
        before=before,
        after=audit.snapshot(agent, LIMIT_FIELDS),
    )
    return agent


def describe_cap(value: float, unit: str) -> str:
    return f"{value:g} {unit}" if value else "no cap"


def effective_limits(agent: ScanAgent) -> tuple[float, int]:
    """What the agent applies over all its shards: the lower of the console's caps and the
    host's own ceilings it last reported (0: none)."""

    def lower(a: float, b: float) -> float:
        return min(a, b) if a and b else a or b

    return (
        lower(agent.max_rate, agent.host_max_rate),
        int(lower(agent.max_in_flight, agent.host_max_in_flight)),
    )


def choices() -> list[tuple[str, str]]:
    """(value, label) for a task's Agent field: Auto, then every enabled agent."""
    rows = db.session.execute(
        select(ScanAgent).where(ScanAgent.enabled.is_(True)).order_by(ScanAgent.name)
    ).scalars()
    return [(AUTO, "Auto (any scan worker)")] + [
        (a.name, f"{a.name} ({status_text(a)})") for a in rows
    ]


def by_name(name: str) -> ScanAgent | None:
    return db.session.execute(select(ScanAgent).where(ScanAgent.name == name)).scalar_one_or_none()


def check_task_targets(agent_name: str, spec: targets.TargetSpec) -> list[str]:
    """Why a task's targets cannot go to this agent ([] when they can): unknown or disabled
    agent, or address blocks outside its allow-list (host names are checked by the agent
    when it resolves them: an address outside its allow-list is reported as denied)."""
    agent = by_name(agent_name)
    if agent is None:
        return [f"No agent named '{agent_name}'."]
    if not agent.enabled:
        return [f"Agent '{agent.name}' is disabled."]
    left = agentwire.outside(spec.blocks, allowed_blocks(agent))
    if left:
        shown = agentwire.describe_blocks(left[:5]) + (" ..." if len(left) > 5 else "")
        return [
            f"{shown} is outside the allow-list of agent '{agent.name}' "
            f"({agentwire.describe_blocks(allowed_blocks(agent))})."
        ]
    return []


def record_heartbeat(
    agent: ScanAgent,
    *,
    host: str,
    version: str,
    in_flight: int,
    capacity: int,
    ceilings: tuple[float, int] = (0.0, 0),
) -> None:
    agent.host, agent.version = host[:255], version[:64]
    agent.host_max_rate = max(0.0, min(float(ceilings[0]), float(MAX_RATE)))
    agent.host_max_in_flight = max(0, min(int(ceilings[1]), MAX_IN_FLIGHT))
    agent.in_flight, agent.capacity = max(0, in_flight), max(1, min(capacity, 1024))
    agent.last_seen_at = utcnow()
