"""Scans run by agents: hand a task's shards to its agent (only while the agent is online,
within its capacity), and take what agents send back: verify the signature against the
agent's stored public key, refuse forgeries and replays, then store the results through
app.services.discovery.results exactly as a shard run by our own workers does.

A shard of an agent task is a Job of kind ``agent_shard``. Its message (the dispatcher)
claims the job and sends the shard to ``scan.<agent>`` only when the agent is online and
has room; while the agent is offline the job stays pending and looks again every few
seconds, and after CW_AGENT_WAIT_SECONDS it fails with the reason. It never runs anywhere
else. Each message the agent sends carries the claim's lease: a retried shard ignores what
an earlier attempt still sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import (
    AgentReceipt,
    Job,
    JobStatus,
    RunStatus,
    ScanAgent,
    ScanRun,
    ScanShard,
)
from app.models.types import utcnow
from app.scan import agentwire, starttls, sweep
from app.scan.probe import ProbeResult
from app.services import audit
from app.services.discovery import agents, results, runs
from app.services.discovery.rules import rule_objects
from app.services.platform import jobs
from app.services.scope import SYSTEM

log = logging.getLogger(__name__)
KIND = "agent_shard"
POLL_MS = 2_000  # a waiting shard looks at its agent again this often
AGENT_ACTOR = "agent_scan_shard"  # the actor name agents declare on scan.<name>

Sender = Callable[[str, dict[str, Any]], None]
_sender: Sender | None = None


def set_sender(fn: Sender) -> None:
    """How a shard message reaches an agent's queue (set by app.actors.agents)."""
    global _sender
    _sender = fn


def _send_after_commit(agent_name: str, payload: dict[str, Any]) -> None:
    if _sender is None:
        raise RuntimeError("no sender for agent queues (app.actors.agents is not loaded)")
    send = _sender
    jobs.after_commit(lambda: send(agent_name, payload))


# --- dispatching ---------------------------------------------------------------------------


def _fail_job(job: Job, reason: str) -> None:
    """Fail a shard's job for good (no retry: the reason would not change) and its run."""
    moved = db.session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
        .values(status=JobStatus.FAILED, finished_at=utcnow(), message=reason[:2000])
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount == 1:
        db.session.expire(job)
        jobs.failed_for_good(job)


def _shard_message(job: Job, shard: ScanShard, run: ScanRun, lease: str) -> dict[str, Any]:
    task = run.task
    options = sweep.SweepOptions(
        connect_timeout=task.connect_timeout,
        handshake_timeout=task.handshake_timeout,
        connect_concurrency=task.concurrency,
        tls_concurrency=task.concurrency,
        protocols=starttls.parse_protocol_overrides(task.protocols or ""),
        rate=runs.shard_rate(task, run.id),
    )
    agent = agents.by_name(str(job.payload.get("agent", "")))
    return {
        "shard": job.id,
        "lease": lease,
        "run": run.id,
        "spec": shard.spec,
        "options": asdict(options),
        "agent_limits": agent_limits(agent),
    }


def agent_limits(agent: ScanAgent | None) -> dict[str, Any]:
    """The console's caps for the agent over all its shards, carried by each shard message:
    the agent applies them below its host's own ceilings, never above."""
    if agent is None:
        return {"rate": 0.0, "in_flight": 0}
    return {"rate": float(agent.max_rate), "in_flight": int(agent.max_in_flight)}


def _claim(job: Job) -> str | None:
    lease = jobs.new_lease()
    now = utcnow()
    moved = db.session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.PENDING, Job.attempts < Job.max_attempts)
        .values(
            status=JobStatus.RUNNING,
            lease=lease,
            attempts=Job.attempts + 1,
            heartbeat_at=now,
            started_at=now,
            message=f"sent to agent {job.payload.get('agent')}",
        )
        .execution_options(synchronize_session=False)
    )
    return lease if moved.rowcount == 1 else None


def dispatch_ready(agent: ScanAgent) -> int:
    """Send pending shards of this agent's tasks, oldest first, while it has room (the
    caller holds the agent row locked). How many were sent."""
    if not agent.enabled or not agents.is_online(agent):
        return 0
    busy = db.session.execute(
        select(func.count())
        .select_from(Job)
        .where(
            Job.kind == KIND,
            Job.status == JobStatus.RUNNING,
            Job.payload["agent"].as_string() == agent.name,
        )
    ).scalar_one()
    room = max(0, agent.capacity - int(busy))
    if not room:
        return 0
    pending = (
        db.session.execute(
            select(Job)
            .where(
                Job.kind == KIND,
                Job.status == JobStatus.PENDING,
                Job.payload["agent"].as_string() == agent.name,
            )
            .order_by(Job.id)
            .limit(room)
        )
        .scalars()
        .all()
    )
    sent = 0
    for job in pending:
        shard = db.session.execute(
            select(ScanShard).where(ScanShard.job_id == job.id)
        ).scalar_one_or_none()
        run = db.session.get(ScanRun, shard.run_id) if shard is not None else None
        if shard is None or run is None or run.status != RunStatus.RUNNING:
            continue
        lease = _claim(job)
        if lease is None:
            continue
        shard.status, shard.attempts = "running", shard.attempts + 1
        shard.targets_done, shard.in_flight, shard.batches_received = 0, 0.0, 0
        shard.agent_done = None
        shard.counts = {key: int((shard.counts or {}).get(key, 0)) for key in ("new", "assigned")}
        _send_after_commit(agent.name, _shard_message(job, shard, run, lease))
        sent += 1
    return sent


def _lock_agent(name: str) -> ScanAgent | None:
    return db.session.execute(
        select(ScanAgent).where(ScanAgent.name == name).with_for_update()
    ).scalar_one_or_none()


def dispatch(job_id: int, *, sent_at: datetime | None = None) -> str:
    """The agent_shard job's message: send it (and any other waiting shard) to its agent,
    wait for an offline agent (polling), or fail it with the reason. Commits."""
    job = db.session.get(Job, job_id)
    if job is None or job.status != JobStatus.PENDING:
        db.session.rollback()
        return "not pending"
    if sent_at is not None and job.enqueued_at is not None and job.enqueued_at > sent_at:
        db.session.rollback()  # a newer message of this job polls: let it
        return "superseded"
    name = str(job.payload.get("agent", ""))
    agent = _lock_agent(name)
    shard = db.session.execute(select(ScanShard).where(ScanShard.job_id == job.id)).scalar_one()
    run = db.session.get(ScanRun, shard.run_id)
    if run is None or run.status != RunStatus.RUNNING:
        db.session.rollback()
        return "run ended"
    if agent is None or not agent.enabled:
        _fail_job(
            job,
            f"agent '{name}' is {'disabled' if agent else 'unknown'}; shards never run elsewhere",
        )
        db.session.commit()
        return "failed"
    dispatch_ready(agent)
    db.session.flush()
    db.session.refresh(job)
    if job.status != JobStatus.PENDING:
        db.session.commit()
        return "sent"
    wait = int(current_app.config["CW_AGENT_WAIT_SECONDS"])
    online = agents.is_online(agent)
    waited = (utcnow() - job.created_at).total_seconds()
    if not online and waited >= wait:
        _fail_job(
            job,
            f"agent '{agent.name}' is {agents.status_text(agent)}: waited {wait} s "
            "(CW_AGENT_WAIT_SECONDS); shards never run elsewhere",
        )
        db.session.commit()
        return "failed"
    if not online:
        run.message = (
            f"waiting for agent '{agent.name}' ({agents.status_text(agent)}); its shards fail "
            f"at {job.created_at + timedelta(seconds=wait):%Y-%m-%d %H:%M:%S} UTC"
        )
    jobs.enqueue(job, delay_ms=POLL_MS)
    db.session.commit()
    return "waiting"


# --- what agents send ----------------------------------------------------------------------


def _insert(model: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model.__table__)


def _reject(reason: str, envelope: agentwire.Envelope | None, claimed: str = "?") -> str:
    db.session.rollback()
    who = envelope.agent if envelope is not None else claimed
    log.warning("agent message rejected (agent %r): %s", who, reason)
    with audit.source(label="broker"):
        audit.record(
            action="agent.reject",
            actor=SYSTEM,
            object_type="ScanAgent",
            object_id="",
            label=who[:64],
            message=(
                f"{envelope.kind} for shard job #{envelope.shard}: {reason}"
                if envelope is not None
                else reason
            )[:2000],
        )
    db.session.commit()
    return f"rejected: {reason}"


def receive(message: Any) -> str:
    """Take one signed agent message (heartbeat, batch, done, refused). Commits; what
    happened, for logs. A done message whose batches are not all stored yet raises
    nothing yet: the batch that completes the count finishes the shard."""
    try:
        envelope, signed, signature = agentwire.parse(message)
    except agentwire.EnvelopeError as exc:
        claimed = message.get("agent") if isinstance(message, dict) else None
        return _reject(str(exc), None, claimed if isinstance(claimed, str) else "?")
    agent = agents.by_name(envelope.agent)
    if agent is None:
        return _reject("unknown agent", envelope)
    if not agentwire.verify(agent.public_key, signed, signature):
        return _reject("bad signature (not signed with this agent's key)", envelope)
    if not agent.enabled:
        return _reject("agent is disabled", envelope)
    skew = int(current_app.config["CW_AGENT_MAX_SKEW_SECONDS"])
    now = utcnow()
    if abs(now.timestamp() - envelope.ts) > skew:
        return _reject(f"timestamp more than {skew} s away from ours (stale or replayed)", envelope)
    fresh = db.session.execute(
        _insert(AgentReceipt)
        .values(digest=envelope.digest, agent_id=agent.id, received_at=now)
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(AgentReceipt.__table__.c.digest)
    ).scalar_one_or_none()
    if fresh is None:
        return _reject("replayed message (already received)", envelope)
    if envelope.kind == "heartbeat":
        return _heartbeat(agent, envelope)
    return _shard_report(agent, envelope)


def _heartbeat(agent: ScanAgent, envelope: agentwire.Envelope) -> str:
    locked = _lock_agent(agent.name)
    assert locked is not None
    body = envelope.body
    agents.record_heartbeat(
        locked,
        host=str(body.get("host", "")),
        version=str(body.get("version", "")),
        in_flight=int(body.get("in_flight", 0)),
        capacity=int(body.get("capacity", 2)),
        ceilings=_ceilings(body.get("ceilings")),
    )
    keep = timedelta(seconds=2 * int(current_app.config["CW_AGENT_MAX_SKEW_SECONDS"]))
    db.session.execute(
        delete(AgentReceipt).where(
            AgentReceipt.agent_id == locked.id, AgentReceipt.received_at < utcnow() - keep
        )
    )
    sent = dispatch_ready(locked)
    db.session.commit()
    return f"heartbeat ({sent} shards sent)"


def _ceilings(value: Any) -> tuple[float, int]:
    """The host's own caps from a heartbeat ((0, 0) when absent or not numbers)."""
    if not isinstance(value, dict):
        return 0.0, 0
    try:
        return float(value.get("rate", 0) or 0), int(value.get("in_flight", 0) or 0)
    except (TypeError, ValueError):
        return 0.0, 0


def _shard_report(agent: ScanAgent, envelope: agentwire.Envelope) -> str:
    job = db.session.get(Job, envelope.shard)
    if job is None or job.kind != KIND or job.payload.get("agent") != agent.name:
        return _reject("no shard of this agent has that id", envelope)
    ctx = jobs.JobContext(job_id=job.id, lease=str(envelope.body.get("lease", "")))
    try:
        ctx.hold()
    except jobs.LeaseLost:
        db.session.commit()  # the receipt stays: this attempt's messages are spent
        return "stale attempt (the shard was handed out again)"
    if job.status == JobStatus.CANCELLED and envelope.kind == "done":
        return _record_stop(agent, job, envelope.body)
    if job.status != JobStatus.RUNNING:
        db.session.commit()
        return f"shard job is {job.status.value}"
    shard = db.session.execute(
        select(ScanShard).where(ScanShard.job_id == job.id).with_for_update()
    ).scalar_one()
    if envelope.kind == "refused":
        reason = f"agent '{agent.name}' refused the shard: {envelope.body.get('reason', '')}"
        log.warning("%s", reason)
        _fail_job(job, reason)
        db.session.commit()
        _dispatch_next(agent.name)
        return "refused"
    if envelope.kind == "batch":
        return _store_batch(agent, job, ctx, shard, envelope.body)
    return _finish(agent, job, ctx, shard, envelope.body)


def _store_batch(
    agent: ScanAgent, job: Job, ctx: jobs.JobContext, shard: ScanShard, body: dict[str, Any]
) -> str:
    run = db.session.get(ScanRun, shard.run_id)
    assert run is not None
    task = run.task
    counts = {key: int((shard.counts or {}).get(key, 0)) for key in ("new", "assigned")}
    context = results.BatchContext(
        task, run.id, shard.id, rule_objects(task), results.anchors(), counts
    )
    found = [ProbeResult.from_dict(item) for item in body.get("results", [])]
    if found:
        results.store_results(context, found)
    progress = body.get("progress", {})
    shard.targets_done = max(shard.targets_done, int(progress.get("targets_done", 0)))
    shard.tls_endpoints = max(shard.tls_endpoints, int(progress.get("tls_endpoints", 0)))
    shard.in_flight = float(progress.get("in_flight", 0.0))
    shard.counts = dict(context.counts)
    shard.batches_received += 1
    done = shard.agent_done
    if done is not None and shard.batches_received >= int(done.get("batches", 0)):
        # The agent's "done" came before this, its last batch (the shard row is locked,
        # so exactly one handler sees the count complete): finish the shard now.
        _finish(agent, job, ctx, shard, done)
        return f"batch of {len(found)}, the last: shard done"
    ctx.progress(int(100 * min(1.0, float(progress.get("estimate", 0.0)))))  # commits
    return f"batch of {len(found)}"


def _record_stop(agent: ScanAgent, job: Job, body: dict[str, Any]) -> str:
    """The agent stopped a shard whose run was cancelled (it read the cancel on its
    control queue): the shard stays cancelled; its job says where the agent stopped."""
    shard = db.session.execute(
        select(ScanShard).where(ScanShard.job_id == job.id).with_for_update()
    ).scalar_one()
    summary = body.get("summary", {})
    done = int(summary.get("targets_done", 0))
    stopped = bool(summary.get("stopped"))
    job.message = (
        f"scan cancelled; agent '{agent.name}' "
        + (f"stopped after {done} of {shard.targets_total} targets" if stopped else "had finished")
    )[:2000]
    shard.status, shard.in_flight = "cancelled", 0.0
    shard.finished_at = utcnow()
    db.session.commit()
    _dispatch_next(agent.name)
    return "stopped (cancelled)"


def _finish(
    agent: ScanAgent, job: Job, ctx: jobs.JobContext, shard: ScanShard, body: dict[str, Any]
) -> str:
    announced = int(body.get("batches", 0))
    if shard.batches_received < announced:
        # Some of its batches are still being stored (messages of the agents queue are
        # taken by several threads): kept on the shard, it is finished by the batch that
        # completes the count, at once rather than on a retry some time later.
        shard.agent_done = dict(body)
        db.session.commit()
        return f"done noted: {shard.batches_received} of {announced} batches stored"
    shard.agent_done = None
    summary = body.get("summary", {})
    if summary.get("stopped"):
        # Agents stop a shard only on a cancel; this run was not cancelled (a cancel message
        # put on the agent's control queue by someone else): the shard did not finish.
        _fail_job(
            job,
            f"agent '{agent.name}' stopped the shard after {int(summary.get('targets_done', 0))} "
            "targets on a cancel message this run never sent",
        )
        db.session.commit()
        _dispatch_next(agent.name)
        return "stopped without a cancel"
    counts = {
        **{str(k): int(v) for k, v in dict(summary.get("counts", {})).items()},
        **{key: int((shard.counts or {}).get(key, 0)) for key in ("new", "assigned")},
    }
    done, tls = int(summary.get("targets_done", 0)), int(summary.get("tls_endpoints", 0))
    runs.finish_shard(shard.id, "done", done, tls, counts)
    jobs.finish(
        ctx,
        result={
            "message": f"{done} targets, {tls} TLS endpoints (agent {agent.name})",
            "counts": counts,
        },
    )
    _dispatch_next(agent.name)
    return "done"


def _dispatch_next(name: str) -> None:
    agent = _lock_agent(name)
    if agent is not None:
        dispatch_ready(agent)
    db.session.commit()
