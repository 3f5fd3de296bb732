"""Issue 9 "done when": every CA certificate, leaf, CRL and OCSP response that the
services produce through the front doors (here the command line and the public HTTP
endpoints) passes pkilint's own command-line validators, with only the documented
allow-lists (app/pki/lint.py, app/pki/status_lint.py) accepted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, CertificateAuthority, CertificateRequest, CertType
from app.pki.lint import LINT_ALLOW_LIST
from app.pki.status_lint import CRL_LINT_ALLOW_LIST, OCSP_LINT_ALLOW_LIST
from app.services.ca import ocsp, profiles
from app.services.scope import SYSTEM
from tests.conftest import drain
from tests.factories import make_admin, make_csr, make_domain, make_org

BIN = Path(sys.executable).parent

# The certificate type each of our CA and leaf certificates is linted as (lint.py does the
# same in-process): pkilint's TLS BR validators for roots, issuing CAs and SSL leaves, its
# RFC 5280 validators for the other leaves (there are no CA/B Forum rules for device
# certificates, and the S/MIME and code-signing BRs assume policy OIDs a private CA cannot
# assert).
CA_TYPES = {
    None: "ROOT-CA",
    "TLS": "INTERNAL-UNCONSTRAINED-TLS-CA",
    "SMIME": "NON-TLS-CA",
    "Device": "NON-TLS-CA",
    "CodeSigning": "NON-TLS-CA",
}


def _cli(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


def _lint(command: list[str], path: Path) -> list[dict[str, str]]:
    out = subprocess.run(
        [str(BIN / command[0]), "lint", *command[1:], "-f", "JSON", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    # The exit code is the number of findings (clamped); the JSON report lists them.
    assert out.stdout.startswith("{"), f"{command} {path.name}: {out.stderr}"
    found = []
    for result in json.loads(out.stdout or "{}").get("results", []):
        for finding in result.get("finding_descriptions", []):
            found.append(
                {
                    "code": finding["code"],
                    "severity": finding["severity"],
                    "message": finding.get("message") or "",
                    "node": result.get("node_path", ""),
                }
            )
    return found


def _ocsp_request(subject: x509.Certificate, issuer: x509.Certificate, nonce: bool) -> bytes:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(subject, issuer, hashes.SHA1())
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def test_pkilint_passes_everything_we_publish(app, client, stub_worker, tmp_path):
    make_admin("mrao")
    org = make_org("Acme", city="Berlin", state="Berlin")
    mrao = db.session.execute(
        select(__import__("app.models", fromlist=["Admin"]).Admin)
    ).scalar_one()
    make_domain("acme.example", by=mrao, org=org, types=tuple(CertType))
    make_domain("10.20.0.0/16", by=mrao, org=org, types=(CertType.SSL,))

    # The hierarchy from the command line: an RSA root and EC roots, one CA per purpose.
    _cli(
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
    _cli(
        app,
        "ca",
        "create",
        "--name",
        "RSA Root",
        "--customer",
        "Acme RSA",
        "--key-type",
        "RSA-3072",
        "--country",
        "DE",
        "--hash",
        "SHA-384",
    )
    issuing = {
        "TLS": ("Web CA", "Root", "EC-P256"),
        "SMIME": ("Mail CA", "RSA Root", "RSA-2048"),
        "Device": ("Device CA", "Root", "EC-P384"),
        "CodeSigning": ("Code CA", "RSA Root", "RSA-3072"),
    }
    kinds = {
        "TLS": CertType.SSL,
        "SMIME": CertType.CLIENT,
        "Device": CertType.DEVICE,
        "CodeSigning": CertType.CODE_SIGNING,
    }
    for purpose, (name, parent, key_type) in issuing.items():
        _cli(app, "ca", "create", "--name", name, "--customer", "Acme", "--key-type", key_type,
             "--parent", parent, "--purpose", purpose.lower())  # fmt: skip
        ca = db.session.execute(
            select(CertificateAuthority).where(CertificateAuthority.name == name)
        ).scalar_one()
        profiles.create_profile(
            actor=SYSTEM,
            data=profiles.ProfileData(
                name=f"{purpose} profile",
                cert_type=kinds[purpose],
                ca_id=ca.id,
                terms=(90,),
                # CS BR 6.1.5.2: no RSA-2048 for code signing.
                key_types=(
                    ("RSA-3072", "EC-P256", "EC-P384")
                    if purpose == "CodeSigning"
                    else ("RSA-2048", "EC-P256", "EC-P384")
                ),
                include_client_auth=purpose == "TLS",
            ),
        )
    db.session.commit()

    # Requests from the command line: CSRs and server-generated keys, every kind.
    requests = [
        ("SSL", "ssl", ("www.acme.example", "api.acme.example", "10.20.1.5"), "EC-P256"),
        ("SSL", "ssl", ("rsa.acme.example",), "RSA-2048"),
        ("SMIME", "client", ("alice@acme.example",), "RSA-2048"),
        ("Device", "device", ("sensor-1.acme.example",), "EC-P384"),
        ("CodeSigning", "code_signing", ("build.acme.example",), "EC-P256"),
    ]
    for index, (purpose, cert_type, names, key_type) in enumerate(requests):
        profile = f"{'TLS' if purpose == 'SSL' else purpose} profile"
        # A code signing CSR names no alternative names (the publisher is the organization).
        csr, _ = make_csr(
            names[0], *names[1:], key_type=key_type, alt_names=cert_type != "code_signing"
        )
        (tmp_path / f"r{index}.csr").write_bytes(csr)
        _cli(app, "cert", "request", "--csr", str(tmp_path / f"r{index}.csr"), "--org", "Acme",
             "--profile", profile, "--term", "90", "--type", cert_type)  # fmt: skip
    _cli(app, "cert", "request", "--keygen", "EC-P256", "--cn", "keygen.acme.example", "--org", "Acme",
         "--profile", "TLS profile", "--term", "90")  # fmt: skip
    ids = [str(i) for i in db.session.execute(select(CertificateRequest.id)).scalars()]
    _cli(app, "cert", "approve", *ids)
    drain(stub_worker)
    certs = db.session.execute(select(Certificate).order_by(Certificate.id)).scalars().all()
    assert len(certs) == len(requests) + 1, [
        r.failure_reason for r in db.session.execute(select(CertificateRequest)).scalars()
    ]
    _cli(app, "cert", "revoke", str(certs[0].id), "--reason", "keyCompromise")
    _cli(app, "cert", "revoke", str(certs[1].id), "--reason", "unspecified")
    _cli(app, "cert", "revoke", str(certs[2].id), "--reason", "superseded")
    _cli(app, "cert", "revoke", str(certs[4].id), "--reason", "privilegeWithdrawn")
    _cli(app, "ca", "revoke", "Device CA", "--reason", "cessationOfOperation")
    _cli(app, "ca", "revoke", "Code CA", "--reason", "cACompromise")
    db.session.expire_all()
    ocsp.forget()

    documents: list[tuple[str, list[str], Path, dict[str, str]]] = []
    cas = db.session.execute(select(CertificateAuthority)).scalars().all()
    by_id = {ca.id: ca for ca in cas}
    from app.services.ca import authorities

    for ca in cas:
        path = tmp_path / f"ca{ca.id}.der"
        path.write_bytes(ca.cert_der)
        purpose = authorities.purpose_of(ca)
        ca_type = CA_TYPES[None if ca.is_root else (purpose.value if purpose else "TLS")]
        documents.append(
            (f"CA {ca.name}", ["lint_cabf_serverauth_cert", "-t", ca_type], path, LINT_ALLOW_LIST)
        )
        crl_der = client.get(f"/pki/crl/{ca.id}.crl").data
        path = tmp_path / f"crl{ca.id}.der"
        path.write_bytes(crl_der)
        crl = x509.load_der_x509_crl(crl_der)
        lists_cas = any(c.parent_id == ca.id and c.revoked_at for c in cas)
        documents.append(
            (
                f"CRL of {ca.name}",
                ["lint_crl", "-t", "ARL" if lists_cas else "CRL", "-p", "BR"],
                path,
                CRL_LINT_ALLOW_LIST,
            )
        )
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number >= 1
    for cert in certs:
        path = tmp_path / f"leaf{cert.id}.der"
        path.write_bytes(cert.der)
        command = (
            ["lint_cabf_serverauth_cert", "-t", "OV-FINAL-CERTIFICATE"]
            if cert.cert_type == CertType.SSL
            else ["lint_pkix_cert"]
        )
        documents.append((f"leaf {cert.common_name}", command, path, LINT_ALLOW_LIST))
    # OCSP: every leaf and every issuing CA, good and revoked, fresh (nonce) and cached.
    subjects = [(x509.load_der_x509_certificate(c.der), by_id[c.ca_id]) for c in certs]
    subjects += [
        (x509.load_der_x509_certificate(ca.cert_der), by_id[ca.parent_id])
        for ca in cas
        if ca.parent_id
    ]
    statuses = set()
    for index, (subject, issuer) in enumerate(subjects):
        for nonce in (False, True):
            answer = client.post(
                f"/pki/ocsp/{issuer.id}",
                data=_ocsp_request(subject, x509.load_der_x509_certificate(issuer.cert_der), nonce),
                headers={"Content-Type": "application/ocsp-request"},
            ).data
            response = x509_ocsp.load_der_ocsp_response(answer)
            assert response.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
            statuses.add((response.certificate_status, response.revocation_reason))
            path = tmp_path / f"ocsp{index}-{nonce}.der"
            path.write_bytes(answer)
            documents.append(
                (
                    f"OCSP {subject.subject.rfc4514_string()} nonce={nonce}",
                    ["lint_ocsp_response"],
                    path,
                    OCSP_LINT_ALLOW_LIST,
                )
            )
    assert {status for status, _ in statuses} == {
        x509_ocsp.OCSPCertStatus.GOOD,
        x509_ocsp.OCSPCertStatus.REVOKED,
    }
    assert x509.ReasonFlags.ca_compromise in {reason for _, reason in statuses}

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda doc: _lint(doc[1], doc[2]), documents))
    refused = {
        label: [f for f in findings if f["code"] not in allowed]
        for (label, _command, _path, allowed), findings in zip(documents, results, strict=True)
    }
    refused = {label: findings for label, findings in refused.items() if findings}
    assert not refused, json.dumps(refused, indent=1)
    # 6 CAs and their CRLs, 6 leaves, and good/revoked answers for 6 leaves and 4 issuing
    # CAs, each with and without a nonce.
    assert len(documents) == 38
    # The reports were read: allow-listed findings (e.g. the CN in an OV leaf) came through.
    allowed_seen = {f["code"] for findings in results for f in findings}
    assert "cabf.serverauth.ov.common_name_attribute_present" in allowed_seen, allowed_seen
