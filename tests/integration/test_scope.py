"""The acting party is explicit: an Admin, or scope.SYSTEM for the system's own work.
None is a programming error in every service, never "the system with MRAO powers"."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, CertType, Organization, Role
from app.services import audit
from app.services.ca import authorities, profiles
from app.services.certificates import inventory, renewal, revocation
from app.services.discovery import tasks
from app.services.errors import Forbidden, NotFound
from app.services.scope import SYSTEM, require_actor, scope_of
from app.services.structure import orgs
from tests.factories import make_admin, make_dept, make_org
from tests.integration.test_issuance import issue, world  # noqa: F401  (fixture)


@pytest.mark.parametrize(
    "call",
    [
        lambda: orgs.create_org(actor=None, data=orgs.OrgData(name="Ghost", country="DE")),
        lambda: orgs.create_dept(actor=None, organization_id=1, name="Ghost"),
        lambda: authorities.create_ca(
            actor=None, spec=authorities.CaSpec(name="Ghost", key_type="EC-P256", customer_name="G")
        ),
        lambda: profiles.create_profile(actor=None, data=None),
        lambda: tasks.create_task(actor=None, data=tasks.TaskData(name="Ghost", ranges="10.0.0.1")),
        lambda: renewal.renew(actor=None, certificate_id=1),
        lambda: inventory.get_certificate(actor=None, certificate_id=1),
        lambda: audit.record(action="ghost", actor=None),
        lambda: scope_of(None),
    ],
)
def test_none_is_never_an_actor(app, call):
    make_org("Real")
    with pytest.raises(TypeError, match=r"actor must be an Admin or scope\.SYSTEM"):
        call()
    db.session.rollback()
    assert db.session.execute(select(Organization.name)).scalars().all() == ["Real"]


def test_the_system_acts_with_full_scope_and_is_named_in_the_audit_log(app):
    assert require_actor(SYSTEM) is SYSTEM
    assert scope_of(SYSTEM).is_master
    org = orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name="Made by the system", country="DE"))
    db.session.commit()
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "organization.create")
    ).scalar_one()
    assert (event.actor, event.actor_id, event.object_id) == ("system", None, str(org.id))


def test_one_helper_decides_which_certificate_an_admin_may_see_or_act_on(world, stub_worker):  # noqa: F811
    org, web = world["org"], world["dept"]
    _req, cert = issue(world, stub_worker, department_id=web.id)
    lab = make_dept(org, "Lab")
    ssl_in_web = make_admin("web", Role.DRAO, org=org, dept=web, privileges=[CertType.SSL])
    client_in_web = make_admin(
        "web-client", Role.DRAO, org=org, dept=web, privileges=[CertType.CLIENT]
    )
    lab_admin = make_admin("lab", Role.DRAO, org=org, dept=lab, privileges=[CertType.SSL])
    db.session.commit()

    assert inventory.get_certificate(actor=ssl_in_web, certificate_id=cert.id) is cert
    # Outside the scope: not found, whether looking or acting.
    for action in ("", "revoke"):
        with pytest.raises(NotFound, match=r"No such certificate\."):
            inventory.get_certificate(actor=lab_admin, certificate_id=cert.id, action=action)
    with pytest.raises(NotFound):
        renewal.renew(actor=lab_admin, certificate_id=cert.id)
    # In scope without the type's privilege: invisible to look at, refused by name to act on.
    with pytest.raises(NotFound):
        inventory.get_certificate(actor=client_in_web, certificate_id=cert.id)
    with pytest.raises(Forbidden, match=r"You may not revoke www\.acme\.example"):
        revocation.revoke(actor=client_in_web, certificate_ids=[cert.id], reason="superseded")
    with pytest.raises(Forbidden, match=r"You may not renew www\.acme\.example"):
        renewal.renew(actor=client_in_web, certificate_id=cert.id)
