"""Discovery end to end: a task scans real TLS servers on loopback through the real job
path (shards as dramatiq messages), stores one inventory row per certificate, recognises
our own certificates as managed, assigns by rule, and records health flags."""

from __future__ import annotations

import datetime as dt
import hashlib
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Certificate,
    CertOrigin,
    DiscoveryTask,
    Endpoint,
    Job,
    RunStatus,
    ScanRun,
    Schedule,
)
from app.models.types import utcnow
from app.scan.probe import ProbeResult
from app.services.discovery import endpoints, results, rules, runs, tasks
from app.services.errors import Conflict, ValidationFailed
from app.services.platform import scheduling
from tests.conftest import drain
from tests.factories import (
    make_admin,
    make_dept,
    make_domain,
    make_org,
    make_pki,
    request_certificate,
)
from tests.tlsbed.certs import Issued, external_set
from tests.tlsbed.farm import ServerFarm, free_port, server_context

HOSTS = [f"127.0.30.{i}" for i in range(1, 6)]


@pytest.fixture
def bed(app, stub_worker):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    make_domain("acme.example", by=mrao, org=org)
    *_, profile = make_pki(requires_approval=False)
    req, key = request_certificate(by=mrao, org=org, profile=profile, cn="managed.acme.example")
    drain(stub_worker)
    db.session.refresh(req)
    ours = Issued(
        x509.load_der_x509_certificate(req.certificate.der),
        key,
    )
    external = external_set()
    inter, ext, expired = external.inter, external.ext, external.expired
    selfsigned = external.selfsigned
    port = free_port(HOSTS)
    with ServerFarm() as farm:
        farm.add_tls(HOSTS[0], port, server_context([ext, inter]))
        farm.add_tls(HOSTS[1], port, server_context([ext, inter]))  # the same certificate twice
        farm.add_tls(HOSTS[2], port, server_context([expired, inter]))
        farm.add_tls(HOSTS[3], port, server_context([selfsigned]))
        farm.add_tls(
            HOSTS[4],
            port,
            server_context(
                [
                    ours,
                    Issued(
                        x509.load_der_x509_certificate(req.certificate.request.profile.ca.cert_der),
                        key,
                    ),
                ]
            ),
        )
        yield SimpleNamespace(
            mrao=mrao,
            org=org,
            port=port,
            ours=req.certificate,
            ext=ext,
            expired=expired,
            worker=stub_worker,
        )


def make_task(bed, **changes):
    rule = rules.save_rule(
        actor=bed.mrao,
        data=rules.RuleData(
            name="Example Corp to Acme",
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": "Example Corp"}],
            organization_id=bed.org.id,
        ),
    )
    data = tasks.TaskData(
        name="Loopback",
        ranges=f"{HOSTS[0]}-{HOSTS[3]}\nmanaged.acme.example",
        ports=str(bed.port),
        host_overrides=f"managed.acme.example = {HOSTS[4]}",
        connect_timeout=2,
        handshake_timeout=3,
        rule_ids=[rule.id],
        **changes,
    )
    task = tasks.create_task(actor=bed.mrao, data=data)
    db.session.commit()
    return task


def scan(bed, task):
    run = runs.start_run(actor=bed.mrao, task_id=task.id)
    drain(bed.worker)
    db.session.refresh(run)
    return run


def test_scan_finds_every_certificate_once_and_assigns_by_rule(bed):
    task = make_task(bed)
    run = scan(bed, task)
    assert run.status == RunStatus.SUCCESSFUL, run.message
    assert (run.tls_endpoints, run.certificates, run.new_certificates) == (5, 4, 3)
    assert run.targets_done == run.targets_total == 5
    ext = db.session.execute(
        select(Certificate).where(Certificate.common_name == "www.ext.test")
    ).scalar_one()
    assert ext.origin == CertOrigin.DISCOVERED and ext.status.value == "External"
    assert (
        ext.organization_id == bed.org.id and ext.assigned_rule_id is not None
    )  # the rule placed it
    assert len(ext.chain_der) == 1  # the presented intermediate is kept
    assert (
        db.session.execute(
            select(func.count()).select_from(Endpoint).where(Endpoint.certificate_id == ext.id)
        ).scalar_one()
        == 2
    )
    old = db.session.execute(
        select(Certificate).where(Certificate.common_name == "old.ext.test")
    ).scalar_one()
    assert old.organization_id is None  # no rule matched: only under Network Assets
    # Our own certificate, found on the network, is the same inventory row: managed.
    managed = db.session.execute(
        select(Endpoint).where(Endpoint.host_name == "managed.acme.example")
    ).scalar_one()
    assert managed.certificate_id == bed.ours.id and managed.ip == HOSTS[4]
    assert not managed.hostname_mismatch and not managed.incomplete_chain
    flags = {e.ip: set(e.flags) for e in db.session.execute(select(Endpoint)).scalars()}
    assert "expired" in flags[HOSTS[2]] and "self_signed_leaf" in flags[HOSTS[3]]
    assert flags[HOSTS[0]] == set()
    summary = endpoints.task_summary(task.id)
    assert summary == {
        "total": 4,
        "managed": 1,
        "external": 3,
        "self_signed": 1,
        "expired": 1,
        "expiring_30": 0,
    }
    from app.services.certificates import inventory

    assert inventory.install_state(bed.ours) == "Installed (1 endpoint)"


def test_a_second_scan_updates_instead_of_duplicating(bed):
    task = make_task(bed)
    scan(bed, task)
    first_seen = db.session.execute(
        select(Endpoint.first_seen_at).where(Endpoint.ip == HOSTS[0])
    ).scalar_one()
    run = scan(bed, task)
    assert run.new_certificates == 0 and run.certificates == 4
    assert db.session.execute(select(func.count()).select_from(Endpoint)).scalar_one() == 5
    assert db.session.execute(select(func.count()).select_from(Certificate)).scalar_one() == 4
    row = db.session.execute(select(Endpoint).where(Endpoint.ip == HOSTS[0])).scalar_one()
    assert row.first_seen_at == first_seen and row.last_run_id == run.id


def test_a_rescan_lets_rules_place_what_is_still_unassigned_never_what_an_admin_placed(bed):
    task = make_task(bed)
    scan(bed, task)
    by_cn = {c.common_name: c for c in db.session.execute(select(Certificate)).scalars().all()}
    old, selfsigned = by_cn["old.ext.test"], by_cn["self.test"]
    assert old.organization_id is None and selfsigned.organization_id is None
    it = make_dept(bed.org, "IT")
    endpoints.assign_certificates(
        actor=bed.mrao,
        certificate_ids=[selfsigned.id],
        organization_id=bed.org.id,
        department_id=it.id,
    )
    rule_id = task.rule_links[0].rule_id
    rules.save_rule(
        actor=bed.mrao,
        rule_id=rule_id,
        data=rules.RuleData(
            name="Example Corp to Acme",
            match_mode="any",
            conditions=[
                {"field": "subject_o", "operator": "equals", "value": "Example Corp"},
                {"field": "subject_o", "operator": "equals", "value": "Other Inc"},
                {"field": "subject_cn", "operator": "equals", "value": "self.test"},
            ],
            organization_id=bed.org.id,
        ),
    )
    db.session.commit()
    run = scan(bed, task)
    assert run.status == RunStatus.SUCCESSFUL and run.new_certificates == 0
    assert run.assigned == 1  # old.ext.test, placed now
    db.session.refresh(old)
    db.session.refresh(selfsigned)
    assert (old.organization_id, old.department_id, old.assigned_rule_id) == (
        bed.org.id,
        None,
        rule_id,
    )
    assert old.assigned_by_id is None and old.assigned_at is not None
    # An administrator's placement stands, even where a rule now matches.
    assert (selfsigned.department_id, selfsigned.assigned_by_id) == (it.id, bed.mrao.id)
    assert selfsigned.assigned_rule_id is None


def test_a_retried_shard_is_not_counted_twice(bed):
    task = make_task(bed)
    run = runs.start_run(actor=bed.mrao, task_id=task.id)
    db.session.commit()
    job_id = db.session.execute(select(Job.id).where(Job.kind == "scan_shard")).scalar_one()
    from app.actors.discovery import scan_shard

    scan_shard.send(job_id)  # the same message delivered twice
    drain(bed.worker)
    db.session.refresh(run)
    assert run.status == RunStatus.SUCCESSFUL and run.targets_done == 5 and run.tls_endpoints == 5


def test_a_shard_whose_worker_died_on_every_attempt_fails_the_run(bed, app):
    task = make_task(bed)
    run = runs.start_run(actor=bed.mrao, task_id=task.id)
    db.session.commit()
    bed.worker.broker.flush_all()
    job = db.session.execute(select(Job).where(Job.kind == "scan_shard")).scalar_one()
    stale = utcnow() - dt.timedelta(seconds=app.config["CW_JOB_STALE_SECONDS"] + 5)
    job.status, job.attempts, job.heartbeat_at, job.lease = "running", 3, stale, "gone:1:x"
    db.session.commit()
    assert scheduling.recover()["failed"] == 1
    db.session.refresh(run)
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.message == (
        "1 of 1 shards failed: failed: the worker stopped responding on each of 3 attempts"
    )


def test_a_certificate_two_shards_insert_at_once_counts_as_new_once(bed):
    """Two shards that both looked the certificate up before either stored it: the unique
    fingerprint keeps one row, and only the shard whose insert took counts it as new."""
    task = make_task(bed)
    result = ProbeResult(HOSTS[0], bed.port, chain=(bed.ext.der,), tls_version="TLSv1.3")
    fingerprint = hashlib.sha256(bed.ext.der).hexdigest()
    contexts = [results.BatchContext(task, 0, 0, [], [], {"new": 0, "assigned": 0}) for _ in "ab"]
    rows = [results.certificate_row(result, fingerprint, ctx, utcnow()) for ctx in contexts]
    inserted = [results.insert_new_certificates([row]) for row in rows]
    assert inserted == [{fingerprint}, set()]
    count = select(func.count()).where(Certificate.fingerprint == fingerprint)
    assert db.session.execute(count).scalar_one() == 1


def test_cancel_ends_the_run(bed):
    task = make_task(bed)
    run = runs.start_run(actor=bed.mrao, task_id=task.id)
    db.session.commit()
    runs.cancel_run(actor=bed.mrao, run_id=run.id)
    db.session.commit()
    drain(bed.worker)
    db.session.refresh(run)
    assert run.status == RunStatus.CANCELLED and "cancelled by mrao" in run.message
    with pytest.raises(Conflict, match="already ended"):
        runs.cancel_run(actor=bed.mrao, run_id=run.id)


def test_only_one_run_at_a_time(bed):
    task = make_task(bed)
    runs.start_run(actor=bed.mrao, task_id=task.id)
    db.session.commit()
    with pytest.raises(Conflict, match="already scanning"):
        runs.start_run(actor=bed.mrao, task_id=task.id)
    db.session.rollback()
    drain(bed.worker)


def test_cli_runs_a_task_and_prints_counts(bed, app):
    task = make_task(bed)
    bed.worker.stop()  # the command brings its own worker when there is no broker
    result = app.test_cli_runner().invoke(args=["discovery", "run", task.name])
    assert result.exit_code == 0, result.output
    assert (
        "Successful" in result.output
        and "TLS endpoints 5, certificates 4 (3 new, 1 assigned by rules)" in result.output
    )
    assert "100%" in result.output


def test_dry_run_shows_matches_before_saving(bed):
    task = make_task(bed)
    scan(bed, task)
    data = rules.RuleData(
        name="Other Inc",
        match_mode="any",
        conditions=[{"field": "subject_o", "operator": "equals", "value": "Other Inc"}],
        organization_id=bed.org.id,
    )
    hits = rules.dry_run(actor=bed.mrao, data=data)
    assert [h.certificate.common_name for h in hits] == ["old.ext.test"]
    with pytest.raises(ValidationFailed) as err:
        rules.dry_run(
            actor=bed.mrao,
            data=rules.RuleData(
                name="bad",
                match_mode="all",
                conditions=[{"field": "subject_cn", "operator": "matches", "value": "(a"}],
                organization_id=bed.org.id,
            ),
        )
    assert "conditions" in err.value.errors


def test_weekly_schedule_fires_once(bed, app):
    task = make_task(
        bed,
        schedule={
            "kind": "weekly",
            "weekday": "monday",
            "time": "03:00",
            "timezone": "Europe/Berlin",
        },
    )
    sched = db.session.get(Schedule, task.schedule_id)
    assert sched.enabled and sched.next_run_at.weekday() in (
        0,
        6,
    )  # Monday 03:00 Berlin = Monday 01/02:00 UTC
    sched.next_run_at = utcnow() - dt.timedelta(seconds=1)
    db.session.commit()
    assert len(scheduling.fire_due_schedules()) == 1 and scheduling.fire_due_schedules() == []
    drain(bed.worker)
    assert (
        db.session.execute(
            select(func.count()).select_from(ScanRun).where(ScanRun.trigger == "schedule")
        ).scalar_one()
        == 1
    )


def test_bad_targets_are_refused_with_line_numbers(bed):
    with pytest.raises(ValidationFailed) as err:
        tasks.create_task(
            actor=bed.mrao,
            data=tasks.TaskData(
                name="Bad", ranges="10.0.0.1\n10.0.0.300\n169.254.0.0/16", ports="443,70000"
            ),
        )
    messages = " ".join(m for ms in err.value.errors.values() for m in ms)
    assert (
        "line 2: '10.0.0.300'" in messages
        and "line 3" in messages
        and "denied" in messages
        and "70000" in messages
    )
    with pytest.raises(ValidationFailed) as err:
        tasks.create_task(actor=bed.mrao, data=tasks.TaskData(name="Huge", ranges="10.0.0.0/8"))
    assert "the limit is 65,536 per task" in " ".join(err.value.errors["ranges"])
    db.session.rollback()
    assert db.session.execute(select(func.count()).select_from(DiscoveryTask)).scalar_one() == 0


def test_csv_import_is_all_or_nothing(bed, app, tmp_path):
    good = "name,ranges,ports\nweb,10.1.0.0/24,443\napi,10.2.0.1-10.2.0.9,443;8443\n"
    (tmp_path / "good.csv").write_text(good)
    result = app.test_cli_runner().invoke(
        args=["discovery", "import-csv", str(tmp_path / "good.csv")]
    )
    assert result.exit_code == 0 and "Imported 2 tasks: web, api" in result.output
    bad = "name,ranges,ports\nok,10.3.0.0/24,443\nbroken,10.4.0.300,443\n,10.5.0.1,443\n"
    (tmp_path / "bad.csv").write_text(bad)
    result = app.test_cli_runner().invoke(
        args=["discovery", "import-csv", str(tmp_path / "bad.csv")]
    )
    assert result.exit_code == 2
    assert (
        "line 3: ranges: line 1: '10.4.0.300'" in result.output
        and "line 4: name: The task name is required." in result.output
    )
    assert db.session.execute(select(func.count()).select_from(DiscoveryTask)).scalar_one() == 2
    _ = Encoding


def test_a_key_discovery_finds_on_several_hosts_is_a_finding_once(bed):
    """The same certificate served by two hosts: its key is on two machines (issue 16 §3);
    the finding lands when the second host is stored, and a later batch adds nothing."""
    from app.models import CertificateFinding

    task = make_task(bed)
    context = results.BatchContext(task, 0, 0, [], [], {"new": 0, "assigned": 0})
    chain = (bed.ext.der,)
    results.store_results(context, [ProbeResult(HOSTS[0], bed.port, chain=chain)])
    codes = select(CertificateFinding.code, func.count()).group_by(CertificateFinding.code)
    assert "key_on_hosts" not in dict(db.session.execute(codes).all())
    # Another port of the same host is the same machine: still no finding.
    results.store_results(context, [ProbeResult(HOSTS[0], bed.port + 1, chain=chain)])
    assert "key_on_hosts" not in dict(db.session.execute(codes).all())
    results.store_results(context, [ProbeResult(HOSTS[1], bed.port, chain=chain)])
    results.store_results(context, [ProbeResult(HOSTS[2], bed.port, chain=chain)])
    found = db.session.execute(
        select(CertificateFinding).where(CertificateFinding.code == "key_on_hosts")
    ).scalar_one()
    cert = db.session.get(Certificate, found.certificate_id)
    assert cert is not None and cert.fingerprint == hashlib.sha256(bed.ext.der).hexdigest()
    assert found.severity == "notice" and "more than one host" in found.detail
