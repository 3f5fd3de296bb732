"""What an agent sends, taken by the central side in any order: a "done" that arrives
before some of its batches (the agents queue is read by several threads) is kept on the
shard, and the batch that completes the count finishes the shard at once (no retry loop);
a done of an older attempt or a replay changes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Job, JobStatus, RunStatus, ScanRun, ScanShard
from app.scan import agentwire
from app.services.discovery import agentruns, agents, runs, tasks
from app.services.scope import SYSTEM


@pytest.fixture
def agent_run(app, monkeypatch) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(agentruns, "_sender", lambda name, payload: sent.append(payload))
    created = agents.create_agent(actor=SYSTEM, name="dc", allowed_ranges="10.20.0.0/16")
    task = tasks.create_task(
        actor=SYSTEM,
        data=tasks.TaskData(name="DC", ranges="10.20.0.0/30", ports="443", agent="dc"),
    )
    db.session.commit()
    run = runs.start_run(actor=SYSTEM, task_id=task.id, shard_size=4096)
    agents.record_heartbeat(created.agent, host="h", version="v", in_flight=0, capacity=2)
    db.session.commit()
    assert agentruns.dispatch_ready(created.agent) == 1
    db.session.commit()
    (message,) = sent
    key = agentwire.load_private_key(created.private_key_pem)
    return {"run": run.id, "message": message, "key": key}


def envelope(ctx: dict[str, Any], kind: str, body: dict[str, Any]) -> dict[str, Any]:
    message = ctx["message"]
    return agentwire.sign(
        ctx["key"],
        agent="dc",
        kind=kind,
        shard=message["shard"],
        ts=time.time(),
        body={"lease": message["lease"], **body},
    )


def batch(ctx: dict[str, Any], seq: int, done: int) -> dict[str, Any]:
    progress = {"targets_done": done, "in_flight": 0, "tls_endpoints": 0, "estimate": done / 4}
    return envelope(ctx, "batch", {"seq": seq, "results": [], "progress": progress})


DONE = {
    "batches": 2,
    "summary": {"targets_done": 4, "tls_endpoints": 0, "counts": {"refused": 4}, "stopped": False},
}


def shard_and_run(ctx: dict[str, Any]) -> tuple[ScanShard, ScanRun]:
    db.session.expire_all()
    shard = db.session.execute(select(ScanShard).where(ScanShard.run_id == ctx["run"])).scalar_one()
    run = db.session.get(ScanRun, ctx["run"])
    assert run is not None
    return shard, run


def test_a_done_before_its_batches_finishes_the_shard_with_the_last_batch(agent_run):
    assert agentruns.receive(envelope(agent_run, "done", DONE)) == (
        "done noted: 0 of 2 batches stored"
    )
    shard, run = shard_and_run(agent_run)
    assert shard.status == "running" and run.status == RunStatus.RUNNING
    assert agentruns.receive(batch(agent_run, 0, 2)) == "batch of 0"
    assert shard_and_run(agent_run)[0].status == "running"
    assert agentruns.receive(batch(agent_run, 1, 4)) == "batch of 0, the last: shard done"
    shard, run = shard_and_run(agent_run)
    assert shard.status == "done" and shard.agent_done is None
    assert run.status == RunStatus.SUCCESSFUL and run.targets_done == 4
    assert run.counts["outcomes"] == {"refused": 4}
    job = db.session.get(Job, agent_run["message"]["shard"])
    assert job is not None and job.status == JobStatus.DONE


def test_a_done_after_its_batches_finishes_the_shard_at_once(agent_run):
    assert agentruns.receive(batch(agent_run, 0, 2)) == "batch of 0"
    assert agentruns.receive(batch(agent_run, 1, 4)) == "batch of 0"
    assert agentruns.receive(envelope(agent_run, "done", DONE)) == "done"
    shard, run = shard_and_run(agent_run)
    assert shard.status == "done" and run.status == RunStatus.SUCCESSFUL


def test_a_replayed_done_is_rejected(agent_run):
    done = envelope(agent_run, "done", DONE)
    agentruns.receive(done)
    assert agentruns.receive(done) == "rejected: replayed message (already received)"


def test_a_cancel_reaches_the_agent_and_its_stop_is_recorded(agent_run, monkeypatch):
    from tests.factories import make_admin

    told: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(agents, "_control_sender", lambda name, body: told.append((name, body)))
    admin = make_admin("boss")
    runs.cancel_run(actor=admin, run_id=agent_run["run"])
    db.session.commit()
    job_id = agent_run["message"]["shard"]
    assert told == [("dc", {"cancel": [job_id], "run": agent_run["run"]})]
    shard, run = shard_and_run(agent_run)
    assert shard.status == "cancelled" and run.status == RunStatus.CANCELLED
    # What the agent sends once it stopped: a batch (ignored) and its done.
    assert agentruns.receive(batch(agent_run, 0, 2)) == "shard job is cancelled"
    stopped = {**DONE, "batches": 1}
    stopped["summary"] = {**DONE["summary"], "targets_done": 2, "stopped": True}
    assert agentruns.receive(envelope(agent_run, "done", stopped)) == "stopped (cancelled)"
    job = db.session.get(Job, job_id)
    assert job is not None and job.status == JobStatus.CANCELLED
    assert job.message == "scan cancelled; agent 'dc' stopped after 2 of 4 targets"
    assert shard_and_run(agent_run)[0].finished_at is not None


def test_a_stop_without_a_cancel_fails_the_shard_rather_than_counting_it_done(agent_run):
    stopped = {"batches": 0, "summary": {**DONE["summary"], "targets_done": 1, "stopped": True}}
    assert agentruns.receive(envelope(agent_run, "done", stopped)) == "stopped without a cancel"
    shard, run = shard_and_run(agent_run)
    assert shard.status == "failed" and run.status == RunStatus.FAILED
    assert "on a cancel message this run never sent" in run.message, run.message


def test_the_shard_message_carries_the_agents_caps(app, monkeypatch):
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(agentruns, "_sender", lambda name, payload: sent.append(payload))
    created = agents.create_agent(
        actor=SYSTEM, name="wan", allowed_ranges="10.30.0.0/16", max_rate="40", max_in_flight="8"
    )
    task = tasks.create_task(
        actor=SYSTEM,
        data=tasks.TaskData(
            name="WAN", ranges="10.30.0.0/30", ports="443", agent="wan", rate=100, concurrency=64
        ),
    )
    db.session.commit()
    runs.start_run(actor=SYSTEM, task_id=task.id, shard_size=4096)
    agents.set_limits(actor=SYSTEM, agent_id=created.agent.id, max_rate="25", max_in_flight="6")
    agents.record_heartbeat(created.agent, host="h", version="v", in_flight=0, capacity=2)
    db.session.commit()
    agentruns.dispatch_ready(created.agent)
    db.session.commit()
    (message,) = sent
    # The agent's caps as they are when the shard is sent, beside the task's own.
    assert message["agent_limits"] == {"rate": 25.0, "in_flight": 6}
    assert message["options"]["rate"] == 100.0
    assert message["options"]["connect_concurrency"] == 64
