"""Key generation for portal registrations in batches: one job run packages the
registrations queued behind it, each person still gets their own PKCS#12, and one bad
registration fails alone. The progress page reloads later when many are queued ahead."""

from __future__ import annotations

import re

from cryptography.hazmat.primitives.serialization import pkcs12
from flask.testing import FlaskClient
from sqlalchemy import select

from app.actors.persons import portal_enrollment
from app.extensions import db
from app.models import EnrollmentStatus, Job, JobStatus, PortalEnrollment
from tests.integration.portal_world import (
    P12_PASSWORD,
    World,
    add_person,
    invite,
    make_world,
    register,
    token_of,
)


def _register_many(client: FlaskClient, world: World, count: int) -> list[str]:
    pages = []
    for i in range(count):
        person = add_person(world, email=f"p{i}@acme.example", first_name="Pat", last_name=f"N{i}")
        pages.append(register(client, person.email, invite(world, person)).headers["Location"])
    return pages


def _enrollments() -> list[PortalEnrollment]:
    db.session.expire_all()
    return list(
        db.session.execute(select(PortalEnrollment).order_by(PortalEnrollment.id)).scalars()
    )


def _download(client: FlaskClient, progress: str) -> bytes:
    page = client.get(progress).get_data(as_text=True)
    assert 'data-status="ready"' in page, page
    action = re.search(r'action="(/enroll/download/[^"]+)"', page)
    assert action
    response = client.post(action.group(1), data={"csrf_token": token_of(page)})
    assert response.status_code == 200
    return bytes(response.data)


def test_one_job_run_packages_the_registrations_queued_behind_it(app, client):
    world = make_world()
    pages = _register_many(client, world, 4)
    enrs = _enrollments()
    # A job queued before batching names its registration alone: it is not adopted.
    older = db.session.get(Job, enrs[3].job_id)
    older.payload = {"enrollment_id": enrs[3].id}
    db.session.commit()

    portal_enrollment(enrs[0].job_id)  # what a worker does with the first message
    enrs = _enrollments()
    first = db.session.get(Job, enrs[0].job_id)
    assert first.status == JobStatus.DONE, first.message
    assert first.payload["enrollment_ids"] == [e.id for e in enrs[:3]]
    assert first.payload["adopted_jobs"] == [enrs[1].job_id, enrs[2].job_id]
    for enr in enrs[1:3]:
        adopted = db.session.get(Job, enr.job_id)
        assert adopted.status == JobStatus.DONE and adopted.message == f"done with job #{first.id}"
    assert [e.status for e in enrs] == [EnrollmentStatus.READY] * 3 + [EnrollmentStatus.PENDING]
    # The adopted jobs' own messages find nothing left to do; the older job runs its own.
    portal_enrollment(enrs[1].job_id)
    assert db.session.get(Job, enrs[1].job_id).attempts == 0
    portal_enrollment(enrs[3].job_id)
    assert _enrollments()[3].status == EnrollmentStatus.READY

    # Each person downloads their own certificate, under their own password.
    for i, page in enumerate(pages):
        loaded = pkcs12.load_pkcs12(_download(client, page), P12_PASSWORD.encode())
        assert loaded.key is not None and loaded.cert is not None
        assert loaded.cert.certificate.subject.rfc4514_string() == f"CN=p{i}@acme.example"
        assert loaded.key.public_key() == loaded.cert.certificate.public_key()
    assert len({e.certificate_id for e in _enrollments()}) == 4


def test_a_bad_registration_fails_alone_and_gives_up_after_its_attempts(app, client):
    world = make_world()
    pages = _register_many(client, world, 3)
    enrs = _enrollments()
    enrs[1].sealed_password = b"not sealed under any key"  # this one cannot be packaged
    db.session.commit()

    portal_enrollment(enrs[0].job_id)
    enrs = _enrollments()
    job = db.session.get(Job, enrs[0].job_id)
    assert job.status == JobStatus.PENDING and job.attempts == 1
    assert "1 of 3 registrations failed" in job.message and f"#{enrs[1].id}" in job.message
    assert [e.status for e in enrs] == [
        EnrollmentStatus.READY,
        EnrollmentStatus.PENDING,
        EnrollmentStatus.READY,
    ]
    # The retries (a worker takes them after their delay) fail the same way; out of
    # attempts, the person waiting sees the failure. The others keep their files.
    portal_enrollment(job.id)
    portal_enrollment(job.id)
    enrs = _enrollments()
    db.session.refresh(job)
    assert job.status == JobStatus.FAILED and job.attempts == 3
    assert enrs[1].status == EnrollmentStatus.FAILED and enrs[1].sealed_password is None
    assert 'data-status="failed"' in client.get(pages[1]).get_data(as_text=True)
    for page in (pages[0], pages[2]):
        assert pkcs12.load_pkcs12(_download(client, page), P12_PASSWORD.encode()).key is not None


def test_the_progress_page_reloads_later_with_registrations_queued_ahead(app, client):
    world = make_world()
    pages = _register_many(client, world, 11)
    first = client.get(pages[0]).get_data(as_text=True)
    last = client.get(pages[-1]).get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="2">' in first
    # Ten ahead: 2 s and 1 s for every five.
    assert '<meta http-equiv="refresh" content="4">' in last
    assert "refreshes itself every 4 seconds" in last
    # One job run takes ten (the batch's bound): the eleventh waits with none ahead.
    portal_enrollment(_enrollments()[0].job_id)
    ready = client.get(pages[-2]).get_data(as_text=True)
    assert 'data-status="ready"' in ready and "http-equiv" not in ready
    assert '<meta http-equiv="refresh" content="2">' in client.get(pages[-1]).get_data(as_text=True)
