"""Configuration as code: config export / plan / apply through the command line."""

from __future__ import annotations

import yaml
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Admin,
    AuditEvent,
    CertificateAuthority,
    CertificateProfile,
    Delegation,
    DelegationStatus,
    Department,
    Organization,
)
from app.services import audit
from tests.factories import make_admin

EXAMPLE = """
organizations:
  - {name: Acme Corp, city: Springfield, state: Illinois, country: US, departments: [IT Operations]}
domains:
  - name: example.test
    delegations: [{to: Acme Corp, types: [ssl, client, device]}]
  - name: ops.example.test
    delegations: [{to: "Acme Corp/IT Operations", types: [ssl]}]
authorities:
  - {name: Acme Root, customer: Acme, key_type: EC-P384, country: US}
  - {name: Acme Issuing, customer: Acme, key_type: EC-P256, parent: Acme Root, country: US}
profiles:
  - {name: TLS 90d, type: ssl, ca: Acme Issuing, terms: [90], key_types: [RSA-2048, EC-P256], approval: required}
"""


def run(app, *args, input=None):
    result = app.test_cli_runner().invoke(args=list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def count(model, *where):
    return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_the_issue_example_plans_applies_and_is_idempotent(app, tmp_path):
    make_admin("mrao")
    path = write(tmp_path, EXAMPLE)
    code, out, err = run(app, "config", "plan", path)
    assert code == 2, (out, err)
    assert "+ create organization 'Acme Corp'" in out
    assert "+ create department 'Acme Corp/IT Operations'" in out
    assert "+ create authority 'Acme Root'" in out
    assert "+ create delegation 'example.test -> Acme Corp'" in out
    db.session.expire_all()
    assert count(Organization, Organization.name == "Acme Corp") == 0  # plan changed nothing
    assert count(CertificateAuthority) == 0

    code, out, err = run(app, "config", "apply", path)
    assert code == 0, (out, err)
    db.session.expire_all()
    root = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.name == "Acme Root")
    ).scalar_one()
    issuing = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.name == "Acme Issuing")
    ).scalar_one()
    assert issuing.parent_id == root.id and root.key_type == "EC-P384"
    profile = db.session.execute(select(CertificateProfile)).scalar_one()
    assert profile.ca_id == issuing.id and profile.terms == [90] and profile.requires_approval
    org = db.session.execute(
        select(Organization).where(Organization.name == "Acme Corp")
    ).scalar_one()
    assert (org.city, org.state, org.country) == ("Springfield", "Illinois", "US")
    dept = db.session.execute(select(Department)).scalar_one()
    delegations = db.session.execute(select(Delegation)).scalars().all()
    assert {(d.organization_id, d.department_id) for d in delegations} == {
        (org.id, None),
        (org.id, dept.id),
    }
    assert all(d.status == DelegationStatus.APPROVED for d in delegations)
    actions = set(db.session.execute(select(AuditEvent.action)).scalars())
    assert {
        "organization.create",
        "ca.create",
        "profile.create",
        "delegation.create",
        "config.apply",
    } <= actions
    assert audit.verify().ok

    code, out, err = run(app, "config", "plan", path)
    assert code == 0 and "No changes" in out, (out, err)
    events = count(AuditEvent)
    code, out, err = run(app, "config", "apply", path)
    assert code == 0 and "No changes" in out
    db.session.expire_all()
    assert count(AuditEvent) == events  # a second apply changes (and records) nothing
    assert count(CertificateAuthority) == 2


def populate():
    """A bit of everything, built through the services as the console builds it."""
    from app.models import CertType, Role
    from app.services.discovery import rules, tasks
    from app.services.scope import SYSTEM
    from tests.factories import make_dept, make_domain, make_org, make_pki

    mrao = make_admin("mrao")
    org = make_org("Globex", city="Cypress Creek", address1="1 Main St")
    dept = make_dept(org, "Web")
    make_domain("globex.example", by=mrao, org=org, types=(CertType.SSL, CertType.CLIENT))
    make_domain("*.web.globex.example", by=mrao, org=org, dept=dept)
    make_pki()
    make_admin("drao", Role.DRAO, org=org, dept=dept, privileges=(CertType.SSL,))
    rule = rules.save_rule(
        actor=SYSTEM,
        data=rules.RuleData(
            name="Web servers",
            match_mode="any",
            conditions=[{"field": "san", "operator": "ends_with", "value": ".web.globex.example"}],
            organization_id=org.id,
            department_id=dept.id,
        ),
    )
    tasks.create_task(
        actor=SYSTEM,
        data=tasks.TaskData(
            name="Data centre",
            ranges="10.0.0.0/24\nweb.globex.example",
            ports="443,8443",
            schedule={"kind": "weekly", "weekday": 0, "time": "02:30", "timezone": "Europe/Berlin"},
            rule_ids=[rule.id],
        ),
    )
    db.session.commit()


def test_export_holds_everything_but_secrets_and_plans_to_nothing(app, tmp_path):
    populate()
    code, out, err = run(app, "config", "export")
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert [o["name"] for o in doc["organizations"]] == ["Globex"]
    assert doc["organizations"][0]["departments"] == ["Web"]
    assert {d["name"] for d in doc["domains"]} == {"globex.example", "*.web.globex.example"}
    root = next(a for a in doc["authorities"] if a["name"] == "Test Root")
    assert root["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert (
        next(a for a in doc["authorities"] if a["name"] == "Test Issuing")["parent"] == "Test Root"
    )
    assert doc["profiles"][0]["ca"] == "Test Issuing"
    assert doc["discovery_tasks"][0]["rules"] == [{"name": "Web servers", "to": "Globex/Web"}]
    assert doc["discovery_tasks"][0]["schedule"]["timezone"] == "Europe/Berlin"
    drao = next(a for a in doc["admins"] if a["login"] == "drao")
    assert drao["scopes"] == [{"to": "Globex/Web", "types": ["ssl"]}]
    body = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
    for secret in ("PRIVATE KEY", "$argon2", "password", "sealed", "token", "kek"):
        assert secret not in body.lower()

    path = write(tmp_path, out)
    code, out, err = run(app, "config", "plan", path)
    assert (code, out.strip()) == (0, "No changes: the database matches the file."), (out, err)


def test_a_changed_file_updates_and_deletes_what_it_no_longer_lists(app, tmp_path):
    make_admin("mrao")
    assert run(app, "config", "apply", write(tmp_path, EXAMPLE))[0] == 0
    changed = """
organizations:
  - {name: Acme Corp, city: Chicago, state: Illinois, country: US, departments: []}
domains:
  - name: example.test
    description: the lab
    delegations: [{to: Acme Corp, types: [ssl]}]
authorities:
  - {name: Acme Root, customer: Acme, key_type: EC-P384, country: US}
profiles:
  - {name: TLS 90d, type: ssl, ca: Acme Issuing, terms: [30, 90], key_types: [EC-P256], approval: automatic}
"""
    path = write(tmp_path, changed, "changed.yaml")
    code, out, err = run(app, "config", "plan", path)
    assert code == 2, (out, err)
    lines = out.splitlines()
    assert "~ update organization 'Acme Corp': city: 'Springfield' -> 'Chicago'" in lines
    assert (
        "~ update delegation 'example.test -> Acme Corp': types: ['client', 'device', 'ssl'] -> ['ssl']"
        in lines
    )
    assert "- delete domain 'ops.example.test'" in lines
    assert "- delete department 'Acme Corp/IT Operations'" in lines
    # the department goes only after the delegation to it went with its domain
    assert lines.index("- delete department 'Acme Corp/IT Operations'") > lines.index(
        "- delete domain 'ops.example.test'"
    )
    assert not any("authority" in line for line in lines)  # a CA left out is left alone

    code, out, err = run(app, "config", "apply", path)
    assert code == 0, (out, err)
    db.session.expire_all()
    assert db.session.execute(select(Organization.city)).scalar_one() == "Chicago"
    assert count(Department) == 0
    assert count(Delegation) == 1
    profile = db.session.execute(select(CertificateProfile)).scalar_one()
    assert profile.terms == [30, 90] and not profile.requires_approval
    assert count(CertificateAuthority) == 2
    assert run(app, "config", "plan", path)[0] == 0


def test_every_problem_is_reported_and_nothing_is_applied(app, tmp_path):
    make_admin("mrao")
    bad = """
organizations:
  - {name: Acme Corp, country: US, colour: blue}
profiles:
  - {name: P, type: sll, ca: X, terms: [0], key_types: [RSA-1024]}
"""
    code, _out, err = run(app, "config", "apply", write(tmp_path, bad))
    assert code == 1
    assert "organizations[0]: unknown key(s) colour" in err
    assert "profiles[0].type: 'sll' is not a certificate type" in err
    assert "profiles[0].terms: '0' is not a whole number of days" in err
    assert "profiles[0].key_types: unknown key type 'RSA-1024'" in err

    refused = EXAMPLE.replace("{to: Acme Corp, types", "{to: Initech, types")
    code, _out, err = run(app, "config", "apply", write(tmp_path, refused, "refused.yaml"))
    assert (
        code == 1
        and "create delegation 'example.test -> Initech': no organization named 'Initech'" in err
    )
    db.session.expire_all()
    assert count(Organization, Organization.name == "Acme Corp") == 0  # all or nothing
    assert count(CertificateAuthority) == 0

    assert run(app, "config", "apply", write(tmp_path, EXAMPLE))[0] == 0
    rekeyed = EXAMPLE.replace("key_type: EC-P384", "key_type: RSA-4096")
    code, _out, err = run(app, "config", "plan", write(tmp_path, rekeyed, "rekeyed.yaml"))
    assert code == 1
    assert (
        "authority 'Acme Root' exists and a CA certificate cannot change (key_type is 'EC-P384', the file says 'RSA-4096')"
        in err
    )


def test_administrators_are_created_with_a_password_shown_once(app, tmp_path):
    make_admin("mrao")
    text = (
        EXAMPLE
        + """
admins:
  - {login: mrao, email: mrao@example.com, role: MRAO}
  - login: ops
    email: ops@example.com
    role: DRAO
    scopes: [{to: Acme Corp/IT Operations, types: [ssl, device]}]
"""
    )
    code, out, err = run(app, "config", "apply", write(tmp_path, text))
    assert code == 0, (out, err)
    assert "+ create admin 'ops': DRAO" in out
    assert "New administrator 'ops': password " in out
    db.session.expire_all()
    ops = db.session.execute(select(Admin).where(Admin.login == "ops")).scalar_one()
    assert [(s.department.name, sorted(p.value for p in s.privileges())) for s in ops.scopes] == [
        ("IT Operations", ["device", "ssl"])
    ]
    assert run(app, "config", "plan", write(tmp_path, text))[0] == 0


def test_plan_reads_standard_input_and_prints_json(app, tmp_path):
    import json

    make_admin("mrao")
    code, out, err = run(app, "config", "plan", "-", "--json", input=EXAMPLE)
    assert code == 2, err
    plan = json.loads(out)
    assert plan["changed"] is True and plan["passwords"] == {}
    assert {
        "action": "create",
        "kind": "authority",
        "name": "Acme Root",
        "details": ["EC-P384", "root"],
    } in plan["changes"]
    code, out, err = run(app, "config", "apply", "-", "--json", input=EXAMPLE)
    assert code == 0 and json.loads(out)["changed"] is True
    code, out, err = run(app, "config", "plan", "-", "--json", input=EXAMPLE)
    assert code == 0 and json.loads(out) == {"changed": False, "changes": [], "passwords": {}}


def test_client_and_device_profile_options_round_trip(app, tmp_path):
    # Key escrow and legacy PKCS#12 (client) and serverAuth (device) are exported, planned
    # and applied like the other profile settings: an apply never turns them off silently.
    make_admin("mrao")
    document = """
organizations:
  - {name: Acme Corp, city: Springfield, state: Illinois, country: US}
authorities:
  - {name: Acme Root, customer: Acme, key_type: EC-P384, country: US}
  - {name: Acme People, customer: Acme, key_type: EC-P256, parent: Acme Root, country: US, purpose: smime}
  - {name: Acme Devices, customer: Acme, key_type: EC-P256, parent: Acme Root, country: US, purpose: device}
profiles:
  - {name: People, type: client, ca: Acme People, terms: [365], key_types: [EC-P256], key_escrow: true, legacy_pkcs12: true}
  - {name: Devices, type: device, ca: Acme Devices, terms: [365], key_types: [EC-P256], server_auth: true}
"""
    path = write(tmp_path, document)
    code, out, err = run(app, "config", "apply", path)
    assert code == 0, (out, err)
    db.session.expire_all()
    people, devices = (
        db.session.execute(
            select(CertificateProfile).where(CertificateProfile.name == name)
        ).scalar_one()
        for name in ("People", "Devices")
    )
    assert people.key_escrow and people.pkcs12_legacy and not people.include_server_auth
    assert devices.include_server_auth and not devices.key_escrow
    code, out, err = run(app, "config", "export")
    assert code == 0, err
    exported = {p["name"]: p for p in yaml.safe_load(out)["profiles"]}
    assert (exported["People"]["key_escrow"], exported["People"]["legacy_pkcs12"]) == (True, True)
    assert exported["Devices"]["server_auth"] is True
    assert run(app, "config", "plan", write(tmp_path, out, "export.yaml"))[0] == 0
    # Leaving an option out of the file means false: the plan says what would change.
    code, out, err = run(
        app,
        "config",
        "plan",
        write(tmp_path, document.replace(", key_escrow: true", ""), "less.yaml"),
    )
    assert code == 2, (out, err)
    assert "~ update profile 'People': key_escrow: True -> False" in out.splitlines(), out
    # A bad option names its place.
    code, out, err = run(
        app,
        "config",
        "plan",
        write(tmp_path, document.replace("key_escrow: true", "key_escrow: maybe"), "bad.yaml"),
    )
    assert code != 0 and "profiles[0].key_escrow" in out + err, (out, err)


def test_a_profiles_acme_directory_round_trips(app, tmp_path):
    # The ACME settings of a profile: its directory name (ACME on or off) and its approval
    # rule, which ACME orders follow: exported, planned and applied like the rest.
    make_admin("mrao")
    document = EXAMPLE.replace("approval: required}", "approval: automatic, acme_directory: tls}")
    code, out, err = run(app, "config", "apply", write(tmp_path, document))
    assert code == 0, (out, err)
    db.session.expire_all()
    profile = db.session.execute(select(CertificateProfile)).scalar_one()
    assert (profile.acme_slug, profile.requires_approval) == ("tls", False)
    code, out, err = run(app, "config", "export")
    assert code == 0, err
    exported = yaml.safe_load(out)["profiles"][0]
    assert (exported["acme_directory"], exported["approval"]) == ("tls", "automatic")
    assert run(app, "config", "plan", write(tmp_path, out, "export.yaml"))[0] == 0
    # Left out: ACME off, and the plan says so.
    code, out, err = run(app, "config", "plan", write(tmp_path, EXAMPLE, "off.yaml"))
    assert code == 2, (out, err)
    assert "acme_directory: 'tls' -> ''" in out, out
    assert run(app, "config", "apply", write(tmp_path, EXAMPLE, "off.yaml"))[0] == 0
    db.session.expire_all()
    assert db.session.get(CertificateProfile, profile.id).acme_slug is None
    bad = document.replace("acme_directory: tls", "acme_directory: Not OK!")
    code, out, err = run(app, "config", "plan", write(tmp_path, bad, "bad.yaml"))
    assert code != 0 and "profiles[0].acme_directory" in out + err, (out, err)


PORTAL = """
organizations:
  - name: Acme Corp
    country: US
    portal:
      invitation_days: 14
      mail_templates:
        invitation:
          subject: "Acme: your certificate"
          body: |
            Dear {{ full_name }},

            open {{ link }} and enter {{ code }} (until {{ expires }}).
"""


def test_portal_settings_plan_apply_export_and_reset(app, tmp_path):
    """Invitation validity and mail templates per organization, through the services the
    console's Email Template page uses (audited), idempotent, exported as blocks."""
    from app.models import MailTemplate
    from app.services.persons import invitations, mailing

    make_admin("mrao")
    path = write(tmp_path, PORTAL)
    code, out, err = run(app, "config", "plan", path)
    assert code == 2, (out, err)
    lines = out.splitlines()
    assert "~ update portal settings 'Acme Corp': invitation_days: 7 -> 14" in lines
    assert (
        "+ create mail template 'Acme Corp/invitation': subject: 'Acme: your certificate'; "
        "body: 83 characters" in lines
    )
    assert count(MailTemplate) == 0  # a plan changes nothing

    assert run(app, "config", "apply", path)[0] == 0
    db.session.expire_all()
    org = db.session.execute(select(Organization)).scalar_one()
    assert invitations.invitation_days(org.id) == 14
    subject, body, custom = mailing.template_of(org.id, "invitation")
    assert custom and subject == "Acme: your certificate"
    assert (
        body
        == "Dear {{ full_name }},\n\nopen {{ link }} and enter {{ code }} (until {{ expires }}).\n"
    )
    actions = set(db.session.execute(select(AuditEvent.action)).scalars())
    assert {"organization.invitation_days", "mail_template.save", "config.apply"} <= actions
    assert run(app, "config", "plan", path)[0] == 0  # idempotent

    code, exported, err = run(app, "config", "export")
    assert code == 0, err
    assert "      body: |\n          Dear {{ full_name }},\n" in exported  # a literal block
    portal = yaml.safe_load(exported)["organizations"][0]["portal"]
    assert portal == {
        "invitation_days": 14,
        "mail_templates": {"invitation": {"subject": "Acme: your certificate", "body": body}},
    }
    assert run(app, "config", "plan", write(tmp_path, exported, "exported.yaml"))[0] == 0

    # A listed mail_templates is authoritative, invitation_days left out is the default;
    # without `portal` the organization's portal settings are left alone.
    reset = "organizations:\n  - {name: Acme Corp, country: US, portal: {mail_templates: {}}}\n"
    code, out, err = run(app, "config", "apply", write(tmp_path, reset, "reset.yaml"))
    assert code == 0, (out, err)
    assert "~ update portal settings 'Acme Corp': invitation_days: 14 -> 7" in out
    assert "- delete mail template 'Acme Corp/invitation': back to the built-in wording" in out
    db.session.expire_all()
    assert count(MailTemplate) == 0 and invitations.invitation_days(org.id) == 7
    assert "mail_template.reset" in set(db.session.execute(select(AuditEvent.action)).scalars())
    assert run(app, "config", "apply", path)[0] == 0
    alone = "organizations:\n  - {name: Acme Corp, country: US}\n"
    assert run(app, "config", "plan", write(tmp_path, alone, "alone.yaml"))[0] == 0


def test_bad_portal_settings_are_refused_and_nothing_is_applied(app, tmp_path):
    from app.models import MailTemplate, PortalSettings

    make_admin("mrao")
    bad = """
organizations:
  - name: Acme Corp
    country: US
    portal:
      invitation_days: 0
      colour: blue
      mail_templates:
        welcome: {subject: Hi, body: Hello}
        renewal: {subject: "", body: "   "}
  - {name: Globex, country: US, portal: {invitation_days: "14"}}
  - {name: Initech, country: US, portal: {invitation_days: 91}}
"""
    code, _out, err = run(app, "config", "apply", write(tmp_path, bad))
    assert code == 1
    assert "organizations[0].portal: unknown key(s) colour" in err
    assert "organizations[0].portal.invitation_days: between 1 and 90 days, not 0" in err
    assert "organizations[0].portal.mail_templates: unknown key(s) welcome" in err
    assert "organizations[0].portal.mail_templates.renewal: 'subject' is required" in err
    assert "organizations[0].portal.mail_templates.renewal: 'body' is required (text)" in err
    assert "organizations[1].portal.invitation_days: expected a whole number of days" in err
    assert "organizations[2].portal.invitation_days: between 1 and 90 days, not 91" in err

    # A template the sandbox cannot render is refused by the mail service, naming it.
    unrenderable = PORTAL.replace("{{ code }}", "{{ secret_key }}")
    code, _out, err = run(app, "config", "plan", write(tmp_path, unrenderable, "u.yaml"))
    assert code == 1
    assert (
        "create mail template 'Acme Corp/invitation': body: The template cannot be rendered" in err
    )
    code, _out, err = run(app, "config", "apply", write(tmp_path, unrenderable, "u.yaml"))
    assert code == 1
    db.session.expire_all()
    assert count(Organization) == 0 and count(MailTemplate) == 0 and count(PortalSettings) == 0
