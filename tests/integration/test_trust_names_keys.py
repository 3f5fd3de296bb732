"""Issue 9 A5-A7 through the services and front doors: email addresses only inside
delegated domains, CSR names we do not issue refused, compromised and weak keys never
certified, organization and department names checked when they are saved."""

from __future__ import annotations

import unicodedata

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (
    BlockedKey,
    CertificateRequest,
    CertType,
    Department,
    Organization,
    RequestMode,
    RequestStatus,
    Role,
)
from app.pki import keys
from app.pki.weak_keys import spki_sha256
from app.services.ca import blocked_keys, profiles
from app.services.certificates import enrollment, renewal, revocation
from app.services.errors import DomainError, ValidationFailed
from app.services.scope import SYSTEM
from app.services.structure import domains, orgs
from tests.conftest import csrf_token, drain, login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_csr,
    make_dept,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)
from tests.unit.pki.test_weak_keys import _private_key, _roca_prime


def _csr(key, cn: str, *general_names: x509.GeneralName) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


def _request(by, org, profile, csr: bytes, cert_type=CertType.SSL, dept=None, **fields):
    data = enrollment.RequestData(
        organization_id=org.id,
        department_id=dept.id if dept else None,
        profile_id=profile.id,
        term_days=90,
        mode=RequestMode.CSR,
        csr=csr,
        eula_accepted=True,
        cert_type=cert_type,
        **fields,
    )
    return enrollment.submit_request(actor=by, data=data)


# A5 ------------------------------------------------------------------------------------


@pytest.fixture
def mail(app):
    """Acme with acme.example delegated for Client and Device certificates, Globex with
    globex.example; an RAO of Acme; S/MIME and device profiles."""
    mrao = make_admin("mrao")
    acme, globex = make_org("Acme", city="Berlin"), make_org("Globex", city="Paris")
    sales = make_dept(acme, "Sales")
    make_domain("acme.example", by=mrao, org=acme, types=(CertType.CLIENT, CertType.DEVICE))
    make_domain("sales.acme.test", by=mrao, org=acme, dept=sales, types=(CertType.CLIENT,))
    make_domain("ssl-only.example", by=mrao, org=acme, types=(CertType.SSL,))
    make_domain("globex.example", by=mrao, org=globex, types=(CertType.CLIENT,))
    rao = make_admin("rao", Role.RAO, org=acme)
    root, _issuing, _web = make_pki()
    from app.services.ca import authorities

    made = {}
    for purpose, cert_type in (("SMIME", CertType.CLIENT), ("Device", CertType.DEVICE)):
        ca = authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name=f"{purpose} CA",
                key_type="EC-P256",
                customer_name="Test",
                parent_id=root.id,
                purpose=purpose,
            ),
        )
        made[cert_type] = profiles.create_profile(
            actor=SYSTEM,
            data=profiles.ProfileData(
                name=f"{purpose} profile",
                cert_type=cert_type,
                ca_id=ca.id,
                terms=(90,),
                key_types=("EC-P256",),
            ),
        )
    db.session.commit()
    return {"mrao": mrao, "rao": rao, "acme": acme, "sales": sales, "profiles": made}


def test_email_addresses_must_be_inside_a_delegated_domain(mail, stub_worker):
    rao, acme, smime = mail["rao"], mail["acme"], mail["profiles"][CertType.CLIENT]
    key = keys.generate_private_key("EC-P256")
    for address, why in (
        ("ceo@google.com", "not inside an active domain delegated to Acme for Client"),
        ("bob@globex.example", "not inside an active domain delegated to Acme for Client"),
        ("web@ssl-only.example", "for Client certificates"),  # delegated for SSL only
        ("amy@sales.acme.test", "delegated to Acme for Client"),  # the department's only
    ):
        csr = _csr(key, "Alice", x509.RFC822Name(address))
        with pytest.raises(DomainError) as refused:
            _request(rao, acme, smime, csr, CertType.CLIENT, common_name="alice@acme.example")
        assert refused.value.field == "sans" and address in refused.value.message
        assert why in refused.value.message, refused.value.message
    # The domain part of an email-shaped CN is checked the same way.
    with pytest.raises(DomainError, match=r"ceo@google.com is not inside"):
        _request(rao, acme, smime, _csr(key, "ceo@google.com"), CertType.CLIENT)
    with pytest.raises(DomainError, match=r"ceo@google.com is not inside"):
        _request(
            rao,
            acme,
            mail["profiles"][CertType.DEVICE],
            _csr(key, "ceo@google.com"),
            CertType.DEVICE,
        )
    assert (
        db.session.execute(select(func.count()).select_from(CertificateRequest)).scalar_one() == 0
    )
    req = _request(
        rao,
        acme,
        smime,
        _csr(key, "alice@acme.example", x509.RFC822Name("alice@eu.acme.example")),
        CertType.CLIENT,
    )
    assert req.sans == ["alice@acme.example", "alice@eu.acme.example"]  # the CSR's email kept
    dept_req = _request(
        rao, acme, smime, _csr(key, "amy@sales.acme.test"), CertType.CLIENT, dept=mail["sales"]
    )
    db.session.commit()
    from app.services.certificates import approvals

    approvals.approve(actor=mail["mrao"], request_ids=[req.id, dept_req.id])
    db.session.commit()
    drain(stub_worker)
    db.session.refresh(req)
    san = x509.load_der_x509_certificate(req.certificate.der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.RFC822Name) == [
        "alice@acme.example",
        "alice@eu.acme.example",
    ]


def test_check_email_delegated_is_the_service_for_persons(mail):
    acme, sales = mail["acme"], mail["sales"]
    assert (
        domains.check_email_delegated(
            "Bob@ACME.example", organization_id=acme.id, department_id=None
        )
        == "Bob@acme.example"
    )
    assert domains.check_email_delegated(
        "amy@sales.acme.test", organization_id=acme.id, department_id=sales.id
    )
    with pytest.raises(DomainError) as refused:
        domains.check_email_delegated(
            "amy@sales.acme.test", organization_id=acme.id, department_id=None
        )
    assert refused.value.field == "email"
    with pytest.raises(DomainError, match="for Device certificates"):
        domains.check_email_delegated(
            "x@globex.example",
            organization_id=acme.id,
            department_id=None,
            cert_type=CertType.DEVICE,
            field="alt_emails",
        )
    with pytest.raises(DomainError, match="Invalid email address"):
        domains.check_email_delegated("not-an-email", organization_id=acme.id, department_id=None)


@pytest.fixture
def web(app):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    _root, _issuing, profile = make_pki()
    return {"mrao": mrao, "org": org, "profile": profile}


def test_ssl_csr_names_we_would_drop_are_refused(web):
    key = keys.generate_private_key("EC-P256")
    www = x509.DNSName("www.acme.example")
    for extra, message in (
        (x509.RFC822Name("ops@acme.example"), "asks for the email address ops@acme.example"),
        (
            x509.UniformResourceIdentifier("https://www.acme.example/"),
            "asks for the subject alternative name URI https://www.acme.example/",
        ),
        (
            x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])),
            "directory name CN=x",
        ),
    ):
        csr = _csr(key, "www.acme.example", www, extra)
        with pytest.raises(DomainError) as refused:
            _request(web["mrao"], web["org"], web["profile"], csr)
        assert refused.value.field == "csr" and message in refused.value.message
    assert _request(web["mrao"], web["org"], web["profile"], _csr(key, "www.acme.example", www))


# A6 ------------------------------------------------------------------------------------


def test_a_compromised_key_is_never_certified_again(web, stub_worker):
    mrao, org, profile = web["mrao"], web["org"], web["profile"]
    first, key = request_certificate(
        by=mrao, org=org, profile=profile, cn="a.acme.example", approve=True
    )
    waiting, _ = request_certificate(
        by=mrao, org=org, profile=profile, cn="b.acme.example", key_type="EC-P256"
    )
    # A second request with the same key, approved later.
    csr, _ = make_csr("c.acme.example", key=key)
    queued = _request(mrao, org, profile, csr)
    other_csr, _ = make_csr("d.acme.example")
    renewable = _request(mrao, org, profile, other_csr)
    db.session.commit()
    from app.services.certificates import approvals

    approvals.approve(actor=mrao, request_ids=[renewable.id])
    db.session.commit()
    drain(stub_worker)
    db.session.refresh(first)
    revocation.revoke(actor=mrao, certificate_ids=[first.certificate_id], reason="keyCompromise")
    db.session.commit()
    blocked = db.session.execute(select(BlockedKey)).scalar_one()
    assert blocked.spki_sha256 == spki_sha256(key.public_key())
    assert blocked.reason == "keyCompromise" and f"#{first.certificate_id}" in blocked.source
    # A new request with the key: refused at the CSR.
    with pytest.raises(DomainError) as refused:
        _request(mrao, org, profile, make_csr("e.acme.example", key=key)[0])
    assert (
        refused.value.field == "csr" and "list of compromised or weak keys" in refused.value.message
    )
    # One made before the revocation: Failed at issuance, with the reason.
    approvals.approve(actor=mrao, request_ids=[queued.id])
    db.session.commit()
    drain(stub_worker)
    db.session.refresh(queued)
    assert queued.status == RequestStatus.FAILED
    assert "compromised or weak keys" in queued.failure_reason
    # A renewal reusing a key that is blocked later.
    db.session.refresh(renewable)
    public_key = x509.load_der_x509_certificate(renewable.certificate.der).public_key()
    assert blocked_keys.block_fingerprint(
        fingerprint=spki_sha256(public_key).upper(), reason="keyCompromise", source="imported list"
    )
    db.session.commit()
    with pytest.raises(DomainError, match=r"cannot be certified again.*compromised or weak keys"):
        renewal.renew(actor=mrao, certificate_id=renewable.certificate_id)
    assert waiting.status == RequestStatus.REQUESTED


@pytest.fixture(scope="module")
def roca_key():
    return _private_key(_roca_prime(1024), _roca_prime(1024))


def test_roca_keys_are_refused_in_every_front_door(web, roca_key, client, app, tmp_path):
    mrao, org, profile = web["mrao"], web["org"], web["profile"]
    profiles.update_profile(
        actor=mrao,
        profile_id=profile.id,
        data=profiles.ProfileData(
            name=profile.name,
            cert_type=CertType.SSL,
            ca_id=profile.ca_id,
            terms=(90,),
            key_types=("RSA-2048", "EC-P256"),
        ),
    )
    db.session.commit()
    csr, _ = make_csr("www.acme.example", key=roca_key)
    with pytest.raises(DomainError, match="ROCA"):
        _request(mrao, org, profile, csr)
    (tmp_path / "roca.csr").write_bytes(csr)
    out = app.test_cli_runner().invoke(
        args=[
            *("cert", "request", "--csr", str(tmp_path / "roca.csr"), "--org", "Acme"),
            *("--profile", profile.name, "--term", "90"),
        ]
    )
    assert out.exit_code == 2 and "ROCA fingerprint" in out.output, out.output
    login(client, "mrao", PASSWORD)
    url = "/admin/ssl_requests/new/"
    page = client.post(
        url,
        data={
            "mode": "csr",
            "csr": csr.decode(),
            "key_type": "",
            "target": f"o:{org.id}",
            "profile_id": profile.id,
            "term_days": 90,
            "common_name": "",
            "sans": "",
            "requester_email": "req@acme.example",
            "external_requesters": "",
            "auto_renew": "off",
            "renew_days_before": "30",
            "comments": "",
            "eula": "accept",
            "csrf_token": csrf_token(client, url),
        },
    ).get_data(as_text=True)
    assert "ROCA fingerprint" in page
    assert (
        db.session.execute(select(func.count()).select_from(CertificateRequest)).scalar_one() == 0
    )


# A7 ------------------------------------------------------------------------------------


def test_organization_names_are_checked_when_saved(app):
    for name, shown in (
        ("Acme\u202eCorp", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("Acme\tCorp", "U+0009 CHARACTER TABULATION"),
        ("Acme\r\nCorp", "U+000D CARRIAGE RETURN"),
        ("Acme\x00", "U+0000 NULL"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name=name, country="DE"))
        assert shown in refused.value.errors["name"][0], refused.value.errors
    decomposed = unicodedata.normalize("NFD", "Société Générale")
    org = make_org(decomposed)
    assert org.name == "Société Générale" and org.name != decomposed
    with pytest.raises(DomainError) as refused:
        orgs.create_dept(actor=SYSTEM, organization_id=org.id, name="Sales\u2066")
    assert refused.value.field == "name" and "U+2066 LEFT-TO-RIGHT ISOLATE" in refused.value.message
    dept = make_dept(org, unicodedata.normalize("NFD", "Ventes Européennes"))
    assert dept.name == "Ventes Européennes"
    assert orgs.name_warnings("\u0410cme") and "Cyrillic" in orgs.name_warnings("\u0410cme")[0]
    assert orgs.name_warnings("Acme") == ()


def test_console_warns_on_mixed_scripts_and_cli_lists_legacy_names(app, client):
    make_admin("mrao")
    login(client, "mrao", PASSWORD)
    url = "/admin/organization/new/"
    page = client.post(
        url,
        data={"name": "P\u0430ypal", "country": "US", "csrf_token": csrf_token(client, url)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "mixes Latin and Cyrillic letters" in page
    assert db.session.execute(
        select(Organization).where(Organization.name == "P\u0430ypal")
    ).scalar_one()
    page = client.post(
        url,
        data={"name": "Evil\u202eCorp", "country": "US", "csrf_token": csrf_token(client, url)},
    ).get_data(as_text=True)
    assert "RIGHT-TO-LEFT OVERRIDE" in page
    # A name saved before the rules: listed until it is renamed.
    org = make_org("Legacy")
    dept = make_dept(org, "Ops")
    db.session.execute(update(Department).where(Department.id == dept.id).values(name="Ops\x1b"))
    db.session.commit()
    out = app.test_cli_runner().invoke(args=["org", "check-names"])
    assert out.exit_code == 1 and f"department #{dept.id} 'Ops\\x1b'" in out.output
    assert "U+001B ESCAPE" in out.output
    db.session.execute(update(Department).where(Department.id == dept.id).values(name="Ops"))
    db.session.commit()
    out = app.test_cli_runner().invoke(args=["org", "check-names"])
    assert out.exit_code == 0, out.output
