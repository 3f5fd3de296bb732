"""Self-service on the portal with email and passphrase: revoke (CRL and OCSP say so at
once) and renew (a one-time code by mail, a new key, the old certificate revoked as
superseded only once the new one is downloaded); wrong passphrases throttled alike."""

from __future__ import annotations

import os
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ocsp
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Certificate, CertificateAuthority, CertStatus
from app.services.ca import ocsp as ocsp_service
from app.services.persons import persons, throttle
from tests.integration.portal_world import (
    CODE_RE,
    PASSPHRASE,
    add_person,
    collect,
    invite,
    last_mail,
    make_world,
    register,
    token_of,
)

WRONG = "The email address or the passphrase is not right."


def enrolled(client, worker):
    world = make_world()
    person = add_person(world)
    p12 = collect(
        client, register(client, person.email, invite(world, person)).headers["Location"], worker
    )
    (cert,) = persons.valid_certificates(person.id)
    return world, person, cert, p12


def post_form(client, url, **fields):
    page = client.get(url).get_data(as_text=True)
    return client.post(url, data={"csrf_token": token_of(page), **fields})


def ocsp_status(client, cert: Certificate, issuing: CertificateAuthority):
    leaf = x509.load_der_x509_certificate(cert.der)
    issuer = x509.load_der_x509_certificate(issuing.cert_der)
    # With a nonce: a fresh answer, not the responder's few-seconds cache.
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, issuer, hashes.SHA1())
        .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
        .build()
    )
    response = client.post(
        f"/pki/ocsp/{issuing.id}",
        data=request.public_bytes(serialization.Encoding.DER),
        content_type="application/ocsp-request",
    )
    return ocsp.load_der_ocsp_response(response.data).certificate_status


def test_self_service_revoke_shows_in_ocsp_and_the_crl(app, client, stub_worker):
    world, person, cert, _ = enrolled(client, stub_worker)
    ocsp_service.forget()  # this process's responder may know another test's CAs
    assert ocsp_status(client, cert, world.issuing) == ocsp.OCSPCertStatus.GOOD
    page = post_form(
        client,
        "/portal/revoke",
        email=person.email,
        passphrase="not my passphrase",
        reason="keyCompromise",
        confirm="y",
    )
    assert WRONG in page.get_data(as_text=True)
    unconfirmed = post_form(
        client, "/portal/revoke", email=person.email, passphrase=PASSPHRASE, reason="keyCompromise"
    )
    assert "Tick the box to confirm" in unconfirmed.get_data(as_text=True)
    done = post_form(
        client,
        "/portal/revoke",
        email=person.email,
        passphrase=PASSPHRASE,
        reason="keyCompromise",
        confirm="y",
    )
    assert f"Revoked: serial {cert.serial_hex}" in done.get_data(as_text=True)
    revoked = db.session.get(Certificate, cert.id)
    assert (revoked.status, revoked.revocation_reason) == (CertStatus.REVOKED, "keyCompromise")
    assert ocsp_status(client, revoked, world.issuing) == ocsp.OCSPCertStatus.REVOKED
    crl = x509.load_der_x509_crl(client.get(f"/pki/crl/{world.issuing.id}.crl").data)
    assert crl.get_revoked_certificate_by_serial_number(int(cert.serial_hex, 16)) is not None
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "certificate.revoke")
    ).scalar_one()
    assert event.actor == f"portal: {person.email}" and event.ip == "127.0.0.1"
    again = post_form(
        client,
        "/portal/revoke",
        email=person.email,
        passphrase=PASSPHRASE,
        reason="unspecified",
        confirm="y",
    )
    assert "has no valid certificate to revoke" in again.get_data(as_text=True)


def test_self_service_renewal_replaces_the_old_certificate_once_collected(app, client, stub_worker):
    _world, person, old, _ = enrolled(client, stub_worker)
    done = post_form(client, "/portal/renew", email=person.email, passphrase=PASSPHRASE)
    assert f"We sent a renewal code to {person.email}" in done.get_data(as_text=True)
    mail = last_mail(person.email)
    assert mail.subject == "Renew your client certificate" and old.serial_hex in mail.body
    code = CODE_RE.search(mail.body).group(1)
    link = re.search(r"http://certwright.test(/portal/renew/complete\?email=\S+)", mail.body).group(
        1
    )
    # A renewal code does not work on the registration page.
    assert "not valid" in register(client, person.email, code).get_data(as_text=True)
    response = post_form(
        client,
        link,
        email=person.email,
        code=code,
        pkcs12_password="New-password-2027",
        pkcs12_password_again="New-password-2027",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    progress = response.headers["Location"]
    from tests.conftest import drain

    drain(stub_worker)
    # Issued but not collected: the old certificate is still valid.
    assert db.session.get(Certificate, old.id).status == CertStatus.ISSUED
    p12 = collect(client, progress, stub_worker)
    new = pkcs12.load_pkcs12(p12, b"New-password-2027").cert.certificate
    assert new.serial_number != int(old.serial_hex, 16)
    assert new.public_key() != x509.load_der_x509_certificate(old.der).public_key()  # a new key
    replaced = db.session.get(Certificate, old.id)
    assert (replaced.status, replaced.revocation_reason) == (CertStatus.REVOKED, "superseded")
    assert replaced.replaced_by_id == persons.valid_certificates(person.id)[0].id


def test_wrong_passphrases_are_throttled_and_unknown_addresses_look_the_same(
    app, client, stub_worker
):
    _world, person, _cert, _ = enrolled(client, stub_worker)
    unknown = post_form(client, "/portal/renew", email="nobody@acme.example", passphrase=PASSPHRASE)
    assert WRONG in unknown.get_data(as_text=True)
    for _ in range(throttle.LIMITS["email"]):
        assert WRONG in post_form(
            client, "/portal/renew", email=person.email, passphrase="guess guess guess"
        ).get_data(as_text=True)
    blocked = post_form(client, "/portal/renew", email=person.email, passphrase=PASSPHRASE)
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers


def test_a_persons_certificate_is_renewed_on_the_portal_not_in_the_console(
    app, client, stub_worker
):
    from app.services.certificates import renewal
    from app.services.errors import DomainError

    world, _person, cert, _ = enrolled(client, stub_worker)
    with pytest.raises(DomainError, match="they renew it on the enrollment portal"):
        renewal.renew(actor=world.mrao, certificate_id=cert.id)
