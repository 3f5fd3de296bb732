"""CRL, OCSP and CA certificates over real HTTP, checked with the openssl command line."""

from __future__ import annotations

import subprocess
import threading
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from werkzeug.serving import make_server

from app.extensions import db
from app.models import CertificateRequest, RequestMode, RequestStatus
from app.services.ca import ocsp
from app.services.certificates import approvals, enrollment, inventory, renewal, revocation
from app.services.errors import DomainError
from tests.conftest import drain
from tests.factories import (
    make_admin,
    make_csr,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)


@pytest.fixture
def live(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def issued(app, stub_worker, tmp_path):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    root, issuing, profile = make_pki(key_type="RSA-2048")
    req, _ = request_certificate(
        by=mrao,
        org=org,
        profile=profile,
        cn="www.acme.example",
        key_type="RSA-2048",
        approve=True,
        auto_renew=True,
        renew_days_before=30,
    )
    drain(stub_worker)
    db.session.refresh(req)
    cert = req.certificate
    for name, der in (("root", root.cert_der), ("issuing", issuing.cert_der), ("leaf", cert.der)):
        (tmp_path / f"{name}.pem").write_bytes(
            x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
        )
    ocsp.forget()
    return {
        "mrao": mrao,
        "org": org,
        "profile": profile,
        "root": root,
        "issuing": issuing,
        "cert": cert,
        "req": req,
        "dir": tmp_path,
    }


def openssl_ocsp(issued, url, *extra):
    d = issued["dir"]
    out = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            d / "issuing.pem",
            "-cert",
            d / "leaf.pem",
            "-url",
            url,
            "-CAfile",
            d / "root.pem",
            "-VAfile",
            d / "issuing.pem",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout + out.stderr


def test_ocsp_good_then_revoked_with_openssl(app, issued, live):
    url = f"{live}/pki/ocsp/{issued['issuing'].id}"
    before = openssl_ocsp(issued, url)
    assert "Response verify OK" in before and "leaf.pem: good" in before
    revocation.revoke(
        actor=issued["mrao"], certificate_ids=[issued["cert"].id], reason="keyCompromise"
    )
    db.session.commit()
    after = openssl_ocsp(issued, url)  # openssl sends a nonce: always signed fresh
    assert "leaf.pem: revoked" in after and "Reason: keyCompromise" in after, after
    no_nonce = openssl_ocsp(issued, url, "-no_nonce")
    assert "leaf.pem: revoked" in no_nonce


def test_ocsp_get_and_unknown_serial(app, issued, live):
    d = issued["dir"]
    subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            d / "issuing.pem",
            "-serial",
            "0x1234",
            "-reqout",
            d / "req.der",
            "-no_nonce",
        ],
        check=True,
        capture_output=True,
    )
    import base64
    import urllib.parse

    encoded = urllib.parse.quote(base64.b64encode((d / "req.der").read_bytes()).decode(), safe="")
    with urllib.request.urlopen(f"{live}/pki/ocsp/{issued['issuing'].id}/{encoded}") as resp:
        assert resp.headers["Content-Type"] == "application/ocsp-response"
        (d / "resp.der").write_bytes(resp.read())
    out = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-respin",
            d / "resp.der",
            "-issuer",
            d / "issuing.pem",
            "-serial",
            "0x1234",
            "-VAfile",
            d / "issuing.pem",
            "-CAfile",
            d / "root.pem",
        ],
        capture_output=True,
        text=True,
    )
    assert "unknown" in out.stdout, out.stdout + out.stderr
    malformed = urllib.request.Request(
        f"{live}/pki/ocsp/1", data=b"garbage", headers={"Content-Type": "application/ocsp-request"}
    )
    with urllib.request.urlopen(malformed) as resp:
        assert resp.read() == bytes.fromhex("30030a0101")  # malformedRequest


def test_crl_and_ca_certificate_are_served(app, issued, live):
    revocation.revoke(
        actor=issued["mrao"], certificate_ids=[issued["cert"].id], reason="cessationOfOperation"
    )
    db.session.commit()
    with urllib.request.urlopen(f"{live}/pki/crl/{issued['issuing'].id}.crl") as resp:
        assert resp.headers["Content-Type"] == "application/pkix-crl"
        crl = x509.load_der_x509_crl(resp.read())
    assert (
        crl.get_revoked_certificate_by_serial_number(int(issued["cert"].serial_hex, 16)) is not None
    )
    with urllib.request.urlopen(f"{live}/pki/ca/{issued['issuing'].id}.cer") as resp:
        assert resp.read() == issued["issuing"].cert_der
    leaf = x509.load_der_x509_certificate(issued["cert"].der)
    cdp = (
        leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        .value[0]
        .full_name[0]
        .value
    )
    assert cdp == f"http://certwright.test/pki/crl/{issued['issuing'].id}.crl"


def test_every_download_format(app, issued):
    cert = issued["cert"]
    expected = {
        "x509": 3,
        "x509CO": 1,
        "x509IO": 2,
        "x509IOR": 2,
        "pem": 3,
        "pemco": 1,
        "pemia": 2,
        "base64": None,
        "bin": None,
        "cer": None,
    }
    for fmt, count in expected.items():
        result = inventory.download(actor=issued["mrao"], certificate_id=cert.id, fmt=fmt)
        if count is not None:
            assert result.content.count(b"BEGIN CERTIFICATE") == count, fmt
    assert (
        inventory.download(actor=issued["mrao"], certificate_id=cert.id, fmt="cer").content
        == cert.der
    )
    p7 = inventory.download(actor=issued["mrao"], certificate_id=cert.id, fmt="bin").content
    (issued["dir"] / "c.p7b").write_bytes(p7)
    out = subprocess.run(
        [
            "openssl",
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            issued["dir"] / "c.p7b",
            "-print_certs",
            "-noout",
        ],
        capture_output=True,
        text=True,
    )
    assert out.stdout.count("subject=") == 3
    with pytest.raises(DomainError, match="unknown download format"):
        inventory.download(actor=issued["mrao"], certificate_id=cert.id, fmt="zip")


def test_collection_link(app, issued, client):
    body = db.session.execute(
        select(__import__("app.models", fromlist=["OutboxMessage"]).OutboxMessage.body)
    ).scalar_one()
    link = next(line.strip() for line in body.splitlines() if "/collect/" in line).replace(
        "http://certwright.test", ""
    )
    page = client.get(link)
    assert page.status_code == 200 and b"www.acme.example" in page.data
    pem = client.get(link + "/x509CO")
    assert pem.status_code == 200 and pem.data == x509.load_der_x509_certificate(
        issued["cert"].der
    ).public_bytes(Encoding.PEM)
    assert client.get(link[:-3] + "xyz/x509CO").status_code == 404


def test_renewal_keeps_key_and_links_history(app, issued, stub_worker):
    new_req = renewal.renew(actor=issued["mrao"], certificate_id=issued["cert"].id)
    db.session.commit()
    assert new_req.status == RequestStatus.REQUESTED and new_req.renewal_of_id == issued["cert"].id
    approvals.approve(actor=issued["mrao"], request_ids=[new_req.id])
    drain(stub_worker)
    db.session.refresh(new_req)
    old = issued["cert"]
    db.session.refresh(old)
    new = new_req.certificate
    assert old.status.value == "Replaced" and old.replaced_by_id == new.id
    assert (
        x509.load_der_x509_certificate(new.der).public_key()
        == x509.load_der_x509_certificate(old.der).public_key()
    )


def test_replace_revokes_the_old_certificate(app, issued, stub_worker):
    csr, _ = make_csr("www.acme.example", key_type="RSA-2048")
    req = renewal.replace(actor=issued["mrao"], certificate_id=issued["cert"].id, csr=csr)
    approvals.approve(actor=issued["mrao"], request_ids=[req.id])
    drain(stub_worker)
    old = issued["cert"]
    db.session.refresh(old)
    assert old.status.value == "Revoked" and old.revocation_reason == "superseded"


def test_auto_renew_sweep(app, issued, stub_worker):
    from datetime import timedelta

    from app.models.types import utcnow

    cert = issued["cert"]
    cert.not_after = utcnow() + timedelta(days=10)  # inside its 30-day window
    db.session.commit()
    created = renewal.auto_renew_sweep()
    db.session.commit()
    assert len(created) == 1
    assert renewal.auto_renew_sweep() == []  # a second sweep does not renew twice
    drain(stub_worker)
    req = db.session.get(CertificateRequest, created[0])
    assert (
        req.status == RequestStatus.ISSUED
        and req.decision_message == "auto-renewal of an approved certificate"
    )


def test_keygen_request_yields_pkcs12_readable_by_openssl(app, issued, stub_worker):
    data = enrollment.RequestData(
        organization_id=issued["org"].id,
        profile_id=issued["profile"].id,
        term_days=90,
        mode=RequestMode.KEYGEN,
        key_type="RSA-2048",
        common_name="app.acme.example",
        eula_accepted=True,
    )
    req = enrollment.submit_request(actor=issued["mrao"], data=data)
    approvals.approve(actor=issued["mrao"], request_ids=[req.id])
    drain(stub_worker)
    db.session.refresh(req)
    p12 = inventory.pkcs12(
        actor=issued["mrao"], certificate_id=req.certificate_id, password="s3cret-pass"
    )
    (issued["dir"] / "k.p12").write_bytes(p12.content)
    out = subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-in",
            issued["dir"] / "k.p12",
            "-passin",
            "pass:s3cret-pass",
            "-nodes",
        ],
        capture_output=True,
        text=True,
    )
    assert (
        out.returncode == 0
        and "BEGIN PRIVATE KEY" in out.stdout
        and out.stdout.count("BEGIN CERTIFICATE") == 3
    ), out.stderr
    with pytest.raises(DomainError, match="does not hold the key"):
        inventory.pkcs12(
            actor=issued["mrao"], certificate_id=issued["cert"].id, password="s3cret-pass"
        )
