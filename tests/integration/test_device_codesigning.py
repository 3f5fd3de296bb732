"""Device and code signing certificates from the console and the command line: device
names, DNS/IP/URI SANs under the delegation rules, serverAuth when the profile says;
code signing from a CSR only, CS BR key sizes, approval always; checked by openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select

from app.extensions import db
from app.models import (
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    CertType,
    RequestMode,
    RequestStatus,
)
from app.services.ca import authorities, profiles
from app.services.certificates import approvals, enrollment, renewal
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import SYSTEM
from tests.conftest import csrf_token, drain, login
from tests.factories import PASSWORD, make_admin, make_csr, make_domain, make_org, make_pki


@pytest.fixture
def world(app):
    mrao = make_admin("mrao")
    org = make_org("Acme", country="US", city="Springfield", state="Illinois")
    make_domain("devices.acme.example", by=mrao, org=org, types=[CertType.DEVICE])
    make_domain("10.20.0.0/16", by=mrao, org=org, types=[CertType.DEVICE])
    root, issuing, device = make_pki(
        name="Devices", cert_type=CertType.DEVICE, terms=(365,), requires_approval=False
    )
    # One issuing CA per purpose under the same root (a CA's extendedKeyUsage says what it
    # issues): the device CA from make_pki, a code signing CA and a TLS CA.
    signing_ca, tls_ca = (
        authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name=f"Test {purpose}",
                key_type="EC-P256",
                customer_name="Test",
                country="DE",
                parent_id=root.id,
                purpose=purpose,
            ),
        )
        for purpose in ("CodeSigning", "TLS")
    )
    signing = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="Code signing",
            cert_type=CertType.CODE_SIGNING,
            ca_id=signing_ca.id,
            terms=(365,),
            key_types=("RSA-3072", "EC-P256"),
        ),
    )
    db.session.commit()
    return {
        "mrao": mrao,
        "org": org,
        "root": root,
        "issuing": issuing,
        "signing_ca": signing_ca,
        "tls_ca": tls_ca,
        "device": device,
        "signing": signing,
    }


def bare_csr(key_type: str) -> bytes:
    """A CSR naming a publisher the CSR's owner made up, without SANs."""
    from app.pki import csr, keys, names

    key = keys.generate_private_key(key_type)
    built = csr.build_csr(
        key,
        subject=names.build_subject(common_name="Anything the CSR says"),
        alt_names=names.AltNames(),
    )
    return built.public_bytes(Encoding.PEM)


def request(world, cert_type, **fields):
    data = enrollment.RequestData(
        organization_id=world["org"].id,
        profile_id=world["device" if cert_type == CertType.DEVICE else "signing"].id,
        term_days=365,
        eula_accepted=True,
        cert_type=cert_type,
        **fields,
    )
    req = enrollment.submit_request(actor=world["mrao"], data=data)
    db.session.commit()
    return req


def openssl_verify(
    world, cert: x509.Certificate, purpose: str, tmp: Path
) -> subprocess.CompletedProcess[str]:
    root = db.session.get(CertificateAuthority, world["root"].id)
    (tmp / "root.pem").write_bytes(
        x509.load_der_x509_certificate(root.cert_der).public_bytes(Encoding.PEM)
    )
    # Every issuing CA (they share a subject): openssl picks the signer by its key id.
    (tmp / "issuing.pem").write_bytes(
        b"".join(
            x509.load_der_x509_certificate(
                db.session.get(CertificateAuthority, world[k].id).cert_der
            ).public_bytes(Encoding.PEM)
            for k in ("issuing", "signing_ca", "tls_ca")
        )
    )
    (tmp / "leaf.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            tmp / "root.pem",
            "-untrusted",
            tmp / "issuing.pem",
            tmp / "leaf.pem",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_device_with_server_key_name_and_uri(world, stub_worker, tmp_path):
    req = request(
        world,
        CertType.DEVICE,
        mode=RequestMode.KEYGEN,
        key_type="EC-P256",
        common_name="SN-0042-A7",
        sans=[
            "cam7.devices.acme.example",
            "10.20.3.4",
            "urn:dev:ops:acme-cam-0042",
            "https://cam7.devices.acme.example/api",
        ],
    )
    drain(stub_worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.ISSUED, req.failure_reason
    cert = x509.load_der_x509_certificate(req.certificate.der)
    assert cert.subject.rfc4514_string() == "CN=SN-0042-A7,O=Acme,L=Springfield,ST=Illinois,C=US"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cam7.devices.acme.example"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.20.3.4"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:dev:ops:acme-cam-0042",
        "https://cam7.devices.acme.example/api",
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert req.certificate.sealed_key is not None  # exported as PKCS#12 by an administrator
    out = openssl_verify(world, cert, "sslclient", tmp_path)
    assert out.returncode == 0, out.stderr


def test_device_names_follow_the_delegation_rules(world):
    for sans, message in (
        (
            ["cam.other.example"],
            "The name cam.other.example is not inside an active domain delegated to Acme for Device",
        ),
        (
            ["10.99.0.1"],
            "The IP address 10.99.0.1 is not inside a network delegated to Acme for Device",
        ),
        (["https://evil.example/x"], "The name evil.example is not inside an active domain"),
        (["ops@devices.acme.example"], "not email addresses"),
        (["host:8443"], "Invalid name"),
    ):
        with pytest.raises(DomainError, match=message):
            request(
                world,
                CertType.DEVICE,
                mode=RequestMode.KEYGEN,
                key_type="EC-P256",
                common_name="dev-1",
                sans=sans,
            )
        db.session.rollback()
    # A URI in an SSL request is refused, not dropped.
    tls = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="TLS",
            cert_type=CertType.SSL,
            ca_id=world["tls_ca"].id,
            terms=(90,),
            key_types=("EC-P256",),
        ),
    )
    with pytest.raises(DomainError, match="URIs go into Device certificates only, not SSL"):
        enrollment.check_request(
            actor=world["mrao"],
            data=enrollment.RequestData(
                organization_id=world["org"].id,
                profile_id=tls.id,
                term_days=90,
                mode=RequestMode.KEYGEN,
                key_type="EC-P256",
                common_name="cam7.devices.acme.example",
                sans=["https://cam7.devices.acme.example/"],
                eula_accepted=True,
            ),
        )


def test_device_server_auth_when_the_profile_says(world, stub_worker):
    profile = db.session.get(type(world["device"]), world["device"].id)
    profile.include_server_auth = True
    db.session.commit()
    req = request(
        world,
        CertType.DEVICE,
        mode=RequestMode.KEYGEN,
        key_type="RSA-2048",
        common_name="gw1.devices.acme.example",
    )
    drain(stub_worker)
    db.session.refresh(req)
    cert = x509.load_der_x509_certificate(req.certificate.der)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    with pytest.raises(
        ValidationFailed, match="serverAuth as an extra usage applies to Device profiles only"
    ):
        profiles.create_profile(
            actor=SYSTEM,
            data=profiles.ProfileData(
                name="x",
                cert_type=CertType.SSL,
                ca_id=world["tls_ca"].id,
                terms=(90,),
                key_types=("EC-P256",),
                include_server_auth=True,
            ),
        )


def test_code_signing_csr_only_strong_keys_and_approval_always(world, stub_worker, tmp_path):
    with pytest.raises(
        DomainError, match="Code signing keys never leave the publisher: send a CSR"
    ):
        request(world, CertType.CODE_SIGNING, mode=RequestMode.KEYGEN, key_type="EC-P256")
    db.session.rollback()
    weak, _ = make_csr("Acme", key_type="RSA-2048")
    with pytest.raises(DomainError, match="RSA-2048 is not allowed here"):
        request(world, CertType.CODE_SIGNING, mode=RequestMode.CSR, csr=weak)
    db.session.rollback()
    for bad in (
        dict(key_types=("RSA-2048",)),
        dict(key_types=("RSA-3072",), requires_approval=False),
    ):
        with pytest.raises(ValidationFailed, match=r"CS BR 6\.1\.5\.2|always need approval"):
            profiles.create_profile(
                actor=SYSTEM,
                data=profiles.ProfileData(
                    name="cs2",
                    cert_type=CertType.CODE_SIGNING,
                    ca_id=world["signing_ca"].id,
                    terms=(365,),
                    **bad,
                ),
            )
        db.session.rollback()
    with_san, _ = make_csr("code.acme.example", key_type="RSA-3072")
    with pytest.raises(DomainError, match="carry no alternative names"):
        request(world, CertType.CODE_SIGNING, mode=RequestMode.CSR, csr=with_san)
    db.session.rollback()
    req = request(world, CertType.CODE_SIGNING, mode=RequestMode.CSR, csr=bare_csr("RSA-3072"))
    assert req.status == RequestStatus.REQUESTED  # waits for an administrator
    approvals.approve(actor=world["mrao"], request_ids=[req.id])
    db.session.commit()
    drain(stub_worker)
    db.session.refresh(req)
    assert req.status == RequestStatus.ISSUED, req.failure_reason
    cert = x509.load_der_x509_certificate(req.certificate.der)
    assert cert.subject.rfc4514_string() == "CN=Acme,O=Acme,L=Springfield,ST=Illinois,C=US"
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CODE_SIGNING
    ]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    # OpenSSL 3.0 has no code signing purpose: the chain and its signatures are checked.
    out = openssl_verify(world, cert, "any", tmp_path)
    assert out.returncode == 0, out.stderr
    # A renewal waits for approval too, even an automatic one.
    renewed = renewal.renew(actor=SYSTEM, certificate_id=req.certificate_id, auto=True)
    assert renewed.status == RequestStatus.REQUESTED


def test_device_and_code_signing_from_the_command_line(app, world, stub_worker, tmp_path):
    runner = app.test_cli_runner()
    out = runner.invoke(
        args=[
            "cert",
            "request",
            "--type",
            "device",
            "--keygen",
            "EC-P256",
            "--org",
            "Acme",
            "--profile",
            "Devices",
            "--term",
            "365",
            "--cn",
            "sensor-0099",
            "--san",
            "urn:dev:mac:0024befffe804ff1",
        ]
    )
    assert out.exit_code == 0 and "Request" in out.output and "Approved" in out.output, out.output
    drain(stub_worker)
    cert = db.session.execute(
        select(Certificate).where(Certificate.common_name == "sensor-0099")
    ).scalar_one()
    assert cert.cert_type == CertType.DEVICE and cert.sans == ["urn:dev:mac:0024befffe804ff1"]
    (tmp_path / "cs.csr").write_bytes(bare_csr("EC-P256"))
    out = runner.invoke(
        args=[
            "cert",
            "request",
            "--type",
            "code_signing",
            "--csr",
            str(tmp_path / "cs.csr"),
            "--org",
            "Acme",
            "--profile",
            "Code signing",
            "--term",
            "365",
        ]
    )
    assert out.exit_code == 0 and "Requested" in out.output, out.output
    out = runner.invoke(
        args=[
            "cert",
            "request",
            "--type",
            "code_signing",
            "--keygen",
            "EC-P256",
            "--org",
            "Acme",
            "--profile",
            "Code signing",
            "--term",
            "365",
        ]
    )
    assert out.exit_code == 2 and "send a CSR" in out.output


def test_device_request_from_the_console(app, world, client, stub_worker):
    login(client, "mrao", PASSWORD)
    url = "/admin/device_requests/new/"
    form = {
        "mode": "keygen",
        "csr": "",
        "key_type": "EC-P256",
        "target": f"o:{world['org'].id}",
        "profile_id": world["device"].id,
        "term_days": 365,
        "common_name": "printer-3f",
        "sans": "printer-3f.devices.acme.example\nurn:dev:ops:printer-3f",
        "requester_email": "ops@acme.example",
        "external_requesters": "",
        "auto_renew": "off",
        "renew_days_before": "30",
        "comments": "",
        "eula": "accept",
    }
    page = client.post(
        url, data={**form, "csrf_token": csrf_token(client, url)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "for printer-3f is Approved" in page, page[:3000]
    drain(stub_worker)
    cert = db.session.execute(
        select(Certificate).where(Certificate.common_name == "printer-3f")
    ).scalar_one()
    listing = client.get("/admin/device_certs/").get_data(as_text=True)
    assert "printer-3f" in listing
    assert cert.sans == ["printer-3f.devices.acme.example", "urn:dev:ops:printer-3f"]
    assert (
        db.session.execute(select(CertificateRequest.status)).scalar_one() == RequestStatus.ISSUED
    )


def test_a_device_csr_brings_its_uris_and_other_names_are_refused(world, stub_worker):
    # Device certificates carry URIs: a CSR's URI SAN is kept (its host under the
    # delegation rules), never dropped; names no certificate carries are refused.
    csr, _ = make_csr("cam9.devices.acme.example", "urn:dev:mac:0024befffe804ff2")
    req = request(world, CertType.DEVICE, mode=RequestMode.CSR, csr=csr)
    assert req.sans == ["cam9.devices.acme.example", "urn:dev:mac:0024befffe804ff2"]
    db.session.rollback()
    outside, _ = make_csr("cam9.devices.acme.example", "https://cam9.elsewhere.example/")
    with pytest.raises(DomainError, match=r"cam9\.elsewhere\.example is not inside"):
        request(world, CertType.DEVICE, mode=RequestMode.CSR, csr=outside)
    db.session.rollback()
    from cryptography.hazmat.primitives import hashes

    from app.pki import keys, names

    key = keys.generate_private_key("EC-P256")
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        names.build_subject(common_name="cam9.devices.acme.example")
    )
    directory = builder.add_extension(
        x509.SubjectAlternativeName(
            [x509.DirectoryName(names.build_subject(common_name="someone else"))]
        ),
        critical=False,
    ).sign(key, hashes.SHA256())
    with pytest.raises(
        DomainError, match=r"directory name CN=someone else.*only DNS names, IP addresses and URIs"
    ):
        request(
            world,
            CertType.DEVICE,
            mode=RequestMode.CSR,
            csr=directory.public_bytes(Encoding.PEM),
        )
