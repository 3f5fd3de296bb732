"""Every audited action records before/after values that are the real old and new values.

One case per action string in app/ (a test below fails when an action has no case). Each
case changes something through its service and returns what the database held before and
after, read column by column (not through the services' own snapshots); the event's
before/after must agree with those for every key that names a column (or an alias for one).
Actions that change nothing an audit log may hold (a failed sign-in, a key export) must
record neither.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from app.extensions import db
from app.models import (
    Admin,
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateProfile,
    CertificateRequest,
    CertOrigin,
    CertStatus,
    CertType,
    Delegation,
    Department,
    DiscoveryTask,
    Domain,
    Invitation,
    Job,
    MailTemplate,
    NotificationRule,
    Organization,
    Person,
    PortalEnrollment,
    PortalSettings,
    Report,
    RequestMode,
    Role,
    ScanAgent,
    ScanRun,
)
from app.models.discovery import AssignmentRule
from app.models.types import utcnow
from app.services import audit
from app.services.accounts import admins, sessions
from app.services.ca import authorities, profiles
from app.services.certificates import (
    approvals,
    enrollment,
    inventory,
    issuance,
    renewal,
    revocation,
)
from app.services.discovery import agentruns, agents, endpoints, rules, runs, tasks
from app.services.errors import DomainError
from app.services.persons import invitations, mailing, persons, registration, selfservice
from app.services.platform import jobs
from app.services.scope import SYSTEM
from app.services.structure import domains, orgs
from tests.conftest import ROOT, drain
from tests.factories import PASSWORD, make_admin, make_csr, make_dept, make_org, make_pki


def observed(model: Any, object_id: Any) -> dict[str, Any] | None:
    """Every column of the row as the database holds it now, as JSON values."""
    table = model.__table__
    row = db.session.execute(select(table).where(table.c.id == int(object_id))).mappings().first()
    return None if row is None else {k: audit.jsonable(v) for k, v in row.items()}


@dataclass
class Seen:
    """What a case observed: the row before and after, and event keys naming columns."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None
    aliases: dict[str, str] = field(default_factory=dict)
    no_values: bool = False  # the action changes nothing the log may hold
    # A summary of other audited changes (each of which has its own event): its after holds
    # the list of changes, not column values.
    summary: bool = False


class World:
    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.mrao = make_admin("mrao")
        self.org = make_org("Acme", city="Berlin", state="Berlin")
        self.dept = make_dept(self.org, "IT")
        self.rao = make_admin("rao", Role.RAO, org=self.org)
        self.domain = domains.create_domain(
            actor=self.mrao,
            name="acme.example",
            organization_id=self.org.id,
            types=list(CertType),
        )
        db.session.commit()
        _, self.issuing, self.profile = make_pki()

    def request(self, cn: str = "www.acme.example", **fields: Any) -> CertificateRequest:
        mode = fields.pop("mode", RequestMode.CSR)
        data = enrollment.RequestData(
            organization_id=self.org.id,
            profile_id=self.profile.id,
            term_days=90,
            mode=mode,
            csr=make_csr(cn)[0] if mode == RequestMode.CSR else None,
            common_name=cn,
            eula_accepted=True,
            **fields,
        )
        req = enrollment.submit_request(actor=self.mrao, data=data)
        db.session.commit()
        return req

    def certificate(self, cn: str = "www.acme.example", **fields: Any) -> Certificate:
        req = self.request(cn, **fields)
        approvals.approve(actor=self.mrao, request_ids=[req.id])
        drain(self.worker)
        db.session.refresh(req)
        assert req.certificate is not None, req.failure_reason
        return req.certificate


def commit(fn: Callable[[], Any]) -> Any:
    result = fn()
    db.session.commit()
    return result


def last_id(model: Any) -> int:
    return db.session.execute(select(model.id).order_by(model.id.desc())).scalars().first()


# --- one case per action ---------------------------------------------------------------


def signin_success(w: World) -> Seen:
    old = observed(Admin, w.rao.id)
    commit(lambda: sessions.authenticate(login="rao", password=PASSWORD, ip="10.0.0.1"))
    return Seen(old, observed(Admin, w.rao.id))


def signin_failure(w: World) -> Seen:
    with pytest.raises(DomainError):
        sessions.authenticate(login="rao", password="wrong-password-1", ip="10.0.0.1")
    db.session.commit()
    return Seen(None, None, no_values=True)


def signout(w: World) -> Seen:
    token = commit(lambda: sessions.start_session(admin=w.rao, ip="10.0.0.1", user_agent="t"))
    commit(lambda: sessions.end_session(token=token, admin=w.rao))
    return Seen(None, None, no_values=True)


def admin_create(w: World) -> Seen:
    admin = make_admin("drao", Role.DRAO, org=w.org, dept=w.dept)
    return Seen(None, observed(Admin, admin.id))


def admin_update(w: World) -> Seen:
    old = observed(Admin, w.rao.id)
    commit(
        lambda: admins.update_admin(
            actor=w.mrao,
            admin_id=w.rao.id,
            email="new-rao@example.com",
            full_name="Rao Renamed",
            role=Role.RAO,
            active=True,
            grants=[admins.Grant(w.org.id, None, frozenset(CertType))],
        )
    )
    return Seen(old, observed(Admin, w.rao.id))


def admin_delete(w: World) -> Seen:
    old = observed(Admin, w.rao.id)
    commit(lambda: admins.delete_admin(actor=w.mrao, admin_id=w.rao.id))
    return Seen(old, None)


def admin_password_change_failed(w: World) -> Seen:
    with pytest.raises(DomainError):
        admins.change_own_password(
            admin=w.rao, current="not-the-password", new="another-good-pass", keep_token=None
        )
    db.session.commit()
    return Seen(None, None, no_values=True)


def admin_password_change(w: World) -> Seen:
    old = observed(Admin, w.rao.id)
    commit(
        lambda: admins.change_own_password(
            admin=w.rao, current=PASSWORD, new="another-good-password", keep_token=None
        )
    )
    return Seen(old, observed(Admin, w.rao.id))


def admin_preferences_welcome(w: World) -> Seen:
    old = observed(Admin, w.rao.id)
    commit(lambda: admins.dismiss_welcome(admin=w.rao))
    return Seen(old, observed(Admin, w.rao.id))


def admin_preferences_timezone(w: World) -> Seen:
    old = observed(Admin, w.rao.id)
    commit(lambda: admins.set_timezone(admin=w.rao, timezone="Asia/Tokyo"))
    return Seen(old, observed(Admin, w.rao.id))


def organization_create(w: World) -> Seen:
    org = make_org("Beta", city="Paris")
    return Seen(None, observed(Organization, org.id))


def organization_update(w: World) -> Seen:
    old = observed(Organization, w.org.id)
    commit(
        lambda: orgs.update_org(
            actor=w.mrao,
            org_id=w.org.id,
            data=orgs.OrgData(name="Acme Corp", country="FR", city="Lyon", state="Berlin"),
        )
    )
    return Seen(old, observed(Organization, w.org.id))


def organization_delete(w: World) -> Seen:
    org = make_org("Empty")
    old = observed(Organization, org.id)
    commit(lambda: orgs.delete_org(actor=w.mrao, org_id=org.id))
    return Seen(old, None)


def department_create(w: World) -> Seen:
    dept = make_dept(w.org, "Sales")
    return Seen(None, observed(Department, dept.id))


def department_update(w: World) -> Seen:
    old = observed(Department, w.dept.id)
    commit(lambda: orgs.update_dept(actor=w.mrao, dept_id=w.dept.id, name="IT Operations"))
    return Seen(old, observed(Department, w.dept.id))


def department_delete(w: World) -> Seen:
    old = observed(Department, w.dept.id)
    commit(lambda: orgs.delete_dept(actor=w.mrao, dept_id=w.dept.id))
    return Seen(old, None)


def domain_create(w: World) -> Seen:
    domain = commit(lambda: domains.create_domain(actor=w.mrao, name="beta.example"))
    return Seen(None, observed(Domain, domain.id))


def domain_update(w: World) -> Seen:
    old = observed(Domain, w.domain.id)
    commit(
        lambda: domains.update_domain(
            actor=w.mrao, domain_id=w.domain.id, description="web", active=False
        )
    )
    return Seen(old, observed(Domain, w.domain.id))


def domain_delete(w: World) -> Seen:
    domain = commit(lambda: domains.create_domain(actor=w.mrao, name="gone.example"))
    old = observed(Domain, domain.id)
    commit(lambda: domains.delete_domain(actor=w.mrao, domain_id=domain.id))
    return Seen(old, None)


def _requested_delegation(w: World) -> Delegation:
    """An RAO's new domain: its delegation waits for an MRAO."""
    domain = commit(
        lambda: domains.create_domain(
            actor=w.rao,
            name="beta.example",
            organization_id=w.org.id,
            department_id=w.dept.id,
            types=[CertType.SSL],
        )
    )
    return domain.delegations[0]


def delegation_row(delegation_id: int) -> dict[str, Any] | None:
    """The delegation's columns, and its types as the list its boolean columns make."""
    row = observed(Delegation, delegation_id)
    if row is not None:
        row["types"] = sorted(t.value for t in CertType if row[t.value])
    return row


def delegation_create(w: World) -> Seen:
    return Seen(None, delegation_row(_requested_delegation(w).id))


def delegation_approve(w: World) -> Seen:
    d = _requested_delegation(w)
    old = delegation_row(d.id)
    commit(lambda: domains.decide_delegation(actor=w.mrao, delegation_id=d.id, approve=True))
    return Seen(old, delegation_row(d.id))


def delegation_reject(w: World) -> Seen:
    d = _requested_delegation(w)
    old = delegation_row(d.id)
    commit(lambda: domains.decide_delegation(actor=w.mrao, delegation_id=d.id, approve=False))
    return Seen(old, delegation_row(d.id))


def delegation_update(w: World) -> Seen:
    d = w.domain.delegations[0]
    old = delegation_row(d.id)
    commit(
        lambda: domains.update_delegation_types(
            actor=w.mrao, delegation_id=d.id, types=[CertType.SSL]
        )
    )
    return Seen(old, delegation_row(d.id))


def delegation_delete(w: World) -> Seen:
    d = _requested_delegation(w)
    old = delegation_row(d.id)
    commit(lambda: domains.delete_delegation(actor=w.mrao, delegation_id=d.id))
    return Seen(old, None)


def _root(name: str) -> CertificateAuthority:
    return commit(
        lambda: authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name=name, key_type="EC-P256", customer_name="Beta", country="DE"
            ),
        )
    )


def ca_create(w: World) -> Seen:
    return Seen(None, observed(CertificateAuthority, _root("Beta Root").id))


def ca_retire(w: World) -> Seen:
    ca = _root("Old Root")
    old = observed(CertificateAuthority, ca.id)
    commit(lambda: authorities.retire_ca(actor=w.mrao, ca_id=ca.id))
    return Seen(old, observed(CertificateAuthority, ca.id))


def ca_revoke(w: World) -> Seen:
    root = _root("Gamma Root")
    ca = commit(
        lambda: authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name="Gamma Issuing", key_type="EC-P256", customer_name="Gamma", parent_id=root.id
            ),
        )
    )
    old = observed(CertificateAuthority, ca.id)
    commit(lambda: authorities.revoke_ca(actor=w.mrao, ca_id=ca.id, reason="superseded"))
    return Seen(
        old,
        observed(CertificateAuthority, ca.id),
        aliases={"reason": "revocation_reason", "serial": "serial_hex"},
    )


def kek_rotate(w: World) -> Seen:
    commit(lambda: authorities.rotate_kek(actor=w.mrao))
    return Seen(None, None, no_values=True)  # sealed keys never go into the log


def _profile_data(w: World, **changes: Any) -> profiles.ProfileData:
    fields: dict[str, Any] = {
        "name": "Clients",
        "cert_type": CertType.SSL,  # what make_pki's TLS issuing CA enrolls
        "ca_id": w.issuing.id,
        "terms": (90,),
        "key_types": ("EC-P256",),
    }
    return profiles.ProfileData(**{**fields, **changes})


def profile_create(w: World) -> Seen:
    profile = commit(lambda: profiles.create_profile(actor=w.mrao, data=_profile_data(w)))
    return Seen(None, observed(CertificateProfile, profile.id))


def profile_update(w: World) -> Seen:
    profile = commit(lambda: profiles.create_profile(actor=w.mrao, data=_profile_data(w)))
    old = observed(CertificateProfile, profile.id)
    commit(
        lambda: profiles.update_profile(
            actor=w.mrao,
            profile_id=profile.id,
            data=_profile_data(w, description="people", four_eyes=True),
        )
    )
    return Seen(old, observed(CertificateProfile, profile.id))


def profile_delete(w: World) -> Seen:
    profile = commit(lambda: profiles.create_profile(actor=w.mrao, data=_profile_data(w)))
    old = observed(CertificateProfile, profile.id)
    commit(lambda: profiles.delete_profile(actor=w.mrao, profile_id=profile.id))
    return Seen(old, None)


def request_create(w: World) -> Seen:
    return Seen(None, observed(CertificateRequest, w.request().id))


def request_approve(w: World) -> Seen:
    req = w.request()
    old = observed(CertificateRequest, req.id)
    commit(lambda: approvals.approve(actor=w.mrao, request_ids=[req.id], message="ok"))
    return Seen(old, observed(CertificateRequest, req.id))


def request_decline(w: World) -> Seen:
    req = w.request()
    old = observed(CertificateRequest, req.id)
    commit(lambda: approvals.decline(actor=w.mrao, request_id=req.id, message="not ours"))
    return Seen(old, observed(CertificateRequest, req.id))


def _failed_request(w: World) -> CertificateRequest:
    req = w.request()
    approvals.mark_approved([req.id], actor=w.mrao, message="")  # no issuance job sent
    commit(lambda: issuance.fail_unissued(request_ids=[req.id], reason="the HSM is offline"))
    return req


def request_fail(w: World) -> Seen:
    req = w.request()
    commit(lambda: approvals.mark_approved([req.id], actor=w.mrao, message=""))
    old = observed(CertificateRequest, req.id)
    commit(lambda: issuance.fail_unissued(request_ids=[req.id], reason="the HSM is offline"))
    return Seen(old, observed(CertificateRequest, req.id))


def request_retry(w: World) -> Seen:
    req = _failed_request(w)
    old = observed(CertificateRequest, req.id)
    commit(lambda: approvals.retry(actor=w.mrao, request_ids=[req.id]))
    return Seen(old, observed(CertificateRequest, req.id))


def certificate_issue(w: World) -> Seen:
    cert = w.certificate()
    row = observed(Certificate, cert.id)
    assert row is not None
    # The event lists the batch's certificates of this organization: here, this one.
    row["certificates"] = [
        {
            "id": row["id"],
            "request_id": row["request_id"],
            "serial": row["serial_hex"],
            "ca_id": row["ca_id"],
        }
    ]
    return Seen(None, row)


def certificate_revoke(w: World) -> Seen:
    cert = w.certificate()
    old = observed(Certificate, cert.id)
    commit(
        lambda: revocation.revoke(actor=w.mrao, certificate_ids=[cert.id], reason="keyCompromise")
    )
    return Seen(
        old,
        observed(Certificate, cert.id),
        {"reason": "revocation_reason", "serial": "serial_hex"},
    )


def certificate_renew(w: World) -> Seen:
    cert = w.certificate()
    old = observed(Certificate, cert.id)
    commit(lambda: renewal.renew(actor=w.mrao, certificate_id=cert.id))
    return Seen(old, observed(Certificate, cert.id))


def certificate_supersede(w: World) -> Seen:
    cert = w.certificate()
    req = commit(lambda: renewal.renew(actor=w.mrao, certificate_id=cert.id))
    old = observed(Certificate, cert.id)
    approvals.approve(actor=w.mrao, request_ids=[req.id])
    drain(w.worker)
    return Seen(old, observed(Certificate, cert.id), {"replaced_by": "replaced_by_id"})


def certificate_renew_failed(w: World) -> Seen:
    cert = w.certificate(auto_renew=True, renew_days_before=30)
    db.session.execute(
        update(Certificate)
        .where(Certificate.id == cert.id)
        .values(not_after=utcnow() + timedelta(days=10))
    )
    db.session.execute(
        update(CertificateProfile).where(CertificateProfile.id == w.profile.id).values(active=False)
    )
    db.session.commit()
    old = observed(Certificate, cert.id)
    commit(renewal.auto_renew_sweep)
    return Seen(old, observed(Certificate, cert.id))


def certificate_key_export(w: World) -> Seen:
    cert = w.certificate(mode=RequestMode.KEYGEN, key_type="EC-P256")
    commit(lambda: inventory.pkcs12(actor=w.mrao, certificate_id=cert.id, password="pkcs12-pass"))
    return Seen(None, None, no_values=True)


def config_apply(w: World) -> Seen:
    from app.services.configuration import changes

    text = (
        "organizations:\n"
        "  - {name: Acme, city: Berlin, state: Berlin, country: DE}\n"
        "  - {name: Beta, city: Bonn, country: DE}\n"
    )
    outcome = commit(lambda: changes.apply(actor=w.mrao, text=text))
    assert outcome.changes
    assert db.session.execute(select(Organization).where(Organization.name == "Beta")).scalar()
    return Seen(None, None, summary=True)


def certificate_assign(w: World) -> Seen:
    found = Certificate(
        fingerprint="ab" * 32,
        der=b"\x30\x00",
        origin=CertOrigin.DISCOVERED,
        status=CertStatus.EXTERNAL,
        cert_type=CertType.SSL,
        serial_hex="1",
        subject_dn="CN=found.example",
        common_name="found.example",
        issuer_dn="CN=Someone",
        not_before=utcnow(),
        not_after=utcnow() + timedelta(days=30),
    )
    db.session.add(found)
    db.session.commit()
    old = observed(Certificate, found.id)
    commit(
        lambda: endpoints.assign_certificates(
            actor=w.mrao,
            certificate_ids=[found.id],
            organization_id=w.org.id,
            department_id=w.dept.id,
        )
    )
    return Seen(old, observed(Certificate, found.id))


def _rule_data(w: World, **changes: Any) -> rules.RuleData:
    fields: dict[str, Any] = {
        "name": "Example Corp to Acme",
        "match_mode": "all",
        "conditions": [{"field": "subject_o", "operator": "equals", "value": "Example Corp"}],
        "organization_id": w.org.id,
    }
    return rules.RuleData(**{**fields, **changes})


def assignment_rule_create(w: World) -> Seen:
    rule = commit(lambda: rules.save_rule(actor=w.mrao, data=_rule_data(w)))
    return Seen(None, observed(AssignmentRule, rule.id))


def assignment_rule_update(w: World) -> Seen:
    rule = commit(lambda: rules.save_rule(actor=w.mrao, data=_rule_data(w)))
    old = observed(AssignmentRule, rule.id)
    commit(
        lambda: rules.save_rule(
            actor=w.mrao,
            rule_id=rule.id,
            data=_rule_data(w, name="Example to IT", department_id=w.dept.id),
        )
    )
    return Seen(old, observed(AssignmentRule, rule.id))


def assignment_rule_delete(w: World) -> Seen:
    rule = commit(lambda: rules.save_rule(actor=w.mrao, data=_rule_data(w)))
    old = observed(AssignmentRule, rule.id)
    commit(lambda: rules.delete_rule(actor=w.mrao, rule_id=rule.id))
    return Seen(old, None)


def _task(w: World) -> DiscoveryTask:
    data = tasks.TaskData(name="Lab", ranges="127.0.0.1", ports="1", organization_id=w.org.id)
    return commit(lambda: tasks.create_task(actor=w.mrao, data=data))


def discovery_task_create(w: World) -> Seen:
    return Seen(None, observed(DiscoveryTask, _task(w).id))


def discovery_task_update(w: World) -> Seen:
    task = _task(w)
    old = observed(DiscoveryTask, task.id)
    data = tasks.TaskData(
        name="Lab 2", ranges="127.0.0.2", ports="1", organization_id=w.org.id, concurrency=7
    )
    commit(lambda: tasks.update_task(actor=w.mrao, task_id=task.id, data=data))
    return Seen(old, observed(DiscoveryTask, task.id))


def discovery_task_delete(w: World) -> Seen:
    task = _task(w)
    old = observed(DiscoveryTask, task.id)
    commit(lambda: tasks.delete_task(actor=w.mrao, task_id=task.id))
    return Seen(old, None)


def discovery_scan(w: World) -> Seen:
    task = _task(w)
    run = commit(lambda: runs.start_run(actor=w.mrao, task_id=task.id))
    after = events("discovery.scan")[-1].after
    row = observed(ScanRun, run.id)
    assert (after["run"], after["shards"]) == (row["id"], row["shards_total"])
    return Seen(None, row, {"run": "id", "shards": "shards_total"})


def discovery_cancel(w: World) -> Seen:
    task = _task(w)
    run = runs.start_run(actor=w.mrao, task_id=task.id)  # not committed: no shard has run
    db.session.flush()
    old = observed(ScanRun, run.id)
    commit(lambda: runs.cancel_run(actor=w.mrao, run_id=run.id))
    return Seen(old, observed(ScanRun, run.id))


def agent_create(w: World) -> Seen:
    created = commit(
        lambda: agents.create_agent(actor=w.mrao, name="dmz", allowed_ranges="10.0.0.0/24")
    )
    return Seen(None, observed(ScanAgent, created.agent.id))


def agent_disable(w: World) -> Seen:
    created = commit(
        lambda: agents.create_agent(actor=w.mrao, name="zone-a", allowed_ranges="10.0.0.0/24")
    )
    old = observed(ScanAgent, created.agent.id)
    commit(lambda: agents.set_enabled(actor=w.mrao, agent_id=created.agent.id, enabled=False))
    return Seen(old, observed(ScanAgent, created.agent.id))


def agent_enable(w: World) -> Seen:
    created = commit(
        lambda: agents.create_agent(actor=w.mrao, name="zone-b", allowed_ranges="10.0.0.0/24")
    )
    commit(lambda: agents.set_enabled(actor=w.mrao, agent_id=created.agent.id, enabled=False))
    old = observed(ScanAgent, created.agent.id)
    commit(lambda: agents.set_enabled(actor=w.mrao, agent_id=created.agent.id, enabled=True))
    return Seen(old, observed(ScanAgent, created.agent.id))


def agent_limits(w: World) -> Seen:
    created = commit(
        lambda: agents.create_agent(actor=w.mrao, name="zone-c", allowed_ranges="10.0.0.0/24")
    )
    old = observed(ScanAgent, created.agent.id)
    commit(
        lambda: agents.set_limits(
            actor=w.mrao, agent_id=created.agent.id, max_rate="150", max_in_flight="32"
        )
    )
    return Seen(old, observed(ScanAgent, created.agent.id))


def agent_reject(w: World) -> Seen:
    agentruns.receive({"agent": "nobody", "kind": "batch"})  # unsigned: rejected, audited
    return Seen(None, None, no_values=True)


def job_cancel(w: World) -> Seen:
    job = jobs.create_job(kind="housekeeping", actor=w.mrao, send=False)
    db.session.commit()
    old = observed(Job, job.id)
    commit(lambda: jobs.cancel(actor=w.mrao, job_id=job.id))
    return Seen(old, observed(Job, job.id))


def report_run(w: World) -> Seen:
    from app.services.reports import generation

    report = commit(lambda: generation.start_report(actor=w.rao, report_type="admins", fmt="csv"))
    return Seen(None, observed(Report, report.id))


def report_cancel(w: World) -> Seen:
    from app.services.reports import generation

    # Cancelled before its messages go out (they are sent after commit).
    report = generation.start_report(actor=w.mrao, report_type="admins", fmt="xml")
    db.session.flush()
    old = observed(Report, report.id)
    commit(lambda: generation.cancel_report(actor=w.mrao, report_id=report.id))
    return Seen(old, observed(Report, report.id))


def report_download(w: World) -> Seen:
    from app.services.reports import generation

    report = commit(lambda: generation.start_report(actor=w.mrao, report_type="admins", fmt="csv"))
    drain(w.worker)
    download = commit(lambda: generation.download(actor=w.mrao, report_id=report.id))
    assert b"mrao" in b"".join(download.chunks)
    return Seen(None, None, no_values=True)


def _report_schedule(w: World, **changes: Any) -> Any:
    from app.services.reports import schedules
    from app.services.reports.catalog import Filters

    values: dict[str, Any] = {
        "name": "Weekly expiring",
        "report_type": "ssl_certificates",
        "fmt": "csv",
        "filters": Filters(organization_id=w.org.id),
        "schedule": {"kind": "weekly", "weekday": 0, "time": "07:00"},
        "recipients": "boss@example.com",
        "period": "next",
        "period_days": 30,
    }
    values.update(changes)
    return schedules.ScheduleData(**values)


def report_schedule_create(w: World) -> Seen:
    from app.models import ReportSchedule
    from app.services.reports import schedules

    item = commit(lambda: schedules.create_schedule(actor=w.rao, data=_report_schedule(w)))
    return Seen(None, observed(ReportSchedule, item.id))


def report_schedule_update(w: World) -> Seen:
    from app.models import ReportSchedule
    from app.services.reports import schedules

    item = commit(lambda: schedules.create_schedule(actor=w.rao, data=_report_schedule(w)))
    old = observed(ReportSchedule, item.id)
    data = _report_schedule(w, name="Monthly", fmt="xml", recipients="a@example.com")
    commit(lambda: schedules.update_schedule(actor=w.rao, schedule_id=item.id, data=data))
    return Seen(old, observed(ReportSchedule, item.id))


def report_schedule_delete(w: World) -> Seen:
    from app.models import ReportSchedule
    from app.services.reports import schedules

    item = commit(lambda: schedules.create_schedule(actor=w.rao, data=_report_schedule(w)))
    old = observed(ReportSchedule, item.id)
    commit(lambda: schedules.delete_schedule(actor=w.mrao, schedule_id=item.id))
    return Seen(old, None)


def report_schedule_refused(w: World) -> Seen:
    from app.services.reports import schedules

    item = commit(lambda: schedules.create_schedule(actor=w.rao, data=_report_schedule(w)))
    w.rao.active = False
    commit(lambda: schedules.start_scheduled(item, job_id=None))
    return Seen(None, None, no_values=True)


def audit_verify_failed(w: World) -> Seen:
    from app.actors.system import verify_audit_chain

    db.session.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1"))
    job = commit(lambda: jobs.create_job(kind="audit_verify", send=False))
    verify_audit_chain.fn(job.id)
    return Seen(None, None, no_values=True)


def audit_head_forged(w: World) -> Seen:
    head = db.session.execute(text("SELECT seq, hash FROM audit_head")).one()
    last = db.session.execute(
        text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": head.seq - 1}
    ).scalar_one()
    db.session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": head.seq})
    db.session.execute(
        text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": head.seq - 1, "h": last}
    )
    db.session.commit()
    make_org("Later")
    event = events("audit.head_forged")[-1]
    assert event.before == {"seq": head.seq - 1, "hash": last} and event.after is None
    return Seen({"seq": head.seq - 1, "hash": last}, None)


# --- notifications -------------------------------------------------------------------------


def _notification_rule(w: World) -> NotificationRule:
    from app.services.notifications import rules as notification_rules

    return commit(
        lambda: notification_rules.save_rule(
            actor=w.mrao,
            data=notification_rules.RuleData(
                name="SSL expiry",
                type="ssl_expiration",
                places=[(w.org.id, None)],
                roles=["admins"],
                subscribers=["ops@acme.example"],
            ),
        )
    )


def notification_rule_create(w: World) -> Seen:
    rule = _notification_rule(w)
    return Seen(None, observed(NotificationRule, rule.id))


def notification_rule_update(w: World) -> Seen:
    from app.services.notifications import rules as notification_rules

    rule = _notification_rule(w)
    old = observed(NotificationRule, rule.id)
    commit(
        lambda: notification_rules.save_rule(
            actor=w.mrao,
            rule_id=rule.id,
            data=notification_rules.RuleData(
                name="SSL expiry (ops)",
                type="ssl_expiration",
                places=[(w.org.id, None)],
                days=(30, 7),
                roles=["admins", "mrao"],
                subscribers=["ops@acme.example"],
                digest=True,
            ),
        )
    )
    return Seen(old, observed(NotificationRule, rule.id))


def notification_rule_delete(w: World) -> Seen:
    from app.services.notifications import rules as notification_rules

    rule = _notification_rule(w)
    old = observed(NotificationRule, rule.id)
    commit(lambda: notification_rules.delete_rule(actor=w.mrao, rule_id=rule.id))
    return Seen(old, observed(NotificationRule, rule.id))


def notification_rule_sample(w: World) -> Seen:
    from app.services.notifications import samples

    _found_certificate(w)
    rule = _notification_rule(w)
    commit(lambda: samples.send_sample(actor=w.mrao, rule_id=rule.id))
    return Seen(None, None, no_values=True)


def mail_resend(w: World) -> Seen:
    from flask import current_app

    from app.models import OutboxMessage
    from app.services.platform import mail

    current_app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=9, CW_MAIL_MAX_ATTEMPTS=1)
    # Attempts made here, not by the worker, so the rows are observed as each step leaves them.
    senders = list(mail._deliver)
    mail._deliver.clear()
    try:
        message = commit(lambda: mail.send_mail(to=["a@acme.example"], subject="s", body="b"))
        assert mail.deliver(message.id, 0) == "failed"
        old = observed(OutboxMessage, message.id)
        commit(lambda: mail.resend(actor=w.mrao, message_id=message.id))
    finally:
        mail._deliver[:] = senders
    return Seen(old, observed(OutboxMessage, message.id))


def _webhook(w: World) -> Any:
    from app.services.notifications import webhooks

    return commit(
        lambda: webhooks.create_webhook(actor=w.mrao, name="Chat", url="https://chat.example/hook")
    )[0]


def notification_webhook_create(w: World) -> Seen:
    from app.models import NotificationWebhook

    return Seen(None, observed(NotificationWebhook, _webhook(w).id))


def notification_webhook_update(w: World) -> Seen:
    from app.models import NotificationWebhook
    from app.services.notifications import webhooks

    hook = _webhook(w)
    old = observed(NotificationWebhook, hook.id)
    commit(
        lambda: webhooks.update_webhook(
            actor=w.mrao,
            webhook_id=hook.id,
            name="Chat ops",
            url="https://chat.example/ops",
            enabled=False,
        )
    )
    return Seen(old, observed(NotificationWebhook, hook.id))


def notification_webhook_delete(w: World) -> Seen:
    from app.models import NotificationWebhook
    from app.services.notifications import webhooks

    hook = _webhook(w)
    old = observed(NotificationWebhook, hook.id)
    commit(lambda: webhooks.delete_webhook(actor=w.mrao, webhook_id=hook.id))
    return Seen(old, None)


def webhook_message_resend(w: World) -> Seen:
    from app.models import WebhookMessage, WebhookMessageStatus
    from app.services.notifications import webhooks

    hook = _webhook(w)
    message = WebhookMessage(
        webhook_id=hook.id,
        body="{}",
        status=WebhookMessageStatus.FAILED,
        attempts=8,
        error="gave up",
    )
    db.session.add(message)
    db.session.commit()
    old = observed(WebhookMessage, message.id)
    # The delivery a resend asks for is held until the row is read: a worker delivering it
    # at once would count an attempt the resend itself did not make.
    asked: list[tuple[int, int]] = []
    senders = list(webhooks._deliver)
    webhooks._deliver[:] = [lambda message_id, attempt: asked.append((message_id, attempt))]
    try:
        commit(lambda: webhooks.resend(actor=w.mrao, message_id=message.id))
        after = observed(WebhookMessage, message.id)
    finally:
        webhooks._deliver[:] = senders
    assert asked == [(message.id, 0)]
    return Seen(old, after)


def _found_certificate(w: World) -> Any:
    """A certificate of the organization as discovery stores one (no issuance: these cases
    are about notifications, not the worker)."""
    from tests import notify

    return commit(lambda: notify.discovered_certificate(w.org.id, utcnow() + timedelta(days=90)))


def _delivery(w: World) -> Any:
    """An expiry alert of a rule to ops@acme.example about a certificate 20 days from expiry."""
    from app.models import NotificationDelivery
    from app.services.notifications import sweep

    cert = _found_certificate(w)
    rule = _notification_rule(w)
    sweep.insert_due(rule, cert.not_after - timedelta(days=20))
    db.session.commit()
    return db.session.execute(
        select(NotificationDelivery).where(NotificationDelivery.recipient == "ops@acme.example")
    ).scalar_one()


def notification_acknowledge(w: World) -> Seen:
    from app.models import NotificationAck
    from app.services.notifications import acknowledgements

    delivery = _delivery(w)
    commit(
        lambda: acknowledgements.acknowledge_deliveries(
            actor=w.mrao, delivery_ids=[delivery.id], snooze_days=7
        )
    )
    return Seen(None, observed(NotificationAck, last_id(NotificationAck)))


def notification_preference(w: World) -> Seen:
    from flask import current_app

    from app.models import NotificationPreference
    from app.notices import signing
    from app.services.notifications import acknowledgements

    delivery = _delivery(w)
    key = str(current_app.config["SECRET_KEY"]).encode()
    token = signing.link_token(key, "preference", delivery.id)
    commit(
        lambda: acknowledgements.set_preference_by_link(
            delivery_id=delivery.id, token=token, digest=True
        )
    )
    return Seen(None, observed(NotificationPreference, last_id(NotificationPreference)))


def dcv_start(w: World) -> Seen:
    from app.services.structure import dcv

    old = observed(Domain, w.domain.id)
    commit(lambda: dcv.start_cname(actor=w.mrao, name="acme.example"))
    return Seen(old, observed(Domain, w.domain.id))


def dcv_submit(w: World) -> Seen:
    from flask import current_app

    from app.services.structure import dcv
    from tests.integration.scm_live import DnsServer

    started = commit(lambda: dcv.start_cname(actor=w.mrao, name="acme.example"))
    server = DnsServer()
    try:
        server.records[started.host] = started.point
        current_app.config["CW_DCV_NAMESERVERS"] = f"127.0.0.1:{server.port}"
        old = observed(Domain, w.domain.id)
        commit(lambda: dcv.submit_cname(actor=w.mrao, name="acme.example"))
    finally:
        server.close()
    return Seen(old, observed(Domain, w.domain.id))


# --- persons, invitations and the enrollment portal (issue 11) ---------------------------


def _client_profile(w: World) -> CertificateProfile:
    """An S/MIME issuing CA beside the TLS one and a client profile enrolling through it."""
    ca = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name="Test Mail",
            key_type="EC-P256",
            customer_name="Test",
            country="DE",
            parent_id=w.issuing.parent_id,
            purpose="SMIME",
        ),
    )
    profile = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="People",
            cert_type=CertType.CLIENT,
            ca_id=ca.id,
            terms=(365,),
            key_types=("EC-P256",),
        ),
    )
    db.session.commit()
    return profile


def _person(w: World, email: str = "jane.doe@acme.example") -> Person:
    data = persons.PersonData(
        organization_id=w.org.id, email=email, first_name="Jane", last_name="Doe"
    )
    return commit(lambda: persons.create_person(actor=w.mrao, data=data))


def _code(email: str) -> str:
    from tests.integration.portal_world import CODE_RE, last_mail

    found = CODE_RE.search(last_mail(email).body)
    assert found is not None
    return found.group(1)


def _registration(email: str, code: str, **fields: Any) -> registration.Registration:
    secret = "Import-me-2026!"
    return registration.Registration(
        email=email,
        code=code,
        pkcs12_password=secret,
        pkcs12_password_again=secret,
        **fields,
    )


_PASSPHRASE = "correct horse battery staple"


def _registered(w: World) -> tuple[Person, PortalEnrollment, str]:
    """A person invited and registered; the key generation job has not run yet."""
    profile = _client_profile(w)
    person = _person(w)
    commit(
        lambda: invitations.send_invitation(
            actor=w.mrao,
            person_id=person.id,
            profile_id=profile.id,
            term_days=365,
            key_type="EC-P256",
        )
    )
    data = _registration(
        person.email,
        _code(person.email),
        passphrase=_PASSPHRASE,
        passphrase_again=_PASSPHRASE,
        eula_accepted=True,
        ip="10.0.0.9",
    )
    enr, token = commit(lambda: registration.register(data=data))
    return person, enr, token


def _collected(w: World) -> tuple[Person, PortalEnrollment]:
    person, enr, token = _registered(w)
    drain(w.worker)
    commit(lambda: registration.collect(enrollment_id=enr.id, token=token, ip="10.0.0.9"))
    return person, enr


def person_create(w: World) -> Seen:
    return Seen(None, observed(Person, _person(w).id))


def person_update(w: World) -> Seen:
    person = _person(w)
    old = observed(Person, person.id)
    data = persons.PersonData(
        organization_id=w.org.id,
        email=person.email,
        first_name="Jane",
        last_name="Doe-Smith",
        phone="+49 30 1234",
    )
    commit(lambda: persons.update_person(actor=w.mrao, person_id=person.id, data=data))
    return Seen(old, observed(Person, person.id))


def person_delete(w: World) -> Seen:
    person = _person(w)
    old = observed(Person, person.id)
    commit(lambda: persons.delete_person(actor=w.mrao, person_id=person.id))
    return Seen(old, None)


def invitation_send(w: World) -> Seen:
    profile = _client_profile(w)
    person = _person(w)
    invitation = commit(
        lambda: invitations.send_invitation(
            actor=w.mrao,
            person_id=person.id,
            profile_id=profile.id,
            term_days=365,
            key_type="EC-P256",
        )
    )
    return Seen(None, observed(Invitation, invitation.id))


def invitation_revoke(w: World) -> Seen:
    profile = _client_profile(w)
    person = _person(w)
    invitation = commit(
        lambda: invitations.send_invitation(
            actor=w.mrao,
            person_id=person.id,
            profile_id=profile.id,
            term_days=365,
            key_type="EC-P256",
        )
    )
    old = observed(Invitation, invitation.id)
    commit(lambda: invitations.revoke_invitation(actor=w.mrao, invitation_id=invitation.id))
    return Seen(old, observed(Invitation, invitation.id))


def _portal_settings(org_id: int) -> dict[str, Any] | None:
    table = PortalSettings.__table__
    row = (
        db.session.execute(select(table).where(table.c.organization_id == org_id))
        .mappings()
        .first()
    )
    return None if row is None else {k: audit.jsonable(v) for k, v in row.items()}


def organization_invitation_days(w: World) -> Seen:
    commit(lambda: invitations.set_invitation_days(actor=w.mrao, organization_id=w.org.id, days=10))
    old = _portal_settings(w.org.id)
    commit(lambda: invitations.set_invitation_days(actor=w.mrao, organization_id=w.org.id, days=21))
    return Seen(old, _portal_settings(w.org.id))


def _template(w: World, subject: str) -> MailTemplate:
    return commit(
        lambda: mailing.save_template(
            actor=w.mrao,
            organization_id=w.org.id,
            kind="invitation",
            subject=subject,
            body="Hello {{ first_name }}, your code: {{ code }} at {{ link }}",
        )
    )


def mail_template_save(w: World) -> Seen:
    found = _template(w, "Your certificate")
    old = observed(MailTemplate, found.id)
    _template(w, "Your Acme certificate")
    return Seen(old, observed(MailTemplate, found.id))


def mail_template_reset(w: World) -> Seen:
    found = _template(w, "Your certificate")
    old = observed(MailTemplate, found.id)
    commit(
        lambda: mailing.reset_template(actor=w.mrao, organization_id=w.org.id, kind="invitation")
    )
    return Seen(old, None)


def person_register(w: World) -> Seen:
    _person, enr, _token = _registered(w)
    event = events("person.register")[-1]
    assert event.after["passphrase_set"] is True and event.before is None
    return Seen(None, observed(PortalEnrollment, enr.id))


def enrollment_ready(w: World) -> Seen:
    _person, enr, _token = _registered(w)
    drain(w.worker)
    return Seen(None, observed(PortalEnrollment, enr.id), {"enrollment_id": "id"})


def enrollment_collect(w: World) -> Seen:
    _person, enr = _collected(w)
    return Seen(None, observed(PortalEnrollment, enr.id), {"enrollment_id": "id"})


def invitation_renewal(w: World) -> Seen:
    person, _enr = _collected(w)
    creds = selfservice.Credentials(email=person.email, passphrase=_PASSPHRASE, ip="10.0.0.9")
    commit(lambda: selfservice.request_renewal(creds=creds))
    return Seen(None, observed(Invitation, last_id(Invitation)))


def person_renew(w: World) -> Seen:
    person, _enr = _collected(w)
    creds = selfservice.Credentials(email=person.email, passphrase=_PASSPHRASE, ip="10.0.0.9")
    commit(lambda: selfservice.request_renewal(creds=creds))
    data = _registration(person.email, _code(person.email), eula_accepted=True, ip="10.0.0.9")
    enr, _token = commit(lambda: selfservice.complete_renewal(data=data))
    return Seen(None, observed(PortalEnrollment, enr.id), {"enrollment_id": "id"})


def certificate_import(w: World) -> Seen:
    from app.models import CertificateImport
    from app.services.imports import imports

    pem = w.certificate("import.acme.example").der
    record = commit(
        lambda: imports.start_import(
            actor=w.rao,
            organization_id=w.org.id,
            department_id=None,
            uploads=[imports.Upload("ours.der", pem)],
        )
    )
    return Seen(
        None, observed(CertificateImport, record.id), {"bytes": "total_bytes", "job": "job_id"}
    )


def weak_keys_loaded(w: World) -> Seen:
    from app.models import DebianWeakKey
    from app.services.imports import key_lists

    commit(
        lambda: key_lists.load_key_list(
            actor=w.mrao, lines=["ab" * 10], list_format="debian", source="blacklist.RSA-2048"
        )
    )
    row = db.session.execute(select(DebianWeakKey.id)).scalar_one()
    return Seen(None, observed(DebianWeakKey, row))


# --- ACME (issue 15) ------------------------------------------------------------------


def _acme_key(w: World) -> Any:
    from app.services.acme import external_keys

    created = external_keys.create_key(
        actor=w.mrao, organization_id=w.org.id, department_id=None, label="web"
    )
    db.session.commit()
    return created


def _acme_account(w: World) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    from app.acme import jose, messages
    from app.services.acme import accounts
    from tests.acme_client import external_binding, jwk_of

    created = _acme_key(w)
    key = ec.generate_private_key(ec.SECP256R1())
    url = "http://localhost/acme/tls/new-account"
    hmac_key = jose.b64decode(created.hmac_key, what="hmac")
    binding = external_binding(key, kid=created.key.key_id, hmac_key=hmac_key, url=url)
    done = accounts.register(
        jwk=jose.parse_jwk(jwk_of(key)),
        request=messages.NewAccount(("mailto:ops@acme.example",), True, False, binding),
        url=url,
        user_agent="test-client",
    )
    db.session.commit()
    return done.account


def acme_key_create(w: World) -> Seen:
    from app.models import AcmeExternalKey

    created = _acme_key(w)
    return Seen(None, observed(AcmeExternalKey, created.key.id))


def acme_key_revoke(w: World) -> Seen:
    from app.models import AcmeExternalKey
    from app.services.acme import external_keys

    created = _acme_key(w)
    old = observed(AcmeExternalKey, created.key.id)
    commit(lambda: external_keys.revoke_key(actor=w.mrao, key_id=created.key.id))
    return Seen(old, observed(AcmeExternalKey, created.key.id))


def acme_key_update(w: World) -> Seen:
    from app.models import AcmeExternalKey
    from app.services.acme import external_keys

    created = _acme_key(w)
    old = observed(AcmeExternalKey, created.key.id)
    commit(lambda: external_keys.rename_key(actor=w.mrao, key_id=created.key.id, label="mail"))
    return Seen(old, observed(AcmeExternalKey, created.key.id))


def acme_account_create(w: World) -> Seen:
    from app.models import AcmeAccount

    return Seen(None, observed(AcmeAccount, _acme_account(w).id))


def acme_account_update(w: World) -> Seen:
    from app.acme import messages
    from app.models import AcmeAccount
    from app.services.acme import accounts

    account = _acme_account(w)
    old = observed(AcmeAccount, account.id)
    change = messages.AccountUpdate(contact=("mailto:new@acme.example",), deactivate=True)
    commit(lambda: accounts.update_account(account=account, change=change))
    return Seen(old, observed(AcmeAccount, account.id))


def acme_account_key_change(w: World) -> Seen:
    from cryptography.hazmat.primitives.asymmetric import ec

    from app.acme import jose
    from app.models import AcmeAccount
    from app.services.acme import accounts
    from tests.acme_client import jwk_of

    account = _acme_account(w)
    old = observed(AcmeAccount, account.id)
    new_key = jose.parse_jwk(jwk_of(ec.generate_private_key(ec.SECP256R1())))
    commit(lambda: accounts.change_key(account=account, new_key=new_key))
    return Seen(old, observed(AcmeAccount, account.id))


def _acme_order(w: World) -> Any:
    from app.acme import messages
    from app.services.acme import orders

    account = _acme_account(w)
    w.profile.acme_slug = "tls"
    db.session.commit()
    request = messages.parse_new_order(
        {"identifiers": [{"type": "dns", "value": "www.acme.example"}]}
    )
    order = orders.new_order(account=account, profile=w.profile, request=request, user_agent="t")
    db.session.commit()
    return order


def acme_order_create(w: World) -> Seen:
    from app.models import AcmeOrder

    return Seen(None, observed(AcmeOrder, _acme_order(w).id))


def acme_challenge_validate(w: World) -> Seen:
    from app.models import AcmeChallenge
    from app.services.acme import orders, validation, verdicts

    order = _acme_order(w)
    chall = order.authorizations[0].challenges[0]
    orders.respond(
        account_id=order.account_id,
        challenge_id=chall.id,
        account_url=f"http://localhost/acme/tls/acct/{order.account_id}",
    )
    db.session.commit()
    old = observed(AcmeChallenge, chall.id)
    answer = validation.Outcome(False, "connection", "127.0.0.1:80: refused")
    commit(lambda: verdicts.validate(challenge_id=chall.id, check=lambda **_: answer))
    return Seen(old, observed(AcmeChallenge, chall.id))


CASES: dict[str, Callable[[World], Seen]] = {
    "signin.success": signin_success,
    "signin.failure": signin_failure,
    "signout": signout,
    "admin.create": admin_create,
    "admin.update": admin_update,
    "admin.delete": admin_delete,
    "admin.password_change_failed": admin_password_change_failed,
    "admin.password_change": admin_password_change,
    "admin.preferences/welcome": admin_preferences_welcome,
    "admin.preferences/timezone": admin_preferences_timezone,
    "organization.create": organization_create,
    "organization.update": organization_update,
    "organization.delete": organization_delete,
    "department.create": department_create,
    "department.update": department_update,
    "department.delete": department_delete,
    "domain.create": domain_create,
    "domain.update": domain_update,
    "domain.delete": domain_delete,
    "delegation.create": delegation_create,
    "delegation.approve": delegation_approve,
    "delegation.reject": delegation_reject,
    "delegation.update": delegation_update,
    "delegation.delete": delegation_delete,
    "dcv.start": dcv_start,
    "dcv.submit": dcv_submit,
    "ca.create": ca_create,
    "ca.retire": ca_retire,
    "ca.revoke": ca_revoke,
    "kek.rotate": kek_rotate,
    "profile.create": profile_create,
    "profile.update": profile_update,
    "profile.delete": profile_delete,
    "request.create": request_create,
    "request.approve": request_approve,
    "request.decline": request_decline,
    "request.fail": request_fail,
    "request.retry": request_retry,
    "certificate.issue": certificate_issue,
    "certificate.revoke": certificate_revoke,
    "certificate.renew": certificate_renew,
    "certificate.supersede": certificate_supersede,
    "certificate.renew_failed": certificate_renew_failed,
    "certificate.key_export": certificate_key_export,
    "certificate.assign": certificate_assign,
    "certificate.import": certificate_import,
    "assignment_rule.create": assignment_rule_create,
    "assignment_rule.update": assignment_rule_update,
    "assignment_rule.delete": assignment_rule_delete,
    "discovery_task.create": discovery_task_create,
    "discovery_task.update": discovery_task_update,
    "discovery_task.delete": discovery_task_delete,
    "discovery.scan": discovery_scan,
    "discovery.cancel": discovery_cancel,
    "agent.create": agent_create,
    "agent.disable": agent_disable,
    "agent.enable": agent_enable,
    "agent.limits": agent_limits,
    "agent.reject": agent_reject,
    "job.cancel": job_cancel,
    "report.run": report_run,
    "report.cancel": report_cancel,
    "report.download": report_download,
    "report_schedule.create": report_schedule_create,
    "report_schedule.update": report_schedule_update,
    "report_schedule.delete": report_schedule_delete,
    "report_schedule.refused": report_schedule_refused,
    "audit.verify_failed": audit_verify_failed,
    "config.apply": config_apply,
    "audit.head_forged": audit_head_forged,
    "notification_rule.create": notification_rule_create,
    "notification_rule.update": notification_rule_update,
    "notification_rule.delete": notification_rule_delete,
    "notification_rule.sample": notification_rule_sample,
    "mail.resend": mail_resend,
    "notification_webhook.create": notification_webhook_create,
    "notification_webhook.update": notification_webhook_update,
    "notification_webhook.delete": notification_webhook_delete,
    "webhook_message.resend": webhook_message_resend,
    "notification.acknowledge": notification_acknowledge,
    "notification.preference": notification_preference,
    "person.create": person_create,
    "person.update": person_update,
    "person.delete": person_delete,
    "invitation.send": invitation_send,
    "invitation.revoke": invitation_revoke,
    "organization.invitation_days": organization_invitation_days,
    "mail_template.save": mail_template_save,
    "mail_template.reset": mail_template_reset,
    "person.register": person_register,
    "enrollment.ready": enrollment_ready,
    "enrollment.collect": enrollment_collect,
    "invitation.renewal": invitation_renewal,
    "person.renew": person_renew,
    "weak_keys.loaded": weak_keys_loaded,
    "acme.key.create": acme_key_create,
    "acme.key.revoke": acme_key_revoke,
    "acme.key.update": acme_key_update,
    "acme.account.create": acme_account_create,
    "acme.account.update": acme_account_update,
    "acme.account.key_change": acme_account_key_change,
    "acme.order.create": acme_order_create,
    "acme.challenge.validate": acme_challenge_validate,
}


def events(action: str) -> list[AuditEvent]:
    return list(
        db.session.execute(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).scalars()
    )


@pytest.mark.parametrize("case", CASES)
def test_before_and_after_are_the_real_old_and_new_values(app, stub_worker, case):
    world = World(stub_worker)
    action = case.split("/")[0]
    seen_before = len(events(action))
    seen = CASES[case](world)
    db.session.expire_all()
    recorded = events(action)
    assert len(recorded) > seen_before, f"{action} was not audited"
    event = recorded[-1]
    if seen.no_values:
        assert (event.before, event.after) == (None, None)
        return
    if seen.summary:
        assert event.before is None and event.after and event.after["changes"], event.after
        return
    compared = 0
    for side, values, row in (
        ("before", event.before, seen.before),
        ("after", event.after, seen.after),
    ):
        if row is None:
            assert values is None, f"{action}: {side} recorded for a row that did not exist"
            continue
        assert values, f"{action}: no {side} values"
        for key, value in values.items():
            column = seen.aliases.get(key, key)
            if column in row:
                assert value == row[column], (
                    f"{action}: {side}[{key}] = {value!r}, was {row[column]!r}"
                )
                compared += 1
    assert compared, f"{action}: no recorded value names a column"
    if seen.before is not None and seen.after is not None:
        # An update records what changed: each column it names really did change.
        changed = [
            k
            for k in event.after
            if seen.aliases.get(k, k) in seen.after
            and seen.before.get(seen.aliases.get(k, k)) != seen.after[seen.aliases.get(k, k)]
        ]
        assert changed, f"{action}: after names no column that changed"


def audited_actions() -> set[str]:
    """Every action string passed to audit.record in app/ (and the chain's own)."""
    found: set[str] = set()
    for path in (ROOT / "app").rglob("*.py"):
        source = path.read_text()
        for call in re.finditer(r"\baudit\.record\(", source):
            expression = re.search(r"\baction=([^\n]*)", source[call.end() : call.end() + 400])
            assert expression, f"{path}: audit.record without action= nearby"
            found.update(re.findall(r'"([a-z_.]+)"', expression.group(1)))
        found.update(re.findall(r'FORGED_HEAD = "([a-z_.]+)"', source))
    return found


def test_every_audited_action_has_a_case():
    covered = {case.split("/")[0] for case in CASES}
    assert audited_actions() - covered == set()
    assert covered - audited_actions() == set()


def test_source_scan_finds_the_actions():
    # The scan above must see conditional action names too, or it would prove nothing.
    assert {"delegation.approve", "delegation.reject", "assignment_rule.create"} <= (
        audited_actions()
    )
