"""Scan runs: split a task into shards (one job each), run a shard, finish the run
(storing what a batch found: app.services.discovery.results).

A shard can be delivered twice or retried after its worker died: results are upserts
(endpoints by task/ip/port/host, certificates by fingerprint), a shard's progress counters
are reset when it is claimed again and summed into the run only when the run ends, and the
count of certificates a shard inserted is committed with them, so nothing is lost or
counted twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select, update

from app.extensions import db
from app.models import (
    Admin,
    Certificate,
    CertStatus,
    DiscoveryTask,
    Endpoint,
    Job,
    JobStatus,
    RunStatus,
    ScanRun,
    ScanShard,
)
from app.models.notifications import NotificationType
from app.models.types import utcnow
from app.scan import shards, starttls, sweep
from app.services import audit
from app.services.discovery import agents, endpoints, results
from app.services.discovery.rules import rule_objects
from app.services.discovery.tasks import deny_list, get_task, lookup, target_spec
from app.services.errors import Conflict, NotFound, ValidationFailed
from app.services.notifications import events
from app.services.notifications import sweep as notification_sweep
from app.services.platform import jobs
from app.services.scope import SYSTEM, Actor

SHARD_SIZE = shards.DEFAULT_SHARD_SIZE  # at most this many targets (address x port) a message


def start_run(
    *,
    actor: Actor,
    task_id: int,
    trigger: str = "manual",
    shard_size: int | None = None,
) -> ScanRun:
    """Create the run and one job per shard; messages are sent after commit.

    Shards hold at most SHARD_SIZE targets; a smaller task is cut in four
    (app.scan.shards.pick_shard_size) so that several worker processes share it.

    Raises:
        Conflict: the task is already scanning.
        ValidationFailed: the task's targets are no longer valid (e.g. a new deny entry).
    """
    task = (
        db.session.get(DiscoveryTask, task_id)
        if actor is SYSTEM
        else get_task(actor=actor, task_id=task_id)
    )
    if task is None:
        raise NotFound("No such discovery task.")
    if db.session.execute(
        select(ScanRun.id).where(ScanRun.task_id == task.id, ScanRun.status == RunStatus.RUNNING)
    ).first():
        raise Conflict(f"'{task.name}' is already scanning.")
    spec = target_spec(task)
    run = ScanRun(
        task_id=task.id,
        trigger=trigger,
        started_by_id=actor.id,
        targets_total=spec.target_count,
    )
    db.session.add(run)
    db.session.flush()
    count = 0
    size = shard_size or shards.pick_shard_size(spec.target_count, SHARD_SIZE)
    kind, payload = "scan_shard", {}
    if task.agent and task.agent != agents.AUTO:
        # Checked again at every run: the agent may have been disabled or its allow-list
        # narrowed since the task was saved. Its shards go to its queue only.
        problems = agents.check_task_targets(task.agent, spec)
        if problems:
            raise ValidationFailed({"agent": problems})
        kind, payload = "agent_shard", {"agent": task.agent}
    for shard in shards.split_into_shards(spec, size):
        job = jobs.create_job(
            kind=kind,
            payload={"run_id": run.id, "index": shard.index, **payload},
            organization_id=task.organization_id,
            max_attempts=3,
            actor=actor,
        )
        db.session.add(
            ScanShard(
                run_id=run.id,
                index=shard.index,
                job_id=job.id,
                spec=shard.to_dict(),
                targets_total=shard.target_count,
            )
        )
        count += 1
    run.shards_total = count
    audit.record(
        action="discovery.scan",
        actor=actor,
        object_type="DiscoveryTask",
        object_id=task.id,
        label=task.name,
        after={
            "run": run.id,
            "shards": count,
            "targets": spec.target_count,
            "trigger": trigger,
            "agent": task.agent or agents.AUTO,
        },
        organization_id=task.organization_id,
    )
    return run


def cancel_run(*, actor: Admin, run_id: int) -> ScanRun:
    run = db.session.get(ScanRun, run_id)
    if run is None:
        raise NotFound("No such scan.")
    get_task(actor=actor, task_id=run.task_id)
    moved = db.session.execute(
        update(ScanRun)
        .where(ScanRun.id == run.id, ScanRun.status == RunStatus.RUNNING)
        .values(
            status=RunStatus.CANCELLED, finished_at=utcnow(), message=f"cancelled by {actor.login}"
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        db.session.refresh(run)  # what it is now, not the copy loaded before
        raise Conflict(f"Scan #{run.id} has already ended ({run.status.value}).")
    # Shards an agent holds now (sent, not finished): it is told to stop them, on its
    # control queue, once this commits (agentruns records where it stopped).
    with_agents = db.session.execute(
        select(Job.id, Job.payload)
        .where(
            Job.id.in_(select(ScanShard.job_id).where(ScanShard.run_id == run.id)),
            Job.kind == "agent_shard",
            Job.status == JobStatus.RUNNING,
        )
        .with_for_update()
    ).all()
    db.session.execute(
        update(Job)
        .where(
            Job.id.in_(select(ScanShard.job_id).where(ScanShard.run_id == run.id)),
            Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]),
        )
        .values(status=JobStatus.CANCELLED, finished_at=utcnow(), message="scan cancelled")
    )
    db.session.execute(
        update(ScanShard)
        .where(ScanShard.run_id == run.id, ScanShard.status.in_(["pending", "running"]))
        .values(status="cancelled")
    )
    audit.record(
        action="discovery.cancel",
        actor=actor,
        object_type="ScanRun",
        object_id=run.id,
        label=run.task.name,
        before={"status": RunStatus.RUNNING.value},  # the conditional update's condition
        after={"status": RunStatus.CANCELLED.value},
        organization_id=run.task.organization_id,
    )
    held: dict[str, list[int]] = {}
    for job_id, payload in with_agents:
        held.setdefault(str(payload.get("agent", "")), []).append(job_id)
    for name, job_ids in held.items():
        agents.send_cancel(name, job_ids, run.id)
    db.session.expire(run)
    _finalize(run.id)
    return run


def _done_estimate(run: ScanRun) -> float:
    """Targets done plus the in-flight credit of running shards (see ScanShard.in_flight)."""
    done = db.session.execute(
        select(
            func.coalesce(func.sum(ScanShard.targets_done), 0)
            + func.coalesce(func.sum(ScanShard.in_flight), 0.0)
        ).where(ScanShard.run_id == run.id)
    ).scalar_one()
    return float(done)


def progress(run: ScanRun) -> int:
    """Percent of targets done, live (shards report after every batch); targets in flight
    count for the share of their timeout already spent, so a silent range (where every
    target ends by timing out) advances with time, not in steps one timeout long."""
    if run.status != RunStatus.RUNNING:
        return (
            100
            if run.status == RunStatus.SUCCESSFUL
            else min(100, int(100 * run.targets_done / max(1, run.targets_total)))
        )
    return min(99, int(100 * _done_estimate(run) / max(1, run.targets_total)))


def seconds_left(run: ScanRun) -> int | None:
    """Estimated seconds until a running scan ends: the time spent so far, scaled by the
    targets left over the targets done (in-flight credit included). None when not running
    or too early to say (under 1% done or under two seconds in)."""
    if run.status != RunStatus.RUNNING:
        return None
    elapsed = (utcnow() - run.started_at).total_seconds()
    done = _done_estimate(run)
    if elapsed < 2 or done < max(1.0, run.targets_total / 100):
        return None
    return max(0, round(elapsed * (run.targets_total - done) / done))


def shard_rate(task: DiscoveryTask, run_id: int) -> float:
    """This shard's part of the task's rate cap: the cap shared evenly by the run's running
    shards (0: no cap). Workers re-read it after every batch, so within about a second of
    a shard starting or ending the task as a whole is back under its cap."""
    if not task.rate:
        return 0.0
    running = db.session.execute(
        select(func.count())
        .select_from(ScanShard)
        .where(ScanShard.run_id == run_id, ScanShard.status == "running")
    ).scalar_one()
    return float(task.rate) / max(1, int(running))


# --- executing one shard (called by the scan_shard actor through jobs.execute) ----------


def run_shard_job(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    run = db.session.get(ScanRun, int(job.payload["run_id"]))
    shard_row = db.session.execute(
        select(ScanShard).where(
            ScanShard.run_id == job.payload["run_id"], ScanShard.index == job.payload["index"]
        )
    ).scalar_one_or_none()
    if run is None or shard_row is None or run.status != RunStatus.RUNNING:
        return {"message": "scan no longer running"}
    # A retry starts the shard over: its counters restart from zero (never counted twice),
    # except the certificates earlier attempts inserted: they stay, and so does their count.
    inserted = {key: int((shard_row.counts or {}).get(key, 0)) for key in ("new", "assigned")}
    shard_row.status, shard_row.targets_done, shard_row.tls_endpoints, shard_row.counts = (
        "running",
        0,
        0,
        dict(inserted),
    )
    shard_row.in_flight = 0.0
    shard_row.attempts += 1
    task = run.task
    context = results.BatchContext(
        task, run.id, shard_row.id, rule_objects(task), results.anchors(), inserted
    )
    db.session.commit()
    options = sweep.SweepOptions(
        connect_timeout=task.connect_timeout,
        handshake_timeout=task.handshake_timeout,
        connect_concurrency=task.concurrency,
        tls_concurrency=task.concurrency,
        protocols=starttls.parse_protocol_overrides(task.protocols or ""),
    )
    throttle = sweep.Throttle(shard_rate(task, run.id))

    def on_batch(batch: sweep.SweepBatch) -> None:
        ctx.hold()  # a retry elsewhere owns the shard's rows now: store nothing
        results.store_results(context, batch.results)
        db.session.execute(
            update(ScanShard)
            .where(ScanShard.id == context.shard_id)
            .values(
                targets_done=batch.progress.targets_done,
                in_flight=batch.progress.in_flight,
                tls_endpoints=batch.progress.tls_endpoints,
                counts=dict(context.counts),  # committed with the certificates they count
            )
        )
        ctx.progress(int(100 * batch.progress.estimate))  # commits
        throttle.rate = shard_rate(task, run.id)

    def should_stop() -> bool:
        return ctx.is_cancelled()

    summary = sweep.run_shard(
        shards.Shard.from_dict(shard_row.spec),
        options,
        on_batch=on_batch,
        should_stop=should_stop,
        deny=deny_list(),
        lookup=lookup(),
        throttle=throttle,
    )
    counts = {**summary.count_by_outcome, **context.counts}
    ctx.hold()
    finish_shard(
        context.shard_id,
        "cancelled" if summary.stopped else "done",
        summary.progress.targets_done,
        summary.progress.tls_endpoints,
        counts,
    )
    return {
        "message": f"{summary.progress.targets_done} targets, {summary.progress.tls_endpoints} TLS endpoints",
        "counts": counts,
    }


def on_shard_failure(job: Job) -> None:
    """jobs calls this when a shard is out of attempts: record it and maybe end the run."""
    shard = db.session.execute(
        select(ScanShard).where(ScanShard.job_id == job.id)
    ).scalar_one_or_none()
    if shard is not None:
        shard.status, shard.error, shard.finished_at = "failed", job.message[:2000], utcnow()
        shard.in_flight = 0.0
        db.session.flush()
        _finalize(shard.run_id)


def finish_shard(shard_id: int, status: str, done: int, tls: int, counts: dict[str, int]) -> None:
    """Record a shard's end (its worker's or agent's final counts) and maybe end the run."""
    db.session.execute(
        update(ScanShard)
        .where(ScanShard.id == shard_id)
        .values(
            status=status,
            targets_done=done,
            in_flight=0.0,
            tls_endpoints=tls,
            counts=counts,
            finished_at=utcnow(),
        )
    )
    run_id = db.session.execute(
        select(ScanShard.run_id).where(ScanShard.id == shard_id)
    ).scalar_one()
    _finalize(run_id)


def _finalize(run_id: int) -> None:
    """End the run once every shard is final (the run row is locked while deciding).

    FOR NO KEY UPDATE: storing endpoints holds FOR KEY SHARE on the run row (their
    last_run_id's foreign-key check) until its batch commits; a FOR UPDATE here waited for
    it while that batch waited for rows this transaction had written (a certificate both
    batches saw): a deadlock that lost an agent's batch (docs/discovery.md)."""
    run = db.session.execute(
        select(ScanRun).where(ScanRun.id == run_id).with_for_update(key_share=True)
    ).scalar_one()
    rows = db.session.execute(select(ScanShard).where(ScanShard.run_id == run_id)).scalars().all()
    if any(s.status in ("pending", "running") for s in rows) and run.status == RunStatus.RUNNING:
        return
    totals: dict[str, int] = {}
    for s in rows:
        for key, value in (s.counts or {}).items():
            totals[key] = totals.get(key, 0) + int(value)
    run.targets_done = sum(s.targets_done for s in rows)
    run.tls_endpoints = sum(s.tls_endpoints for s in rows)
    run.new_certificates = totals.pop("new", 0)
    run.assigned = totals.pop("assigned", 0)
    run.certificates = db.session.execute(
        select(func.count(func.distinct(Endpoint.certificate_id))).where(
            Endpoint.last_run_id == run_id, Endpoint.certificate_id.is_not(None)
        )
    ).scalar_one()
    run.counts = {
        "outcomes": totals,
        "summary": endpoints.task_summary(run.task_id),
        "flags": endpoints.run_flags(run_id),
    }
    failed = [s for s in rows if s.status == "failed"]
    if run.status == RunStatus.RUNNING:
        run.status = RunStatus.FAILED if failed else RunStatus.SUCCESSFUL
        run.message = (
            f"{len(failed)} of {len(rows)} shards failed: {failed[0].error}"
            if failed
            else f"{run.tls_endpoints} TLS endpoints, {run.certificates} certificates ({run.new_certificates} new)"
        )
        run.finished_at = utcnow()
        _notify_run_end(run)


def _notify_run_end(run: ScanRun) -> None:
    """A run ended: its summary, an alert per endpoint still serving a certificate that
    expired, was revoked or was replaced, and a sweep of the inventory for expiry notices
    (what the run found may be due already)."""
    task = run.task
    found = [
        events.Event(
            type=NotificationType.DISCOVERY_SUMMARY,
            label=f"{task.name}: scan #{run.id} {run.status.value}",
            organization_id=task.organization_id,
            facts={
                "Result": run.message,
                "Targets": f"{run.targets_done} of {run.targets_total}",
                "TLS endpoints": run.tls_endpoints,
                "Certificates": f"{run.certificates} ({run.new_certificates} new, {run.assigned} assigned)",
            },
            path=f"/admin/discovery_tasks/history/?id={task.id}",
        ),
        *stale_served_events(run),
    ]
    events.emit_many(found, actor="discovery")
    notification_sweep.start_sweep(trigger="discovery")


def stale_served_events(run: ScanRun) -> list[events.Event]:
    """ "Expired, revoked or replaced certificate still served": every endpoint this run saw
    presenting a certificate that expired, was revoked, or was renewed or replaced (the
    alert names the endpoint and, for a replaced one, its successor)."""
    now = utcnow()
    rows = db.session.execute(
        select(Endpoint, Certificate)
        .join(Certificate, Certificate.id == Endpoint.certificate_id)
        .where(
            Endpoint.last_run_id == run.id,
            or_(
                Certificate.status.in_(
                    [CertStatus.REVOKED, CertStatus.REPLACED, CertStatus.EXPIRED]
                ),
                Certificate.not_after <= now,
            ),
        )
        .order_by(Endpoint.ip, Endpoint.port)
    ).all()
    found = []
    for endpoint, cert in rows:
        where = f"{endpoint.ip}:{endpoint.port}" + (
            f" ({endpoint.host_name})" if endpoint.host_name else ""
        )
        if cert.status == CertStatus.REVOKED:
            why = f"revoked ({cert.revocation_reason or 'unspecified'})"
        elif cert.status == CertStatus.REPLACED:
            why = "replaced by a newer certificate"
        else:
            why = f"expired on {cert.not_after.strftime('%Y-%m-%d %H:%M UTC')}"
        facts = {
            "Endpoint": where,
            "Certificate": cert.common_name,
            "Serial": cert.serial_hex,
            "Why": why,
        }
        successor = (
            db.session.get(Certificate, cert.replaced_by_id) if cert.replaced_by_id else None
        )
        if successor is not None:
            facts["Replaced by"] = (
                f"{successor.common_name} serial {successor.serial_hex}, expires {successor.not_after.strftime('%Y-%m-%d')}"
            )
        found.append(
            events.Event(
                type=NotificationType.STALE_CERTIFICATE_SERVED,
                label=f"{cert.common_name or cert.fingerprint[:16]} still served on {where}: {why}",
                organization_id=cert.organization_id,
                department_id=cert.department_id,
                cert_type=cert.cert_type.value if cert.cert_type else "",
                profile_id=cert.profile_id,
                certificate_id=cert.id,
                facts=facts,
                path=f"/admin/network_assets/details/?id={endpoint.id}",
            )
        )
    return found
