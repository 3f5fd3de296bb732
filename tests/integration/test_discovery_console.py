"""The Discovery console through HTTP: task form with schedule preview, CSV import, Scan /
Cancel / live progress / History, Assignment Rules with dry run, Network Assets (summary,
chart, filters, details with the chain, Assign To) and the SSL inventory showing who placed
each certificate - against real TLS servers on loopback, scanned through the job path."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import pytest
from cryptography import x509
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AssignmentRule,
    AuditEvent,
    Certificate,
    DiscoveryTask,
    Endpoint,
    RequestMode,
    RunStatus,
    ScanRun,
)
from app.services import discovery_tasks, enrollment
from tests.conftest import csrf_token, drain, login
from tests.factories import (
    PASSWORD,
    make_admin,
    make_csr,
    make_dept,
    make_domain,
    make_org,
    make_pki,
)
from tests.tlsbed.certs import NOW, Issued, issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context

NET = "127.0.31"
HOST = {
    "ext": f"{NET}.1",
    "ext2": f"{NET}.2",
    "expired": f"{NET}.3",
    "self": f"{NET}.4",
    "lonely": f"{NET}.5",
    "http": f"{NET}.6",
    "managed": f"{NET}.7",
}


@pytest.fixture
def bed(app, client, stub_worker):
    mrao = make_admin("mrao")
    org = make_org("Acme", city="Berlin")
    ops = make_dept(org, "Ops")
    make_org("Other Org")
    make_domain("acme.example", by=mrao, org=org)
    *_, profile = make_pki(requires_approval=False)
    csr, key = make_csr("managed.acme.example")
    req = enrollment.submit_request(
        actor=mrao,
        data=enrollment.RequestData(
            organization_id=org.id,
            profile_id=profile.id,
            term_days=90,
            mode=RequestMode.CSR,
            csr=csr,
            eula_accepted=True,
        ),
    )
    drain(stub_worker)
    db.session.refresh(req)
    ours = Issued(x509.load_der_x509_certificate(req.certificate.der), key)
    ca = Issued(x509.load_der_x509_certificate(req.certificate.request.profile.ca.cert_der), key)
    root = issue(make_name("Ext Root", "Example Corp"), ca=True)
    inter = issue(make_name("Ext Intermediate", "Example Corp"), ca=True, issuer=root)
    ext = issue(make_name("www.ext.test", "Example Corp"), issuer=inter, sans=["www.ext.test"])
    expired = issue(
        make_name("old.ext.test", "Other Inc"),
        issuer=inter,
        sans=["old.ext.test"],
        not_before=NOW - dt.timedelta(days=90),
        not_after=NOW - dt.timedelta(days=1),
    )
    lonely = issue(
        make_name("lonely.ext.test", "Example Corp"), issuer=inter, sans=["lonely.ext.test"]
    )
    selfsigned = issue(make_name("self.test"), sans=["self.test"])
    port = free_port(list(HOST.values()))
    with ServerFarm() as farm:
        farm.add_tls(HOST["ext"], port, server_context([ext, inter]))
        farm.add_tls(HOST["ext2"], port, server_context([ext, inter]))
        farm.add_tls(HOST["expired"], port, server_context([expired, inter]))
        farm.add_tls(HOST["self"], port, server_context([selfsigned]))
        farm.add_tls(HOST["lonely"], port, server_context([lonely]))  # no intermediate
        farm.add_plain(HOST["http"], port, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        farm.add_tls(HOST["managed"], port, server_context([ours, ca]))
        login(client, "mrao", PASSWORD)
        yield SimpleNamespace(
            mrao=mrao, org=org, ops=ops, port=port, ours=req.certificate, worker=stub_worker
        )


def post(client, url, data, page=None, **kw):
    token = csrf_token(client, page or url)
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=True, **kw)


def text(resp):
    return resp.get_data(as_text=True)


def make_rule(bed, name="Example Corp to Acme", value="Example Corp"):
    rule = discovery_tasks.save_rule(
        actor=bed.mrao,
        data=discovery_tasks.RuleData(
            name=name,
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": value}],
            organization_id=bed.org.id,
        ),
    )
    db.session.commit()
    return rule


def task_form(bed, **changes):
    data = {
        "name": "Loopback",
        "description": "the test bed",
        "agent": "Auto",
        "owner": "",
        "ranges": f"{NET}.0/29\nmanaged.acme.example\nwrong.acme.example",
        "ports": str(bed.port),
        "host_overrides": f"managed.acme.example = {HOST['managed']}\n"
        f"wrong.acme.example = {HOST['ext']}",
        "connect_timeout": "2",
        "handshake_timeout": "3",
        "concurrency": "64",
        "rule_order-0": "",
        "rule_order-1": "",
        "schedule_kind": "weekly",
        "schedule_time": "03:00",
        "schedule_timezone": "Europe/Berlin",
        "schedule_weekday": "0",
        "schedule_day_of_month": "1",
        "schedule_month": "1",
        "schedule_at": "",
    }
    data.update(changes)
    return data


def create_task(client, bed, **changes):
    rule = make_rule(bed)
    resp = post(
        client,
        "/admin/discovery_tasks/new/",
        task_form(bed, **{"rule_order-0": str(rule.id), **changes}),
    )
    assert "Saved the discovery task" in text(resp), text(resp)
    return db.session.execute(select(DiscoveryTask)).scalar_one()


def scan(client, bed, task):
    page = text(
        post(
            client, "/admin/discovery_tasks/scan/", {"id": task.id}, page="/admin/discovery_tasks/"
        )
    )
    assert f"of &#39;{task.name}&#39; started" in page, page
    drain(bed.worker)
    return db.session.execute(select(ScanRun).order_by(ScanRun.id.desc())).scalars().first()


# --- the task form --------------------------------------------------------------------


def test_task_form_previews_five_runs_then_saves_with_rules_in_order(client, bed):
    first, second = make_rule(bed), make_rule(bed, "Other Inc to Acme", "Other Inc")
    form = task_form(bed, **{"rule_order-0": str(second.id), "rule_order-1": str(first.id)})
    page = text(post(client, "/admin/discovery_tasks/new/", {**form, "preview": "1"}))
    assert "Weekly on Monday at 03:00 (Europe/Berlin)" in page
    runs = re.findall(r"<li>(Mon \d{4}-\d\d-\d\d 03:00 CES?T)", page)
    assert len(runs) == 5, page
    assert db.session.execute(select(func.count()).select_from(DiscoveryTask)).scalar_one() == 0
    # The same preview as JSON, for the form's script.
    preview = client.get(
        "/admin/discovery_tasks/schedule-preview/",
        query_string={k: v for k, v in form.items() if k.startswith("schedule_")},
    ).get_json()
    assert preview["describe"] == "Weekly on Monday at 03:00 (Europe/Berlin)"
    assert [r.split(" (your time")[0] for r in preview["runs"]] == runs

    page = text(post(client, "/admin/discovery_tasks/new/", form))
    assert "Saved the discovery task &#39;Loopback&#39;" in page
    task = db.session.execute(select(DiscoveryTask)).scalar_one()
    assert [r.name for r in task.rules] == ["Other Inc to Acme", "Example Corp to Acme"]
    assert task.schedule["kind"] == "weekly" and task.schedule["timezone"] == "Europe/Berlin"
    assert "Weekly on Monday at 03:00 (Europe/Berlin)" in page and "account-wide" in page
    assert f"{NET}.0/29, managed.acme.example, wrong.acme.example" in page
    assert "Never scanned" in page
    edit = text(client.get(f"/admin/discovery_tasks/edit/?id={task.id}"))
    chosen = re.findall(r'<option selected value="([^"]*)">', edit)
    assert chosen[:3] == ["", "weekly", "Europe/Berlin"] or set(chosen) >= {
        "weekly",
        "Europe/Berlin",
    }
    first_rule = re.search(r'id="rule_order-0".*?<option selected value="(\d+)"', edit, re.S)
    assert first_rule and first_rule.group(1) == str(second.id)


@pytest.mark.parametrize(
    ("fields", "describe", "first"),
    [
        # Any month of the cycle names it: May -> Feb, May, Aug, Nov.
        (
            {"schedule_kind": "quarterly", "schedule_day_of_month": "31", "schedule_month": "5"},
            "Quarterly on day 31 in Feb, May, Aug, Nov at 09:30 (America/New_York)",
            r"\w{3} \d{4}-(02-2[89]|05-31|08-31|11-30) 09:30 E[SD]T",
        ),
        (
            {"schedule_kind": "annually", "schedule_day_of_month": "29", "schedule_month": "2"},
            "Annually on day 29 in Feb at 09:30 (America/New_York)",
            r"\w{3} \d{4}-02-2[89] 09:30 EST",
        ),
        (
            {"schedule_kind": "once", "schedule_at": "2099-07-01T08:15"},
            "Once on 2099-07-01 08:15 (America/New_York)",
            r"Wed 2099-07-01 08:15 EDT",
        ),
        ({"schedule_kind": "daily", "schedule_time": "7pm"}, None, None),
        ({"schedule_timezone": "Mars/Olympus"}, None, None),
    ],
)
def test_schedule_preview_for_every_kind(client, bed, fields, describe, first):
    query = {
        "schedule_kind": "daily",
        "schedule_time": "09:30",
        "schedule_timezone": "America/New_York",
        **fields,
    }
    preview = client.get("/admin/discovery_tasks/schedule-preview/", query_string=query).get_json()
    if describe is None:
        assert preview["errors"] and not preview.get("runs")
        assert any(
            "is not a time of day" in e or "is not an IANA time zone" in e
            for e in preview["errors"]
        )
        return
    assert preview["describe"] == describe
    assert len(preview["runs"]) == (1 if query["schedule_kind"] == "once" else 5)
    assert re.match(first, preview["runs"][0]), preview["runs"]


def test_task_form_shows_every_error_at_its_field_and_saves_nothing(client, bed):
    rule = make_rule(bed)
    form = task_form(
        bed,
        ranges="10.0.0.1\n10.0.0.300\n169.254.0.0/16",
        ports="443,70000",
        concurrency="0",
        schedule_time="25:00",
        **{"rule_order-0": str(rule.id), "rule_order-1": str(rule.id)},
    )
    page = text(post(client, "/admin/discovery_tasks/new/", form))
    assert "A rule is chosen twice" in page
    page = text(post(client, "/admin/discovery_tasks/new/", {**form, "rule_order-1": ""}))
    ranges = re.search(r'id="group-ranges".*?</div>\s*</div>', page, re.S)
    assert ranges is not None
    feedback = re.findall(r'<div class="invalid-feedback">([^<]*)</div>', page)
    assert any(f.startswith("line 2: &#39;10.0.0.300&#39;") for f in feedback), feedback
    assert any(f.startswith("line 3") and "denied" in f for f in feedback), feedback
    assert any("70000" in f for f in feedback), feedback
    assert "Between 1 and 10,000 connections in flight." in feedback
    assert any("is not a time of day" in f for f in feedback), feedback
    page = text(
        post(
            client,
            "/admin/discovery_tasks/new/",
            {**form, "rule_order-1": "", "connect_timeout": "soon"},
        )
    )
    assert "Not a valid float value." in page
    assert db.session.execute(select(func.count()).select_from(DiscoveryTask)).scalar_one() == 0


def test_csv_import_lists_every_bad_line_and_creates_nothing(client, bed):
    bad = "name,ranges,ports\nok,10.3.0.0/24,443\nbroken,10.4.0.300,443\n,10.5.0.1,443\n"
    page = text(post(client, "/admin/discovery_tasks/import/", {"text": bad}))
    assert "Nothing was imported" in page
    assert "line 3: ranges: line 1: &#39;10.4.0.300&#39;" in page
    assert "line 4: name: The task name is required." in page
    assert db.session.execute(select(func.count()).select_from(DiscoveryTask)).scalar_one() == 0
    from io import BytesIO

    good = b"name,ranges,ports,organization\nweb,10.1.0.0/24,443;8443,Acme\napi,10.2.0.1-10.2.0.9,443,\n"
    page = text(
        post(
            client,
            "/admin/discovery_tasks/import/",
            {"file": (BytesIO(good), "tasks.csv"), "text": ""},
            content_type="multipart/form-data",
        )
    )
    assert "Imported 2 task(s): web, api." in page
    tasks = {t.name: t for t in db.session.execute(select(DiscoveryTask)).scalars()}
    assert tasks["web"].ports == "443,8443" and tasks["web"].organization_id == bed.org.id
    page = text(
        post(
            client,
            "/admin/discovery_tasks/import/",
            {"file": (BytesIO(b"\xff\xfe\x00"), "t.csv"), "text": ""},
            content_type="multipart/form-data",
        )
    )
    assert "The file is not UTF-8 text." in page


# --- scanning -------------------------------------------------------------------------


def test_scan_shows_live_progress_then_history(client, bed):
    task = create_task(client, bed)
    bed.worker.pause()  # hold the shard so the run is seen Running
    page = text(
        post(
            client, "/admin/discovery_tasks/scan/", {"id": task.id}, page="/admin/discovery_tasks/"
        )
    )
    assert "Scan #" in page and "started: 10 targets" in page.replace(",", "")
    assert 'data-status="Running"' in page and "cw-cancel-form" in page
    state = client.get(f"/admin/discovery_tasks/progress/?ids={task.id},99999").get_json()
    assert list(state) == [str(task.id)]
    assert state[str(task.id)]["status"] == "Running" and state[str(task.id)]["percent"] == 0
    again = text(
        post(
            client, "/admin/discovery_tasks/scan/", {"id": task.id}, page="/admin/discovery_tasks/"
        )
    )
    assert "is already scanning" in again
    bed.worker.resume()
    drain(bed.worker)
    state = client.get(f"/admin/discovery_tasks/progress/?ids={task.id}").get_json()[str(task.id)]
    assert state["status"] == "Successful" and state["percent"] == 100, state
    listing = text(client.get("/admin/discovery_tasks/"))
    assert 'data-status="Successful"' in listing and ">100%<" in listing
    history = text(client.get(f"/admin/discovery_tasks/history/?id={task.id}"))
    run = db.session.execute(select(ScanRun)).scalar_one()
    row = re.search(rf'<tr data-run="{run.id}">(.*?)</tr>', history, re.S).group(1)
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]
    assert cells[2:4] == ["manual", "Successful"]
    assert cells[5] == "10 / 10"
    assert cells[6:10] == [
        str(run.tls_endpoints),
        str(run.certificates),
        str(run.new_certificates),
        str(run.assigned),
    ]
    assert (run.tls_endpoints, run.certificates, run.new_certificates) == (8, 5, 4)
    assert cells[4].endswith(" s") and "TLS endpoints" in cells[10]


def test_cancel_then_delete(client, bed):
    task = create_task(client, bed)
    task_id = task.id
    bed.worker.pause()
    post(client, "/admin/discovery_tasks/scan/", {"id": task_id}, page="/admin/discovery_tasks/")
    page = text(
        post(
            client,
            "/admin/discovery_tasks/delete/",
            {"id": task_id},
            page="/admin/discovery_tasks/",
        )
    )
    assert "&#39;Loopback&#39; is scanning now; cancel the scan first." in page
    assert db.session.get(DiscoveryTask, task_id) is not None
    page = text(
        post(
            client,
            "/admin/discovery_tasks/cancel/",
            {"id": task_id},
            page="/admin/discovery_tasks/",
        )
    )
    assert "cancelled." in page and 'data-status="Cancelled"' in page
    assert db.session.execute(select(ScanRun.status)).scalar_one() == RunStatus.CANCELLED
    page = text(
        post(
            client,
            "/admin/discovery_tasks/cancel/",
            {"id": task_id},
            page="/admin/discovery_tasks/",
        )
    )
    assert "That task is not scanning." in page
    page = text(
        post(
            client,
            "/admin/discovery_tasks/delete/",
            {"id": task_id},
            page="/admin/discovery_tasks/",
        )
    )
    assert db.session.get(DiscoveryTask, task_id) is None
    assert (
        db.session.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "discovery_task.delete")
        ).scalar_one()
        == 1
    )
    bed.worker.resume()
    drain(bed.worker)


# --- Network Assets ---------------------------------------------------------------------


def list_rows(page):
    """The rows of a Flask-Admin list table: [{column: cell text}]."""
    table = page.split('model-list">', 1)[1].split("</thead>", 1)[1].split("</table>", 1)[0]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        cells = re.findall(r'<td class="col-(\w+)">(.*?)</td>', row, re.S)
        if cells:
            rows.append({k: " ".join(re.sub(r"<[^>]+>", " ", v).split()) for k, v in cells})
    return rows


def rows_of(page):
    """{(ip, host name): row} of the Network Assets list."""
    return {(r["ip"], r["host_name"]): " ".join(r.values()) for r in list_rows(page)}


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
        "www.ext.test" in ext
        and "Assigned" in ext
        and "EC 256" in ext
        and "ecdsa-with-SHA256" in ext
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

    endpoint = db.session.execute(
        select(Endpoint).where(Endpoint.ip == HOST["ext"], Endpoint.host_name == "")
    ).scalar_one()
    details = text(client.get(f"/admin/network_assets/details/?id={endpoint.id}"))
    assert "www.ext.test" in details and "assigned by rule Example Corp to Acme" in details
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
    figure = json.loads(re.search(r"var figure = (\{.*?\});\n", page).group(1))
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
        post(
            client,
            "/admin/assignment_rules/new/",
            rule_form(bed, name="Example Corp to Acme", target="o:0"),
        )
    )
    assert "A rule named &#39;Example Corp to Acme&#39; already exists." in page
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
