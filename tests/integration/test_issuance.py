"""The SSL lifecycle through the services and a real worker, judged by openssl and ssl."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AuditEvent,
    Certificate,
    CertificateRequest,
    CertStatus,
    OutboxMessage,
    RequestMode,
    RequestStatus,
    Role,
    SerialNumber,
)
from app.services.certificates import approvals, enrollment, revocation
from app.services.errors import Conflict, DomainError, Forbidden
from app.services.scope import SYSTEM
from tests.conftest import drain
from tests.factories import make_admin, make_csr, make_dept, make_domain, make_org, make_pki


@pytest.fixture
def world(app):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin", state="Berlin")
    dept = make_dept(org, "Web")
    make_domain("acme.example", by=mrao, org=org)
    root, issuing, profile = make_pki()
    return {
        "mrao": mrao,
        "org": org,
        "dept": dept,
        "root": root,
        "issuing": issuing,
        "profile": profile,
    }


def request(world, *, csr=None, cn="www.acme.example", sans=(), term=90, **extra):
    if csr is None:
        csr, _ = make_csr(cn, *sans)
    data = enrollment.RequestData(
        organization_id=world["org"].id,
        profile_id=world["profile"].id,
        term_days=term,
        mode=RequestMode.CSR,
        csr=csr,
        eula_accepted=True,
        **extra,
    )
    req = enrollment.submit_request(actor=world["mrao"], data=data)
    db.session.commit()
    return req


def issue(world, stub_worker, **kw):
    req = request(world, **kw)
    approvals.approve(actor=world["mrao"], request_ids=[req.id], message="ok")
    drain(stub_worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.ISSUED, req.failure_reason
    return req, req.certificate


def pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def test_request_approve_issue_and_openssl_verifies(world, stub_worker, tmp_path):
    _req, cert = issue(world, stub_worker, sans=("api.acme.example",))
    assert cert.status == CertStatus.ISSUED and cert.common_name == "www.acme.example"
    assert set(cert.sans) == {"www.acme.example", "api.acme.example"}
    (tmp_path / "root.pem").write_bytes(pem(world["root"].cert_der))
    (tmp_path / "issuing.pem").write_bytes(pem(world["issuing"].cert_der))
    (tmp_path / "leaf.pem").write_bytes(pem(cert.der))
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            tmp_path / "root.pem",
            "-untrusted",
            tmp_path / "issuing.pem",
            tmp_path / "leaf.pem",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    parsed = x509.load_der_x509_certificate(cert.der)
    assert parsed.subject.rfc4514_string() == "CN=www.acme.example,O=Acme,L=Berlin,ST=Berlin,C=DE"
    assert (
        db.session.execute(
            select(func.count())
            .select_from(SerialNumber)
            .where(SerialNumber.serial_hex == cert.serial_hex)
        ).scalar_one()
        == 1
    )
    mail = db.session.execute(
        select(OutboxMessage).where(OutboxMessage.category == "issuance")
    ).scalar_one()
    assert "mrao@example.com" in mail.to and f"/collect/{cert.id}/" in mail.body
    actions = list(db.session.execute(select(AuditEvent.action)).scalars())
    assert {"request.create", "request.approve", "certificate.issue"} <= set(actions)


def test_tls_handshake_with_an_issued_certificate(world, stub_worker, tmp_path):
    csr, key = make_csr("www.acme.example")
    _, cert = issue(world, stub_worker, csr=csr)
    from app.pki import keys

    (tmp_path / "chain.pem").write_bytes(pem(cert.der) + pem(world["issuing"].cert_der))
    (tmp_path / "key.pem").write_bytes(keys.private_key_to_pem(key))
    (tmp_path / "root.pem").write_bytes(pem(world["root"].cert_der))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve():
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")

        thread = threading.Thread(target=serve)
        thread.start()
        client_ctx = ssl.create_default_context(cafile=tmp_path / "root.pem")
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_ctx.wrap_socket(raw, server_hostname="www.acme.example") as tls,
        ):
            assert tls.recv(5) == b"hello"
        thread.join(5)


def test_names_outside_delegated_domains_are_refused(world):
    with pytest.raises(
        DomainError,
        match=r"The name www.other.example is not inside an active domain delegated to Acme",
    ):
        request(world, cn="www.other.example")
    with pytest.raises(DomainError, match=r"wildcard name \*.acme.example needs a wildcard domain"):
        request(world, cn="*.acme.example")
    with pytest.raises(
        DomainError, match=r"The IP address 10\.1\.2\.3 is not inside a network delegated"
    ):
        request(world, sans=("10.1.2.3",))
    db.session.rollback()
    assert (
        db.session.execute(select(func.count()).select_from(CertificateRequest)).scalar_one() == 0
    )


def test_weak_key_term_and_csr_errors(world):
    weak, _ = make_csr(
        "www.acme.example",
        key=__import__(
            "cryptography.hazmat.primitives.asymmetric.rsa", fromlist=["x"]
        ).generate_private_key(65537, 1024),
    )
    with pytest.raises(DomainError, match="RSA-1024"):
        request(world, csr=weak)
    with pytest.raises(DomainError, match="A term of 365 days is not allowed by the profile"):
        request(world, term=365)
    with pytest.raises(DomainError, match="The CSR is not usable"):
        request(
            world,
            csr=b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n",
        )
    with pytest.raises(DomainError, match="limit is 32 KB"):
        request(world, csr=b"A" * 40000)
    with pytest.raises(DomainError, match="Accept the subscriber agreement"):
        enrollment.submit_request(
            actor=world["mrao"],
            data=enrollment.RequestData(
                organization_id=world["org"].id,
                profile_id=world["profile"].id,
                term_days=90,
                mode=RequestMode.CSR,
                csr=make_csr("www.acme.example")[0],
            ),
        )


def test_double_approval_issues_one_certificate(world, stub_worker):
    req = request(world)
    other = make_admin("mrao2")
    approvals.approve(actor=world["mrao"], request_ids=[req.id])
    db.session.commit()
    with pytest.raises(Conflict):
        approvals.approve(actor=other, request_ids=[req.id])
    db.session.rollback()
    drain(stub_worker)
    # A retried issuance message for the same request stores nothing new.
    approvals.queue_issuance([req.id])
    drain(stub_worker)
    assert db.session.execute(select(func.count()).select_from(Certificate)).scalar_one() == 1


def test_four_eyes_and_scope_of_approver(world):
    world["profile"].four_eyes = True
    db.session.commit()
    req = request(world)
    with pytest.raises(Forbidden, match="requires four eyes"):
        approvals.approve(actor=world["mrao"], request_ids=[req.id])
    db.session.rollback()
    other_org = make_org("Other", city="Paris")
    outsider = make_admin("outsider", Role.RAO, org=other_org)
    with pytest.raises(DomainError, match="No such certificate request"):
        approvals.approve(actor=outsider, request_ids=[req.id])


def test_revocation_updates_crl_and_ocsp(world, stub_worker, tmp_path):
    _, cert = issue(world, stub_worker)
    revocation.revoke(actor=world["mrao"], certificate_ids=[cert.id], reason="keyCompromise")
    db.session.commit()
    db.session.refresh(world["issuing"])
    crl = x509.load_der_x509_crl(world["issuing"].crl_der)
    entry = crl.get_revoked_certificate_by_serial_number(int(cert.serial_hex, 16))
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    (tmp_path / "crl.der").write_bytes(world["issuing"].crl_der)
    out = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", tmp_path / "crl.der", "-noout", "-text"],
        capture_output=True,
        text=True,
    )
    assert (
        out.returncode == 0
        and cert.serial_hex.upper() in out.stdout.upper().replace(":", "")
        and "Key Compromise" in out.stdout
    )
    with pytest.raises(Conflict, match="already Revoked"):
        revocation.revoke(actor=world["mrao"], certificate_ids=[cert.id], reason="superseded")


def _described(cert):
    """The inventory columns that describe the certificate, read back from its DER."""
    parsed = x509.load_der_x509_certificate(cert.der)
    return {
        "subject_dn": parsed.subject.rfc4514_string(),
        "issuer_dn": parsed.issuer.rfc4514_string(),
        "serial_hex": f"{parsed.serial_number:x}",
        "not_before": parsed.not_valid_before_utc,
        "not_after": parsed.not_valid_after_utc,
        "fingerprint": __import__("hashlib").sha256(cert.der).hexdigest(),
    }


def test_inventory_columns_match_the_certificate(stub_worker):
    """Issuance fills the inventory from the request, not by parsing the certificate
    back: the columns must still say exactly what the certificate says, escaping included."""
    mrao = make_admin("mrao")
    org = make_org('Acme, "Labs" + Co; <EU>', city=" Berlin", state="Berlin#1")
    make_domain("acme.example", by=mrao, org=org)
    _root, issuing, profile = make_pki()
    world = {"mrao": mrao, "org": org, "profile": profile}
    _req, cert = issue(world, stub_worker, cn="www.acme.example", sans=("api.acme.example",))
    assert {k: getattr(cert, k) for k in _described(cert)} == _described(cert)
    assert cert.subject_dn.startswith('CN=www.acme.example,O=Acme\\, \\"Labs\\" \\+ Co\\; \\<EU\\>')
    assert (
        cert.issuer_dn == x509.load_der_x509_certificate(issuing.cert_der).subject.rfc4514_string()
    )
    assert cert.key_algorithm == "EC" and cert.key_size == 256
    assert (cert.key_type, cert.signature_algorithm) == ("EC-P256", "ECDSA-SHA256")


def test_a_common_name_not_in_host_form_is_described_as_signed(world, stub_worker):
    """The certificate carries the CN in its normalised host form (BR 7.1.4.3); should a
    stored request hold another spelling, the inventory follows the certificate."""
    req = request(world, cn="www.acme.example")
    req.subject = {**req.subject, "CN": "WWW.Acme.Example."}
    db.session.commit()
    approvals.approve(actor=world["mrao"], request_ids=[req.id], message="ok")
    drain(stub_worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.ISSUED, req.failure_reason
    cert = req.certificate
    assert cert.subject_dn == x509.load_der_x509_certificate(cert.der).subject.rfc4514_string()
    assert cert.subject_dn.startswith("CN=www.acme.example,")


@pytest.mark.services
def test_a_batch_on_postgresql(postgres_app):
    """The bulk paths (binary COPY, one conditional UPDATE) on PostgreSQL: every request
    Issued with its own certificate and serial reservation, one audit event and one collection
    mail for the batch (one requester) naming every certificate; the audit chain verifies; a
    second run of the same batch stores nothing."""
    from app.services import audit
    from app.services.certificates import issuance

    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin", state="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    _root, issuing, profile = make_pki(key_type="RSA-2048")
    world = {"mrao": mrao, "org": org, "profile": profile}
    reqs = [request(world, cn=f"h{i}.acme.example") for i in range(7)]
    approvals.mark_approved([r.id for r in reqs], actor=mrao, message="ok")
    db.session.commit()
    result = issuance.issue_requests([r.id for r in reqs])
    db.session.commit()
    assert len(result.issued) == 7 and not result.failed and not result.skipped
    certs = db.session.execute(select(Certificate).order_by(Certificate.id)).scalars().all()
    assert [c.request_id for c in certs] == [r.id for r in reqs]
    for req, cert in zip(reqs, certs, strict=True):
        db.session.refresh(req)
        assert req.status == RequestStatus.ISSUED and req.certificate_id == cert.id
        assert req.issue_attempts == 1
        assert {k: getattr(cert, k) for k in _described(cert)} == _described(cert)
        x509.load_der_x509_certificate(cert.der).verify_directly_issued_by(
            x509.load_der_x509_certificate(issuing.cert_der)
        )
    serials = set(db.session.execute(select(SerialNumber.serial_hex)).scalars())
    assert {c.serial_hex for c in certs} <= serials
    mails = (
        db.session.execute(select(OutboxMessage).where(OutboxMessage.category == "issuance"))
        .scalars()
        .all()
    )
    assert len(mails) == 1
    assert all(f"/collect/{c.id}/" in mails[0].body for c in certs)
    assert audit.verify().ok
    again = issuance.issue_requests([r.id for r in reqs])
    db.session.commit()
    assert again.issued == [] and sorted(again.skipped) == sorted(r.id for r in reqs)
    assert db.session.execute(select(func.count()).select_from(Certificate)).scalar_one() == 7


def test_batches_are_smaller_for_profiles_that_lint_every_certificate(world):
    """Linting takes milliseconds a certificate: those requests go 50 to a job, the
    others 500 to a job, so that a large approval spreads over every worker."""
    from app.models import CertType, Job, LintMode
    from app.services.ca import profiles

    sampled = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="Sampled",
            cert_type=CertType.SSL,
            ca_id=world["issuing"].id,
            terms=(90,),
            key_types=("EC-P256",),
            lint_mode=LintMode.SAMPLE,
        ),
    )
    db.session.commit()
    assert world["profile"].lint_mode == LintMode.EVERY
    csr, _ = make_csr("www.acme.example")
    linted = [request(world, csr=csr).id for _ in range(approvals.LINTED_BATCH_SIZE + 3)]
    other = [request({**world, "profile": sampled}, csr=csr).id for _ in range(3)]
    ids = [i for pair in zip(linted, other, strict=False) for i in pair] + linted[len(other) :]
    job_ids = approvals.queue_issuance(ids)
    db.session.commit()
    batches = [db.session.get(Job, job_id).payload["request_ids"] for job_id in job_ids]
    assert batches == [
        other,
        linted[: approvals.LINTED_BATCH_SIZE],
        linted[approvals.LINTED_BATCH_SIZE :],
    ]
    (whole,) = approvals.queue_issuance(ids, batch_size=1000)  # an explicit size: one batch
    assert db.session.get(Job, whole).payload["request_ids"] == ids


@pytest.mark.parametrize(
    ("mode", "since_change", "every", "expected"),
    [
        ("every", 7, 100, [True] * 5),
        ("sample", 0, 3, [True, False, False, True, False]),  # the first after a change
        ("sample", 5, 3, [False, True, False, False, True]),  # positions 5..9: 6 and 9
        ("sample", 4, 1, [True] * 5),
    ],
)
def test_lint_sampling_picks_the_first_certificate_then_one_in_n(
    mode, since_change, every, expected
):
    from types import SimpleNamespace

    from app.models import LintMode
    from app.services.certificates import issuance

    profile = SimpleNamespace(
        lint_mode=LintMode.EVERY if mode == "every" else LintMode.SAMPLE,
        issued_since_change=since_change,
        lint_sample_n=every,
    )
    assert issuance._lint_plan(profile, 5) == expected


def test_small_issuance_jobs_waiting_together_are_issued_as_one_batch(world):
    """Concurrent REST API enrolls make one job each: the first to run takes over the others
    still waiting (first attempts only, up to a batch), marks them done, and their own runs
    then skip them. A job that already failed once keeps its own retry."""
    from app.actors.pki import issue_certificates
    from app.models import Job, JobStatus
    from app.runtime.broker import broker

    reqs = [request(world, cn=f"n{i}.acme.example") for i in range(4)]
    for req in reqs:  # four approvals, four jobs (no worker runs them: called below)
        approvals.approve(actor=world["mrao"], request_ids=[req.id], message="ok")
    broker.flush_all()
    jobs = db.session.execute(select(Job).order_by(Job.id)).scalars().all()
    assert [j.payload["request_ids"] for j in jobs] == [[r.id] for r in reqs]
    jobs[3].attempts = 1  # as after a failed first attempt
    db.session.commit()
    for job in jobs:  # in order, as the messages arrive
        issue_certificates.fn(job.id)
    db.session.expire_all()
    for req in reqs:
        assert req.status == RequestStatus.ISSUED, req.failure_reason
    for job in jobs:
        assert job.status == JobStatus.DONE, (job.id, job.message)
    first, second, third, fourth = jobs
    assert first.result["adopted_jobs"] == [second.id, third.id]
    assert sorted(first.result["issued"]) == [reqs[0].id, reqs[1].id, reqs[2].id]
    assert second.result == {"message": f"done with job #{first.id}", "adopted_by": first.id}
    assert third.result["adopted_by"] == first.id and third.attempts == 0
    assert fourth.result["issued"] == [reqs[3].id] and fourth.attempts == 2
    certs = db.session.execute(select(func.count()).select_from(Certificate)).scalar_one()
    assert certs == 4
