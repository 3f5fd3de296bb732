"""A request whose issuance fails for good is Failed with the reason, shown in the console,
retried through a service (scoped, audited, idempotent); race losers hear the true state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from app.actors.pki import issue_certificates
from app.extensions import db
from app.models import (
    Admin,
    AuditEvent,
    CertificateRequest,
    CertType,
    Job,
    JobStatus,
    RequestStatus,
    Role,
)
from app.models.types import utcnow
from app.services.certificates import approvals
from app.services.errors import Conflict, Forbidden, NotFound
from app.services.platform import scheduling
from tests.conftest import csrf_token, drain, login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)

BROKEN = "CREATE TRIGGER cw_test_broken BEFORE INSERT ON certificates BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END"


@pytest.fixture
def world(app):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin", state="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    _, _, profile = make_pki()
    return {"mrao": mrao, "org": org, "profile": profile}


def approved_request(world, cn="www.acme.example"):
    req, _ = request_certificate(
        by=world["mrao"], org=world["org"], profile=world["profile"], cn=cn, approve=True
    )
    job = db.session.execute(select(Job).order_by(Job.id.desc())).scalars().first()
    return req, job


def run_until_out_of_attempts(job_id: int) -> None:
    """Each attempt as a worker runs it (the actor's own function), until the job gives up."""
    while db.session.get(Job, job_id).status != JobStatus.FAILED:
        db.session.execute(
            text("UPDATE jobs SET status = 'pending' WHERE id = :id"), {"id": job_id}
        )
        db.session.commit()  # the retry's delayed message is not waited for
        issue_certificates.fn(job_id)
        db.session.expire_all()


def audit_of(action: str, object_id: int) -> AuditEvent:
    return (
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.object_id == str(object_id))
            .order_by(AuditEvent.seq.desc())
        )
        .scalars()
        .first()
    )


def test_a_job_out_of_attempts_fails_its_requests_with_the_reason(world):
    req, job = approved_request(world)
    db.session.execute(text(BROKEN))
    db.session.commit()
    run_until_out_of_attempts(job.id)
    db.session.refresh(req)
    assert req.status == RequestStatus.FAILED
    assert req.failure_reason.startswith(f"Issuance job #{job.id} failed after 3 attempts: ")
    assert "disk quota exceeded" in req.failure_reason
    event = audit_of("request.fail", req.id)
    assert event.actor == "system"
    assert event.before == {"status": "Approved", "failure_reason": ""}
    assert event.after == {"status": "Failed", "failure_reason": req.failure_reason}


def test_a_job_whose_worker_died_on_every_attempt_fails_its_requests(world):
    req, job = approved_request(world)
    db.session.execute(
        text(
            "UPDATE jobs SET status = 'running', attempts = max_attempts, heartbeat_at = :t WHERE id = :id"
        ),
        {"t": utcnow() - timedelta(hours=1), "id": job.id},
    )
    db.session.commit()
    assert scheduling.recover()["failed"] == 1
    db.session.refresh(req)
    assert req.status == RequestStatus.FAILED
    assert "the worker stopped responding on each of 3 attempts" in req.failure_reason


def test_console_shows_failed_with_reason_and_retries_once(world, client, stub_worker):
    req, job = approved_request(world)
    db.session.execute(text(BROKEN))
    db.session.commit()
    run_until_out_of_attempts(job.id)
    login(client, "mrao", PASSWORD)
    listing = client.get("/admin/ssl_requests/").get_data(as_text=True)
    assert "Failed" in listing and "disk quota exceeded" in listing
    assert 'action="/admin/ssl_requests/retry/"' in listing
    details = client.get(f"/admin/ssl_requests/details/?id={req.id}").get_data(as_text=True)
    assert "disk quota exceeded" in details and ">Retry</button>" in details

    db.session.execute(text("DROP TRIGGER cw_test_broken"))  # the disk was cleaned up
    token = csrf_token(client, "/admin/ssl_requests/")
    page = client.post(
        "/admin/ssl_requests/retry/",
        data={"csrf_token": token, "id": req.id},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert f"Request #{req.id} is queued for issuance again." in page
    again = client.post(
        "/admin/ssl_requests/retry/",
        data={"csrf_token": token, "id": req.id},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "nothing to retry" in again
    drain(stub_worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.ISSUED and req.certificate_id is not None
    retries = (
        db.session.execute(select(AuditEvent).where(AuditEvent.action == "request.retry"))
        .scalars()
        .all()
    )
    assert len(retries) == 1 and retries[0].actor == "mrao"
    assert retries[0].before["status"] == "Failed"
    assert "disk quota exceeded" in retries[0].before["failure_reason"]
    assert retries[0].after == {"status": "Approved", "failure_reason": ""}
    jobs = db.session.execute(select(Job).where(Job.kind == "issue_certificates")).scalars().all()
    assert len(jobs) == 2  # the failed one and one retry, not two


def test_retry_is_scoped_and_only_for_failed_requests(world):
    req, _ = approved_request(world)
    outsider = make_admin("outsider", Role.RAO, org=make_org("Other", city="Paris"))
    with pytest.raises(NotFound):
        approvals.retry(actor=outsider, request_ids=[req.id])
    db.session.rollback()
    clients_only = make_admin("clients", Role.RAO, org=world["org"], privileges=[CertType.CLIENT])
    with pytest.raises(Forbidden, match="You may not retry SSL requests"):
        approvals.retry(actor=clients_only, request_ids=[req.id])
    db.session.rollback()
    pending, _ = request_certificate(
        by=world["mrao"], org=world["org"], profile=world["profile"], cn="new.acme.example"
    )
    with pytest.raises(Conflict, match=f"Request #{pending.id} is Requested; only Failed"):
        approvals.retry(actor=world["mrao"], request_ids=[pending.id])
    db.session.rollback()
    assert approvals.retry(actor=world["mrao"], request_ids=[req.id]) == []  # being issued


def test_bulk_retry_action(world, client):
    failed = []
    for n in range(2):
        req, job = approved_request(world, cn=f"host{n}.acme.example")
        db.session.execute(
            text(
                "UPDATE jobs SET status = 'running', attempts = max_attempts, heartbeat_at = :t WHERE id = :id"
            ),
            {"t": utcnow() - timedelta(hours=1), "id": job.id},
        )
        db.session.commit()
        failed.append(req.id)
    scheduling.recover()
    login(client, "mrao", PASSWORD)
    token = csrf_token(client, "/admin/ssl_requests/")
    page = client.post(
        "/admin/ssl_requests/action/",
        data={"csrf_token": token, "action": "retry", "rowid": [str(i) for i in failed]},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "2 failed request(s) queued for issuance again." in page
    statuses = (
        db.session.execute(
            select(CertificateRequest.status).where(CertificateRequest.id.in_(failed))
        )
        .scalars()
        .all()
    )
    assert statuses == [RequestStatus.APPROVED] * 2


@pytest.mark.parametrize("winner", ["approve", "decline"])
@pytest.mark.parametrize("loser", ["approve", "decline"])
def test_the_loser_of_a_decision_race_is_told_the_final_state(app, world, winner, loser):
    req, _ = request_certificate(
        by=world["mrao"], org=world["org"], profile=world["profile"], cn="race.acme.example"
    )
    bob_id = make_admin("bob").id
    # Alice has the request open: her copy says Requested.
    assert db.session.get(CertificateRequest, req.id).status == RequestStatus.REQUESTED

    def bob_decides() -> None:  # another web process, between alice's read and her update
        with app.app_context():
            bob = db.session.get(Admin, bob_id)
            if winner == "decline":
                approvals.decline(actor=bob, request_id=req.id, message="not ours")
            else:
                approvals.approve(actor=bob, request_ids=[req.id])
            db.session.commit()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(bob_decides).result()
    with pytest.raises(Conflict) as lost:
        if loser == "approve":
            approvals.approve(actor=world["mrao"], request_ids=[req.id])
        else:
            approvals.decline(actor=world["mrao"], request_id=req.id, message="no")
    word, state = ("declined", "Declined") if winner == "decline" else ("approved", "Approved")
    tail = "nothing to approve." if loser == "approve" else "it cannot be declined."
    assert str(lost.value) == f"Request #{req.id} was {word} by bob; it is {state} now; {tail}"


def test_cli_retries_a_failed_request(app, world):
    req, job = approved_request(world)
    db.session.execute(
        text(
            "UPDATE jobs SET status = 'running', attempts = max_attempts, heartbeat_at = :t WHERE id = :id"
        ),
        {"t": utcnow() - timedelta(hours=1), "id": job.id},
    )
    db.session.commit()
    scheduling.recover()
    result = app.test_cli_runner().invoke(args=["cert", "retry", str(req.id)])
    assert result.exit_code == 0 and f"Queued 1 request(s) again: {req.id}" in result.output
    assert audit_of("request.retry", req.id).actor == "mrao"  # the operator it acts as
    db.session.refresh(req)
    assert req.status == RequestStatus.APPROVED
