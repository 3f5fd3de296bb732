"""The authorization matrix, continued for Discovery: tasks, assignment rules and Network
Assets (test_rbac.py holds the world and the rest of the console).

Alpha owns the task 'Alpha net', Beta the task 'Beta Corp scan'; both are scanned against
real TLS servers on loopback. Alpha's task also finds a certificate that a rule places in
Beta, and an MRAO moves a certificate that Beta's task found into Alpha/Ops. An RAO of
Alpha sees Alpha's endpoints and the one moved into Alpha (without learning which task
found it); a DRAO of Alpha/Ops sees only the endpoints of certificates in Ops. Neither ever
sees anything of Beta, and nothing of Beta is reachable by id.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AssignmentRule, Certificate, DiscoveryTask, Endpoint, ScanRun
from app.services.discovery import endpoints, rules, runs, tasks
from tests.conftest import csrf_token, drain
from tests.integration.test_rbac import BETA_MARKERS, as_, world  # noqa: F401  (fixture)
from tests.tlsbed.certs import issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context

NET = "127.0.32"
SERVED = {  # last octet -> (CN, subject O)
    1: ("a1.alpha.example", "Alpha Inc"),  # Alpha net; rule -> Alpha/Ops
    2: ("lab1.alpha.example", "Alpha Lab"),  # Alpha net; rule -> Alpha/Lab
    3: ("free.alpha.example", "Nobody"),  # Alpha net; not assigned
    4: ("shared.beta.example", "Beta Corp"),  # Alpha net; rule -> Beta
    5: ("www2.beta.example", "Beta Corp"),  # Beta's task; rule -> Beta
    6: ("hidden.beta.example", "Nobody"),  # Beta's task; not assigned
    7: ("moved.alpha.example", "Nobody"),  # Beta's task; an MRAO assigns it to Alpha/Ops
}


def _rule(mrao, name, value, org, dept=None):
    return rules.save_rule(
        actor=mrao,
        data=rules.RuleData(
            name=name,
            match_mode="all",
            conditions=[{"field": "subject_o", "operator": "equals", "value": value}],
            organization_id=org,
            department_id=dept,
        ),
    )


@pytest.fixture
def disco(world, stub_worker):  # noqa: F811  (the fixture above, by name)
    from app.models import Admin

    mrao = db.session.execute(select(Admin).where(Admin.login == "mrao")).scalar_one()
    ops_rule = _rule(mrao, "Alpha ops rule", "Alpha Inc", world["alpha"], world["ops"])
    lab_rule = _rule(mrao, "Alpha lab rule", "Alpha Lab", world["alpha"], world["lab"])
    beta_rule = _rule(mrao, "Beta Corp rule", "Beta Corp", world["beta"])
    hosts = [f"{NET}.{i}" for i in SERVED]
    port = free_port(hosts)
    made = {}
    for name, org, ranges, task_rules in (
        ("Alpha net", world["alpha"], f"{NET}.1-{NET}.4", [ops_rule, lab_rule, beta_rule]),
        ("Beta Corp scan", world["beta"], f"{NET}.5-{NET}.7", [beta_rule]),
    ):
        made[name] = tasks.create_task(
            actor=mrao,
            data=tasks.TaskData(
                name=name,
                ranges=ranges,
                ports=str(port),
                organization_id=org,
                connect_timeout=2,
                handshake_timeout=3,
                rule_ids=[r.id for r in task_rules],
            ),
        )
    db.session.commit()
    with ServerFarm() as farm:
        for octet, (cn, o) in SERVED.items():
            farm.add_tls(
                f"{NET}.{octet}", port, server_context([issue(make_name(cn, o), sans=[cn])])
            )
        for task in made.values():
            runs.start_run(actor=mrao, task_id=task.id)
            drain(stub_worker)
    moved = db.session.execute(select(Endpoint).where(Endpoint.ip == f"{NET}.7")).scalar_one()
    endpoints.assign_endpoints(
        actor=mrao,
        endpoint_ids=[moved.id],
        organization_id=world["alpha"],
        department_id=world["ops"],
    )
    db.session.commit()
    endpoint_ids = {
        octet: db.session.execute(
            select(Endpoint.id).where(Endpoint.ip == f"{NET}.{octet}")
        ).scalar_one()
        for octet in SERVED
    }
    return {
        **world,
        "alpha_task": made["Alpha net"].id,
        "beta_task": made["Beta Corp scan"].id,
        "beta_rule": beta_rule.id,
        "lab_rule": lab_rule.id,
        "endpoints": endpoint_ids,
    }


def cns_listed(page):
    return set(re.findall(r"[\w-]+\.(?:alpha|beta)\.example", page.split('model-list">', 1)[1]))


SEES = {
    "mrao": {f"{NET}.{i}" for i in SERVED},
    "alpha-rao": {f"{NET}.{i}" for i in (1, 2, 3, 7)},
    "ops-drao": {f"{NET}.{i}" for i in (1, 7)},
}


@pytest.mark.parametrize("who", ["mrao", "alpha-rao", "ops-drao"])
def test_network_assets_show_exactly_the_endpoints_in_scope(client, disco, who):
    as_(client, who)
    page = client.get("/admin/network_assets/").get_data(as_text=True)
    listed = set(re.findall(rf"{re.escape(NET)}\.\d+", page.split('model-list">', 1)[1]))
    assert listed == SEES[who]
    if who != "mrao":
        for marker in BETA_MARKERS:
            assert marker not in page, f"{who} sees {marker!r} in Network Assets"
    moved = client.get(f"/admin/network_assets/details/?id={disco['endpoints'][7]}")
    details = moved.get_data(as_text=True)
    assert "moved.alpha.example" in details
    # Admins outside one's view (here an MRAO) stay unnamed, as in the Admins list.
    by = "mrao" if who == "mrao" else "an administrator"
    assert f"assigned by {by}" in details
    found_by = re.search(r"Found by task</th><td>([^<]*)<", details).group(1)
    assert found_by == ("Beta Corp scan" if who == "mrao" else "—")


@pytest.mark.parametrize("who", ["alpha-rao", "ops-drao"])
def test_discovery_pages_never_show_beta(client, disco, who):
    as_(client, who)
    pages = [
        "/admin/network_assets/",
        f"/admin/network_assets/?chart={disco['beta_task']}",
        f"/admin/network_assets/?flt0_task_equals={disco['beta_task']}",
        "/admin/network_assets/?flt0_inventory_state_is=Assigned",
        "/admin/network_assets/?flt0_inventory_state_is=Not+assigned",
        "/admin/assignment_rules/",
        "/admin/assignment_rules/new/",
        "/admin/ssl_certs/",
        f"/admin/ssl_certs/details/?id={_cert_of(disco, 7)}",
    ]
    if who == "alpha-rao":
        pages += [
            "/admin/discovery_tasks/",
            "/admin/discovery_tasks/new/",
            f"/admin/discovery_tasks/details/?id={disco['alpha_task']}",
            f"/admin/discovery_tasks/edit/?id={disco['alpha_task']}",
            f"/admin/discovery_tasks/history/?id={disco['alpha_task']}",
        ]
    for url in pages:
        resp = client.get(url)
        assert resp.status_code == 200, url
        page = resp.get_data(as_text=True)
        for marker in BETA_MARKERS:
            assert marker not in page, f"{who} sees {marker!r} on {url}"
    rules = client.get("/admin/assignment_rules/").get_data(as_text=True)
    expected = {"alpha-rao": {"Alpha ops rule", "Alpha lab rule"}, "ops-drao": {"Alpha ops rule"}}
    assert set(re.findall(r"Alpha \w+ rule", rules)) == expected[who]
    ssl = client.get("/admin/ssl_certs/").get_data(as_text=True)
    visible = {"alpha-rao": {"a1", "lab1", "moved"}, "ops-drao": {"a1", "moved"}}[who]
    assert {cn.split(".")[0] for cn in cns_listed(ssl)} >= visible
    assert not any(cn in ssl for cn in ("free.alpha.example", "shared.beta", "www2.beta"))
    if who == "alpha-rao":
        assets = client.get("/admin/network_assets/").get_data(as_text=True)
        summary = assets.split('id="cw-summary-table"', 1)[1].split("</table>", 1)[0]
        assert "Alpha net" in summary and "Beta" not in summary
        edit = client.get(f"/admin/discovery_tasks/edit/?id={disco['alpha_task']}").get_data(
            as_text=True
        )
        assert "1 rule outside your scope is attached to this task; saving detaches it." in edit


def _cert_of(disco, octet):
    return db.session.get(Endpoint, disco["endpoints"][octet]).certificate_id


def _beta_state(disco):
    return (
        db.session.execute(select(func.count()).select_from(ScanRun)).scalar_one(),
        db.session.get(DiscoveryTask, disco["beta_task"]) is not None,
        db.session.get(DiscoveryTask, disco["beta_task"]).name,
        db.session.get(AssignmentRule, disco["beta_rule"]) is not None,
        db.session.get(AssignmentRule, disco["beta_rule"]).name,
        [
            db.session.get(Certificate, _cert_of(disco, octet)).organization_id
            for octet in (4, 5, 6)
        ],
    )


@pytest.mark.parametrize("who", ["alpha-rao", "ops-drao"])
def test_out_of_scope_discovery_objects_are_unreachable_by_id(client, disco, who):
    as_(client, who)
    before = _beta_state(disco)
    beta_endpoints = [disco["endpoints"][i] for i in (4, 5, 6)]
    if who == "ops-drao":  # a sibling department's and an unassigned Alpha endpoint, too
        beta_endpoints += [disco["endpoints"][2], disco["endpoints"][3]]
    gets = [
        f"/admin/discovery_tasks/details/?id={disco['beta_task']}",
        f"/admin/discovery_tasks/edit/?id={disco['beta_task']}",
        f"/admin/discovery_tasks/history/?id={disco['beta_task']}",
        f"/admin/discovery_tasks/progress/?ids={disco['beta_task']}",
        f"/admin/assignment_rules/details/?id={disco['beta_rule']}",
        f"/admin/assignment_rules/edit/?id={disco['beta_rule']}",
        f"/admin/network_assets/assign/?ids={','.join(map(str, beta_endpoints))}",
        *(f"/admin/network_assets/details/?id={i}" for i in beta_endpoints),
    ]
    for url in gets:
        resp = client.get(url, follow_redirects=True)
        page = resp.get_data(as_text=True)
        assert not any(m in page for m in BETA_MARKERS), url
        assert ("hidden.beta" not in page and "free.alpha" not in page) or who == "alpha-rao", url
        if "/progress/" in url and resp.status_code == 200:
            assert resp.get_json() == {}
    token = csrf_token(client, "/admin/network_assets/")
    for url, data in (
        ("/admin/discovery_tasks/scan/", {"id": disco["beta_task"]}),
        ("/admin/discovery_tasks/cancel/", {"id": disco["beta_task"]}),
        ("/admin/discovery_tasks/delete/", {"id": disco["beta_task"]}),
        (
            f"/admin/discovery_tasks/edit/?id={disco['beta_task']}",
            {"name": "pwned", "ranges": "10.0.0.1", "schedule_kind": "manual"},
        ),
        ("/admin/assignment_rules/delete/", {"id": disco["beta_rule"]}),
        (
            f"/admin/assignment_rules/edit/?id={disco['beta_rule']}",
            {"name": "pwned", "target": f"o:{disco['alpha']}"},
        ),
        (
            "/admin/network_assets/action/",
            {"action": "assign", "rowid": [str(i) for i in beta_endpoints]},
        ),
        (
            "/admin/network_assets/assign/",
            {"ids": ",".join(map(str, beta_endpoints)), "target": f"o:{disco['alpha']}"},
        ),
        (
            "/admin/network_assets/assign/",
            {"ids": ",".join(map(str, beta_endpoints)), "target": f"d:{disco['ops']}"},
        ),
    ):
        resp = client.post(url, data={**data, "csrf_token": token}, follow_redirects=True)
        page = resp.get_data(as_text=True)
        assert not any(m in page for m in BETA_MARKERS), url
    assert _beta_state(disco) == before
    if who == "ops-drao":
        lab = db.session.get(Certificate, _cert_of(disco, 2))
        assert lab.department_id == disco["lab"]
        assert db.session.get(Certificate, _cert_of(disco, 3)).organization_id is None


def test_rao_cannot_give_a_task_to_beta_or_attach_its_rule(client, disco):
    as_(client, "alpha-rao")
    form = {
        "name": "Sneaky",
        "ranges": "10.9.0.1",
        "ports": "443",
        "connect_timeout": "3",
        "handshake_timeout": "5",
        "concurrency": "10",
        "owner": str(disco["beta"]),
        "rule_order-0": str(disco["beta_rule"]),
        "schedule_kind": "manual",
        "schedule_timezone": "UTC",
    }
    url = "/admin/discovery_tasks/new/"
    page = client.post(
        url, data={**form, "csrf_token": csrf_token(client, url)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Choose one of your organizations as the owner of the task." in page
    assert "One of the chosen rules does not exist or is outside your scope." in page
    assert not any(m in page for m in BETA_MARKERS)
    assert (
        db.session.execute(
            select(func.count()).select_from(DiscoveryTask).where(DiscoveryTask.name == "Sneaky")
        ).scalar_one()
        == 0
    )
    # A dry run never shows what lies outside the scope, even when the rule would match it.
    url = "/admin/assignment_rules/new/"
    rule = {
        "name": "Probe",
        "match_mode": "any",
        "target": f"o:{disco['alpha']}",
        "conditions-0-field": "subject_cn",
        "conditions-0-operator": "contains",
        "conditions-0-value": "example",
        "dry_run": "1",
    }
    page = client.post(
        url, data={**rule, "csrf_token": csrf_token(client, url)}, follow_redirects=True
    ).get_data(as_text=True)
    results = page.split('id="cw-dry-run-results"', 1)[1]
    assert set(re.findall(r"[\w-]+\.(?:alpha|beta)\.example", results)) == {
        "a1.alpha.example",
        "lab1.alpha.example",
        "free.alpha.example",
        "moved.alpha.example",
    }


def test_mrao_sees_every_task_rule_and_endpoint(client, disco):
    as_(client, "mrao")
    tasks = client.get("/admin/discovery_tasks/").get_data(as_text=True)
    assert "Alpha net" in tasks and "Beta Corp scan" in tasks
    rules = client.get("/admin/assignment_rules/").get_data(as_text=True)
    assert "Beta Corp rule" in rules and "Alpha lab rule" in rules
    page = client.get("/admin/network_assets/").get_data(as_text=True)
    assert {"shared.beta.example", "hidden.beta.example", "www2.beta.example"} <= cns_listed(page)


def test_csv_import_answers_for_another_organization_as_for_a_missing_one(client, disco):
    as_(client, "alpha-rao")
    url = "/admin/discovery_tasks/import/"
    pages = {}
    for org in ("Beta Corp", "No Such Org"):
        text = f"name,ranges,organization\nImported,10.9.0.0/30,{org}\n"
        pages[org] = client.post(
            url, data={"text": text, "csrf_token": csrf_token(client, url)}, follow_redirects=True
        ).get_data(as_text=True)
    assert (
        "line 2: organization: no organization named &#39;No Such Org&#39;" in pages["No Such Org"]
    )
    assert "line 2: organization: no organization named &#39;Beta Corp&#39;" in pages["Beta Corp"]
    assert (
        db.session.execute(
            select(func.count()).select_from(DiscoveryTask).where(DiscoveryTask.name == "Imported")
        ).scalar_one()
        == 0
    )
    text = "name,ranges,organization\nImported,10.9.0.0/30,Alpha Inc\n"
    page = client.post(
        url, data={"text": text, "csrf_token": csrf_token(client, url)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Imported 1 task(s): Imported." in page
    task = db.session.execute(
        select(DiscoveryTask).where(DiscoveryTask.name == "Imported")
    ).scalar_one()
    assert task.organization_id == disco["alpha"]


def test_names_are_unique_per_owner_so_another_organizations_names_stay_hidden(client, disco):
    """Beta's task and rule names do not block Alpha's RAO (an "already exists" would
    tell them what Beta has); inside Alpha the same name is refused, in any letter case."""
    as_(client, "alpha-rao")
    task = {
        "ranges": "10.9.0.1",
        "ports": "443",
        "connect_timeout": "3",
        "handshake_timeout": "5",
        "concurrency": "10",
        "owner": str(disco["alpha"]),
        "schedule_kind": "manual",
        "schedule_timezone": "UTC",
    }
    rule = {
        "match_mode": "any",
        "target": f"o:{disco['alpha']}",
        "conditions-0-field": "subject_cn",
        "conditions-0-operator": "contains",
        "conditions-0-value": "example",
    }
    for url, form, name, model in (
        ("/admin/discovery_tasks/new/", task, "Beta Corp scan", DiscoveryTask),
        ("/admin/assignment_rules/new/", rule, "Beta Corp rule", AssignmentRule),
    ):
        for attempt in (name, name.upper()):
            page = client.post(
                url,
                data={**form, "name": attempt, "csrf_token": csrf_token(client, url)},
                follow_redirects=True,
            ).get_data(as_text=True)
            if attempt == name:
                assert "already exists" not in page
            else:
                assert f"named &#39;{attempt}&#39; already exists." in page
        owners = db.session.execute(
            select(model.organization_id).where(func.lower(model.name) == name.lower())
        ).scalars()
        assert sorted(owners) == sorted([disco["alpha"], disco["beta"]])
