"""Refusals found by the front-door audit (test_authz_front_doors.py): each answers like a
missing object, names nothing outside the admin's scope, and is an ``access.denied`` event
in the audit log (docs/authorization.md), whichever front door it came through."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Admin, AuditEvent, Certificate, Role
from app.services import audit
from app.services.errors import NotFound
from app.services.imports import imports
from app.services.persons import persons
from tests.conftest import csrf_token
from tests.integration.hostile_world import build_hostile_world
from tests.integration.rbac_world import as_
from tests.integration.test_authz_front_doors import api_attacker


@pytest.fixture
def world(app):
    return build_hostile_world().ids


def admin(login: str) -> Admin:
    return db.session.execute(select(Admin).where(Admin.login == login)).scalar_one()


def denials(login: str) -> list[tuple[str, str]]:
    db.session.expire_all()
    return [
        (e.object_type, e.object_id)
        for e in db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.action == "access.denied", AuditEvent.actor == login)
            .order_by(AuditEvent.seq)
        ).scalars()
    ]


def refused(call) -> NotFound:
    with pytest.raises(NotFound) as caught:
        call()
    audit.commit_denials()
    return caught.value


def test_a_drao_never_learns_a_sibling_departments_name_through_a_person(world):
    """A DRAO of Ops placing a person in Lab was told "You may not manage persons of Alpha
    Inc / Lab": the sibling's name. Now "No such department.", and a denied attempt."""
    data = persons.PersonData(
        organization_id=world["alpha"],
        department_id=world["lab"],
        email="new@people.lab.alpha.example",
        first_name="New",
        last_name="Person",
    )
    error = refused(lambda: persons.create_person(actor=admin("ops-full"), data=data))
    assert error.message == "No such department." and "Lab" not in error.message
    assert denials("ops-full") == [("Department", str(world["lab"]))]


def test_a_person_in_another_organization_is_a_denied_attempt(world):
    data = persons.PersonData(
        organization_id=world["beta"],
        email="new@people.beta.example",
        first_name="New",
        last_name="Person",
    )
    error = refused(lambda: persons.create_person(actor=admin("alpha-full"), data=data))
    assert error.message == "No such organization."
    assert denials("alpha-full") == [("Organization", str(world["beta"]))]


def test_an_import_into_another_organization_is_a_denied_attempt(world):
    upload = imports.Upload("x.pem", b"-----BEGIN CERTIFICATE-----\n")
    error = refused(
        lambda: imports.start_import(
            actor=admin("alpha-full"),
            organization_id=world["beta"],
            department_id=None,
            uploads=[upload],
            send=False,
        )
    )
    assert error.message == "No such organization."
    assert denials("alpha-full") == [("Organization", str(world["beta"]))]


def test_an_import_into_a_sibling_department_is_a_denied_attempt(world):
    with pytest.raises(Exception, match="only into the organizations and departments"):
        imports.start_import(
            actor=admin("ops-full"),
            organization_id=world["alpha"],
            department_id=world["lab"],
            uploads=[imports.Upload("x.pem", b"x")],
            send=False,
        )
    audit.commit_denials()
    assert denials("ops-full") == [("Department", str(world["lab"]))]


@pytest.mark.parametrize(
    ("method", "path", "object_type", "key"),
    [
        ("GET", "/api/ssl/v1/{beta_request}", "CertificateRequest", "beta_request"),
        ("GET", "/api/ssl/v1/collect/{beta_request}/x509", "CertificateRequest", "beta_request"),
        ("POST", "/api/ssl/v1/revoke/{beta_request}", "CertificateRequest", "beta_request"),
        ("GET", "/api/organization/v1/{beta}", "Organization", "beta"),
        ("GET", "/api/ssl/v1/types/?organizationId={beta}", "Organization", "beta"),
    ],
)
def test_api_lookups_outside_the_scope_are_denied_attempts(
    client, world, method, path, object_type, key
):
    headers = api_attacker("api-alpha", Role.RAO, world["alpha"], None)
    body = {"reason": "keyCompromise"} if method == "POST" else None
    response = client.open(path.format(**world), method=method, headers=headers, json=body)
    assert response.status_code == 404
    assert b"Beta" not in response.data
    assert denials("api-alpha") == [(object_type, str(world[key]))]
    assert db.session.get(Certificate, world["beta_cert"]).status.value == "Issued"


def test_a_drao_asking_the_api_for_a_sibling_department_is_a_denied_attempt(client, world):
    from app.api.scm.base import department_api_id

    headers = api_attacker("api-ops", Role.DRAO, world["alpha"], world["ops"])
    lab = department_api_id(world["lab"])
    response = client.get(f"/api/organization/v1/{lab}", headers=headers)
    assert response.status_code == 404 and b"Lab" not in response.data
    assert denials("api-ops") == [("Department", str(world["lab"]))]


@pytest.mark.parametrize(
    ("view", "action", "object_type", "key"),
    [
        ("persons", "delete", "Person", "beta_person"),
        ("domain", "delete", "Domain", "beta_domain"),
        ("delegation", "approve", "Delegation", "beta_delegation"),
        ("ssl_requests", "delete", "CertificateRequest", "beta_request"),
        ("network_assets", "assign", "Endpoint", "beta_endpoint"),
    ],
)
def test_bulk_actions_with_ids_of_another_scope_are_denied_attempts(
    client, world, view, action, object_type, key
):
    as_(client, "alpha-full")
    token = csrf_token(client, f"/admin/{view}/")
    rowids = [str(world[key])]
    client.post(
        f"/admin/{view}/action/",
        data={"action": action, "rowid": rowids, "csrf_token": token},
    )
    assert denials("alpha-full") == [(object_type, str(world[key]))]


@pytest.mark.parametrize(
    ("url", "object_type", "key"),
    [
        ("/admin/ssl_requests/status/?ids={beta_request}", "CertificateRequest", "beta_request"),
        ("/admin/jobs/status/?ids={beta_job}", "Job", "beta_job"),
        ("/admin/discovery_tasks/progress/?ids={beta_task}", "DiscoveryTask", "beta_task"),
    ],
)
def test_live_status_polls_for_ids_of_another_scope_are_denied_attempts(
    client, world, url, object_type, key
):
    as_(client, "alpha-full")
    answer = client.get(url.format(**world)).get_json()
    assert answer == {}
    assert denials("alpha-full") == [(object_type, str(world[key]))]


def test_a_bulk_action_that_looks_each_id_up_is_still_one_event_per_foreign_id(client, world):
    """The action records its foreign ids before the handler runs; the handler's own
    lookups (get_one) of the same ids add nothing."""
    as_(client, "alpha-full")
    token = csrf_token(client, "/admin/invitations/")
    client.post(
        "/admin/invitations/action/",
        data={"action": "revoke", "rowid": [str(world["beta_invitation"])], "csrf_token": token},
    )
    assert denials("alpha-full") == [("Invitation", str(world["beta_invitation"]))]


def domain_id(name: str) -> int:
    from app.models import Domain

    return db.session.execute(select(Domain.id).where(Domain.name == name)).scalar_one()


def test_delegating_to_another_organization_is_a_denied_attempt(world):
    from app.models import CertType
    from app.services.structure import domains

    error = refused(
        lambda: domains.delegate(
            actor=admin("alpha-full"),
            domain_id=domain_id("alpha.example"),
            organization_id=world["beta"],
            department_id=None,
            types=[CertType.SSL],
        )
    )
    assert error.message == "No such organization."
    assert denials("alpha-full") == [("Organization", str(world["beta"]))]


def test_a_department_of_another_organization_is_a_denied_attempt(world):
    from app.services.structure import domain_views

    error = refused(
        lambda: domain_views.organization_of_department(
            actor=admin("alpha-full"), department_id=world["secret"]
        )
    )
    assert error.message == "No such department."
    assert denials("alpha-full") == [("Department", str(world["secret"]))]


def test_another_organizations_webhook_is_a_denied_attempt(world):
    from app.services.errors import ValidationFailed
    from app.services.notifications import rules, webhooks

    error = refused(
        lambda: webhooks.get_webhook(actor=admin("alpha-full"), webhook_id=world["beta_webhook"])
    )
    assert error.message == "No such webhook."
    data = rules.RuleData(
        name="Sneaky",
        type="ssl_expiration",
        places=[(world["alpha"], None)],
        subscribers=["me@alpha.example"],
        webhook_ids=[world["beta_webhook"]],
    )
    with pytest.raises(ValidationFailed) as caught:
        rules.save_rule(actor=admin("alpha-full"), data=data)
    assert "Beta" not in str(caught.value.errors)
    audit.commit_denials()
    assert denials("alpha-full") == [("NotificationWebhook", str(world["beta_webhook"]))] * 2


@pytest.mark.parametrize(
    ("filters", "object_type", "key"),
    [
        ({"organization_id": "beta"}, "Organization", "beta"),
        ({"department_id": "lab"}, "Department", "lab"),
    ],
)
def test_a_report_filtered_on_a_place_outside_the_scope_is_a_denied_attempt(
    world, filters, object_type, key
):
    from app.services.errors import DomainError
    from app.services.reports import generation
    from app.services.reports.catalog import Filters

    with pytest.raises(DomainError, match="No such"):
        generation.start_report(
            actor=admin("ops-full"),
            report_type="ssl_certificates",
            fmt="csv",
            filters=Filters(**{k: world[v] for k, v in filters.items()}),
        )
    audit.commit_denials()
    assert denials("ops-full") == [(object_type, str(world[key]))]


def test_a_discovery_task_owned_by_another_organization_is_a_denied_attempt(world):
    from app.services.discovery import tasks
    from app.services.errors import ValidationFailed

    data = tasks.TaskData(
        name="Sneaky",
        ranges="127.0.8.10",
        ports="1",
        organization_id=world["beta"],
        rule_ids=[world["beta_assignment_rule"]],
    )
    with pytest.raises(ValidationFailed):
        tasks.create_task(actor=admin("alpha-full"), data=data)
    audit.commit_denials()
    assert denials("alpha-full") == [
        ("Organization", str(world["beta"])),
        ("AssignmentRule", str(world["beta_assignment_rule"])),
    ]


def test_validating_another_organizations_domain_is_a_denied_attempt(client, world):
    headers = api_attacker("api-alpha", Role.RAO, world["alpha"], None)
    response = client.post(
        "/api/dcv/v1/validation/start/domain/cname/",
        headers=headers,
        json={"domain": "beta.example"},
    )
    assert response.get_json()["description"] == "The domain 'beta.example' does not exist."
    assert denials("api-alpha") == [("Domain", str(world["beta_domain"]))]


@pytest.mark.parametrize(
    ("who", "hidden", "missing", "object_type", "key"),
    [
        # An organization of another account holder and one that does not exist.
        ("alpha-full", ("Beta Corp", "", ""), ("Gamma Corp", "", ""), "Organization", "beta"),
        # A DRAO's sibling department and a department that does not exist.
        ("ops-full", ("Alpha Inc", "Lab", ""), ("Alpha Inc", "Nope", ""), "Department", "lab"),
        # A domain of another organization and one that does not exist.
        (
            "alpha-full",
            ("Alpha Inc", "", "people.beta.example"),
            ("Alpha Inc", "", "nope.example"),
            "Domain",
            None,
        ),
    ],
)
def test_a_person_import_line_tells_nothing_about_places_outside_the_scope(
    world, who, hidden, missing, object_type, key
):
    """The CSV import looked organizations, departments and domains up by name across the
    whole account: a line naming Beta Corp got a different refusal from one naming a
    company that does not exist, so an RAO learnt which organizations exist."""
    from app.services.persons import imports as person_imports

    def line(email: str, place: tuple[str, str, str]) -> str:
        org, dept, domain = place
        return f"{email},Pat,,Doe,{org},{dept},{domain},,Standard,,\r\n"

    csv = ",".join(person_imports.COLUMNS) + "\r\n"
    csv += line("a@people.lab.alpha.example", hidden) + line("b@people.lab.alpha.example", missing)
    with pytest.raises(person_imports.ImportRefused) as caught:
        person_imports.import_csv(actor=admin(who), data=csv.encode())
    first, second = (r.reason for r in caught.value.report.results)
    name = hidden[2] or hidden[1] or hidden[0]
    other = missing[2] or missing[1] or missing[0]
    assert first == second.replace(other, name), (first, second)
    db.session.rollback()
    audit.commit_denials()
    expected = world[key] if key else domain_id("people.beta.example")
    assert denials(who) == [(object_type, str(expected))]


@pytest.mark.parametrize(
    ("who", "place", "object_type", "hidden"),
    [
        ("alpha-full", ("beta", None), "Organization", "Beta"),
        ("alpha-full", ("alpha", "secret"), "Department", "Secret"),
        ("ops-full", ("alpha", "lab"), "Department", "Lab"),
    ],
)
def test_a_notification_rule_never_names_a_place_outside_the_scope(
    world, who, place, object_type, hidden
):
    """A rule placed in Beta was refused with "Beta Corp is outside your scope.", one a
    DRAO of Ops placed in Lab with "Alpha Inc / Lab is outside your scope.": the names of
    what the admin may not see. Now they read like missing places."""
    from app.services.errors import ValidationFailed
    from app.services.notifications import rules

    org, dept = world[place[0]], world[place[1]] if place[1] else None
    data = rules.RuleData(
        name="Sneaky",
        type="ssl_expiration",
        places=[(org, dept)],
        subscribers=["me@alpha.example"],
    )
    with pytest.raises(ValidationFailed) as caught:
        rules.save_rule(actor=admin(who), data=data)
    message = " ".join(caught.value.errors["scope"])
    assert hidden not in message
    assert message in (
        f"Organization #{org} does not exist.",
        f"Department #{dept} is not in Alpha Inc.",
    )
    audit.commit_denials()
    assert denials(who) == [(object_type, str(dept or org))]
