"""Whoever loses a conditional update is told what the row is now, read afresh, not the
copy they loaded before (the ORM's evaluate sync even set that copy to their own outcome)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import CertType, Delegation, Job, JobStatus, Role
from app.services.ca import authorities
from app.services.errors import Conflict
from app.services.platform import jobs
from app.services.structure import domains
from tests.factories import make_admin, make_org


def meanwhile(app, sql: str, **params) -> None:
    """Another process changes the row between our read and our update."""

    def run() -> None:
        with app.app_context():
            db.session.execute(text(sql), params)
            db.session.commit()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result()


def test_cancelling_a_job_that_just_finished_says_so(app):
    mrao = make_admin("mrao")
    job = jobs.create_job(kind="housekeeping", actor=mrao, send=False)
    db.session.commit()
    assert db.session.get(Job, job.id).status == JobStatus.PENDING  # our copy
    meanwhile(app, "UPDATE jobs SET status = 'done' WHERE id = :id", id=job.id)
    with pytest.raises(Conflict, match=rf"Job #{job.id} has already ended \(done\)"):
        jobs.cancel(actor=mrao, job_id=job.id)


def test_deciding_a_delegation_someone_else_decided_says_what_they_decided(app):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    rao = make_admin("rao", Role.RAO, org=org)
    domain = domains.create_domain(
        actor=rao, name="acme.example", organization_id=org.id, types=[CertType.SSL]
    )
    db.session.commit()
    d_id = domain.delegations[0].id
    assert db.session.get(Delegation, d_id).status.value == "Requested"  # our copy
    meanwhile(app, "UPDATE delegations SET status = 'Rejected' WHERE id = :id", id=d_id)
    with pytest.raises(Conflict, match=r"already decided \(Rejected\)"):
        domains.decide_delegation(actor=mrao, delegation_id=d_id, approve=True)


def test_retiring_a_retired_ca_is_refused(app):
    mrao = make_admin("mrao")
    ca = authorities.create_ca(
        actor=mrao,
        spec=authorities.CaSpec(name="Old", key_type="EC-P256", customer_name="X", country="DE"),
    )
    db.session.commit()
    authorities.retire_ca(actor=mrao, ca_id=ca.id)
    db.session.commit()
    with pytest.raises(Conflict, match="'Old' is already retired"):
        authorities.retire_ca(actor=mrao, ca_id=ca.id)


def test_cancelling_a_scan_that_just_ended_says_how_it_ended(app):
    from app.models import ScanRun
    from app.services.discovery import runs, tasks

    mrao = make_admin("mrao")
    task = tasks.create_task(
        actor=mrao, data=tasks.TaskData(name="Lab", ranges="127.0.0.1", ports="1")
    )
    run = runs.start_run(actor=mrao, task_id=task.id)
    db.session.commit()  # no worker runs here: the scan stays Running
    assert db.session.get(ScanRun, run.id).status.value == "Running"  # our copy
    meanwhile(app, "UPDATE scan_runs SET status = 'Successful' WHERE id = :id", id=run.id)
    with pytest.raises(Conflict, match=rf"Scan #{run.id} has already ended \(Successful\)"):
        runs.cancel_run(actor=mrao, run_id=run.id)
