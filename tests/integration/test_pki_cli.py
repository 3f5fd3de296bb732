"""The PKI command line: ca create, cert request/approve/revoke/download."""

from __future__ import annotations

import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    CertStatus,
    Job,
)
from app.services.scope import SYSTEM
from tests.conftest import drain
from tests.factories import make_admin, make_csr, make_domain, make_org


def run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    return result.exit_code, result.output if result.exit_code else result.stdout


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


def acme_pki(tmp_path, count=3, **profile):
    """An MRAO, Acme with a delegated domain, a CA pair and a profile; CSR files."""
    from tests.factories import make_pki

    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    make_pki(**profile)
    folder = tmp_path / "csrs"
    folder.mkdir()
    for i in range(count):
        (folder / f"host{i}.csr").write_bytes(make_csr(f"host{i}.acme.example")[0])
    (folder / "README.txt").write_text("not a CSR")
    return org, folder


def request_args(*extra):
    return ["cert", "request", "--org", "Acme", "--profile", "TLS servers", "--term", "90", *extra]


def test_many_csrs_in_one_call_all_or_nothing(app, tmp_path):
    _, folder = acme_pki(tmp_path, count=3)
    code, out = run(app, *request_args("--csr", str(folder), "--json"))
    assert code == 0, out
    items = json.loads(out)
    assert [i["common_name"] for i in items] == [f"host{i}.acme.example" for i in range(3)]
    assert {i["status"] for i in items} == {"Requested"} and all(i["id"] for i in items)

    bad, _ = make_csr("www.elsewhere.example")
    (tmp_path / "bad.csr").write_bytes(bad)
    (tmp_path / "good.csr").write_bytes(make_csr("good.acme.example")[0])
    code, out = run(
        app, *request_args("--csr", str(tmp_path / "good.csr"), "--csr", str(tmp_path / "bad.csr"))
    )
    assert code == 2
    assert "Nothing was submitted: 1 of 2 requests were refused." in out
    assert f"{tmp_path / 'bad.csr'}: " in out and "www.elsewhere.example" in out
    db.session.expire_all()
    assert (
        db.session.execute(select(func.count()).select_from(CertificateRequest)).scalar_one() == 3
    )


def test_many_csrs_of_an_automatic_profile_are_issued_in_one_batch(app, stub_worker, tmp_path):
    _, folder = acme_pki(tmp_path, count=4, requires_approval=False)
    code, out = run(app, *request_args("--csr", str(folder), "--json"))
    assert code == 0, out
    assert {i["status"] for i in json.loads(out)} == {"Approved"}
    db.session.expire_all()
    assert db.session.execute(select(func.count()).select_from(Job)).scalar_one() == 1
    drain(stub_worker)
    assert db.session.execute(select(func.count()).select_from(Certificate)).scalar_one() == 4


def test_request_approve_wait_list_show_and_pkcs12_as_json(app, stub_worker, tmp_path):
    acme_pki(tmp_path, count=1)
    code, out = run(app, *request_args("--keygen", "EC-P256", "--cn", "vpn.acme.example", "--json"))
    assert code == 0, out
    created = json.loads(out)
    assert created["status"] == "Requested" and isinstance(created["id"], int)

    code, out = run(
        app, "cert", "approve", str(created["id"]), "--wait", "--timeout", "30", "--json"
    )
    assert code == 0, out
    [outcome] = json.loads(out)
    assert outcome["request_id"] == created["id"] and outcome["status"] == "Issued"
    cert_id = outcome["certificate_id"]
    assert db.session.get(Certificate, cert_id).common_name == "vpn.acme.example"

    code, out = run(app, "cert", "list", "--org", "Acme", "--status", "issued", "--json")
    assert code == 0 and [c["id"] for c in json.loads(out)] == [cert_id]
    code, out = run(app, "cert", "list", "--expiring-days", "30", "--json")
    assert json.loads(out) == []  # a 90-day certificate expires later
    code, out = run(app, "cert", "list", "--expiring-days", "91", "--type", "ssl", "--json")
    assert [c["id"] for c in json.loads(out)] == [cert_id]
    code, out = run(app, "cert", "list", "--status", "Revoked", "--json")
    assert json.loads(out) == []
    code, out = run(app, "cert", "list", "--status", "nope")
    assert code == 2 and "'nope' is not a certificate status" in out

    code, out = run(app, "cert", "show", str(cert_id), "--json")
    shown = json.loads(out)
    assert shown["status"] == "Issued" and shown["key_held"] is True
    assert shown["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert shown["organization"] == "Acme" and shown["sans"] == ["vpn.acme.example"]

    (tmp_path / "pw").write_text("correct horse battery\n")
    p12 = tmp_path / "vpn.p12"
    code, out = run(
        app, "cert", "download", str(cert_id), "--format", "p12",
        "--password-file", str(tmp_path / "pw"), "--out", str(p12),
    )  # fmt: skip
    assert code == 0, out
    assert p12.stat().st_mode & 0o777 == 0o600
    key, cert, chain = pkcs12.load_key_and_certificates(p12.read_bytes(), b"correct horse battery")
    assert key is not None and cert.subject.rfc4514_string().startswith("CN=vpn.acme.example,")
    assert len(chain) == 2
    code, out = run(app, "cert", "download", str(cert_id), "--format", "p12")
    assert code == 2 and "--password-file" in out
    events = db.session.execute(
        select(AuditEvent.action).where(AuditEvent.action == "certificate.key_export")
    ).all()
    assert len(events) == 1


def test_approve_wait_says_when_a_request_failed(app, stub_worker, tmp_path):
    acme_pki(tmp_path, count=1)
    code, out = run(app, *request_args("--csr", str(tmp_path / "csrs" / "host0.csr"), "--json"))
    req_id = json.loads(out)["id"]
    from app.models import CaStatus, CertificateAuthority

    issuing = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.name == "Test Issuing")
    ).scalar_one()
    issuing.status = CaStatus.RETIRED  # issuance now fails for this profile
    db.session.commit()
    code, out = run(app, "cert", "approve", str(req_id), "--wait", "--json")
    assert code == 1
    [outcome] = json.loads(out)
    assert outcome["status"] == "Failed" and "retired" in outcome["reason"]
