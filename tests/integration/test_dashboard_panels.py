"""The dashboard's panels: expiry windows, issuers, signature algorithms, origins, each bar
drilling down to the filtered certificate list (server-side JSON, no inline script)."""

from __future__ import annotations

import html
import json
import re

from app.extensions import db
from app.models import CertStatus, Role
from app.services.reports import dashboard
from tests.conftest import login
from tests.factories import PASSWORD, make_admin, make_domain, make_org
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
