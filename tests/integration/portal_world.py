"""Shared set-up for the persons and portal tests: an organization with a domain delegated
for Client certificates, a client profile on a private CA, persons, invitations, and the
portal's registration driven through HTTP like a browser without JavaScript."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.models import (
    Admin,
    CertificateAuthority,
    CertificateProfile,
    CertType,
    Organization,
    OutboxMessage,
    Person,
)
from app.services.persons import invitations, persons
from tests.conftest import CSRF_RE, drain
from tests.factories import make_admin, make_domain, make_org, make_pki

CODE_RE = re.compile(r"one-time (?:renewal )?code: ([A-Z2-7]{4}(?:-[A-Z2-7]{4}){7})")
P12_PASSWORD = "Import-me-2026!"
PASSPHRASE = "correct horse battery staple"


@dataclass
class World:
    mrao: Admin
    org: Organization
    profile: CertificateProfile
    root: CertificateAuthority
    issuing: CertificateAuthority


def make_world(**profile_fields: Any) -> World:
    mrao = make_admin("mrao")
    org = make_org("Acme", country="US", city="Springfield", state="Illinois")
    make_domain("acme.example", by=mrao, org=org, types=[CertType.CLIENT])
    root, issuing, profile = make_pki(
        name="People",
        cert_type=CertType.CLIENT,
        terms=(365, 730),
        key_types=profile_fields.pop("key_types", ("EC-P256", "RSA-2048")),
        **profile_fields,
    )
    return World(mrao, org, profile, root, issuing)


def add_person(world: World, email: str = "jane.doe@acme.example", **fields: Any) -> Person:
    data = persons.PersonData(
        organization_id=world.org.id,
        email=email,
        first_name=fields.pop("first_name", "Jane"),
        last_name=fields.pop("last_name", "Doe"),
        **fields,
    )
    person = persons.create_person(actor=world.mrao, data=data)
    db.session.commit()
    return person


def last_mail(to: str) -> OutboxMessage:
    return (
        db.session.execute(
            select(OutboxMessage).where(OutboxMessage.to == to).order_by(OutboxMessage.id.desc())
        )
        .scalars()
        .first()
    )


def invite(world: World, person: Person, *, key_type: str = "EC-P256", term: int = 365) -> str:
    """Send an invitation; the code, read from the mail as the person would."""
    invitations.send_invitation(
        actor=world.mrao,
        person_id=person.id,
        profile_id=world.profile.id,
        term_days=term,
        key_type=key_type,
    )
    db.session.commit()
    match = CODE_RE.search(last_mail(person.email).body)
    assert match, last_mail(person.email).body
    return match.group(1)


def token_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, html[:500]
    return match.group(1) or match.group(2)


def register(
    client: FlaskClient,
    email: str,
    code: str,
    *,
    headers: dict[str, str] | None = None,
    **over: str,
) -> Any:
    """Fill the registration form as a person does; the response (not followed)."""
    page = client.get(f"/enroll/register?email={email}").get_data(as_text=True)
    data = {
        "csrf_token": token_of(page),
        "email": email,
        "code": code,
        "pkcs12_password": P12_PASSWORD,
        "pkcs12_password_again": P12_PASSWORD,
        "passphrase": PASSPHRASE,
        "passphrase_again": PASSPHRASE,
        "eula": "y",
        **over,
    }
    return client.post("/enroll/register", data=data, headers=headers or {})


def collect(client: FlaskClient, progress_url: str, worker: Any) -> bytes:
    """Wait for the key generation job, then download the PKCS#12 from the progress page."""
    drain(worker)
    page = client.get(progress_url).get_data(as_text=True)
    assert 'data-status="ready"' in page, page
    action = re.search(r'action="(/enroll/download/[^"]+)"', page)
    assert action
    response = client.post(action.group(1), data={"csrf_token": token_of(page)})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/x-pkcs12"
    return bytes(response.data)
