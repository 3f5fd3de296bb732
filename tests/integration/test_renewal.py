"""Auto-renewal: the window fits the term (service, console, CLI), the hourly sweep never
starts a chain of renewals, and the mail says what a renewal is."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Certificate,
    CertificateRequest,
    CertStatus,
    OutboxMessage,
    RequestMode,
    RequestStatus,
)
from app.models.types import utcnow
from app.services.certificates import approvals, enrollment, renewal
from app.services.errors import DomainError
from tests.conftest import csrf_token, drain, login
from tests.factories import PASSWORD, make_admin, make_csr, make_domain, make_org, make_pki


@pytest.fixture
def world(app):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin", state="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    _root, _issuing, profile = make_pki(terms=(1, 2, 90, 199))
    db.session.commit()
    return {"mrao": mrao, "org": org, "profile": profile}


def data(world, **changes) -> enrollment.RequestData:
    csr, _key = make_csr("www.acme.example")
    fields = {
        "organization_id": world["org"].id,
        "profile_id": world["profile"].id,
        "term_days": 90,
        "mode": RequestMode.CSR,
        "csr": csr,
        "eula_accepted": True,
        "auto_renew": True,
        "renew_days_before": 30,
    }
    fields.update(changes)
    return enrollment.RequestData(**fields)


def submit(world, **changes) -> CertificateRequest:
    return enrollment.submit_request(actor=world["mrao"], data=data(world, **changes))


def issued(world, stub_worker, **changes) -> Certificate:
    req = submit(world, **changes)
    approvals.approve(actor=world["mrao"], request_ids=[req.id])
    drain(stub_worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.ISSUED, req.failure_reason
    return req.certificate


def certificates() -> int:
    return db.session.execute(select(func.count()).select_from(Certificate)).scalar_one()


def sweep(stub_worker) -> list[int]:
    created = renewal.auto_renew_sweep()
    drain(stub_worker)  # commits, then issues the renewals
    return created


@pytest.mark.parametrize("window", [90, 120, 46])
def test_a_window_as_long_as_half_the_term_or_longer_is_refused(world, window):
    with pytest.raises(DomainError) as caught:
        submit(world, renew_days_before=window)
    assert caught.value.field == "renew_days_before"
    assert (
        f"Renewing {window} days before expiry does not fit a 90-day term" in caught.value.message
    )
    assert "renew at most 45 days before expiry" in caught.value.message
    assert db.session.execute(select(func.count()).select_from(CertificateRequest)).scalar() == 0


def test_windows_that_fit_are_accepted_and_manual_renewal_ignores_the_window(world):
    assert submit(world, renew_days_before=45).renew_days_before == 45
    assert submit(world, term_days=199, renew_days_before=90).renew_days_before == 90
    # Without auto-renew the window is never used: the wizard's default does not get in the way.
    assert submit(world, auto_renew=False, term_days=2, renew_days_before=30).id
    with pytest.raises(DomainError, match="A 1-day term is too short to renew automatically"):
        submit(world, term_days=1, renew_days_before=1)
    assert submit(world, term_days=2, renew_days_before=1).renew_days_before == 1


def test_the_console_wizard_refuses_a_window_longer_than_the_term_allows(client, world):
    login(client, "mrao", PASSWORD)
    csr, _key = make_csr("www.acme.example")
    url = "/admin/ssl_requests/new/"
    form = {
        "mode": "csr",
        "csr": csr.decode(),
        "key_type": "",
        "target": f"o:{world['org'].id}",
        "profile_id": world["profile"].id,
        "term_days": 90,
        "common_name": "",
        "sans": "",
        "requester_email": "req@acme.example",
        "external_requesters": "",
        "auto_renew": "on",
        "renew_days_before": "90",
        "comments": "",
        "eula": "accept",
        "csrf_token": csrf_token(client, url),
    }
    page = client.post(url, data=form, follow_redirects=True).get_data(as_text=True)
    assert "does not fit a 90-day term" in page and "renew at most 45 days" in page
    assert db.session.execute(select(func.count()).select_from(CertificateRequest)).scalar() == 0
    form["renew_days_before"] = "30"
    page = client.post(url, data=form, follow_redirects=True).get_data(as_text=True)
    assert "for www.acme.example is Requested" in page


def test_the_cli_refuses_a_window_longer_than_the_term_allows(app, world, tmp_path):
    csr, _key = make_csr("www.acme.example")
    (tmp_path / "web.csr").write_bytes(csr)
    args = ["cert", "request", "--csr", str(tmp_path / "web.csr"), "--org", "Acme"]
    args += ["--profile", "TLS servers", "--term", "90", "--auto-renew"]
    result = app.test_cli_runner().invoke(args=[*args, "--renew-days", "90"])
    assert result.exit_code != 0
    assert "does not fit a 90-day term" in result.output, result.output
    result = app.test_cli_runner().invoke(args=[*args, "--renew-days", "30"])
    assert result.exit_code == 0 and ": Requested" in result.output, result.output


def test_a_legacy_window_as_long_as_the_term_renews_once_not_once_per_sweep(world, stub_worker):
    # Stored before the rule: renew 90 days before expiry on a 90-day term.
    cert = issued(world, stub_worker)
    cert.renew_days_before = 90
    cert.request.renew_days_before = 90
    cert.not_after = utcnow() + timedelta(days=30)  # well inside either window
    db.session.commit()
    first = sweep(stub_worker)
    assert len(first) == 1 and certificates() == 2
    assert sweep(stub_worker) == [] and sweep(stub_worker) == []
    assert certificates() == 2
    successor = db.session.get_one(CertificateRequest, first[0])
    assert successor.status == RequestStatus.ISSUED
    assert successor.renew_days_before == 45  # shortened to what a 90-day term allows
    assert successor.certificate.renew_days_before == 45
    db.session.refresh(cert)
    assert cert.status == CertStatus.REPLACED


def test_the_sweep_never_renews_a_renewal_issued_less_than_a_window_ago(world, stub_worker):
    cert = issued(world, stub_worker)
    cert.not_after = utcnow() + timedelta(days=10)
    db.session.commit()
    [request_id] = sweep(stub_worker)
    successor = db.session.get_one(CertificateRequest, request_id).certificate
    # Whatever its dates say (a clock that jumped, a row edited by hand), a successor issued
    # less than its 30-day window ago is left alone ...
    successor.not_after = utcnow() + timedelta(days=5)
    db.session.commit()
    assert sweep(stub_worker) == []
    # ... and renewed once it is older than that.
    successor.created_at = utcnow() - timedelta(days=31)
    db.session.commit()
    assert len(sweep(stub_worker)) == 1 and certificates() == 3


def test_the_renewal_mail_says_it_is_a_renewal(world, stub_worker):
    cert = issued(world, stub_worker, requester_email="ops@acme.example")
    first = db.session.execute(select(OutboxMessage)).scalar_one()
    assert first.subject == "Certificate issued: www.acme.example"
    assert "renewal" not in first.body
    cert.not_after = utcnow() + timedelta(days=10)
    db.session.commit()
    [request_id] = sweep(stub_worker)
    new_id = db.session.get_one(CertificateRequest, request_id).certificate_id
    mails = db.session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
    assert len(mails) == 2
    renewed = mails[1]
    assert renewed.subject == "Certificate renewed: www.acme.example"
    assert "ops@acme.example" in renewed.to.split(",")
    assert renewed.body.startswith("Your certificate has been renewed.")
    assert f"This is the renewal of certificate #{cert.id}" in renewed.body
    assert f"/collect/{new_id}/" in renewed.body
