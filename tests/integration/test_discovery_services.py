"""Discovery phase two through the real job path: STARTTLS services found by a task land
in the same inventory, their endpoints record the protocol; task protocol overrides and the
rate cap are validated and audited like every other task field."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate, Endpoint, RunStatus
from app.services.discovery import runs, tasks
from app.services.errors import ValidationFailed
from tests.conftest import drain
from tests.factories import make_admin
from tests.tlsbed.certs import issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context

HOSTS = ["127.0.31.1", "127.0.31.2"]


def test_starttls_services_land_in_the_inventory_with_their_protocol(app, stub_worker):
    mrao = make_admin("mrao")
    smtp_leaf = issue(make_name("mail.services.test", "Mail Corp"), sans=["mail.services.test"])
    ldap_leaf = issue(make_name("ldap.services.test", "Dir Corp"), sans=["ldap.services.test"])
    smtp_port = free_port(HOSTS)
    ldap_port = free_port(HOSTS)
    with ServerFarm() as farm:
        for host in HOSTS:
            farm.add_starttls(host, smtp_port, "smtp", server_context([smtp_leaf]))
            farm.add_starttls(host, ldap_port, "ldap", server_context([ldap_leaf]))
        task = tasks.create_task(
            actor=mrao,
            data=tasks.TaskData(
                name="Mail and directory",
                ranges=f"{HOSTS[0]}-{HOSTS[1]}",
                ports=f"{smtp_port},{ldap_port}",
                protocols=f"{smtp_port} = smtp\n{ldap_port}=LDAP",
                rate=500,
                connect_timeout=2,
                handshake_timeout=3,
            ),
        )
        db.session.commit()
        assert (task.rate, task.protocols) == (500.0, f"{smtp_port} = smtp\n{ldap_port}=LDAP")
        run = runs.start_run(actor=mrao, task_id=task.id)
        drain(stub_worker)
    db.session.refresh(run)
    assert run.status == RunStatus.SUCCESSFUL, run.message
    assert (run.tls_endpoints, run.new_certificates) == (4, 2)
    found = {
        (e.ip, e.port): (e.protocol, e.certificate.common_name if e.certificate else None)
        for e in db.session.execute(select(Endpoint)).scalars()
    }
    assert found == {
        (HOSTS[0], smtp_port): ("smtp", "mail.services.test"),
        (HOSTS[1], smtp_port): ("smtp", "mail.services.test"),
        (HOSTS[0], ldap_port): ("ldap", "ldap.services.test"),
        (HOSTS[1], ldap_port): ("ldap", "ldap.services.test"),
    }
    names = set(db.session.execute(select(Certificate.common_name)).scalars())
    assert {"mail.services.test", "ldap.services.test"} <= names


def test_bad_protocols_and_rates_are_refused_by_field(app):
    mrao = make_admin("mrao")
    with pytest.raises(ValidationFailed) as info:
        tasks.create_task(
            actor=mrao,
            data=tasks.TaskData(name="Bad", ranges="127.0.0.1", protocols="25 = smtpx", rate=-1),
        )
    assert info.value.errors["protocols"][0].startswith(
        "protocols line 1: unknown protocol 'smtpx' (one of tls, smtp, smtps"
    )
    assert info.value.errors["rate"] == ["Between 0 (no cap) and 100,000 new connections a second."]


def test_a_host_name_with_only_an_aaaa_record_is_found_on_ipv6(app, stub_worker):
    from tests.dnsbed import dns_server

    mrao = make_admin("mrao")
    leaf = issue(make_name("v6.services.test", "Six Corp"), sans=["v6.services.test"])
    port = free_port(["::1"])
    with ServerFarm() as farm, dns_server({"v6.services.test": ["::1"]}) as dns:
        farm.add_tls("::1", port, server_context([leaf]))
        app.config["CW_SCAN_RESOLVER"] = dns.address
        try:
            task = tasks.create_task(
                actor=mrao,
                data=tasks.TaskData(name="IPv6", ranges="v6.services.test\n::1", ports=str(port)),
            )
            db.session.commit()
            run = runs.start_run(actor=mrao, task_id=task.id)
            drain(stub_worker)
        finally:
            app.config["CW_SCAN_RESOLVER"] = ""
    db.session.refresh(run)
    assert run.status == RunStatus.SUCCESSFUL, run.message
    found = {
        (e.ip, e.host_name, e.protocol, e.certificate.common_name)
        for e in db.session.execute(select(Endpoint)).scalars()
    }
    assert found == {
        ("::1", "v6.services.test", "tls", "v6.services.test"),
        ("::1", "", "tls", "v6.services.test"),
    }
    assert not db.session.execute(
        select(Endpoint.hostname_mismatch).where(Endpoint.host_name == "v6.services.test")
    ).scalar_one()


def test_a_silent_range_scans_at_its_timeout_bound_through_the_job_path(app, stub_worker):
    import time

    from app.models import ScanShard
    from tests.tlsbed.farm import silent_listeners

    mrao = make_admin("mrao")
    hosts = [f"127.0.32.{i}" for i in range(1, 21)]
    port = free_port(hosts)
    task = tasks.create_task(
        actor=mrao,
        data=tasks.TaskData(
            name="Silent",
            ranges=f"{hosts[0]}-{hosts[-1]}",
            ports=str(port),
            connect_timeout=0.5,
            concurrency=5,
        ),
    )
    db.session.commit()
    with silent_listeners(hosts, port):
        run = runs.start_run(actor=mrao, task_id=task.id, shard_size=20)
        started = time.monotonic()
        drain(stub_worker)
        elapsed = time.monotonic() - started
    db.session.refresh(run)
    assert run.status == RunStatus.SUCCESSFUL, run.message
    assert run.counts["outcomes"] == {"timeout": 20}
    assert 1.9 <= elapsed < 3.5, elapsed  # 20 targets x 0.5 s / 5 in flight = 2 s
    shard = db.session.execute(select(ScanShard).where(ScanShard.run_id == run.id)).scalar_one()
    assert (shard.targets_done, shard.in_flight) == (20, 0.0)
    assert not db.session.execute(select(Endpoint)).first()  # silence is counted, not stored


def test_the_rate_cap_is_shared_by_running_shards_and_progress_counts_in_flight(app, stub_worker):
    import datetime as dt

    from app.models import ScanShard
    from app.models.types import utcnow
    from app.services.platform import jobs

    mrao = make_admin("mrao")
    task = tasks.create_task(
        actor=mrao,
        data=tasks.TaskData(name="Capped", ranges="127.0.33.1-127.0.33.20", rate=100),
    )
    db.session.commit()
    # The shards' messages are not sent: the state below is set by hand, and a worker
    # scanning them meanwhile would finish the run under the assertions.
    previous = jobs._handoff
    jobs.set_handoff(lambda: True)
    try:
        run = runs.start_run(actor=mrao, task_id=task.id, shard_size=5)
        db.session.commit()
    finally:
        jobs.set_handoff(previous)
    rows = db.session.execute(select(ScanShard).where(ScanShard.run_id == run.id)).scalars().all()
    assert len(rows) == 4
    assert runs.shard_rate(task, run.id) == 100.0  # nothing running yet: the whole cap
    rows[0].status, rows[0].targets_done, rows[0].in_flight = "running", 2, 1.5
    rows[1].status, rows[1].targets_done, rows[1].in_flight = "running", 1, 0.5
    run.started_at = utcnow() - dt.timedelta(seconds=10)
    db.session.commit()
    assert runs.shard_rate(task, run.id) == 50.0
    assert runs.progress(run) == 25  # (3 done + 2 in flight) of 20
    # 10 s for 5 of 20: 30 s for the other 15 (31 once the clock has moved 0.2 s more)
    assert runs.seconds_left(run) in (30, 31)
    from app.admin.discovery.columns import run_state

    assert run_state(run)["left"] in ("~30 s left", "~31 s left")
    task.rate = 0
    assert runs.shard_rate(task, run.id) == 0.0
    runs.cancel_run(actor=mrao, run_id=run.id)
    db.session.commit()
    assert runs.seconds_left(run) is None
    drain(stub_worker)
