"""The dashboard's panels: expiry windows, issuers, signature algorithms, origins, each bar
drilling down to the filtered certificate list (server-side JSON, no inline script)."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import (
    CertificateFinding,
    CertificateRequest,
    CertOrigin,
    CertStatus,
    CertType,
    DiscoveryTask,
    Endpoint,
    RequestMode,
    RequestStatus,
    Role,
    RunStatus,
    ScanRun,
)
from app.models.types import utcnow
from app.services.discovery import endpoints
from app.services.reports import dashboard
from tests.conftest import login
from tests.factories import PASSWORD, make_admin, make_dept, make_domain, make_org, make_pki
from tests.integration.test_reports import add_certificates


def figure(page: str, chart_id: str) -> dict:
    match = re.search(rf"id=\"{chart_id}\" data-figure='([^']+)'", page)
    assert match, chart_id
    return json.loads(html.unescape(match.group(1)))


def test_every_bar_opens_the_filtered_list(app, client):
    make_admin()
    acme, other = make_org("Acme"), make_org("Other")
    soon = add_certificates(acme, 3, days=1)  # expire in 1..3 days
    later = add_certificates(acme, 2, days=40, prefix="later")  # 40..41 days
    add_certificates(other, 4, days=3, prefix="theirs")
    soon[0].issuer_cn = "Odd CA"
    later[0].status = CertStatus.REVOKED  # not live: in no expiry window
    db.session.commit()
    rao = make_admin("rao", Role.RAO, org=acme)
    overview = dashboard.certificate_overview(actor=rao)
    assert overview.expiring == [3, 0, 1, 0]
    assert overview.by_issuer == {"Test Issuing CA": 4, "Odd CA": 1}
    assert overview.by_origin == {"Imported": 5}
    assert overview.by_signature == {"ecdsa-with-SHA256": 5}

    login(client, "rao", PASSWORD)
    page = client.get("/admin/").get_data(as_text=True)
    assert "<script>" not in page.split("</nav>", 1)[-1].replace("<script src=", "")
    expiring = figure(page, "cw-chart-expiring")["data"][0]
    assert expiring["y"] == [3, 0, 1, 0]
    listed = client.get(expiring["customdata"][0]).get_data(as_text=True)
    assert all(c.common_name in listed for c in soon)
    assert "later" not in listed and "theirs" not in listed
    listed = client.get(expiring["customdata"][2]).get_data(as_text=True)
    assert later[1].common_name in listed and later[0].common_name not in listed

    issuers = figure(page, "cw-chart-issuer")["data"][0]
    assert issuers["x"] == ["Test Issuing CA", "Odd CA"]
    odd = client.get(issuers["customdata"][1]).get_data(as_text=True)
    assert soon[0].common_name in odd and soon[1].common_name not in odd

    origin = figure(page, "cw-chart-origin")["data"][0]
    assert origin["x"] == ["Issued", "Discovered", "Imported"] and origin["y"] == [0, 0, 5]
    signature = figure(page, "cw-chart-signature")["data"][0]
    assert signature["labels"] == ["ecdsa-with-SHA256"]
    assert "flt" in signature["customdata"][0]


def test_the_weekly_timeline_and_delegation_states_drill_down(app, client):
    mrao = make_admin()
    acme, other = make_org("Acme"), make_org("Other")
    make_domain("acme.example", by=mrao, org=acme)
    make_domain("other.example", by=mrao, org=other)
    first_week = add_certificates(acme, 2, days=1)  # 1..2 days: week 0
    tenth = add_certificates(acme, 1, days=66, prefix="tenth")  # day 66: week 9
    add_certificates(acme, 1, days=400, prefix="beyond")  # past the twelve months
    add_certificates(other, 3, days=1, prefix="theirs")
    rao = make_admin("rao", Role.RAO, org=acme)
    overview = dashboard.certificate_overview(actor=rao)
    assert len(overview.expiring_weeks) == 52
    assert overview.expiring_weeks[0] == 2 and overview.expiring_weeks[9] == 1
    assert sum(overview.expiring_weeks) == 3

    login(client, "rao", PASSWORD)
    page = client.get("/admin/").get_data(as_text=True)
    timeline = figure(page, "cw-chart-timeline")
    bars = timeline["data"][0]
    assert len(bars["x"]) == 52 and bars["y"][0] == 2 and bars["y"][9] == 1
    assert timeline["layout"]["yaxis"]["tickformat"] == ",d"  # whole numbers
    listed = client.get(bars["customdata"][0]).get_data(as_text=True)
    assert all(c.common_name in listed for c in first_week)
    assert "theirs" not in listed and "tenth" not in listed
    listed = client.get(bars["customdata"][9]).get_data(as_text=True)
    assert tenth[0].common_name in listed and first_week[0].common_name not in listed

    delegations = figure(page, "cw-chart-delegations")["data"][0]
    assert delegations["x"] == ["Requested", "Approved", "Rejected"]
    seen = dict(zip(delegations["x"], delegations["y"], strict=True))
    assert seen == dashboard.delegation_states(actor=rao) and sum(seen.values()) == 1
    assert "/admin/delegation/?flt" in delegations["customdata"][1]
    assert client.get(delegations["customdata"][1]).status_code == 200


def _request(org, profile, cn, *, status=RequestStatus.REQUESTED, age_days=0.0):
    req = CertificateRequest(
        cert_type=CertType.SSL,
        profile_id=profile.id,
        organization_id=org.id,
        status=status,
        mode=RequestMode.CSR,
        key_type="EC-P256",
        common_name=cn,
        term_days=90,
        created_at=utcnow() - timedelta(days=age_days),
    )
    db.session.add(req)
    return req


def test_requests_vs_issued_and_pending_approvals_drill_down_in_scope(app, client):
    make_admin()
    acme, other = make_org("Acme"), make_org("Other")
    _, _, profile = make_pki()
    _request(acme, profile, "fresh.acme.example", age_days=0.1)
    _request(acme, profile, "week.acme.example", age_days=3)
    _request(acme, profile, "old.acme.example", age_days=45)
    _request(acme, profile, "done.acme.example", status=RequestStatus.ISSUED)
    for i in range(3):
        _request(other, profile, f"theirs{i}.other.example", age_days=3)
    issued = add_certificates(acme, 2, prefix="issued")
    for cert in issued:
        cert.origin = CertOrigin.ISSUED
        cert.status = CertStatus.ISSUED
    add_certificates(other, 4, prefix="theirs")
    db.session.commit()
    rao = make_admin("rao", Role.RAO, org=acme)

    pending = dashboard.pending_approvals(actor=rao)
    assert pending[CertType.SSL] == [1, 1, 0, 1]
    assert sum(sum(v) for t, v in pending.items() if t != CertType.SSL) == 0
    months = dashboard.requests_vs_issued(actor=rao)
    assert len(months) == 12 and months[-1].month == utcnow().date().replace(day=1)
    assert sum(m.requested for m in months) == 4  # the other org's three are not counted
    assert months[-1].issued == 2 and sum(m.issued for m in months) == 2

    login(client, "rao", PASSWORD)
    page = client.get("/admin/").get_data(as_text=True)
    chart = figure(page, "cw-chart-pending")
    assert chart["layout"]["barmode"] == "stack"
    assert chart["layout"]["yaxis"]["tickformat"] == ",d"
    week = next(t for t in chart["data"] if t["name"] == "1 to 7 days")
    assert week["x"][0] == "SSL" and week["y"][0] == 1
    listed = client.get(week["customdata"][0]).get_data(as_text=True)
    assert "week.acme.example" in listed
    assert "fresh.acme" not in listed and "old.acme" not in listed and "theirs" not in listed
    over = next(t for t in chart["data"] if t["name"] == "over 30 days")
    listed = client.get(over["customdata"][0]).get_data(as_text=True)
    assert "old.acme.example" in listed and "week.acme" not in listed

    chart = figure(page, "cw-chart-requests")
    requested, made = chart["data"]
    assert requested["name"] == "Requested" and made["name"] == "Issued"
    assert made["y"][-1] == 2 and sum(requested["y"]) == 4
    listed = client.get(made["customdata"][-1]).get_data(as_text=True)
    assert all(c.common_name in listed for c in issued) and "theirs" not in listed
    this_month = client.get(requested["customdata"][-1]).get_data(as_text=True)
    assert "fresh.acme.example" in this_month and "theirs" not in this_month


def _scan(task, certs, *, flags=(), days_ago=0.0):
    run = ScanRun(
        task_id=task.id,
        status=RunStatus.SUCCESSFUL,
        started_at=utcnow() - timedelta(days=days_ago, minutes=5),
        finished_at=utcnow() - timedelta(days=days_ago),
        tls_endpoints=len(certs),
        certificates=len(certs),
    )
    db.session.add(run)
    db.session.flush()
    for i, cert in enumerate(certs):
        endpoint = db.session.execute(
            select(Endpoint).where(Endpoint.task_id == task.id, Endpoint.port == 443 + i)
        ).scalar_one_or_none() or Endpoint(task_id=task.id, ip="10.0.0.1", port=443 + i)
        endpoint.certificate_id = cert.id
        endpoint.last_run_id = run.id
        for flag in flags:
            setattr(endpoint, flag, True)
        db.session.add(endpoint)
    db.session.flush()
    run.counts = {"flags": endpoints.run_flags(run.id)}
    db.session.commit()
    return run


def test_top_risks_and_discovery_trends_are_scoped_and_drill_down(app, client):
    make_admin()
    acme, other = make_org("Acme"), make_org("Other")
    expired = add_certificates(acme, 1, prefix="expired", days=-3)[0]
    unserved = add_certificates(acme, 1, prefix="gone", days=-3)[0]
    selfsigned, weak, sha1 = add_certificates(acme, 3, prefix="risky", days=100)
    selfsigned.is_self_signed = True
    theirs = add_certificates(other, 1, prefix="theirs", days=-3)[0]
    for cert, code in ((weak, "weak_key_size"), (sha1, "weak_signature"), (theirs, "roca")):
        db.session.add(
            CertificateFinding(certificate_id=cert.id, code=code, severity="error", source="key")
        )
    db.session.commit()
    task = DiscoveryTask(name="DC", ranges="10.0.0.0/24", organization_id=acme.id)
    their_task = DiscoveryTask(name="Theirs", ranges="10.9.0.0/24", organization_id=other.id)
    db.session.add_all([task, their_task])
    db.session.commit()
    _scan(task, [unserved], days_ago=2)  # seen two days ago, not in the latest scan
    db.session.execute(update(Endpoint).values(port=9000))  # a different endpoint since
    run = _scan(task, [expired, selfsigned], flags=("expired",))
    _scan(their_task, [theirs], flags=("expired",))

    rao = make_admin("rao", Role.RAO, org=acme)
    top = dashboard.top_risks(actor=rao)
    assert top["expired_served"][CertType.SSL] == 1
    assert top["self_signed_served"][CertType.SSL] == 1
    assert top["weak_key"][CertType.SSL] == 1  # not the other organization's ROCA key
    assert top["weak_signature"][CertType.SSL] == 1
    everyone = dashboard.top_risks(actor=make_admin("boss"))
    assert everyone["expired_served"][CertType.SSL] == 2
    assert everyone["weak_key"][CertType.SSL] == 2

    trend = dashboard.discovery_trend(actor=rao)
    assert [t.task_name for t in trend] == ["DC", "DC"]
    assert trend[-1].run_id == run.id and trend[-1].flagged == 2
    assert trend[-1].tls_endpoints == 2

    login(client, "rao", PASSWORD)
    page = client.get("/admin/").get_data(as_text=True)
    for code, cert in (
        ("expired_served", expired),
        ("self_signed_served", selfsigned),
        ("weak_key", weak),
        ("weak_signature", sha1),
    ):
        row = re.search(rf'<tr data-risk="{code}".*?</tr>', page, re.S).group(0)
        url = html.unescape(re.search(r'data-type="ssl"><a href="([^"]+)"', row).group(1))
        listed = client.get(url).get_data(as_text=True)
        assert cert.common_name in listed, code
        assert "theirs" not in listed and "gone0" not in listed
    chart = figure(page, "cw-chart-discovery")
    lines = {line["name"]: line for line in chart["data"]}
    assert lines["With a health flag"]["y"] == [0, 2]
    assert chart["layout"]["yaxis"]["tickformat"] == ",d"
    assets = client.get(lines["TLS endpoints"]["customdata"][-1]).get_data(as_text=True)
    assert "10.0.0.1" in assets
    assert "<script>" not in page.split("</nav>", 1)[-1].replace("<script src=", "")


def test_a_drao_sees_no_discovery_trend(app):
    make_admin()
    acme = make_org("Acme")
    task = DiscoveryTask(name="DC", ranges="10.0.0.0/24", organization_id=acme.id)
    db.session.add(task)
    db.session.commit()
    _scan(task, add_certificates(acme, 1))
    drao = make_admin("drao", Role.DRAO, org=acme, dept=make_dept(acme))
    assert dashboard.discovery_trend(actor=drao) == []
    assert len(dashboard.discovery_trend(actor=make_admin("rao", Role.RAO, org=acme))) == 1
