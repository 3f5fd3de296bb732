"""ACME's background work straight from dramatiq messages (app.actors.acme): a challenge's
validation and an order's issuance run without a job row, are safe to run twice (one
after the other, and at once on PostgreSQL), crash into a verdict instead of hanging, and
a lost message is sent again by the scheduler."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AcmeChallenge,
    AcmeOrder,
    AuditEvent,
    Certificate,
    CertificateRequest,
    Job,
    RequestStatus,
)
from app.models.types import utcnow
from app.services.acme import dispatch, external_keys
from tests.acme_client import thumbprint
from tests.conftest import _forget_earlier_messages, drain
from tests.dnsbed import dns_server
from tests.factories import make_admin, make_domain, make_org, make_pki
from tests.integration.test_acme import (
    ERR,
    ChallengeServer,
    csr_for,
    external_keys_bytes,
    registered,
    validate,
    world,  # noqa: F401  (the fixture)
)


def _events(action: str, object_id: int | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == str(object_id))
    return list(db.session.execute(query).scalars())


def _respond(acme, world, order):  # noqa: F811  (a world, the fixture's or another)
    """Serve the http-01 answer and respond to the challenge (its message is queued, not
    run); the challenge row."""
    authz = acme.post(order["authorizations"][0], None).get_json()
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    world["responder"].answers[chall["token"]] = f"{chall['token']}.{thumbprint(acme.key)}"
    assert acme.post(chall["url"], {}).get_json()["status"] == "processing"
    return db.session.get(AcmeChallenge, int(chall["url"].rsplit("/", 1)[-1]))


@contextmanager
def _lost(worker):
    """The messages sent inside the block are lost (a broker restarted without its queues,
    an embedded worker's process that died): the worker is paused meanwhile, and the queues
    are emptied before it resumes."""
    from app.runtime.broker import broker

    worker.pause()
    try:
        yield
    finally:
        _forget_earlier_messages(broker)
        worker.resume()


def _order_id(created) -> int:
    return int(created.headers["Location"].rsplit("/", 1)[-1])


def test_an_order_is_validated_and_issued_from_messages_without_job_rows(client, world):  # noqa: F811  (the fixture imported above)
    jobs_before = db.session.execute(select(func.count()).select_from(Job)).scalar_one()
    acme = registered(client, world)
    created = acme.order("www.acme.example")
    order = created.get_json()
    validate(acme, world, order)
    csr, _ = csr_for("www.acme.example")
    finalized = acme.post(order["finalize"], {"csr": csr})
    assert finalized.get_json()["status"] == "processing"
    assert finalized.headers["Retry-After"] == "1"
    # Sent when finalize committed: the order row says so, and no issuance job exists.
    assert db.session.get(AcmeOrder, _order_id(created)).dispatched_at is not None
    drain(world["worker"])
    assert acme.post(created.headers["Location"], None).get_json()["status"] == "valid"
    assert db.session.get(AcmeOrder, _order_id(created)).status == "valid"  # stored too
    assert db.session.execute(select(func.count()).select_from(Job)).scalar_one() == jobs_before
    assert len(_events("acme.challenge.validate")) == 1
    assert len(_events("certificate.issue")) == 1


def test_messages_run_twice_record_one_verdict_and_issue_one_certificate(client, world):  # noqa: F811  (the fixture imported above)
    from app.actors.acme import issue_order, validate_challenge

    acme = registered(client, world)
    created = acme.order("www.acme.example")
    chall = _respond(acme, world, created.get_json())
    # The queued message (the worker runs it meanwhile), and the same message twice more.
    validate_challenge.fn(chall.id)
    validate_challenge.fn(chall.id)
    drain(world["worker"])
    assert db.session.get(AcmeChallenge, chall.id).status == "valid"
    assert len(_events("acme.challenge.validate", chall.id)) == 1
    checked = len(world["responder"].hits)
    validate_challenge.fn(chall.id)  # once decided, a run makes no connection at all
    assert len(world["responder"].hits) == checked
    assert len(_events("acme.challenge.validate", chall.id)) == 1

    order = acme.post(created.headers["Location"], None).get_json()
    csr, _ = csr_for("www.acme.example")
    acme.post(order["finalize"], {"csr": csr})
    issue_order.fn(_order_id(created))
    issue_order.fn(_order_id(created))
    drain(world["worker"])
    req = db.session.get(AcmeOrder, _order_id(created)).request_id
    certs = db.session.execute(select(Certificate).where(Certificate.request_id == req)).all()
    assert len(certs) == 1 and len(_events("certificate.issue")) == 1
    assert acme.post(created.headers["Location"], None).get_json()["status"] == "valid"


def test_a_lost_message_is_sent_again_by_the_scheduler(client, world):  # noqa: F811  (the fixture imported above)
    from app.services.platform import scheduling

    acme = registered(client, world)
    created = acme.order("www.acme.example")
    with _lost(world["worker"]):
        chall = _respond(acme, world, created.get_json())
    drain(world["worker"])
    assert db.session.get(AcmeChallenge, chall.id).status == "processing"

    # Not yet: the message may still be on its way.
    assert dispatch.resend_lost() == 0
    db.session.commit()
    # Once it has gone unanswered for RESEND_AFTER, the scheduler's pass sends it again.
    later = utcnow() + dispatch.RESEND_AFTER + timedelta(seconds=1)
    assert scheduling.tick(later)["acme_messages"] == 1
    drain(world["worker"])
    assert db.session.get(AcmeChallenge, chall.id).status == "valid"

    order = acme.post(created.headers["Location"], None).get_json()
    assert order["status"] == "ready"
    csr, _ = csr_for("www.acme.example")
    with _lost(world["worker"]):
        acme.post(order["finalize"], {"csr": csr})
    drain(world["worker"])
    assert acme.post(created.headers["Location"], None).get_json()["status"] == "processing"
    later = utcnow() + dispatch.RESEND_AFTER + timedelta(seconds=1)
    assert scheduling.tick(later)["acme_messages"] == 1
    drain(world["worker"])
    assert acme.post(created.headers["Location"], None).get_json()["status"] == "valid"
    # Sent once more, nothing is left to send.
    assert dispatch.resend_lost(utcnow() + 2 * dispatch.RESEND_AFTER) == 0


def test_an_embedded_worker_starting_sends_every_processing_message_again(client, world):  # noqa: F811  (the fixture imported above)
    from app.services.platform import scheduling

    acme = registered(client, world)
    with _lost(world["worker"]):  # the embedded queue died with its process
        chall = _respond(acme, world, acme.order("www.acme.example").get_json())
    drain(world["worker"])
    assert db.session.get(AcmeChallenge, chall.id).status == "processing"
    assert scheduling.resend_pending() >= 1
    drain(world["worker"])
    assert db.session.get(AcmeChallenge, chall.id).status == "valid"


def test_a_validation_that_crashes_makes_the_challenge_invalid(app, client, world):  # noqa: F811  (the fixture imported above)
    acme = registered(client, world)
    created = acme.order("www.acme.example")
    app.config["CW_ACME_RESOLVER"] = "127.0.0.1:fifty-three"  # the lookup raises ValueError
    chall = _respond(acme, world, created.get_json())
    drain(world["worker"])
    seen = db.session.get(AcmeChallenge, chall.id)
    assert seen.status == "invalid" and seen.authorization.status == "invalid"
    assert seen.error["type"] == ERR + "serverInternal"
    assert "validation failed inside the server: ValueError" in seen.error["detail"]
    assert acme.post(created.headers["Location"], None).get_json()["status"] == "invalid"
    (event,) = _events("acme.challenge.validate", chall.id)
    assert event.after["status"] == "invalid" and "ValueError" in event.after["detail"]


def test_retry_after_on_what_the_server_is_still_working_on(client, world):  # noqa: F811  (the fixture imported above)
    """RFC 8555 §8.2 and §7.4: a challenge being validated, its authorization, an order
    being issued carry Retry-After (1 s while the work is fresh, longer as it waits); what
    is decided carries none."""
    from sqlalchemy import update

    acme = registered(client, world)
    created = acme.order("www.acme.example")
    order = created.get_json()
    authz_url = order["authorizations"][0]
    authz = acme.post(authz_url, None)
    assert "Retry-After" not in authz.headers  # pending: the client has not responded yet
    chall = next(c for c in authz.get_json()["challenges"] if c["type"] == "http-01")
    world["responder"].answers[chall["token"]] = f"{chall['token']}.{thumbprint(acme.key)}"
    with _lost(world["worker"]):  # held back, so that it stays processing meanwhile
        responded = acme.post(chall["url"], {})
    assert responded.get_json()["status"] == "processing"
    assert responded.headers["Retry-After"] == "1"
    assert acme.post(authz_url, None).headers["Retry-After"] == "1"
    # A queue 30 s long: clients are told to wait longer (half the wait so far, at most 10 s).
    db.session.execute(
        update(AcmeChallenge)
        .where(AcmeChallenge.id == int(chall["url"].rsplit("/", 1)[-1]))
        .values(dispatched_at=utcnow() - timedelta(seconds=30))
    )
    db.session.commit()
    assert acme.post(authz_url, None).headers["Retry-After"] == "10"
    assert acme.post(chall["url"], None).headers["Retry-After"] == "10"
    dispatch.resend_lost(utcnow() + dispatch.RESEND_AFTER)
    drain(world["worker"])
    decided = acme.post(authz_url, None)
    assert decided.get_json()["status"] == "valid" and "Retry-After" not in decided.headers
    assert "Retry-After" not in acme.post(chall["url"], None).headers

    csr, _ = csr_for("www.acme.example")
    with _lost(world["worker"]):
        finalized = acme.post(order["finalize"], {"csr": csr})
    assert finalized.headers["Retry-After"] == "1"
    assert acme.post(created.headers["Location"], None).headers["Retry-After"] == "1"
    dispatch.resend_lost(utcnow() + dispatch.RESEND_AFTER)
    drain(world["worker"])
    valid = acme.post(created.headers["Location"], None)
    assert valid.get_json()["status"] == "valid" and "Retry-After" not in valid.headers


def test_an_order_waiting_for_approval_is_issued_by_the_approval_job(client, world):  # noqa: F811  (the fixture imported above)
    """A profile that requires approval: finalize sends nothing; the console's approval
    queues the issuance as for any request, and the order follows its request."""
    from app.services.certificates import approvals

    world["profile"].requires_approval = True
    db.session.commit()
    acme = registered(client, world)
    created = acme.order("www.acme.example")
    order = created.get_json()
    validate(acme, world, order)
    csr, _ = csr_for("www.acme.example")
    acme.post(order["finalize"], {"csr": csr})
    drain(world["worker"])
    row = db.session.get(AcmeOrder, _order_id(created))
    assert row.dispatched_at is None
    req = db.session.get(CertificateRequest, row.request_id)
    assert req.status == RequestStatus.REQUESTED
    polled = acme.post(created.headers["Location"], None)
    assert polled.get_json()["status"] == "processing" and polled.headers["Retry-After"] == "1"
    # Waiting for a person: clients are asked back less and less often, at most each minute.
    req.created_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    assert acme.post(created.headers["Location"], None).headers["Retry-After"] == "60"
    assert dispatch.resend_lost(utcnow() + 2 * dispatch.RESEND_AFTER) == 0  # not ours to send
    approvals.approve(actor=world["mrao"], request_ids=[row.request_id])
    drain(world["worker"])
    assert acme.post(created.headers["Location"], None).get_json()["status"] == "valid"


# --- PostgreSQL: two runs at once -------------------------------------------------------


class SlowChallengeServer(ChallengeServer):
    """Answers after ``delay`` seconds, so that two runs of one validation overlap."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        handler = self.server.RequestHandlerClass
        original = handler.do_GET

        def slow(request_handler):
            time.sleep(delay)
            original(request_handler)

        handler.do_GET = slow


@contextmanager
def _postgres_world(app):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin", state="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    make_pki(requires_approval=False, terms=(90,), acme_slug="tls")
    created = external_keys.create_key(
        actor=mrao, organization_id=org.id, department_id=None, label="pg"
    )
    db.session.commit()
    responder = SlowChallengeServer(0.5)
    with dns_server({"www.acme.example": ["127.0.0.1"]}) as dns:
        app.config["CW_ACME_RESOLVER"] = dns.address
        app.config["CW_ACME_HTTP01_PORT"] = responder.port
        try:
            yield {
                "key_id": created.key.key_id,
                "hmac": external_keys_bytes(created.hmac_key),
                "responder": responder,
            }
        finally:
            responder.close()


def _at_once(app, fn, *args) -> list[BaseException]:
    """Run fn(*args) in two threads (each with its own app context and session) released
    together; what they raised."""
    gate, raised = threading.Barrier(2), []

    def run():
        with app.app_context():
            gate.wait()
            try:
                fn(*args)
            except BaseException as exc:  # reported to the test
                raised.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return raised


@pytest.mark.services
def test_two_runs_at_once_record_one_verdict_and_issue_one_certificate(postgres_app):
    from app.actors.acme import issue_order, validate_challenge

    client = postgres_app.test_client()
    with _postgres_world(postgres_app) as pg:
        acme = registered(client, pg)
        created = acme.order("www.acme.example")
        chall = _respond(acme, pg, created.get_json())
        db.session.commit()
        assert _at_once(postgres_app, validate_challenge.fn, chall.id) == []
        db.session.expire_all()
        # Both runs checked (the answer takes 0.5 s, so both found the challenge
        # processing); one recorded the verdict.
        assert len(pg["responder"].hits) == 2
        assert db.session.get(AcmeChallenge, chall.id).status == "valid"
        assert len(_events("acme.challenge.validate", chall.id)) == 1

        order = acme.post(created.headers["Location"], None).get_json()
        assert order["status"] == "ready"
        csr, _ = csr_for("www.acme.example")
        acme.post(order["finalize"], {"csr": csr})
        db.session.commit()
        assert _at_once(postgres_app, issue_order.fn, _order_id(created)) == []
        db.session.expire_all()
        req = db.session.get(AcmeOrder, _order_id(created)).request_id
        certs = db.session.execute(select(Certificate).where(Certificate.request_id == req)).all()
        assert len(certs) == 1 and len(_events("certificate.issue")) == 1
        assert acme.post(created.headers["Location"], None).get_json()["status"] == "valid"
