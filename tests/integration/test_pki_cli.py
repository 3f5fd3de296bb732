"""The PKI command line: ca create, cert request/approve/revoke/download."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, CertificateAuthority, CertificateRequest, CertStatus
from app.services.scope import SYSTEM
from tests.conftest import drain
from tests.factories import make_admin, make_csr, make_domain, make_org


def run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    return result.exit_code, result.output


def test_ca_and_certificate_from_the_command_line(app, stub_worker, tmp_path):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    code, out = run(
        app,
        "ca",
        "create",
        "--name",
        "Root",
        "--customer",
        "Acme",
        "--key-type",
        "EC-P384",
        "--country",
        "DE",
    )
    assert code == 0 and "Created Root CA 'Root'" in out, out
    code, out = run(
        app,
        "ca",
        "create",
        "--name",
        "Issuing",
        "--customer",
        "Acme",
        "--key-type",
        "EC-P256",
        "--parent",
        "Root",
    )
    assert code == 0 and "Issuing CA" in out, out
    issuing = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.name == "Issuing")
    ).scalar_one()
    # BR 7.1.3.2.2: the signing key decides. The P-384 root signed the issuing CA's
    # certificate with SHA-384; the P-256 issuing CA signs with SHA-256.
    assert issuing.signature_hash == "SHA-256"
    issuing_cert = x509.load_der_x509_certificate(issuing.cert_der)
    assert isinstance(issuing_cert.signature_hash_algorithm, hashes.SHA384)
    assert "signs with SHA-256, issues TLS" in out
    from app.models import CertType
    from app.services.ca import profiles

    profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="web",
            cert_type=CertType.SSL,
            ca_id=issuing.id,
            terms=(90,),
            key_types=("EC-P256",),
        ),
    )
    db.session.commit()
    csr, _ = make_csr("www.acme.example")
    (tmp_path / "req.csr").write_bytes(csr)
    code, out = run(
        app,
        "cert",
        "request",
        "--csr",
        str(tmp_path / "req.csr"),
        "--org",
        "Acme",
        "--profile",
        "web",
        "--term",
        "90",
    )
    assert code == 0 and "for www.acme.example: Requested" in out, out
    req = db.session.execute(select(CertificateRequest)).scalar_one()
    code, out = run(app, "cert", "approve", str(req.id), "--message", "ok")
    assert code == 0 and f"Approved 1 request(s): {req.id}" in out
    drain(stub_worker)
    cert = db.session.execute(select(Certificate)).scalar_one()
    code, out = run(
        app,
        "cert",
        "download",
        str(cert.id),
        "--format",
        "x509CO",
        "--out",
        str(tmp_path / "c.pem"),
    )
    assert code == 0 and (tmp_path / "c.pem").read_bytes().startswith(
        b"-----BEGIN CERTIFICATE-----"
    )
    code, out = run(app, "cert", "revoke", str(cert.id), "--reason", "keyCompromise")
    assert code == 0 and "Revoked 1 certificate(s)." in out
    db.session.refresh(cert)
    assert cert.status == CertStatus.REVOKED
    leaf = x509.load_der_x509_certificate(cert.der)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)


def test_cli_errors_are_specific(app):
    make_admin("mrao")
    code, out = run(
        app, "ca", "create", "--name", "X", "--customer", "Acme", "--key-type", "RSA-1024"
    )
    assert code == 2 and "unknown key type 'RSA-1024'" in out
    code, out = run(
        app,
        "cert",
        "request",
        "--keygen",
        "EC-P256",
        "--org",
        "Nope",
        "--profile",
        "p",
        "--term",
        "90",
    )
    assert code == 2 and "no certificate profile named 'p'" in out
