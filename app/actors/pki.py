"""PKI actors: issuance batches, CRL refresh, expiry and auto-renew sweeps."""

from __future__ import annotations

from typing import Any

import dramatiq

from app.extensions import db
from app.models import Job
from app.runtime.broker import broker  # noqa: F401  (declares actors on the configured broker)
from app.services.ca import crl
from app.services.certificates import approvals, inventory, issuance, renewal
from app.services.platform import jobs


def _issue(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    ids = [int(i) for i in job.payload.get("request_ids", [])]
    # A small batch takes over the other small issuance jobs waiting (concurrent REST API
    # enrolls make one job each), up to the smallest batch size: one transaction, one
    # audit-chain lock and one job's fixed cost for all of them (docs/benchmarks.md).
    more, adopted = jobs.adopt_pending(
        kind="issue_certificates",
        into=job.id,
        key="request_ids",
        room=approvals.LINTED_BATCH_SIZE - len(ids),
    )
    try:
        result = issuance.issue_requests(ids + [int(i) for i in more])
    except issuance.IssuanceRaced as exc:
        db.session.rollback()  # the adopted jobs are pending again and run on their own
        return {"message": f"nothing stored: {exc}"}
    summary = result.summary()
    if adopted:
        summary += f" (with jobs {', '.join(f'#{a}' for a in adopted)})"
    return {
        "message": summary,
        "issued": result.issued,
        "failed": result.failed,
        "skipped": result.skipped,
        "adopted_jobs": adopted,
    }


@dramatiq.actor(queue_name="issuance", max_retries=0, time_limit=600_000)
def issue_certificates(job_id: int) -> None:
    jobs.execute(job_id, _issue)


def _crl_refresh(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    result = crl.refresh_crls()
    message = f"{len(result.published)} CRLs re-published"
    if result.failed:
        message += f", {len(result.failed)} failed: " + "; ".join(result.failed.values())
    return {"message": message, "cas": result.published, "failed": result.failed}


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def refresh_crls(job_id: int) -> None:
    jobs.execute(job_id, _crl_refresh)


def _lifecycle(job: Job, ctx: jobs.JobContext) -> dict[str, Any]:
    expired = inventory.expire_sweep()
    renewed = renewal.auto_renew_sweep()
    return {
        "message": f"{expired} certificates expired, {len(renewed)} auto-renewals requested",
        "renewal_requests": renewed,
    }


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=1_800_000)
def certificate_lifecycle(job_id: int) -> None:
    jobs.execute(job_id, _lifecycle)


jobs.register_kind(
    "issue_certificates",
    "Issue approved certificates",
    issue_certificates,
    on_failure=issuance.issuance_job_failed,
)
jobs.register_kind("crl_refresh", "Re-publish CRLs before they expire", refresh_crls, every=3600)
jobs.register_kind(
    "certificate_lifecycle",
    "Expire certificates and request auto-renewals",
    certificate_lifecycle,
    every=3600,
)
