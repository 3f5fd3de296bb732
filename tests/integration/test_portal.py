"""The enrollment portal through HTTP: registration with a one-time code, key generation
on the worker, the PKCS#12 handed out once; every bad code alike; throttling."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select, update

from app.extensions import db
from app.models import (
    CaStatus,
    Certificate,
    CertificateRequest,
    EnrollmentStatus,
    Invitation,
    Job,
    PortalEnrollment,
    RequestStatus,
    ValidationType,
)
from app.models.types import utcnow
from app.services.certificates import approvals
from app.services.errors import Conflict, DomainError
from app.services.persons import registration, throttle
from tests.conftest import csrf_token, drain, login
from tests.factories import PASSWORD
from tests.integration.portal_world import (
    P12_PASSWORD,
    add_person,
    collect,
    invite,
    last_mail,
    make_world,
    register,
)

NEUTRAL = "This code is not valid for this email address."


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def test_registration_issues_an_smime_certificate_downloaded_once(
    app, client, stub_worker, tmp_path: Path
):
    world = make_world()
    person = add_person(world, alt_emails=["jd@mail.acme.example"])
    code = invite(world, person, key_type="RSA-2048")
    mail = last_mail(person.email)
    assert mail.subject == "Your client certificate from Acme"
    assert "http://certwright.test/enroll/register?email=jane.doe@acme.example" in mail.body

    response = register(client, person.email, code)
    assert response.status_code == 302
    progress = response.headers["Location"]
    assert progress.startswith("/enroll/progress/")
    # The request thread only queued the job: nothing is issued before a worker runs it.
    enrollment = db.session.execute(select(PortalEnrollment)).scalar_one()
    assert enrollment.status == EnrollmentStatus.PENDING and enrollment.sealed_pkcs12 is None
    assert P12_PASSWORD.encode() not in (enrollment.sealed_password or b"")
    job = db.session.get(Job, enrollment.job_id)
    assert job.kind == "portal_enrollment"
    page = client.get(progress).get_data(as_text=True)
    assert 'data-status="pending"' in page and 'http-equiv="refresh"' in page

    p12 = collect(client, progress, stub_worker)
    key, cert, chain = pkcs12.load_key_and_certificates(p12, P12_PASSWORD.encode())
    assert cert is not None and key is not None and len(chain) == 2
    assert cert.subject.rfc4514_string() == "CN=jane.doe@acme.example"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [
        "jane.doe@acme.example",
        "jd@mail.acme.example",
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment  # RSA

    # openssl reads it with the password (AES-256, PBKDF2) and refuses a wrong one.
    path = tmp_path / "jane.p12"
    path.write_bytes(p12)
    good = openssl("pkcs12", "-in", str(path), "-passin", f"pass:{P12_PASSWORD}", "-nodes", "-info")
    assert good.returncode == 0 and "AES-256-CBC" in good.stderr, good.stderr
    assert openssl("pkcs12", "-in", str(path), "-passin", "pass:wrong", "-nodes").returncode != 0

    # Once: the file is gone from the database, a second download is refused.
    stored = db.session.execute(select(PortalEnrollment)).scalar_one()
    assert stored.status == EnrollmentStatus.COLLECTED and stored.sealed_pkcs12 is None
    inventory = db.session.get(Certificate, stored.certificate_id)
    assert inventory.sealed_key is None  # no escrow: the key lives only in the .p12
    from app.services.certificates import inventory as certificates

    with pytest.raises(DomainError, match="its profile does not escrow keys"):
        certificates.pkcs12(actor=world.mrao, certificate_id=inventory.id, password="x" * 12)
    assert inventory.subject_dn == "CN=jane.doe@acme.example"
    page = client.get(progress).get_data(as_text=True)
    assert "already downloaded" in page and "cw-download" not in page
    # The person got the registration-complete mail; no collection mail to anyone.
    assert last_mail(person.email).subject == "Your client certificate is ready"
    assert "/enroll/progress/" in last_mail(person.email).body


def test_high_validation_is_individual_validated_and_escrow_keeps_the_key(app, client, stub_worker):
    world = make_world(key_escrow=True)
    person = add_person(
        world,
        email="max.mustermann@acme.example",
        first_name="Max",
        middle_name="Otto",
        last_name="Mustermann",
        validation_type=ValidationType.HIGH,
    )
    code = invite(world, person)
    p12 = collect(client, register(client, person.email, code).headers["Location"], stub_worker)
    loaded = pkcs12.load_pkcs12(p12, P12_PASSWORD.encode())
    subject = loaded.cert.certificate.subject
    assert subject.get_attributes_for_oid(NameOID.GIVEN_NAME)[0].value == "Max Otto"
    assert subject.get_attributes_for_oid(NameOID.SURNAME)[0].value == "Mustermann"
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Max Otto Mustermann"
    cert = db.session.execute(select(Certificate)).scalar_one()
    assert cert.sealed_key is not None  # escrowed under the KEK
    # Only an MRAO exports an escrowed key, and the export is audited.
    from app.models import AuditEvent, CertType, Role
    from app.services.certificates import inventory
    from app.services.errors import Forbidden
    from tests.factories import make_admin

    rao = make_admin("rao", Role.RAO, org=world.org, privileges=[CertType.CLIENT])
    with pytest.raises(Forbidden, match="Only an MRAO may export a person's escrowed key"):
        inventory.pkcs12(actor=rao, certificate_id=cert.id, password="escrow-export")
    exported = inventory.pkcs12(actor=world.mrao, certificate_id=cert.id, password="escrow-export")
    db.session.commit()
    assert pkcs12.load_pkcs12(exported.content, b"escrow-export").key is not None
    assert (
        db.session.execute(select(AuditEvent).where(AuditEvent.action == "certificate.key_export"))
        .scalar_one()
        .actor
        == "mrao"
    )


def test_bad_codes_get_one_neutral_message(app, client, stub_worker):
    world = make_world()
    jane = add_person(world)
    john = add_person(world, email="john.roe@acme.example", first_name="John", last_name="Roe")
    jane_code = invite(world, jane)
    john_code = invite(world, john)

    def refused(email: str, code: str) -> None:
        response = register(client, email, code)
        assert response.status_code == 200
        assert NEUTRAL in response.get_data(as_text=True)

    refused(jane.email, "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH")  # wrong
    refused(jane.email, john_code)  # another person's
    assert register(client, jane.email, jane_code.lower().replace("-", " ")).status_code == 302
    refused(jane.email, jane_code)  # used
    # Expired: John's code, a day past its end.
    db.session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(days=1)))
    refused(john.email, john_code)
    # Nothing was created for the refused attempts: one request, one enrollment.
    assert len(db.session.execute(select(CertificateRequest)).all()) == 1
    assert len(db.session.execute(select(PortalEnrollment)).all()) == 1


def test_code_guessing_is_throttled_per_email_and_per_address(app, client):
    world = make_world()
    jane = add_person(world)
    code = invite(world, jane)
    for _ in range(throttle.LIMITS["email"]):
        assert NEUTRAL in register(client, jane.email, "WRONG").get_data(as_text=True)
    response = register(client, jane.email, code)  # even the right code now waits
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    assert "Too many failed attempts" in response.get_data(as_text=True)
    # Per address: many emails from one address.
    for i in range(throttle.LIMITS["ip"]):
        register(client, f"x{i}@acme.example", "WRONG")
    assert register(client, "someone@acme.example", "WRONG").status_code == 429


def test_policies_are_checked_before_the_code_is_spent(app, client):
    world = make_world()
    jane = add_person(world)
    code = invite(world, jane)
    page = register(
        client, jane.email, code, pkcs12_password="short", pkcs12_password_again="short", eula=""
    ).get_data(as_text=True)
    assert "At least 12 characters." in page
    assert "Accept the subscriber agreement to register." in page
    page = register(client, jane.email, code, pkcs12_password_again="Something-else-2026").get_data(
        as_text=True
    )
    assert "The two entries differ." in page
    page = register(
        client, jane.email, code, passphrase=P12_PASSWORD, passphrase_again=P12_PASSWORD
    ).get_data(as_text=True)
    assert "Choose a passphrase different from the certificate password." in page
    page = register(
        client,
        jane.email,
        code,
        pkcs12_password="Grüße-2026-abc",
        pkcs12_password_again="Grüße-2026-abc",
    ).get_data(as_text=True)
    assert "Plain ASCII only" in page
    assert register(client, jane.email, code).status_code == 302  # still unused


def test_secret_id_is_asked_when_set(app, client):
    world = make_world()
    jane = add_person(world, secret_id="EMP-4711")
    code = invite(world, jane)
    assert NEUTRAL in register(client, jane.email, code, secret_id="EMP-0000").get_data(
        as_text=True
    )
    assert register(client, jane.email, code, secret_id="EMP-4711").status_code == 302


def test_a_resent_invitation_invalidates_the_previous_code(app, client):
    from app.services.persons import invitations

    world = make_world()
    jane = add_person(world)
    first = invite(world, jane)
    old = db.session.execute(select(Invitation)).scalar_one()
    invitations.resend_invitation(actor=world.mrao, invitation_id=old.id)
    db.session.commit()
    second = invite.__globals__["CODE_RE"].search(last_mail(jane.email).body).group(1)
    assert second != first
    assert NEUTRAL in register(client, jane.email, first).get_data(as_text=True)
    assert register(client, jane.email, second).status_code == 302


def test_a_revoked_invitation_code_is_refused(app, client):
    from app.services.persons import invitations

    world = make_world()
    jane = add_person(world)
    code = invite(world, jane)
    invitations.revoke_invitation(
        actor=world.mrao, invitation_id=db.session.execute(select(Invitation.id)).scalar_one()
    )
    db.session.commit()
    assert NEUTRAL in register(client, jane.email, code).get_data(as_text=True)


def test_progress_and_download_need_the_token(app, client, stub_worker):
    world = make_world()
    jane = add_person(world)
    progress = register(client, jane.email, invite(world, jane)).headers["Location"]
    enrollment_id = progress.split("/")[3]
    assert client.get(f"/enroll/progress/{enrollment_id}/forged").status_code == 404
    assert client.get(f"/enroll/progress/{2**70}/forged").status_code == 404
    assert registration.page_token(db.session.get(PortalEnrollment, int(enrollment_id))) in progress


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/enroll/progress/1/forged"),
        ("post", "/enroll/download/1/forged"),
        ("get", "/enroll/nothing-here"),
        ("get", "/portal/nothing-here"),
    ],
)
def test_a_bad_portal_link_gets_the_portal_page_not_the_console(app, client, method, path):
    """An end user who mistypes a link sees the portal's page pointing back to the portal,
    never the console's menu or its sign-in (the collection page's message stays its own)."""
    client.application.config["WTF_CSRF_ENABLED"] = False
    response = getattr(client, method)(path)
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "This link is not valid" in html and 'href="/portal/"' in html
    assert "/login" not in html and "Sign in" not in html and "Use the menu" not in html
    collect = client.get("/collect/1/forged").get_data(as_text=True)
    assert "This collection link is not valid" in collect and "/login" not in collect


def test_legacy_profile_builds_a_3des_pkcs12(app, client, stub_worker, tmp_path: Path):
    world = make_world(pkcs12_legacy=True)
    jane = add_person(world)
    p12 = collect(
        client, register(client, jane.email, invite(world, jane)).headers["Location"], stub_worker
    )
    path = tmp_path / "legacy.p12"
    path.write_bytes(p12)
    info = openssl("pkcs12", "-in", str(path), "-passin", f"pass:{P12_PASSWORD}", "-nodes", "-info")
    assert info.returncode == 0 and "pbeWithSHA1And3-KeyTripleDES-CBC" in info.stderr, info.stderr


def test_housekeeping_deletes_uncollected_files_and_old_counters(app, client, stub_worker):
    from app.models import PortalThrottle
    from tests.conftest import drain

    world = make_world()
    jane = add_person(world)
    progress = register(client, jane.email, invite(world, jane)).headers["Location"]
    register(client, "nobody@acme.example", "WRONG")
    drain(stub_worker)
    db.session.execute(
        update(PortalEnrollment).values(
            ready_at=utcnow() - registration.KEEP_READY - timedelta(hours=1)
        )
    )
    db.session.execute(update(PortalThrottle).values(window_start=utcnow() - timedelta(days=2)))
    assert registration.expire_uncollected() == 1
    assert throttle.purge() == 2
    db.session.commit()
    enrollment = db.session.execute(select(PortalEnrollment)).scalar_one()
    assert enrollment.status == EnrollmentStatus.EXPIRED and enrollment.sealed_pkcs12 is None
    assert "not downloaded in time" in client.get(progress).get_data(as_text=True)


def test_a_failed_registration_is_not_retried_outside_the_portal(app, client, stub_worker):
    """Retrying a Failed portal request would generate a key nobody can collect (the
    PKCS#12 password is gone) and keep it against a non-escrow profile: it is refused, in
    the service, the CLI and the console alike, and nothing is issued."""
    world = make_world()
    person = add_person(world)
    code = invite(world, person)
    world.issuing.status = CaStatus.RETIRED  # issuance fails on the worker
    db.session.commit()
    progress = register(client, person.email, code).headers["Location"]
    drain(stub_worker)
    db.session.expire_all()
    enrollment = db.session.execute(select(PortalEnrollment)).scalar_one()
    req = db.session.get(CertificateRequest, enrollment.request_id)
    assert enrollment.status == EnrollmentStatus.FAILED
    assert req.status == RequestStatus.FAILED and "retired" in req.failure_reason
    assert 'data-status="failed"' in client.get(progress).get_data(as_text=True)
    world.issuing.status = CaStatus.ACTIVE  # the cause is fixed; a retry would now issue
    db.session.commit()

    with pytest.raises(Conflict, match=f"Request\\(s\\) #{req.id} came from the enrollment portal"):
        approvals.retry(actor=world.mrao, request_ids=[req.id])
    db.session.rollback()
    result = app.test_cli_runner().invoke(args=["cert", "retry", str(req.id), "--as", "mrao"])
    assert result.exit_code != 0 and "resend the person's invitation" in result.output
    login(client, "mrao", PASSWORD)
    page = client.post(
        "/admin/client_requests/retry/",
        data={"csrf_token": csrf_token(client, "/admin/client_requests/"), "id": str(req.id)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "came from the enrollment portal" in page

    drain(stub_worker)
    db.session.expire_all()
    assert db.session.get(CertificateRequest, req.id).status == RequestStatus.FAILED
    assert db.session.execute(select(Certificate)).scalars().all() == []
    assert db.session.get(PortalEnrollment, enrollment.id).status == EnrollmentStatus.FAILED
