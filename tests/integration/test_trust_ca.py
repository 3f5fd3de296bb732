"""Issue 9 A1-A4, A8 through the services and front doors: CA purposes and profiles, the
signing key's hash, CA revocation on the parent's CRL and OCSP, revocation reasons, and
CRLs that keep their order whatever the clock does."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (
    AuditEvent,
    BlockedKey,
    CaStatus,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    CertType,
    RequestStatus,
)
from app.models.types import utcnow
from app.pki.revocation import Revoker
from app.services.ca import authorities, crl, ocsp, profiles
from app.services.certificates import revocation
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import SYSTEM
from tests.conftest import csrf_token, drain, login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)


def _spec(**fields):
    base = {"name": "Root", "key_type": "EC-P256", "customer_name": "Acme", "country": "DE"}
    return authorities.CaSpec(**{**base, **fields})


def _ca(**fields):
    ca = authorities.create_ca(actor=SYSTEM, spec=_spec(**fields))
    db.session.commit()
    return ca


def _cert(ca: CertificateAuthority) -> x509.Certificate:
    return x509.load_der_x509_certificate(ca.cert_der)


def _field_errors(exc: pytest.ExceptionInfo[ValidationFailed]) -> dict[str, list[str]]:
    return exc.value.errors


# A1 ------------------------------------------------------------------------------------


def test_issuing_ca_purpose_decides_its_eku_and_the_profiles_it_enrolls(app):
    root = _ca()
    smime = _ca(name="Mail CA", parent_id=root.id, purpose="SMIME")
    tls = _ca(name="Web CA", parent_id=root.id)  # TLS unless told otherwise
    eku = _cert(smime).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH]
    policies = _cert(tls).extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.5.29.32.0"]
    assert (
        authorities.purpose_label(smime) == "S/MIME" and authorities.purpose_label(root) == "root"
    )
    data = profiles.ProfileData(
        name="web on mail",
        cert_type=CertType.SSL,
        ca_id=smime.id,
        terms=(90,),
        key_types=("EC-P256",),
    )
    with pytest.raises(ValidationFailed) as refused:
        profiles.create_profile(actor=SYSTEM, data=data)
    assert "cannot enroll SSL certificates" in _field_errors(refused)["ca_id"][0]
    assert "S/MIME issuing CA issues Client certificates only" in _field_errors(refused)["ca_id"][0]
    db.session.rollback()
    client_profile = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="mail",
            cert_type=CertType.CLIENT,
            ca_id=smime.id,
            terms=(365,),
            key_types=("EC-P256",),
        ),
    )
    assert client_profile.id
    with pytest.raises(ValidationFailed) as refused:
        profiles.update_profile(
            actor=make_admin("mrao"),
            profile_id=client_profile.id,
            data=profiles.ProfileData(
                name="mail",
                cert_type=CertType.CLIENT,
                ca_id=tls.id,
                terms=(365,),
                key_types=("EC-P256",),
            ),
        )
    assert "cannot enroll Client certificates" in _field_errors(refused)["ca_id"][0]


def test_root_needs_a_country_and_a_br_lifetime(app):
    with pytest.raises(ValidationFailed) as refused:
        authorities.create_ca(actor=SYSTEM, spec=_spec(country=""))
    assert (
        "country" in _field_errors(refused)
        and "BR 7.1.2.10.2" in _field_errors(refused)["country"][0]
    )
    for years in (5, 30):
        with pytest.raises(ValidationFailed) as refused:
            authorities.create_ca(actor=SYSTEM, spec=_spec(lifetime_years=years))
        assert _field_errors(refused)["lifetime_years"][0].startswith("Between 8 and 25 years")
    with pytest.raises(ValidationFailed) as refused:
        authorities.create_ca(actor=SYSTEM, spec=_spec(purpose="Timestamping"))
    assert "purpose" in _field_errors(refused)
    root = _ca(lifetime_years=8)
    issuing = _ca(name="Issuing", parent_id=root.id, country="")  # inherits the root's C
    assert issuing.country == "DE"


def test_cli_creates_ca_per_purpose(app):
    runner = app.test_cli_runner()
    make_admin("mrao")
    out = runner.invoke(
        args=[
            "ca",
            "create",
            "--name",
            "R",
            "--customer",
            "Acme",
            "--key-type",
            "EC-P256",
            "--country",
            "DE",
        ]
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(
        args=[
            "ca",
            "create",
            "--name",
            "Dev",
            "--customer",
            "Acme",
            "--parent",
            "R",
            "--purpose",
            "device",
        ]
    )
    assert out.exit_code == 0 and "issues device" in out.output, out.output
    dev = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.name == "Dev")
    ).scalar_one()
    eku = _cert(dev).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    listing = runner.invoke(args=["ca", "list"]).output
    assert "device" in listing and "root" in listing
    out = runner.invoke(
        args=["ca", "create", "--name", "R2", "--customer", "Acme", "--key-type", "EC-P256"]
    )
    assert out.exit_code == 2 and "BR 7.1.2.10.2" in out.output


def test_console_wizard_offers_the_purpose(client, app):
    make_admin("mrao")
    login(client, "mrao", PASSWORD)
    root = _ca()
    form = {
        "name": "Code CA",
        "parent_id": str(root.id),
        "key_type": "EC-P256",
        "signature_hash": "",
        "purpose": "CodeSigning",
        "customer_name": "Acme",
        "locality": "",
        "state": "",
        "country": "",
        "confirmed": "",
    }
    url = "/admin/cas/new/"
    page = client.post(url, data={**form, "csrf_token": csrf_token(client, url)}).get_data(
        as_text=True
    )
    assert "code signing" in page and "the parent signs this certificate with SHA-256" in page
    page = client.post(
        url,
        data={**form, "confirmed": "yes", "csrf_token": csrf_token(client, url)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Created the CA &#39;Code CA&#39;" in page
    created = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.name == "Code CA")
    ).scalar_one()
    assert authorities.purpose_label(created) == "code signing"
    page = client.post(
        url,
        data={
            **form,
            "name": "Bad",
            "parent_id": "",
            "country": "",
            "csrf_token": csrf_token(client, url),
        },
    ).get_data(as_text=True)
    assert "BR 7.1.2.10.2" in page


# A2 ------------------------------------------------------------------------------------


def test_the_signing_key_decides_the_hash(app):
    root = _ca(key_type="EC-P384")
    issuing = _ca(name="Issuing", key_type="EC-P256", parent_id=root.id)
    assert root.signature_hash == "SHA-384" and issuing.signature_hash == "SHA-256"
    assert isinstance(_cert(issuing).signature_hash_algorithm, hashes.SHA384)  # the root's
    assert isinstance(
        x509.load_der_x509_crl(issuing.crl_der).signature_hash_algorithm, hashes.SHA256
    )
    with pytest.raises(ValidationFailed) as refused:
        authorities.create_ca(
            actor=SYSTEM,
            spec=_spec(name="X", key_type="EC-P256", parent_id=root.id, signature_hash="SHA-384"),
        )
    assert (
        "An EC-P256 key signs with SHA-256 (CA/B Forum BR 7.1.3.2.2)"
        in (_field_errors(refused)["signature_hash"][0])
    )
    rsa = _ca(name="RSA", key_type="RSA-2048", parent_id=root.id, signature_hash="SHA-512")
    assert rsa.signature_hash == "SHA-512"


# A3 ------------------------------------------------------------------------------------


def _ocsp_status(subject: x509.Certificate, issuer: x509.Certificate, *, nonce: bool = False):
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(subject, issuer, hashes.SHA1())
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
    der = builder.build().public_bytes(Encoding.DER)
    return x509_ocsp.load_der_ocsp_response(ocsp.answer(der))


def test_revoking_an_issuing_ca_publishes_it_on_its_parent(app, stub_worker):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    root, issuing, profile = make_pki()
    ocsp.forget()
    response = _ocsp_status(_cert(issuing), _cert(root))
    assert response.certificate_status == x509_ocsp.OCSPCertStatus.GOOD  # was "unknown"
    with pytest.raises(DomainError) as refused:
        authorities.revoke_ca(actor=mrao, ca_id=issuing.id, reason="keyCompromise")
    assert refused.value.field == "reason" and "cACompromise" in refused.value.message
    with pytest.raises(DomainError) as refused:
        authorities.revoke_ca(actor=mrao, ca_id=root.id, reason="cACompromise")
    assert "root CA" in refused.value.message
    number = root.crl_number
    authorities.revoke_ca(actor=mrao, ca_id=issuing.id, reason="cACompromise", message="HSM lost")
    db.session.commit()
    db.session.refresh(root)
    assert root.crl_number == number + 1
    listed = x509.load_der_x509_crl(root.crl_der).get_revoked_certificate_by_serial_number(
        _cert(issuing).serial_number
    )
    assert listed is not None
    assert listed.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.ca_compromise
    )
    for nonce in (True, False):  # signed fresh; then past the cache's CRL-number check
        response = _ocsp_status(_cert(issuing), _cert(root), nonce=nonce)
        assert response.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_reason == x509.ReasonFlags.ca_compromise
        ocsp.forget()
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "ca.revoke")
    ).scalar_one()
    assert event.before["status"] == "Active" and event.after["reason"] == "cACompromise"
    assert db.session.execute(select(func.count()).select_from(BlockedKey)).scalar_one() == 1
    # It signs nothing more: an approved request fails with the reason.
    req, _ = request_certificate(
        by=mrao, org=org, profile=profile, cn="www.acme.example", approve=True
    )
    drain(stub_worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.FAILED and "revoked and signs nothing" in req.failure_reason
    with pytest.raises(DomainError, match="already revoked"):
        authorities.revoke_ca(actor=mrao, ca_id=issuing.id, reason="superseded")


def test_ca_revoke_from_the_cli_and_the_console(app, client):
    mrao = make_admin("mrao")
    root, _issuing, _profile = make_pki()
    other = _ca(name="Second", parent_id=root.id)
    out = app.test_cli_runner().invoke(
        args=["ca", "revoke", "Test Issuing", "--reason", "cessationOfOperation"]
    )
    assert out.exit_code == 0 and "the CRL of 'Test Root' lists it" in out.output, out.output
    login(client, "mrao", PASSWORD)
    url = f"/admin/cas/revoke/?id={other.id}"
    page = client.get(url).get_data(as_text=True)
    assert "cACompromise" in page and "certificateHold" not in page
    page = client.post(
        url,
        data={
            "id": other.id,
            "reason": "superseded",
            "message": "",
            "csrf_token": csrf_token(client, url),
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "The CA &#39;Second&#39; was revoked" in page
    db.session.expire_all()
    assert {
        c.name: c.status for c in db.session.execute(select(CertificateAuthority)).scalars()
    } == {
        "Test Root": CaStatus.ACTIVE,
        "Test Issuing": CaStatus.REVOKED,
        "Second": CaStatus.REVOKED,
    }
    crl_der = client.get(f"/pki/crl/{root.id}.crl").data
    assert len(x509.load_der_x509_crl(crl_der)) == 2
    assert mrao.id


# A4 ------------------------------------------------------------------------------------


@pytest.fixture
def issued(app, stub_worker):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    root, issuing, profile = make_pki()
    reqs = [
        request_certificate(
            by=mrao, org=org, profile=profile, cn=f"h{i}.acme.example", approve=True
        )[0]
        for i in range(2)
    ]
    drain(stub_worker)
    certs = []
    for req in reqs:
        db.session.refresh(req)
        certs.append(req.certificate)
    ocsp.forget()
    return {"mrao": mrao, "root": root, "issuing": issuing, "certs": certs, "profile": profile}


def test_revocation_reasons_follow_br_7_2_2(app, issued):
    mrao, cert = issued["mrao"], issued["certs"][0]
    for reason, why in (
        ("certificateHold", "does not suspend"),
        ("cACompromise", "for authority certificates"),
        ("aACompromise", "for authority certificates"),
        ("removeFromCRL", "delta CRLs"),
    ):
        with pytest.raises(DomainError) as refused:
            revocation.revoke(actor=mrao, certificate_ids=[cert.id], reason=reason)
        assert refused.value.field == "reason" and why in refused.value.message, (
            refused.value.message
        )
    with pytest.raises(DomainError, match="privilegeWithdrawn is the CA's to choose"):
        revocation.revoke(
            actor=mrao,
            certificate_ids=[cert.id],
            reason="privilegeWithdrawn",
            revoker=Revoker.SUBSCRIBER,
        )
    offered = [value for value, _label in revocation.reason_choices()]
    assert offered == [
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
    ]
    assert "privilegeWithdrawn" not in dict(revocation.reason_choices(revoker=Revoker.SUBSCRIBER))
    revocation.revoke(actor=mrao, certificate_ids=[cert.id], reason="privilegeWithdrawn")
    db.session.commit()


def test_a_stored_reason_the_rules_refuse_is_never_published(app, issued):
    """A row stored before the rules (what the migration rewrites): no CRL is stored and
    OCSP answers internalError instead of an HTTP 500."""
    issuing, cert, other = issued["issuing"], *issued["certs"]
    db.session.execute(
        update(Certificate)
        .where(Certificate.id == cert.id)
        .values(status="Revoked", revoked_at=utcnow(), revocation_reason="certificateHold")
    )
    db.session.commit()
    number = issuing.crl_number
    with pytest.raises(DomainError, match="certificateHold cannot be published"):
        crl.publish_crl(ca_id=issuing.id, trigger="test")
    db.session.rollback()
    db.session.refresh(issuing)
    assert issuing.crl_number == number
    leaf = x509.load_der_x509_certificate(cert.der)
    response = _ocsp_status(leaf, _cert(issuing), nonce=True)
    assert response.response_status == x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR
    der = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, _cert(issuing), hashes.SHA1())
    http = app.test_client().post(
        f"/pki/ocsp/{issuing.id}",
        data=der.build().public_bytes(Encoding.DER),
        headers={"Content-Type": "application/ocsp-request"},
    )
    assert http.status_code == 200 and http.data == bytes.fromhex("30030a0102")  # internalError
    # The scheduled refresh publishes the other CAs and reports this one.
    db.session.execute(update(CertificateAuthority).values(crl_next_update=utcnow()))
    db.session.commit()
    result = crl.refresh_crls()
    db.session.commit()
    assert result.published == [issued["root"].id]
    assert "certificateHold" in result.failed[issuing.id]
    assert other.id


def test_code_signing_revocations_stay_on_the_crl_ten_years(app, stub_worker):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org, types=(CertType.SSL, CertType.CODE_SIGNING))
    root = _ca(name="Root")
    code_ca = _ca(name="Code", parent_id=root.id, purpose="CodeSigning")
    web_ca = _ca(name="Web", parent_id=root.id)
    code = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="code",
            cert_type=CertType.CODE_SIGNING,
            ca_id=code_ca.id,
            terms=(90,),
            key_types=("EC-P256",),
        ),
    )
    web = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="web", cert_type=CertType.SSL, ca_id=web_ca.id, terms=(90,), key_types=("EC-P256",)
        ),
    )
    db.session.commit()
    signed, _ = request_certificate(
        by=mrao,
        org=org,
        profile=code,
        cn="build.acme.example",
        approve=True,
        cert_type=CertType.CODE_SIGNING,
    )
    served, _ = request_certificate(
        by=mrao, org=org, profile=web, cn="www.acme.example", approve=True
    )
    drain(stub_worker)
    ids = [db.session.get(CertificateRequest, r.id).certificate_id for r in (signed, served)]
    revocation.revoke(actor=mrao, certificate_ids=ids, reason="keyCompromise")
    db.session.execute(
        update(Certificate)
        .where(Certificate.id.in_(ids))
        .values(not_after=utcnow() - timedelta(days=730))
    )
    db.session.commit()
    for ca in (code_ca, web_ca):
        crl.publish_crl(ca_id=ca.id, trigger="test")
    db.session.commit()
    assert len(x509.load_der_x509_crl(code_ca.crl_der)) == 1  # Code Signing BR: 10 years
    assert len(x509.load_der_x509_crl(web_ca.crl_der)) == 0  # expired a day ago: dropped


# A8 ------------------------------------------------------------------------------------


def test_crls_keep_their_order_when_the_clock_steps_back(app, issued):
    issuing = issued["issuing"]
    # The clock ran an hour ahead when the last CRL was published, and is right again now.
    ahead = utcnow() + timedelta(hours=1)
    issuing.crl_this_update = ahead
    db.session.commit()
    number = issuing.crl_number
    revocation.revoke(
        actor=issued["mrao"], certificate_ids=[issued["certs"][0].id], reason="superseded"
    )
    db.session.commit()
    published = x509.load_der_x509_crl(issuing.crl_der)
    assert published.last_update_utc >= ahead.replace(microsecond=0) + timedelta(seconds=1)
    assert (
        published.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1
    )


def test_leaves_are_backdated_one_hour(app, issued):
    leaf = x509.load_der_x509_certificate(issued["certs"][0].der)
    lag = utcnow() - leaf.not_valid_before_utc
    assert timedelta(minutes=59) < lag < timedelta(minutes=70)
