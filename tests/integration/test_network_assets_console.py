"""Network Assets and Assignment Rules through HTTP: the list with health flags and
filters, details with the presented chain, per-task summary and chart, bulk Assign To, the
SSL inventory showing who placed each certificate, and a rule's dry run before saving."""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AssignmentRule,
    AuditEvent,
    Certificate,
    Endpoint,
)
from tests.conftest import csrf_token
from tests.integration.discovery_console import (
    HOST,
    create_task,
    post,
    rows_of,
    scan,
    serve_bed,
    text,
)


@pytest.fixture
def bed(app, client, stub_worker):
    yield from serve_bed(client, stub_worker)


def test_network_assets_list_filters_details_and_chain(client, bed):
    task = create_task(client, bed)
    scan(client, bed, task)
    page = text(client.get("/admin/network_assets/"))
    rows = rows_of(page)
    assert set(rows) == {
        (HOST["ext"], ""),
        (HOST["ext2"], ""),
        (HOST["expired"], ""),
        (HOST["self"], ""),
        (HOST["lonely"], ""),
        (HOST["http"], ""),
        (HOST["managed"], ""),
        (HOST["managed"], "managed.acme.example"),
        (HOST["ext"], "wrong.acme.example"),
    }
    ext = rows[(HOST["ext"], "")]
    assert (
        "www.ext.test" in ext and "Assigned" in ext and "EC-P256" in ext and "ECDSA-SHA256" in ext
    )
    assert "none" in ext and "Loopback" in ext
    assert (
        "Expired" in rows[(HOST["expired"], "")] and "Not assigned" in rows[(HOST["expired"], "")]
    )
    assert "Self-signed leaf" in rows[(HOST["self"], "")]
    assert (
        "Incomplete chain" in rows[(HOST["lonely"], "")]
        and "Assigned" in rows[(HOST["lonely"], "")]
    )
    assert "Not TLS" in rows[(HOST["http"], "")]
    assert "Managed" in rows[(HOST["managed"], "managed.acme.example")]
    assert "Host name mismatch" in rows[(HOST["ext"], "wrong.acme.example")]

    def filtered(**args):
        return set(rows_of(text(client.get("/admin/network_assets/", query_string=args))))

    assert filtered(flt0_expired_equals="1") == {(HOST["expired"], "")}
    assert filtered(flt0_selfsigned_leaf_equals="1") == {(HOST["self"], "")}
    assert filtered(flt0_incomplete_chain_equals="1") == {(HOST["lonely"], "")}
    assert filtered(flt0_host_name_mismatch_equals="1") == {(HOST["ext"], "wrong.acme.example")}
    assert filtered(flt0_inventory_state_is="Managed") == {
        (HOST["managed"], ""),
        (HOST["managed"], "managed.acme.example"),
    }
    assert filtered(flt0_inventory_state_is="Not assigned") == {
        (HOST["expired"], ""),
        (HOST["self"], ""),
    }
    assert len(filtered(flt0_inventory_state_is="Assigned")) == 4
    assert filtered(flt0_handshake_error_equals="not_tls") == {(HOST["http"], "")}
    assert len(filtered(flt0_task_equals=str(task.id))) == 9
    assert len(filtered(flt0_protocol_equals="tls")) == 9  # port by default: TLS at once
    assert filtered(flt0_protocol_equals="smtp") == set()

    endpoint = db.session.execute(
        select(Endpoint).where(Endpoint.ip == HOST["ext"], Endpoint.host_name == "")
    ).scalar_one()
    details = text(client.get(f"/admin/network_assets/details/?id={endpoint.id}"))
    assert "www.ext.test" in details and "assigned by rule Example Corp to Acme" in details
    assert 'id="cw-endpoint-protocol">tls<' in details
    chain = details.split('id="cw-presented-chain"', 1)[1].split("</ol>", 1)[0]
    assert chain.index("CN=www.ext.test") < chain.index("CN=Ext Intermediate")
    assert "(leaf)" in chain and "no problem found" in details
    assert f"/admin/ssl_certs/details/?id={endpoint.certificate_id}" in details
    lonely = db.session.execute(select(Endpoint).where(Endpoint.ip == HOST["lonely"])).scalar_one()
    details = text(client.get(f"/admin/network_assets/details/?id={lonely.id}"))
    assert 'data-flag="incomplete_chain"' in details
    http = db.session.execute(select(Endpoint).where(Endpoint.ip == HOST["http"])).scalar_one()
    details = text(client.get(f"/admin/network_assets/details/?id={http.id}"))
    assert "Not TLS" in details and "No certificate was presented." in details


def test_summary_and_chart_per_task(client, bed):
    task = create_task(client, bed)
    scan(client, bed, task)
    scan(client, bed, task)
    page = text(client.get("/admin/network_assets/"))
    row = re.search(rf'<tr data-task="{task.id}"[^>]*>(.*?)</tr>', page, re.S).group(1)
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', row))
    assert counts == {
        "total": "5",
        "managed": "1",
        "external": "4",
        "self_signed": "1",
        "expired": "1",
        "expiring_30": "0",
    }
    figure = json.loads(html.unescape(re.search(r"data-figure='([^']*)'", page).group(1)))
    total = next(t for t in figure["data"] if t["name"] == "Total")
    assert total["y"] == [5, 5] and len(total["x"]) == 2
    new = next(t for t in figure["data"] if t["name"] == "New certificates")
    assert new["y"] == [4, 0]
    assert figure["layout"]["title"]["text"] == "Loopback: certificates per scan"
    script = re.search(r'<script src="(/assets/plotly-[^"]+\.min\.js)"', page).group(1)
    js = client.get(script)
    assert js.status_code == 200 and js.mimetype == "text/javascript"
    assert b"plotly.js" in js.data[:200] and "cdn" not in script


def test_assign_to_places_certificates_and_says_who(client, bed):
    task = create_task(client, bed)
    scan(client, bed, task)
    expired, selfsigned, managed = (
        db.session.execute(
            select(Endpoint).where(Endpoint.ip == HOST[k], Endpoint.host_name == "")
        ).scalar_one()
        for k in ("expired", "self", "managed")
    )
    token = csrf_token(client, "/admin/network_assets/")
    page = text(
        client.post(
            "/admin/network_assets/action/",
            data={
                "action": "assign",
                "rowid": [str(expired.id), str(selfsigned.id), str(managed.id)],
                "csrf_token": token,
            },
            follow_redirects=True,
        )
    )
    assert "old.ext.test" in page and "self.test" in page and "Assign to" in page
    assert "Acme / Ops" in page and "Other Org" in page
    ids = f"{expired.id},{selfsigned.id},{managed.id}"
    page = text(
        post(
            client,
            f"/admin/network_assets/assign/?ids={ids}",
            {"ids": ids, "target": f"d:{bed.ops.id}"},
        )
    )
    assert "2 certificate(s) assigned to Acme / Ops." in page
    assert "1 managed certificate(s) keep the place their request gave them." in page
    old = db.session.execute(
        select(Certificate).where(Certificate.common_name == "old.ext.test")
    ).scalar_one()
    assert (old.organization_id, old.department_id) == (bed.org.id, bed.ops.id)
    assert old.assigned_by_id == bed.mrao.id and old.assigned_rule_id is None
    assert db.session.get(Certificate, bed.ours.id).department_id is None
    assert (
        db.session.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "certificate.assign")
        ).scalar_one()
        == 2
    )
    details = text(client.get(f"/admin/network_assets/details/?id={expired.id}"))
    assert "Acme / Ops" in details and "assigned by mrao" in details
    page = text(
        post(client, f"/admin/network_assets/assign/?ids={ids}", {"ids": ids, "target": "o:99999"})
    )
    assert "Choose an organization or department to assign to." in page


def test_ssl_inventory_shows_origin_placement_and_install_state(client, bed):
    task = create_task(client, bed)
    scan(client, bed, task)
    listing = text(client.get("/admin/ssl_certs/"))
    assert (
        "www.ext.test" in listing
        and "lonely.ext.test" in listing
        and "managed.acme.example" in listing
    )
    assert (
        "old.ext.test" not in listing and "self.test" not in listing
    )  # not assigned: Network Assets only
    row = re.search(
        r"<tr>((?:(?!</tr>).)*www\.ext\.test(?:(?!</tr>).)*)</tr>", listing, re.S
    ).group(1)
    cells = [
        re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]
    flat = [" ".join(c) for c in cells]
    assert "External" in flat and "Acme" in flat and "Discovered" in flat
    assert "rule Example Corp to Acme" in flat
    assert "Installed (3 endpoints)" in flat  # two IPs, and the mismatching host name
    cert = db.session.execute(
        select(Certificate).where(Certificate.common_name == "www.ext.test")
    ).scalar_one()
    link = re.search(r'href="(/admin/network_assets/\?flt0_certificate_id_equals=\d+)"', row)
    where = rows_of(text(client.get(link.group(1).replace("&amp;", "&"))))
    assert set(where) == {
        (HOST["ext"], ""),
        (HOST["ext2"], ""),
        (HOST["ext"], "wrong.acme.example"),
    }
    details = text(client.get(f"/admin/ssl_certs/details/?id={cert.id}"))
    assert "assigned by rule Example Corp to Acme" in details
    assert "Discovered" in details and "Installed (3 endpoints)" in details
    deployed = details.split('id="cw-deployed"', 1)[1].split("</table>", 1)[0]
    assert HOST["ext"] in deployed and HOST["ext2"] in deployed and "wrong.acme.example" in deployed
    assert "Host name mismatch" in deployed
    ours = text(client.get(f"/admin/ssl_certs/details/?id={bed.ours.id}"))
    assert "Issued by Test Issuing" in ours and "assigned by" not in ours
    assert "Installed (2 endpoints)" in ours  # its IP in the range, and its host name
    assert "managed.acme.example" in ours.split('id="cw-deployed"', 1)[1]


# --- Assignment Rules -------------------------------------------------------------------


def rule_form(bed, **changes):
    data = {"name": "Other Inc", "match_mode": "all", "target": f"o:{bed.org.id}"}
    for i in range(6):
        data.update(
            {
                f"conditions-{i}-field": "",
                f"conditions-{i}-operator": "equals",
                f"conditions-{i}-value": "",
            }
        )
    data.update(
        {
            "conditions-2-field": "subject_o",
            "conditions-2-operator": "equals",
            "conditions-2-value": "Other Inc",
        }
    )
    data.update(changes)
    return data


def test_rule_dry_run_shows_matches_before_saving(client, bed):
    task = create_task(client, bed)
    scan(client, bed, task)
    page = text(post(client, "/admin/assignment_rules/new/", {**rule_form(bed), "dry_run": "1"}))
    results = page.split('id="cw-dry-run-results"', 1)[1]
    assert "matches 1 certificate(s) on 1 endpoint(s)" in results
    assert "old.ext.test" in results and "Not assigned" in results
    assert db.session.execute(select(func.count()).select_from(AssignmentRule)).scalar_one() == 1
    # Errors at the row that has them (row 3 of the form is the service's condition 1).
    bad = rule_form(
        bed, **{"conditions-2-operator": "matches", "conditions-2-value": "(a", "dry_run": "1"}
    )
    page = text(post(client, "/admin/assignment_rules/new/", bad))
    row = re.findall(
        r"<tr>\s*<td class=\"align-middle text-muted\">(\d)</td>(.*?)</tr>", page, re.S
    )
    errors = {n: re.findall(r'invalid-feedback">([^<]*)<', html) for n, html in row}
    assert errors["3"] and errors["3"][0].startswith("invalid regular expression"), errors
    assert all(not v for n, v in errors.items() if n != "3")
    page = text(
        post(client, "/admin/assignment_rules/new/", rule_form(bed, name="example corp TO acme"))
    )
    assert "A rule named &#39;example corp TO acme&#39; already exists." in page
    page = text(post(client, "/admin/assignment_rules/new/", rule_form(bed, target="o:0")))
    assert "Assign to one of your organizations or departments." in page
    nothing = {f"conditions-2-{k}": "" for k in ("field", "value")}
    page = text(post(client, "/admin/assignment_rules/new/", rule_form(bed, **nothing)))
    assert "add at least one condition" in page
    page = text(post(client, "/admin/assignment_rules/new/", rule_form(bed)))
    assert "Saved the assignment rule &#39;Other Inc&#39;." in page
    assert 'Subject O (organization) equals "Other Inc"' in page.replace("&#34;", '"')
    rule = db.session.execute(
        select(AssignmentRule).where(AssignmentRule.name == "Other Inc")
    ).scalar_one()
    # Editing keeps the name; its dry run is not a duplicate of itself.
    edit = text(client.get(f"/admin/assignment_rules/edit/?id={rule.id}"))
    assert 'value="Other Inc"' in edit
    page = text(
        post(
            client,
            f"/admin/assignment_rules/edit/?id={rule.id}",
            {**rule_form(bed), "dry_run": "1"},
        )
    )
    assert "matches 1 certificate(s)" in page and "already exists" not in page
    # A rule attached to a task is not deleted.
    used = db.session.execute(
        select(AssignmentRule).where(AssignmentRule.name == "Example Corp to Acme")
    ).scalar_one()
    listing = text(client.get("/admin/assignment_rules/"))
    assert "Loopback" in listing and "no task" in listing
    page = text(
        post(
            client,
            "/admin/assignment_rules/delete/",
            {"id": used.id},
            page="/admin/assignment_rules/",
        )
    )
    assert "is attached to 1 tasks; detach it first." in page
    assert db.session.get(AssignmentRule, used.id) is not None


def test_network_assets_export_csv_and_json_with_the_lists_scope_and_filters(app, client, bed):
    import csv
    import io

    from app.models import Organization, Role
    from tests.conftest import login
    from tests.factories import PASSWORD, make_admin

    task = create_task(client, bed)
    scan(client, bed, task)
    page = text(client.get("/admin/network_assets/"))
    assert "/admin/network_assets/export/csv/" in page
    assert "/admin/network_assets/export/json/" in page

    response = client.get("/admin/network_assets/export/csv/")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 9
    ext = next(r for r in rows if r["IP"] == HOST["ext"] and r["Host name"] == "")
    assert ext["CN"] == "www.ext.test" and ext["Inventory state"] == "Assigned"
    assert ext["Port"] == str(bed.port) and ext["Valid to"].startswith("20")

    response = client.get("/admin/network_assets/export/json/")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].endswith('.json"')
    items = json.loads(response.get_data(as_text=True))
    assert len(items) == 9
    expired = next(i for i in items if i["ip"] == HOST["expired"])
    assert expired["flags"] == "Expired" and expired["state"] == "Not assigned"
    assert expired["port"] == bed.port and expired["fingerprint"]
    mismatch = next(i for i in items if i["host_name"] == "wrong.acme.example")
    assert "Host name mismatch" in mismatch["flags"]

    only_expired = client.get(
        "/admin/network_assets/export/json/", query_string={"flt0_expired_equals": "1"}
    )
    assert [i["ip"] for i in json.loads(only_expired.get_data(as_text=True))] == [HOST["expired"]]

    other = db.session.execute(
        select(Organization).where(Organization.name == "Other Org")
    ).scalar_one()
    make_admin("rao", Role.RAO, org=other)
    stranger = app.test_client()
    login(stranger, "rao", PASSWORD)
    assert (
        json.loads(stranger.get("/admin/network_assets/export/json/").get_data(as_text=True)) == []
    )
    assert stranger.get("/admin/network_assets/export/xml/").status_code in (302, 404)
