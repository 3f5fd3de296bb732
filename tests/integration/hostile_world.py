"""The hostile-role world of the front-door authorization audit: the RBAC world
(tests/integration/rbac_world.py: Alpha with Ops and Lab, Beta with Secret) plus one object
of every scoped kind placed in Beta, and some in Alpha/Lab, each carrying a marker that
must never reach an attacker: an RAO of Alpha ("alpha-full") and a DRAO of Alpha/Ops
("ops-full"), both holding every privilege so that no page is closed to them by type alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from app.acme import jose, messages
from app.extensions import db
from app.models import (
    Admin,
    CertType,
    Endpoint,
    Job,
    NotificationDelivery,
    OutboxMessage,
    Role,
)
from app.services.acme import accounts, external_keys
from app.services.discovery import rules as assignment_rules
from app.services.discovery import tasks
from app.services.imports import imports
from app.services.notifications import rules as notification_rules
from app.services.notifications import webhooks
from app.services.persons import invitations, persons
from app.services.reports import generation, schedules
from app.services.reports.catalog import Filters
from app.services.structure import domains
from tests.acme_client import external_binding, jwk_of
from tests.factories import make_admin, make_domain, self_signed
from tests.integration.rbac_world import build_world

ATTACKERS = ("alpha-full", "ops-full")


@dataclass
class World:
    ids: dict[str, Any]


def _admin(login: str) -> Admin:
    return db.session.execute(select(Admin).where(Admin.login == login)).scalar_one()


def _client_profile() -> Any:
    from app.models import CertificateAuthority
    from app.pki.profiles import CA_PURPOSE_KINDS
    from app.services.ca import authorities, profiles
    from app.services.ca.profiles import KIND_OF
    from app.services.scope import SYSTEM

    root = db.session.execute(
        select(CertificateAuthority).where(CertificateAuthority.name == "Test Root")
    ).scalar_one()
    purpose = next(p for p, kind in CA_PURPOSE_KINDS.items() if kind is KIND_OF[CertType.CLIENT])
    issuing = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name="Mail Issuing",
            key_type="EC-P256",
            customer_name="Test",
            country="DE",
            parent_id=root.id,
            purpose=purpose.value,
        ),
    )
    profile = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="Mail",
            cert_type=CertType.CLIENT,
            ca_id=issuing.id,
            terms=(90,),
            key_types=("EC-P256",),
            requires_approval=False,
        ),
    )
    db.session.commit()
    return profile


def build_hostile_world() -> World:
    ids: dict[str, Any] = build_world()
    from app.models import Department, Organization

    alpha, beta = (
        db.session.get(Organization, ids["alpha"]),
        db.session.get(Organization, ids["beta"]),
    )
    ops, lab = db.session.get(Department, ids["ops"]), db.session.get(Department, ids["lab"])
    mrao, beta_rao = _admin("mrao"), _admin("beta-rao")
    make_admin("alpha-full", Role.RAO, org=alpha)
    make_admin("ops-full", Role.DRAO, org=alpha, dept=ops)
    everything = tuple(CertType)
    make_domain("people.beta.example", by=mrao, org=beta, types=everything)
    make_domain("people.lab.alpha.example", by=mrao, org=alpha, dept=lab, types=everything)
    # One domain delegated to both organizations: Alpha's admins see it, never Beta's part.
    shared = make_domain("shared.example", by=mrao, org=alpha)
    domains.delegate(
        actor=mrao,
        domain_id=shared.id,
        organization_id=beta.id,
        department_id=None,
        types=[CertType.SSL],
    )
    db.session.commit()
    ids["shared_domain"] = shared.id
    client_profile = _client_profile()

    def person(org: Any, dept: Any, email: str, last: str) -> int:
        data = persons.PersonData(
            organization_id=org.id,
            department_id=dept.id if dept else None,
            email=email,
            first_name="Pat",
            last_name=last,
        )
        return persons.create_person(actor=mrao, data=data).id

    ids["beta_person"] = person(beta, None, "pat@people.beta.example", "Betaperson")
    ids["lab_person"] = person(alpha, lab, "pat@people.lab.alpha.example", "Labperson")
    db.session.commit()
    for key in ("beta_person", "lab_person"):
        ids[key.replace("person", "invitation")] = invitations.send_invitation(
            actor=mrao,
            person_id=ids[key],
            profile_id=client_profile.id,
            term_days=90,
            key_type="EC-P256",
        ).id
    db.session.commit()

    created = external_keys.create_key(
        actor=mrao, organization_id=beta.id, department_id=None, label="beta-eab-key"
    )
    ids["beta_acme_key"] = created.key.id
    db.session.commit()
    account_key = ec.generate_private_key(ec.SECP256R1())
    url = "http://localhost/acme/tls/new-account"
    binding = external_binding(
        account_key,
        kid=created.key.key_id,
        hmac_key=jose.b64decode(created.hmac_key, what="hmac"),
        url=url,
    )
    ids["beta_acme_account"] = accounts.register(
        jwk=jose.parse_jwk(jwk_of(account_key)),
        request=messages.NewAccount(("mailto:ops@beta.example",), True, False, binding),
        url=url,
        user_agent="beta-client",
    ).account.id
    db.session.commit()

    hook, _ = webhooks.create_webhook(
        actor=mrao, name="Beta hook", url="https://hooks.beta.example/in", organization_id=beta.id
    )
    ids["beta_webhook"] = hook.id
    ids["beta_notification_rule"] = notification_rules.save_rule(
        actor=mrao,
        data=notification_rules.RuleData(
            name="Beta expiry rule",
            type="ssl_expiration",
            places=[(beta.id, None)],
            subscribers=["watch@beta.example"],
        ),
    ).id
    ids["beta_assignment_rule"] = assignment_rules.save_rule(
        actor=mrao,
        data=assignment_rules.RuleData(
            name="Beta assignment rule",
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": "Beta"}],
            organization_id=beta.id,
        ),
    ).id
    ids["beta_task"] = tasks.create_task(
        actor=mrao,
        data=tasks.TaskData(
            name="Beta scan task", ranges="127.0.8.9", ports="1", organization_id=beta.id
        ),
    ).id
    db.session.commit()

    pem = self_signed("import.beta.example").public_bytes(serialization.Encoding.PEM)
    record = imports.start_import(
        actor=mrao,
        organization_id=beta.id,
        department_id=None,
        uploads=[imports.Upload("beta-upload.pem", pem)],
        send=False,
    )
    ids["beta_import"] = record.id
    ids["beta_import_job"] = record.job_id
    report = generation.start_report(actor=beta_rao, report_type="ssl_certificates", fmt="csv")
    ids["beta_report"] = report.id
    ids["beta_schedule"] = schedules.create_schedule(
        actor=beta_rao,
        data=schedules.ScheduleData(
            name="Beta weekly",
            report_type="ssl_certificates",
            fmt="csv",
            filters=Filters(organization_id=beta.id),
            schedule={"kind": "weekly", "weekday": 0, "time": "07:00"},
            recipients="boss@beta.example",
        ),
    ).id
    db.session.commit()
    ids["beta_job"] = db.session.execute(
        select(Job.id).where(Job.id == ids["beta_import_job"])
    ).scalar_one()
    ids["beta_outbox"] = (
        db.session.execute(select(OutboxMessage.id).where(OutboxMessage.organization_id == beta.id))
        .scalars()
        .first()
    )
    endpoint = Endpoint(
        task_id=ids["beta_task"],
        host_name="www.beta.example",
        ip="127.0.8.9",
        port=443,
        certificate_id=ids["beta_cert"],
    )
    db.session.add(endpoint)
    db.session.commit()
    ids["beta_endpoint"] = endpoint.id
    # No notification has been delivered in this world: the Sent Notifications view is
    # reached with an id that names nothing (its scope is tested in
    # test_notifications_console.py::test_sent_notifications_are_scoped_exported_and_acknowledged).
    ids["beta_delivery"] = db.session.execute(select(NotificationDelivery.id)).scalars().first()
    return World(ids=ids)
