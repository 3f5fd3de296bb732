"""Network Discovery Tasks through HTTP: the task form with its five-run schedule preview
and errors at the fields, CSV import, Scan with live progress, History, Cancel, Delete -
against real TLS servers on loopback, scanned through the job path."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    AuditEvent,
    DiscoveryTask,
    RunStatus,
    ScanRun,
)
from tests.conftest import drain
from tests.integration.discovery_console import (
    NET,
    create_task,
    make_rule,
    post,
    serve_bed,
    task_form,
    text,
)


@pytest.fixture
def bed(app, client, stub_worker):
    yield from serve_bed(client, stub_worker)


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
    assert cells[2:4] == ["manual by mrao", "Successful"]
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


def test_protocol_overrides_and_rate_are_saved_or_refused_by_field(client, bed):
    page = text(
        post(
            client,
            "/admin/discovery_tasks/new/",
            task_form(bed, protocols="2525 = smtpx", rate="-5"),
        )
    )
    assert "protocols line 1: unknown protocol &#39;smtpx&#39;" in page
    assert "Between 0 (no cap) and 100,000 new connections a second." in page
    page = text(
        post(
            client,
            "/admin/discovery_tasks/new/",
            task_form(bed, protocols="2525 = smtp, * = tls", rate="250"),
        )
    )
    assert "Saved the discovery task" in page, page
    task = db.session.execute(select(DiscoveryTask)).scalar_one()
    assert (task.protocols, task.rate) == ("2525 = smtp, * = tls", 250.0)
    details = text(client.get(f"/admin/discovery_tasks/details/?id={task.id}"))
    assert "2525 = smtp, * = tls" in details and "Rate cap" in details
