"""Decisions on certificate requests: approve (scope, four eyes; twice approves once),
decline with a reason, and queue the approved ones for issuance in batches.

Each decision is a conditional update from Requested, so two admins, two clicks or a
retried job decide a request once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select, update

from app.extensions import db
from app.models import (
    Admin,
    CertificateProfile,
    CertificateRequest,
    LintMode,
    PortalEnrollment,
    RequestStatus,
)
from app.models.notifications import NotificationType
from app.models.types import utcnow
from app.services import audit
from app.services.errors import Conflict, DomainError, Forbidden
from app.services.notifications import events
from app.services.platform import jobs
from app.services.scope import Actor, scope_of


def get_request(*, actor: Admin, request_id: int) -> CertificateRequest:
    req = db.session.get(CertificateRequest, request_id)
    if req is None or not scope_of(actor).covers(req.organization_id, req.department_id):
        raise audit.not_found(
            actor=actor, what="certificate request", model=CertificateRequest, object_id=request_id
        )
    return req


def mark_approved(ids: list[int], *, actor: Actor, message: str) -> list[int]:
    """Conditional update Requested -> Approved; returns the ids that this call approved."""
    approved = []
    for request_id in ids:
        result = db.session.execute(
            update(CertificateRequest)
            .where(
                CertificateRequest.id == request_id,
                CertificateRequest.status == RequestStatus.REQUESTED,
            )
            .values(
                status=RequestStatus.APPROVED,
                decided_by_id=actor.id,
                decided_at=utcnow(),
                decision_message=message,
            )
        )
        if result.rowcount == 1:
            approved.append(request_id)
            req = db.session.get(CertificateRequest, request_id)
            assert req is not None
            audit.record(
                action="request.approve",
                actor=actor,
                object_type="CertificateRequest",
                object_id=request_id,
                label=req.common_name,
                before={"status": "Requested"},
                after={"status": "Approved"},
                message=message,
                organization_id=req.organization_id,
                department_id=req.department_id,
            )
            facts = (
                {"Approved by": actor.login, "Message": message}
                if message
                else {"Approved by": actor.login}
            )
            events.emit(
                events.request_event(NotificationType.REQUEST_APPROVED, req, **facts), actor=actor
            )
    return approved


def final_state(request_id: int) -> str:
    """What a request is now, read afresh (not the copy loaded before a conditional update
    that lost a race): "Request #7 was declined by bob; it is Declined"."""
    row = db.session.execute(
        select(CertificateRequest.status, Admin.login)
        .outerjoin(Admin, Admin.id == CertificateRequest.decided_by_id)
        .where(CertificateRequest.id == request_id)
    ).one()
    status = RequestStatus(row.status)
    if row.login is None or status == RequestStatus.REQUESTED:
        return f"Request #{request_id} is {status.value}"
    decided = "declined" if status == RequestStatus.DECLINED else "approved"
    return f"Request #{request_id} was {decided} by {row.login}; it is {status.value} now"


def check_decider(actor: Admin, req: CertificateRequest) -> None:
    if not scope_of(actor).may(req.cert_type, req.organization_id, req.department_id):
        raise Forbidden(
            f"You may not approve {req.cert_type.label} requests of this organization/department."
        )
    if req.profile.four_eyes and req.requester_id == actor.id:
        raise Forbidden(
            f"The profile '{req.profile.name}' requires four eyes: someone other than the requester must approve."
        )


def approve(*, actor: Admin, request_ids: Sequence[int], message: str = "") -> list[int]:
    """Approve requests (each in scope, four eyes when the profile says so) and queue
    their issuance as one batch. Approving twice issues one certificate: the second
    approval finds the request no longer Requested.

    Raises:
        NotFound, Forbidden: outside the approver's scope or four-eyes violation.
        Conflict: a single request that is not Requested any more.
    """
    reqs = [get_request(actor=actor, request_id=i) for i in request_ids]
    for req in reqs:
        check_decider(actor, req)
    approved = mark_approved([r.id for r in reqs], actor=actor, message=message.strip())
    if len(reqs) == 1 and not approved:
        raise Conflict(f"{final_state(reqs[0].id)}; nothing to approve.")
    if approved:
        queue_issuance(approved)
    return approved


def decline(*, actor: Admin, request_id: int, message: str) -> CertificateRequest:
    req = get_request(actor=actor, request_id=request_id)
    check_decider(actor, req)
    if not message.strip():
        raise DomainError(
            "Say why the request is declined (the requester is told).", field="message"
        )
    result = db.session.execute(
        update(CertificateRequest)
        .where(
            CertificateRequest.id == req.id, CertificateRequest.status == RequestStatus.REQUESTED
        )
        .values(
            status=RequestStatus.DECLINED,
            decided_by_id=actor.id,
            decided_at=utcnow(),
            decision_message=message.strip(),
        )
    )
    if result.rowcount != 1:
        raise Conflict(f"{final_state(req.id)}; it cannot be declined.")
    audit.record(
        action="request.decline",
        actor=actor,
        object_type="CertificateRequest",
        object_id=req.id,
        label=req.common_name,
        before={"status": "Requested"},
        after={"status": "Declined"},
        message=message.strip(),
        organization_id=req.organization_id,
        department_id=req.department_id,
    )
    events.emit(
        events.request_event(
            NotificationType.REQUEST_DECLINED,
            req,
            **{"Declined by": actor.login, "Reason": message.strip()},
        ),
        actor=actor,
    )
    db.session.expire(req)
    return req


def retry(*, actor: Admin, request_ids: Sequence[int]) -> list[int]:
    """Queue Failed requests for issuance again (Failed -> Approved, one conditional update
    each, audited with the failure it clears); the ids this call moved.

    Retrying is not a new decision, so four eyes does not apply; the actor needs the
    privilege to approve the request's type in its organization/department. Idempotent:
    a request already Approved again (being issued) or Issued is left alone.

    Raises:
        NotFound, Forbidden: outside the actor's scope or privileges.
        Conflict: a single request that is neither Failed nor already retried; any
            request of a portal registration (its key and PKCS#12 are made only by the
            portal's flow, app/services/persons/registration.py): nothing is retried.
    """
    reqs = [get_request(actor=actor, request_id=i) for i in request_ids]
    for req in reqs:
        if not scope_of(actor).may(req.cert_type, req.organization_id, req.department_id):
            raise Forbidden(
                f"You may not retry {req.cert_type.label} requests of this organization/department."
            )
    portal = (
        db.session.execute(
            select(PortalEnrollment.request_id).where(
                PortalEnrollment.request_id.in_([req.id for req in reqs])
            )
        )
        .scalars()
        .all()
    )
    if portal:
        ids = ", ".join(f"#{i}" for i in sorted(portal))
        raise Conflict(
            f"Request(s) {ids} came from the enrollment portal: the key and the PKCS#12 are made "
            "only in the person's registration, whose certificate password is gone once it "
            "failed. Nothing was retried; resend the person's invitation (Persons > Resend "
            "invitation) so they register again."
        )
    retried = []
    for req in reqs:
        reason = req.failure_reason
        result = db.session.execute(
            update(CertificateRequest)
            .where(
                CertificateRequest.id == req.id, CertificateRequest.status == RequestStatus.FAILED
            )
            .values(status=RequestStatus.APPROVED, failure_reason="")
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            continue
        retried.append(req.id)
        audit.record(
            action="request.retry",
            actor=actor,
            object_type="CertificateRequest",
            object_id=req.id,
            label=req.common_name,
            before={"status": RequestStatus.FAILED.value, "failure_reason": reason},
            after={"status": RequestStatus.APPROVED.value, "failure_reason": ""},
            organization_id=req.organization_id,
            department_id=req.department_id,
        )
        db.session.expire(req)
    if len(reqs) == 1 and not retried:
        status = db.session.execute(
            select(CertificateRequest.status).where(CertificateRequest.id == reqs[0].id)
        ).scalar_one()
        if RequestStatus(status) not in (RequestStatus.APPROVED, RequestStatus.ISSUED):
            raise Conflict(
                f"Request #{reqs[0].id} is {RequestStatus(status).value}; only Failed requests "
                "can be retried."
            )
    if retried:
        queue_issuance(retried)
    return retried


# Requests per issuance job (one dramatiq message each). A batch costs about 7 ms of fixed
# work (job claim and finish, a dozen statements, two commits) on top of its certificates:
# 500 keeps that near 15 us a certificate, 0.1 to 0.3 s of work a batch. A profile that
# lints every certificate spends about 8 ms on each, so its batches are smaller: 50 is
# 0.4 s of work, and a large approval still spreads over every worker (docs/benchmarks.md).
BATCH_SIZE = 500
LINTED_BATCH_SIZE = 50


def queue_issuance(request_ids: Sequence[int], *, batch_size: int | None = None) -> list[int]:
    """One issuance job (one message) per batch of approved requests, sent after commit.

    Without ``batch_size``, requests of profiles that lint every certificate go in batches
    of LINTED_BATCH_SIZE, the others in batches of BATCH_SIZE.
    """
    ids = list(request_ids)
    if batch_size is not None:
        groups = [(ids, batch_size)]
    else:
        linted = _linting_every_certificate(ids)
        groups = [
            ([i for i in ids if i not in linted], BATCH_SIZE),
            ([i for i in ids if i in linted], LINTED_BATCH_SIZE),
        ]
    payloads = [
        {"request_ids": group[start : start + size]}
        for group, size in groups
        for start in range(0, len(group), size)
    ]
    return jobs.create_jobs(kind="issue_certificates", payloads=payloads, max_attempts=3)


def _linting_every_certificate(request_ids: list[int]) -> set[int]:
    """The requests whose profile lints every certificate."""
    linted: set[int] = set()
    for start in range(0, len(request_ids), 5000):
        chunk = request_ids[start : start + 5000]
        linted.update(
            db.session.execute(
                select(CertificateRequest.id)
                .join(CertificateProfile, CertificateProfile.id == CertificateRequest.profile_id)
                .where(
                    CertificateRequest.id.in_(
                        bindparam("ids", chunk, expanding=True, literal_execute=True)
                    ),
                    CertificateProfile.lint_mode == LintMode.EVERY,
                )
            ).scalars()
        )
    return linted
