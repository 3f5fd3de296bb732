"""The issue-3 console flows through HTTP: CA wizard, profile, request wizard, approve,
download, revoke, PKCS#12 - what an administrator clicks, checked by what they see."""

from __future__ import annotations

import re

import pytest
from cryptography import x509
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Certificate,
    CertificateAuthority,
    CertificateProfile,
    CertificateRequest,
    CertStatus,
    RequestStatus,
)
from tests.conftest import csrf_token, drain, login
from tests.factories import PASSWORD, make_admin, make_csr, make_domain, make_org, make_pki


@pytest.fixture
def mrao(client):
    admin = make_admin("mrao")
    login(client, "mrao", PASSWORD)
    return admin


def post(client, url, data, **kw):
    return client.post(
        url, data={**data, "csrf_token": csrf_token(client, url)}, follow_redirects=True, **kw
    )


def test_ca_wizard_confirms_then_creates_root_and_issuing(client, mrao):
    form = {
        "name": "Corp Root",
        "parent_id": "",
        "key_type": "EC-P256",
        "signature_hash": "",
        "purpose": "TLS",
        "customer_name": "Corp",
        "locality": "Berlin",
        "state": "",
        "country": "DE",
        "confirmed": "",
    }
    page = post(client, "/admin/cas/new/", form).get_data(as_text=True)
    assert (
        'id="cw-ca-confirm"' in page
        and "CN=Corp Root CA, O=Corp, L=Berlin, C=DE" in page
        and "20 years" in page
    )
    assert (
        db.session.execute(select(func.count()).select_from(CertificateAuthority)).scalar_one() == 0
    )
    page = post(client, "/admin/cas/new/", {**form, "confirmed": "yes"}).get_data(as_text=True)
    assert "Created the CA &#39;Corp Root&#39; (Root CA)" in page
    root = db.session.execute(select(CertificateAuthority)).scalar_one()
    issuing = {
        **form,
        "name": "Corp Issuing",
        "parent_id": str(root.id),
        "key_type": "RSA-2048",
        "confirmed": "yes",
    }
    page = post(client, "/admin/cas/new/", issuing).get_data(as_text=True)
    assert "Created the CA &#39;Corp Issuing&#39; (Issuing CA)" in page
    cert = x509.load_der_x509_certificate(
        db.session.execute(
            select(CertificateAuthority.cert_der).where(CertificateAuthority.name == "Corp Issuing")
        ).scalar_one()
    )
    assert cert.subject.rfc4514_string() == "CN=Corp Issuing CA,O=Corp,L=Berlin,C=DE"
    # RSA-2048 issuing CAs live 5 years.
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days in (1825, 1826)
    assert client.get(f"/pki/ca/{root.id}.cer").data == root.cert_der


def test_ca_wizard_errors_at_the_field(client, mrao):
    form = {
        "name": "",
        "parent_id": "",
        "key_type": "RSA-2048",
        "signature_hash": "SHA-1",
        "purpose": "TLS",
        "customer_name": "X" * 60,
        "country": "DE",
        "confirmed": "",
    }
    page = post(client, "/admin/cas/new/", form).get_data(as_text=True)
    assert "This field is required." in page
    page = post(client, "/admin/cas/new/", {**form, "name": "Legacy"}).get_data(as_text=True)
    assert "SHA-1 is a legacy signature hash" in page and "At most 53 characters" in page


def world(client):
    org = make_org("Acme", city="Berlin")
    make_domain(
        "acme.example",
        by=db.session.get(__import__("app.models", fromlist=["Admin"]).Admin, 1),
        org=org,
    )
    _root, issuing, profile = make_pki()
    return org, issuing, profile


def submit(client, org, profile, **changes):
    csr, _key = make_csr("www.acme.example", "api.acme.example")
    data = {
        "mode": "csr",
        "csr": csr.decode(),
        "key_type": "",
        "target": f"o:{org.id}",
        "profile_id": profile.id,
        "term_days": 90,
        "common_name": "",
        "sans": "",
        "requester_email": "req@acme.example",
        "external_requesters": "ext@partner.example",
        "auto_renew": "off",
        "renew_days_before": "30",
        "comments": "",
        "eula": "accept",
    }
    data.update(changes)
    return post(client, "/admin/ssl_requests/new/", data)


def test_request_wizard_approve_download_revoke(client, mrao, stub_worker):
    org, _issuing, profile = world(client)
    page = submit(client, org, profile).get_data(as_text=True)
    assert "for www.acme.example is Requested" in page
    req = db.session.execute(select(CertificateRequest)).scalar_one()
    url = f"/admin/ssl_requests/decide/?id={req.id}"
    page = post(client, url, {"message": "looks right", "approve": "1"}).get_data(as_text=True)
    assert "approved; the certificate is being issued" in page
    drain(stub_worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.ISSUED
    listing = client.get("/admin/ssl_certs/").get_data(as_text=True)
    assert "www.acme.example" in listing and "Issued" in listing
    details = client.get(f"/admin/ssl_certs/details/?id={req.certificate_id}").get_data(
        as_text=True
    )
    assert "DNS:www.acme.example" in details and "CN=Test Issuing CA" in details
    pem = client.get(f"/admin/ssl_certs/download/?id={req.certificate_id}&format=x509")
    assert (
        pem.data.count(b"BEGIN CERTIFICATE") == 3
        and "attachment" in pem.headers["Content-Disposition"]
    )
    url = f"/admin/ssl_certs/revoke/?ids={req.certificate_id}"
    page = post(
        client,
        url,
        {"ids": str(req.certificate_id), "reason": "keyCompromise", "message": "laptop stolen"},
    ).get_data(as_text=True)
    assert "1 certificate(s) revoked (keyCompromise)" in page
    assert db.session.get(Certificate, req.certificate_id).status == CertStatus.REVOKED


def test_wizard_get_from_csr_and_field_errors(client, mrao):
    org, _issuing, profile = world(client)
    page = submit(client, org, profile, from_csr="1").get_data(as_text=True)
    assert (
        'value="www.acme.example"' in page and "api.acme.example" in page and "Read the CSR" in page
    )
    page = submit(client, org, profile, eula="").get_data(as_text=True)
    assert "Accept the subscriber agreement" in page
    page = submit(client, org, profile, term_days=365).get_data(as_text=True)
    assert "A term of 365 days is not allowed" in page
    page = submit(client, org, profile, csr="garbage").get_data(as_text=True)
    assert "The CSR is not usable" in page
    page = submit(client, org, profile, sans="www.evil.example").get_data(as_text=True)
    assert "The name www.evil.example is not inside an active domain delegated to Acme" in page
    assert (
        db.session.execute(select(func.count()).select_from(CertificateRequest)).scalar_one() == 0
    )


def test_keygen_request_and_pkcs12_download(client, mrao, stub_worker):
    org, _issuing, profile = world(client)
    profile.requires_approval = False
    db.session.commit()
    page = submit(
        client,
        org,
        profile,
        mode="keygen",
        csr="",
        key_type="EC-P256",
        common_name="app.acme.example",
    ).get_data(as_text=True)
    assert "is Approved" in page
    drain(stub_worker)
    cert = db.session.execute(select(Certificate)).scalar_one()
    page = client.get(f"/admin/ssl_certs/details/?id={cert.id}").get_data(as_text=True)
    assert "PKCS#12 with the server-generated key" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    p12 = client.post(
        "/admin/ssl_certs/pkcs12/",
        data={"id": cert.id, "password": "short", "csrf_token": token},
        follow_redirects=True,
    )
    assert b"at least 8 characters" in p12.data
    p12 = client.post(
        "/admin/ssl_certs/pkcs12/",
        data={"id": cert.id, "password": "long-enough-pass", "csrf_token": token},
    )
    assert p12.headers["Content-Type"] == "application/x-pkcs12" and len(p12.data) > 500


def test_profile_form(client, mrao):
    _org, issuing, _profile = world(client)
    data = {
        "name": "Web 47",
        "description": "",
        "cert_type": "ssl",
        "ca_id": issuing.id,
        "terms": "30, 47",
        "key_types": ["EC-P256"],
        "requires_approval": "y",
        "lint_mode": "sample",
        "lint_sample_n": "50",
        "active": "y",
    }
    page = post(client, "/admin/profiles/new/", data).get_data(as_text=True)
    assert "Profile &#39;Web 47&#39; created." in page
    page = post(
        client, "/admin/profiles/new/", {**data, "name": "Too long", "terms": "400"}
    ).get_data(as_text=True)
    assert "exceeds the CA/Browser Forum maximum" in page
    page = post(
        client, "/admin/profiles/new/", {**data, "name": "Bad", "terms": "ninety"}
    ).get_data(as_text=True)
    assert "&#39;ninety&#39; is not a whole number of days." in page
    assert (
        db.session.execute(select(func.count()).select_from(CertificateProfile)).scalar_one() == 2
    )
