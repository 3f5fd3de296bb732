"""The portal's mails: per-organization templates (sandboxed, values cleaned, refused when
they do not render), the console's preview (HTML-escaped), and the invitation validity
per organization."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Invitation
from app.models.types import utcnow
from app.services.errors import Forbidden, ValidationFailed
from app.services.persons import invitations, mailing
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_org
from tests.integration.portal_world import add_person, invite, last_mail, make_world


def test_an_organization_words_its_invitation_and_values_cannot_add_lines(app):
    world = make_world()
    mailing.save_template(
        actor=world.mrao,
        organization_id=world.org.id,
        kind="invitation",
        subject="{{ organization }}: certificate for {{ full_name }}",
        body="Dear {{ full_name }},\nyour code is {{ code }} (until {{ expires }}).\n{{ link }}\n",
    )
    db.session.commit()
    # A value is text, never template: a name looking like a template stays as typed.
    person = add_person(world, first_name="{{ code }}", last_name="Doe")
    invitations.send_invitation(
        actor=world.mrao,
        person_id=person.id,
        profile_id=world.profile.id,
        term_days=365,
        key_type="EC-P256",
    )
    db.session.commit()
    mail = last_mail(person.email)
    code = re.search(r"your code is (\S+) ", mail.body).group(1)
    assert mail.subject == "Acme: certificate for {{ code }} Doe"
    assert mail.body.startswith("Dear {{ code }} Doe,\nyour code is " + code)
    # Values lose control characters and line breaks (no extra lines, no headers).
    assert mailing.clean_value("Eve\r\nBcc: x@evil.example\x00") == "Eve Bcc: x@evil.example"


def test_templates_that_do_not_render_are_refused_and_the_sandbox_holds(app):
    world = make_world()
    for body, expected in (
        ("Hello {{ salary }}", "'salary' is undefined"),
        ("{{ first_name.__class__.__mro__ }}", "cannot be rendered"),
        ("{% for x in range(10**6) %}x{% endfor %}", "at most 1000 items"),
        ("{{ 'x' * 10**10 }}", "cannot be rendered"),
        (
            "{% for a in range(999) %}{% for b in range(999) %}xx{% endfor %}{% endfor %}",
            "at most 100000 characters",
        ),
        ("{% if %}", "cannot be rendered"),
    ):
        with pytest.raises(ValidationFailed, match=expected):
            mailing.save_template(
                actor=world.mrao,
                organization_id=world.org.id,
                kind="invitation",
                subject="s",
                body=body,
            )
        db.session.rollback()
    rao = make_admin(
        "other", role=__import__("app.models", fromlist=["Role"]).Role.RAO, org=make_org("Globex")
    )
    with pytest.raises(Exception) as caught:
        mailing.save_template(
            actor=rao, organization_id=world.org.id, kind="invitation", subject="s", body="b"
        )
    assert type(caught.value).__name__ == "NotFound"


def test_console_previews_escaped_saves_and_resets(app, client):
    world = make_world()
    login(client, "mrao", PASSWORD)
    url = f"/admin/organization/portal/?id={world.org.id}&kind=invitation"
    page = client.get(url).get_data(as_text=True)
    assert "Your client certificate from {{ organization }}" in page  # the built-in wording
    form = {
        "id": world.org.id,
        "kind": "invitation",
        "subject": "<b>{{ organization }}</b>",
        "body": "<script>alert(1)</script> {{ code }}",
    }
    page = client.post(
        url, data={**form, "preview": "1", "csrf_token": csrf_token(client, url)}
    ).get_data(as_text=True)
    assert (
        "&lt;b&gt;Acme&lt;/b&gt;" in page
        and "&lt;script&gt;alert(1)&lt;/script&gt; ABCD-EFGH" in page
    )
    assert "<script>alert(1)</script>" not in page
    page = client.post(
        url,
        data={**form, "save": "1", "csrf_token": csrf_token(client, url)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Template saved." in page
    saved = mailing.template_of(world.org.id, "invitation")
    assert saved[2] and saved[0] == "<b>{{ organization }}</b>"
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "mail_template.save")
    ).scalar_one()
    assert event.after["body"] == form["body"]
    page = client.post(
        url,
        data={**form, "reset": "1", "csrf_token": csrf_token(client, url)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "The built-in wording is used again." in page
    assert mailing.template_of(world.org.id, "invitation")[2] is False


def test_invitation_validity_is_set_per_organization(app, client):
    world = make_world()
    login(client, "mrao", PASSWORD)
    url = f"/admin/organization/portal/?id={world.org.id}"
    page = client.post(
        url,
        data={
            "id": world.org.id,
            "kind": "invitation",
            "days-invitation_days": "2",
            "csrf_token": csrf_token(client, url),
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Invitation validity saved." in page
    person = add_person(world)
    invite(world, person)
    expires = db.session.execute(select(Invitation.expires_at)).scalar_one()
    assert abs(expires - (utcnow() + timedelta(days=2))) < timedelta(minutes=1)
    with pytest.raises(Exception, match="between 1 and 90 days"):
        invitations.set_invitation_days(actor=world.mrao, organization_id=world.org.id, days=365)
    drao = make_admin(
        "drao",
        role=__import__("app.models", fromlist=["Role"]).Role.DRAO,
        org=world.org,
        dept=__import__("tests.factories", fromlist=["make_dept"]).make_dept(world.org),
    )
    with pytest.raises(Forbidden):
        invitations.set_invitation_days(actor=drao, organization_id=world.org.id, days=3)


def test_a_departments_portal_mail_is_shown_only_within_that_department(app):
    # The invitation holds a one-time code: in the outbox, only whoever may see the
    # person's department sees it (a DRAO of a sibling department does not).
    from app.models import CertType, Role
    from tests.factories import make_dept

    world = make_world()
    sales, ops = make_dept(world.org, "Sales"), make_dept(world.org, "Ops")
    make_admin("ops-drao", Role.DRAO, org=world.org, dept=ops, privileges=[CertType.CLIENT])
    make_admin("sales-drao", Role.DRAO, org=world.org, dept=sales, privileges=[CertType.CLIENT])
    person = add_person(world, department_id=sales.id)
    code = invite(world, person)
    mail = last_mail(person.email)
    assert (mail.organization_id, mail.department_id) == (world.org.id, sales.id)
    for who, sees in (("sales-drao", True), ("ops-drao", False), ("mrao", True)):
        client = app.test_client()
        login(client, who, PASSWORD)
        page = client.get(f"/admin/outbox/details/?id={mail.id}", follow_redirects=True)
        assert (code in page.get_data(as_text=True)) is sees, who
