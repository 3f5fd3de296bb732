"""Persons in the console and the services: delegated domains for every address, unique
addresses, editing revokes the earlier certificates after a confirmation, delete only
without valid certificates, CSV import with a result per line, RBAC."""

from __future__ import annotations

import re

import pytest
from cryptography import x509
from sqlalchemy import select

from app.extensions import db
from app.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertStatus,
    CertType,
    Person,
    Role,
)
from app.services.errors import DomainError, NotFound, ValidationFailed
from app.services.persons import imports, persons
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_dept, make_domain, make_org
from tests.integration.portal_world import add_person, collect, invite, make_world, register


def data(world, email="jane.doe@acme.example", **fields):
    return persons.PersonData(
        organization_id=world.org.id,
        email=email,
        first_name=fields.pop("first_name", "Jane"),
        last_name=fields.pop("last_name", "Doe"),
        **fields,
    )


def test_every_address_must_be_inside_a_domain_delegated_for_client(app):
    world = make_world()
    make_domain("ssl-only.example", by=world.mrao, org=world.org, types=[CertType.SSL])
    other = make_org("Globex")
    make_domain("globex.example", by=world.mrao, org=other, types=[CertType.CLIENT])
    for email, alts in (
        ("ceo@google.com", []),
        ("jane@ssl-only.example", []),
        ("jane@globex.example", []),
        ("jane@acme.example", ["jane@globex.example"]),
    ):
        with pytest.raises(
            DomainError,
            match="not inside an active domain delegated to Acme for Client certificates",
        ):
            persons.create_person(actor=world.mrao, data=data(world, email, alt_emails=alts))
        db.session.rollback()
    person = persons.create_person(
        actor=world.mrao,
        data=data(world, "Jane.Doe@Sub.ACME.example", alt_emails=["jd@acme.example"]),
    )
    assert person.email == "jane.doe@sub.acme.example" and person.domain.name == "acme.example"


def test_field_errors_come_together_and_addresses_are_unique(app):
    world = make_world()
    with pytest.raises(ValidationFailed) as caught:
        persons.create_person(
            actor=world.mrao,
            data=data(world, "not-an-email", first_name="", last_name="D\u202eoe", phone="call me"),
        )
    assert set(caught.value.errors) == {"email", "first_name", "last_name", "phone"}
    db.session.rollback()
    add_person(world, alt_emails=["shared@acme.example"])
    for email, alts in (
        ("jane.doe@acme.example", []),
        ("x@acme.example", ["shared@acme.example"]),
        ("shared@acme.example", []),
    ):
        with pytest.raises(DomainError, match="already belongs to a person"):
            persons.create_person(actor=world.mrao, data=data(world, email, alt_emails=alts))
        db.session.rollback()


def test_the_secret_id_is_hashed_and_never_in_the_audit_log(app):
    world = make_world()
    person = add_person(world, secret_id="EMP-4711")
    assert person.secret_id_hash and "EMP-4711" not in person.secret_id_hash
    events = (
        db.session.execute(select(AuditEvent).where(AuditEvent.action == "person.create"))
        .scalars()
        .all()
    )
    assert events and "EMP-4711" not in str(events[0].after)
    assert events[0].after["secret_id_set"] is True


def issued_person(world, client, stub_worker):
    person = add_person(world)
    progress = register(client, person.email, invite(world, person)).headers["Location"]
    collect(client, progress, stub_worker)
    (cert,) = persons.valid_certificates(person.id)
    return person, cert


def test_editing_a_person_revokes_the_earlier_certificate_after_confirmation(
    app, client, stub_worker
):
    world = make_world()
    person, cert = issued_person(world, client, stub_worker)
    changed = data(world, last_name="Doe-Smith")
    with pytest.raises(
        persons.ConfirmationNeeded, match=rf"revokes 1 certificate\(s\).*#{cert.id}"
    ):
        persons.update_person(actor=world.mrao, person_id=person.id, data=changed)
    db.session.rollback()
    assert db.session.get(Certificate, cert.id).status == CertStatus.ISSUED
    # The secret id alone changes nothing that a certificate says: no revocation.
    persons.update_person(
        actor=world.mrao, person_id=person.id, data=data(world, secret_id="new-id")
    )
    db.session.commit()
    assert db.session.get(Certificate, cert.id).status == CertStatus.ISSUED
    persons.update_person(actor=world.mrao, person_id=person.id, data=changed, confirmed=True)
    db.session.commit()
    revoked = db.session.get(Certificate, cert.id)
    assert (revoked.status, revoked.revocation_reason) == (CertStatus.REVOKED, "superseded")
    crl = x509.load_der_x509_crl(db.session.get(CertificateAuthority, world.issuing.id).crl_der)
    entry = crl.get_revoked_certificate_by_serial_number(int(revoked.serial_hex, 16))
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.superseded
    )
    event = (
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.action == "person.update")
            .order_by(AuditEvent.seq.desc())
        )
        .scalars()
        .first()
    )
    assert event.before == {"last_name": "Doe"} and event.after["last_name"] == "Doe-Smith"
    assert event.after["revoked_certificates"] == [cert.id]


def test_delete_only_without_valid_certificates(app, client, stub_worker):
    world = make_world()
    person, cert = issued_person(world, client, stub_worker)
    with pytest.raises(
        DomainError, match="has 1 valid certificate\\(s\\); revoke them before deleting"
    ):
        persons.delete_person(actor=world.mrao, person_id=person.id)
    db.session.rollback()
    from app.services.certificates import revocation

    revocation.revoke(actor=world.mrao, certificate_ids=[cert.id], reason="cessationOfOperation")
    persons.delete_person(actor=world.mrao, person_id=person.id)
    db.session.commit()
    assert db.session.get(Person, person.id) is None
    assert db.session.get(Certificate, cert.id).request.person_id is None  # history stays


CSV = """email,first_name,last_name,organization,department,alternative_emails,validation_type,phone
ann@acme.example,Ann,Lee,Acme,,ann.lee@acme.example,Standard,+1 555 0100
bob@google.com,Bob,Roe,Acme,,,Standard,
carl@acme.example,,Moe,Acme,,,Standard,
dora@acme.example,Dora,Poe,Acme,Nowhere,,Standard,
eve@acme.example,Eve,Zoe,Acme,,,Ultra,
ann@acme.example,Ann,Again,Acme,,,Standard,
"""


def test_csv_import_is_all_or_nothing_with_a_reason_per_line(app):
    world = make_world()
    with pytest.raises(imports.ImportRefused) as caught:
        imports.import_csv(actor=world.mrao, data=CSV.encode())
    db.session.rollback()
    results = {r.line: (r.outcome, r.reason) for r in caught.value.report.results}
    assert results[2] == ("created", "")
    assert (
        results[3][0] == "refused"
        and "bob@google.com is not inside an active domain delegated to Acme" in results[3][1]
    )
    assert results[4] == ("refused", "first_name: The first name is required.")
    assert results[5] == ("refused", "'Acme' has no department 'Nowhere'")
    assert results[6] == ("refused", "validation_type must be Standard or High, not 'Ultra'")
    assert results[7] == ("refused", "the email is listed twice")
    assert db.session.execute(select(Person)).first() is None  # nothing kept
    report = imports.import_csv(actor=world.mrao, data=CSV.encode(), keep_good_lines=True)
    db.session.commit()
    assert report.summary() == "1 created, 5 refused"
    ann = persons.find_by_email("ann@acme.example")
    assert ann.alt_emails == ["ann.lee@acme.example"] and ann.phone == "+1 555 0100"
    # Again: an update of the same person, unchanged.
    again = imports.import_csv(
        actor=world.mrao,
        data=CSV.splitlines(keepends=True)[0].encode() + CSV.splitlines(keepends=True)[1].encode(),
    )
    assert [r.outcome for r in again.results] == ["unchanged"]


def test_csv_import_refuses_updates_that_revoke_unless_asked(app, client, stub_worker):
    world = make_world()
    person, cert = issued_person(world, client, stub_worker)
    changed = f"email,first_name,last_name,organization\n{person.email},Janet,Doe,Acme\n".encode()
    with pytest.raises(imports.ImportRefused) as caught:
        imports.import_csv(actor=world.mrao, data=changed)
    db.session.rollback()
    assert "1 valid certificate(s) would be revoked" in caught.value.report.results[0].reason
    report = imports.import_csv(actor=world.mrao, data=changed, revoke_on_update=True)
    db.session.commit()
    assert [r.outcome for r in report.results] == ["updated"]
    assert db.session.get(Certificate, cert.id).status == CertStatus.REVOKED


def test_csv_header_and_size_are_checked(app):
    world = make_world()
    with pytest.raises(DomainError, match="lacks first_name, last_name, organization"):
        imports.import_csv(actor=world.mrao, data=b"email\nx@acme.example\n")
    with pytest.raises(DomainError, match="Unknown column\\(s\\): salary"):
        imports.import_csv(
            actor=world.mrao, data=b"email,first_name,last_name,organization,salary\n"
        )
    with pytest.raises(DomainError, match="not UTF-8"):
        imports.import_csv(actor=world.mrao, data=b"\xff\xfe\x00")


def test_persons_are_scoped_by_the_client_privilege(app, client):
    world = make_world()
    it = make_dept(world.org, "IT")
    add_person(world)
    other = make_org("Globex")
    make_domain("globex.example", by=world.mrao, org=other, types=[CertType.CLIENT])
    ssl_only = make_admin("sslonly", Role.RAO, org=world.org, privileges=[CertType.SSL])
    globex = make_admin("globex", Role.RAO, org=other, privileges=[CertType.CLIENT])
    drao = make_admin("drao", Role.DRAO, org=world.org, dept=it, privileges=[CertType.CLIENT])
    jane = persons.find_by_email("jane.doe@acme.example")
    for admin in (ssl_only, globex, drao):
        with pytest.raises(NotFound, match=r"^No such person\.$"):
            persons.get_person(actor=admin, person_id=jane.id)
    db.session.commit()  # the denied attempts are written with the next commit
    denied = db.session.execute(
        select(AuditEvent.actor, AuditEvent.object_type, AuditEvent.object_id).where(
            AuditEvent.action == "access.denied"
        )
    ).all()
    assert sorted(denied) == sorted(
        (login_, "Person", str(jane.id)) for login_ in ("sslonly", "globex", "drao")
    )
    with pytest.raises(
        DomainError, match="You may not manage persons \\(Client certificates\\) of Acme"
    ):
        persons.create_person(actor=drao, data=data(world, "x@acme.example"))
    db.session.rollback()
    created = persons.create_person(
        actor=drao, data=data(world, "it@acme.example", department_id=it.id)
    )
    db.session.commit()
    assert created.department_id == it.id
    login(client, "globex", PASSWORD)
    assert client.get(f"/admin/persons/details/?id={jane.id}").status_code == 302
    listing = client.get("/admin/persons/").get_data(as_text=True)
    assert "jane.doe@acme.example" not in listing


def test_console_adds_edits_with_confirmation_and_imports(app, client, stub_worker):
    world = make_world()
    login(client, "mrao", PASSWORD)
    form = {
        "target": f"o:{world.org.id}",
        "email": "kim@acme.example",
        "domain_id": "",
        "first_name": "Kim",
        "middle_name": "",
        "last_name": "Park",
        "alt_emails": "",
        "validation_type": "Standard",
        "phone": "",
        "secret_id": "",
    }
    page = client.post(
        "/admin/persons/new/",
        data={**form, "csrf_token": csrf_token(client, "/admin/persons/new/")},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Person &#39;kim@acme.example&#39; created." in page
    kim = persons.find_by_email("kim@acme.example")
    # Invite from the console: the form preselects the profile's first term and key type.
    invite_page = client.get(f"/admin/persons/invite/?id={kim.id}").get_data(as_text=True)
    assert re.search(r'<option selected value="365">|<option value="365" selected', invite_page)
    page = client.post(
        f"/admin/persons/invite/?id={kim.id}",
        data={
            "csrf_token": csrf_token(client, f"/admin/persons/invite/?id={kim.id}"),
            "profile_id": world.profile.id,
            "term_days": "365",
            "key_type": "EC-P256",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Invitation sent to kim@acme.example" in page
    from tests.integration.portal_world import CODE_RE, last_mail

    code = CODE_RE.search(last_mail(kim.email).body).group(1)
    client2 = app.test_client()
    collect(client2, register(client2, kim.email, code).headers["Location"], stub_worker)
    (cert,) = persons.valid_certificates(kim.id)
    edit = f"/admin/persons/edit/?id={kim.id}"
    page = client.post(
        edit,
        data={**form, "last_name": "Park-Lee", "csrf_token": csrf_token(client, edit)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert f"revokes 1 certificate(s) of this person as superseded: #{cert.id}" in page
    assert db.session.get(Certificate, cert.id).status == CertStatus.ISSUED
    page = client.post(
        edit,
        data={
            **form,
            "last_name": "Park-Lee",
            "confirm_revoke": "y",
            "csrf_token": csrf_token(client, edit),
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Person &#39;kim@acme.example&#39; saved." in page
    assert db.session.get(Certificate, cert.id).status == CertStatus.REVOKED
    # CSV import page and template.
    template = client.get("/admin/persons/template.csv")
    assert template.data.startswith(b"email,first_name,middle_name,last_name,organization")
    from io import BytesIO

    page = client.post(
        "/admin/persons/import/",
        data={
            "csrf_token": csrf_token(client, "/admin/persons/import/"),
            "file": (BytesIO(CSV.encode()), "p.csv"),
        },
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert (
        "nothing imported" in page
        and 'id="cw-import-report"' in page
        and "the email is listed twice" in page
    )


def test_client_requests_from_the_console_obey_the_same_rules(app, stub_worker):
    from app.models import CertificateRequest, RequestMode
    from app.services.certificates import enrollment

    world = make_world(requires_approval=False)

    def client_request(*sans):
        req = enrollment.submit_request(
            actor=world.mrao,
            data=enrollment.RequestData(
                organization_id=world.org.id,
                profile_id=world.profile.id,
                term_days=365,
                mode=RequestMode.KEYGEN,
                key_type="EC-P256",
                sans=list(sans),
                eula_accepted=True,
                cert_type=CertType.CLIENT,
            ),
        )
        db.session.commit()
        return req

    for sans, message in (
        (
            ["ceo@google.com"],
            "ceo@google.com is not inside an active domain delegated to Acme for Client",
        ),
        (["www.acme.example"], "carry email addresses only"),
        ([], "A client certificate needs an email address."),
    ):
        with pytest.raises(DomainError, match=message):
            client_request(*sans)
        db.session.rollback()
    req = client_request("ops@acme.example")
    from tests.conftest import drain

    drain(stub_worker)
    issued = db.session.get(CertificateRequest, req.id)
    assert issued.subject == {"CN": "ops@acme.example"}
    assert issued.certificate.subject_dn == "CN=ops@acme.example"
