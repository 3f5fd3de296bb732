"""Per-organization notification templates (issue 12 §5), kept with the portal's mail
templates: sandboxed, escaped, previewed, with a plain-text part, links at CW_BASE_URL;
used by the sweep's mails (aiosmtpd) and carried by config as code."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, CertType, MailTemplate, Role
from app.services.errors import Forbidden, NotFound, ValidationFailed
from app.services.notifications import rules, sweep, templates
from tests import notify
from tests.conftest import csrf_token, drain, login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)
from tests.integration.test_config import run, write

SUBJECT = "[{{ c.organization }}] {{ c.common_name }}: {{ c.when }}"
TEXT = """Team,

{{ c.common_name }} {{ c.when }} ({{ c.not_after }}).
Renew it: {{ c.url }}
Done already? {{ c.ack_url }}
-- {{ rule.name }}
"""
HTML = '<p class="own">{{ rule.name }}: <a href="{{ c.url }}">{{ c.common_name }}</a></p>'


@pytest.fixture
def smtp(app):
    for controller, inbox in notify.smtp_server():
        app.config.update(
            SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, MAIL_FROM="cw@example.com"
        )
        yield inbox


@pytest.fixture
def world(app, stub_worker):
    mrao = make_admin("mrao")
    acme, other = make_org("Acme", city="Berlin"), make_org("Other", city="Paris")
    make_domain("acme.example", by=mrao, org=acme)
    make_domain("other.example", by=mrao, org=other)
    rao = make_admin("rao", Role.RAO, org=acme, privileges=[CertType.SSL])
    other_rao = make_admin("other-rao", Role.RAO, org=other, privileges=[CertType.SSL])
    *_, profile = make_pki(requires_approval=False)
    return {
        "mrao": mrao,
        "acme": acme,
        "other": other,
        "rao": rao,
        "other_rao": other_rao,
        "profile": profile,
        "worker": stub_worker,
    }


def issue(world, org, cn):
    from flask import current_app

    relay = current_app.config["SMTP_HOST"]
    current_app.config["SMTP_HOST"] = ""  # the collection mail stays in the outbox
    req, _ = request_certificate(by=world["mrao"], org=org, profile=world["profile"], cn=cn)
    drain(world["worker"])
    current_app.config["SMTP_HOST"] = relay
    db.session.refresh(req)
    return req.certificate


def test_save_checks_in_the_sandbox_and_only_the_organizations_admins_may(world):
    acme = world["acme"].id
    saved = templates.save_template(
        actor=world["rao"],
        organization_id=acme,
        kind="notice.ssl_expiration",
        subject=SUBJECT,
        body=TEXT,
        html=HTML,
    )
    db.session.commit()
    assert (saved.kind, saved.html) == ("notice.ssl_expiration", HTML)
    assert templates.template_of(acme, "notice.ssl_expiration").custom
    assert not templates.template_of(acme, "digest.ssl_expiration").custom
    audit = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "mail_template.save")
    ).scalar_one()
    assert audit.object_label == "Acme: SSL certificate expiration" and audit.actor == "rao"

    for bad, says in (
        ("{{ secret_key }}", "Values you can use: rule.name"),  # a value notices lack
        ("{{ c.__class__.__mro__ }}", "cannot be rendered"),  # the sandbox refuses
        ("{% for i in range(10**6) %}x{% endfor %}", "cannot be rendered"),  # bounded
        ("{% if %}", "cannot be rendered"),  # syntax
    ):
        with pytest.raises(ValidationFailed, match="cannot be rendered") as refused:
            templates.save_template(
                actor=world["rao"],
                organization_id=acme,
                kind="notice.ssl_expiration",
                subject="s",
                body=bad,
            )
        assert says in str(refused.value.errors), bad
    with pytest.raises(ValidationFailed):
        templates.save_template(
            actor=world["rao"], organization_id=acme, kind="notice.ssl_expiration",
            subject="", body="",
        )  # fmt: skip
    with pytest.raises(NotFound):
        templates.save_template(
            actor=world["other_rao"], organization_id=acme, kind="notice.ssl_expiration",
            subject=SUBJECT, body=TEXT,
        )  # fmt: skip
    with pytest.raises(NotFound, match="No such notification template"):
        templates.preview(
            actor=world["rao"], organization_id=acme, kind="notice.nothing",
            subject=SUBJECT, body=TEXT, html="",
        )  # fmt: skip
    dept_admin = make_admin("viewer", Role.RAO, org=world["other"])
    with pytest.raises((NotFound, Forbidden)):
        templates.reset_template(
            actor=dept_admin, organization_id=acme, kind="notice.ssl_expiration"
        )


def test_preview_escapes_values_makes_html_from_text_and_links_to_the_base_url(world):
    shown = templates.preview(
        actor=world["mrao"],
        organization_id=world["acme"].id,
        kind="notice.ssl_expiration",
        subject=SUBJECT + "\r\nBcc: x@evil.example",
        body=TEXT,
        html="",
    )
    assert shown.subject == "[Acme] www.example.com: expires in 6 days Bcc: x@evil.example"
    assert "Renew it: http://certwright.test/admin/ssl_certs/details/?id=1" in shown.text
    # No HTML template: the plain text, escaped, with clickable links.
    assert (
        '<a href="http://certwright.test/admin/ssl_certs/details/?id=1">'
        "http://certwright.test/admin/ssl_certs/details/?id=1</a>" in shown.html
    )
    digest = templates.preview(
        actor=world["mrao"],
        organization_id=world["acme"].id,
        kind="digest.ssl_expiration",
        subject="{{ count }} certificates: {{ summary }}",
        body="{% for g in groups %}{{ g.heading }}:{% for c in g.items %} {{ c.common_name }}"
        "{% endfor %}\n{% endfor %}",
        html="<b>{{ rule.name }}</b>",
    )
    assert digest.subject.startswith("2 certificates")
    assert "www.example.com" in digest.text and "mail.example.com" in digest.text
    assert digest.html.startswith("<b>SSL certificate expiration (Acme)</b>")


def test_the_sweep_mails_with_the_organizations_template_and_others_with_the_built_in(world, smtp):
    rule = rules.save_rule(
        actor=world["mrao"],
        data=rules.RuleData(
            name="Ops <alerts> & co",
            type="ssl_expiration",
            applies_to_all=True,
            days=(30,),
            roles=["admins"],
        ),
    )
    templates.save_template(
        actor=world["rao"],
        organization_id=world["acme"].id,
        kind="notice.ssl_expiration",
        subject=SUBJECT,
        body=TEXT,
        html=HTML,
    )
    db.session.commit()
    mine = issue(world, world["acme"], "www.acme.example")
    issue(world, world["other"], "www.other.example")
    smtp.clear()
    sweep.start_sweep(as_of=mine.not_after - timedelta(days=20))
    drain(world["worker"])
    (own,) = smtp.to("rao@example.com")
    assert str(own["Subject"]) == "[Acme] www.acme.example: expires in 20 days"
    parts = notify.parts(own)
    assert set(parts) == {"text/plain", "text/html"}
    assert (
        f"Renew it: http://certwright.test/admin/ssl_certs/details/?id={mine.id}"
        in parts["text/plain"]
    )
    assert "Done already? http://certwright.test/notifications/ack/" in parts["text/plain"]
    assert "-- Ops <alerts> & co" in parts["text/plain"]  # text: as it is
    assert parts["text/html"].strip() == (
        '<p class="own">Ops &lt;alerts&gt; &amp; co: <a href="http://certwright.test/admin/'
        f'ssl_certs/details/?id={mine.id}">www.acme.example</a></p>'
    )
    (built_in,) = smtp.to("other-rao@example.com")
    assert "SSL certificate www.other.example expires in" in str(built_in["Subject"])
    assert "[Acme]" not in notify.parts(built_in)["text/plain"]
    assert rule.id


def test_the_console_page_previews_saves_and_resets(client, world):
    login(client, "rao", PASSWORD)
    acme = world["acme"].id
    listing = client.get("/admin/organization/").get_data(as_text=True)
    assert f"/admin/organization/notices/?id={acme}" in listing
    url = f"/admin/organization/notices/?id={acme}&kind=notice.certificate_issued"
    page = client.get(url).get_data(as_text=True)
    assert "Certificate issued" in page and "e.label" in page
    data = {
        "csrf_token": csrf_token(client, url),
        "id": acme,
        "kind": "notice.certificate_issued",
        "subject": "Issued: {{ e.label }}",
        "body": "{{ e.label }} by {{ e.actor }}\n{{ e.url }}",
        "html": "",
    }
    preview = client.post(url, data={**data, "preview": "1"}).get_data(as_text=True)
    assert "Issued: www.example.com" in preview and "srcdoc=" in preview
    client.post(url, data={**data, "save": "1"}, follow_redirects=True)
    assert templates.template_of(acme, "notice.certificate_issued").custom
    bad = client.post(url, data={**data, "body": "{{ nope }}", "save": "1"}).get_data(as_text=True)
    assert "cannot be rendered" in bad
    client.post(url, data={**data, "reset": "1"}, follow_redirects=True)
    assert not templates.template_of(acme, "notice.certificate_issued").custom
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    login(client, "other-rao", PASSWORD)
    refused = client.get(url, follow_redirects=True).get_data(as_text=True)
    assert "Record does not exist" in refused


CONFIG = """
organizations:
  - name: Acme Corp
    country: US
    notification_templates:
      notice.ssl_expiration:
        subject: "{{ c.common_name }} {{ c.when }}"
        text: |
          {{ c.common_name }}: {{ c.url }}
      digest.ssl_expiration:
        subject: "{{ count }} expiring"
        text: |
          {{ summary }}
        html: "<p>{{ summary }}</p>"
"""


def test_config_as_code_plans_applies_exports_and_resets(app, tmp_path):
    make_admin("mrao")
    path = write(tmp_path, CONFIG)
    code, out, err = run(app, "config", "plan", path)
    assert code == 2, (out, err)
    assert (
        "+ create notification template 'Acme Corp/notice.ssl_expiration': "
        "subject: '{{ c.common_name }} {{ c.when }}'; text: 33 characters; html: 0 characters"
        in out.splitlines()
    ), out
    assert run(app, "config", "apply", path)[0] == 0
    db.session.expire_all()
    kinds = set(db.session.execute(select(MailTemplate.kind)).scalars())
    assert kinds == {"notice.ssl_expiration", "digest.ssl_expiration"}
    assert run(app, "config", "plan", path)[0] == 0  # applied: nothing to do
    code, exported, _ = run(app, "config", "export")
    assert code == 0
    org = yaml.safe_load(exported)["organizations"][0]
    assert org["notification_templates"]["digest.ssl_expiration"] == {
        "subject": "{{ count }} expiring",
        "text": "{{ summary }}\n",
        "html": "<p>{{ summary }}</p>",
    }
    assert "mail_templates" not in str(org["portal"]) or org["portal"]["mail_templates"] == {}
    assert run(app, "config", "plan", write(tmp_path, exported, "exported.yaml"))[0] == 0

    unrenderable = CONFIG.replace("{{ c.url }}", "{{ config.SECRET_KEY }}")
    code, _, err = run(app, "config", "plan", write(tmp_path, unrenderable, "u.yaml"))
    assert code == 1 and "The template cannot be rendered" in err, err
    unknown = CONFIG.replace("digest.ssl_expiration:", "digest.nothing:")
    code, _, err = run(app, "config", "plan", write(tmp_path, unknown, "k.yaml"))
    assert code == 1 and "notification_templates: unknown key(s) digest.nothing" in err, err

    reset = "organizations:\n  - {name: Acme Corp, country: US, notification_templates: {}}\n"
    code, out, _ = run(app, "config", "apply", write(tmp_path, reset, "reset.yaml"))
    assert code == 0
    assert (
        "- delete notification template 'Acme Corp/digest.ssl_expiration': "
        "back to the built-in template" in out
    )
    db.session.expire_all()
    assert db.session.execute(select(func.count()).select_from(MailTemplate)).scalar_one() == 0
